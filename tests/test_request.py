"""One job request from every front end: each default resolved against the prior, the same resolved
configuration through the command line and through the add-on -> server -> worker road, and the
prompt's words checked the same way by the server (without the prior) and the worker (with it)."""

import sys
from pathlib import Path

import msgpack
import pytest
import torch
from tiny_models import build_tiny_sd

from propdreamer.core.cameras import OrbitRange
from propdreamer.core.cli import build_parser
from propdreamer.core.cli import job_request as cli_request
from propdreamer.core.guidance.timesteps import TimestepSchedule
from propdreamer.core.priors import PriorConfig, load_prior
from propdreamer.core.prompt_check import unknown_words, word_vocabulary
from propdreamer.core.request import AUTO_METHOD, CameraSetup, JobRequest, RequestError, prompt_warnings, settings_summary
from propdreamer.core.resolve import resolve
from propdreamer.server.cli import add_server_commands
from propdreamer.server.schema import parse_request

sys.path.insert(0, str(Path(__file__).parents[1] / "blender_addon"))
from propdreamer_blender.request_body import PanelSettings
from propdreamer_blender.request_body import job_request as panel_request


@pytest.fixture(scope="module")
def builtin():
    return load_prior(PriorConfig(source="builtin", device="cpu"))


@pytest.fixture(scope="module")
def latent(tmp_path_factory):
    return load_prior(PriorConfig(source=str(build_tiny_sd(tmp_path_factory.mktemp("sd"))), device="cpu"))


def test_every_unset_field_takes_the_builtin_priors_default(builtin):
    r = resolve(JobRequest("a red cube"), builtin)
    c = r.config
    assert (c.method, c.representation, c.preset, c.steps, c.seed) == ("sds", "nerf", "draft", 300, 0)
    assert c.guidance_scale == 10.0  # SDS in 3D on the pixel prior (stage1/defaults.py)
    assert c.orbit == OrbitRange(elevation_deg=(-10.0, 30.0))  # where its last training run rendered from
    assert c.timesteps is None and c.regularisers is None  # stage one: the prior's; stage two: its own (reported below)
    assert c.guidance_options == {} and not c.explicit_c2w
    s = r.settings
    assert s["timesteps"] == {"kind": "uniform", "t_min": 0.02, "t_max": 0.95}
    assert s["refine_timesteps"] == {"kind": "sqrt", "t_min": 0.02, "t_max": 0.98}
    assert s["cameras"]["elevation_deg"] == [-10.0, 30.0] and s["defaults"] == ["method", "guidance_scale", "steps", "t_range", "cameras", "init", "face_budget"]
    assert settings_summary(s) == "sds on nerf, draft 300 steps, CFG 10, t 0.02-0.95, elevation -10..30"
    assert r.warnings == ()
    texture = resolve(JobRequest("a red cube", kind="texture", uvs="keep"), builtin).settings  # stage one does not run for a texture job
    assert settings_summary(texture) == "texture, draft 80 steps, CFG 10, t 0.02-0.95, elevation -10..30"


def test_the_method_default_follows_the_representation_and_each_methods_scale(builtin):
    g = resolve(JobRequest("a red cube", representation="gaussians"), builtin).config
    assert g.method == AUTO_METHOD["gaussians"] == "vdm" and g.guidance_scale == 7.5  # VDM + DCA, its paper's scale
    assert resolve(JobRequest("a red cube", method="ssd"), builtin).config.guidance_scale == 30.0  # SSD on a pixel prior
    vsd = resolve(JobRequest("a red cube", method="vsd"), builtin).config
    assert vsd.guidance_scale == 7.5 and vsd.guidance_options == {"lora_batch": 1}


def test_a_latent_prior_gets_the_literatures_defaults(latent):
    r = resolve(JobRequest("a red cube"), latent)
    assert r.config.guidance_scale == 100.0 and r.config.orbit == OrbitRange(elevation_deg=(-10.0, 60.0))
    assert r.settings["timesteps"] == {"kind": "sqrt", "t_min": 0.02, "t_max": 0.98}
    # VSD: ProlificDreamer's schedule, t_max 0.98 -> 0.5 after 20% of the run
    from propdreamer.core.stage1.defaults import VSD_LATENT_PRIOR_TIMESTEPS
    from propdreamer.core.stage1.trainer import DistillationTrainer

    assert resolve(JobRequest("a red cube", method="vsd"), latent).settings["timesteps"] == {"kind": "step", "t_min": 0.02, "t_max": 0.98, "annealed_max": 0.5, "anneal_at": 0.2}
    trainer = DistillationTrainer(latent, "a red cube", resolve(JobRequest("a red cube", method="vsd", steps=10), latent).config)
    assert trainer.guidance.config.timesteps == VSD_LATENT_PRIOR_TIMESTEPS
    t = VSD_LATENT_PRIOR_TIMESTEPS
    assert t.sample(1, 10, 500, 1000, torch.Generator().manual_seed(0)).max() > 500 >= t.sample(2, 10, 500, 1000, torch.Generator().manual_seed(0)).max()


def test_fields_the_artist_sets_win(builtin):
    eye = (1.0, 0, 0, 0, 0, 1, 0, -2.0, 0, 0, 1, 0, 0, 0, 0, 1)
    r = resolve(
        JobRequest(
            "a red cube",
            method="nfsd",
            guidance_scale=4.0,
            steps=12,
            t_range=(0.1, 0.6),
            negative_prompt="a blue cube",
            seed=3,
            cameras=CameraSetup(OrbitRange(elevation_deg=(0.0, 10.0))),
            init="ball",
            face_budget=8000,
        ),
        builtin,
    )
    c = r.config
    assert (c.method, c.guidance_scale, c.steps, c.seed, c.face_budget) == ("nfsd", 4.0, 12, 3, 8000)
    assert c.timesteps == TimestepSchedule("uniform", t_min=0.1, t_max=0.6) and c.orbit.elevation_deg == (0.0, 10.0)
    assert c.guidance_options == {"negative_prompt": "a blue cube"} and r.settings["negative_prompt"] == "a blue cube"
    assert r.settings["defaults"] == []
    explicit = resolve(JobRequest("a red cube", cameras=CameraSetup(matrices=(eye,), fovs_deg=(35.0,))), builtin)
    assert explicit.config.explicit_c2w == (eye,) and explicit.config.orbit is None and explicit.settings["cameras"] == {"explicit": 1}


def test_nfsd_without_a_negative_prompt_reports_its_papers(builtin):
    assert "unrealistic" in resolve(JobRequest("a red cube", method="nfsd"), builtin).settings["negative_prompt"]
    assert resolve(JobRequest("a red cube"), builtin).settings["negative_prompt"] == ""


def test_the_command_line_and_the_addon_through_the_server_resolve_the_same_config(builtin):
    """The CLI's arguments -> JobRequest, and the panel's settings -> the add-on's body -> msgpack -> the
    server's validation -> the spool's body -> the worker's JobRequest: one resolved configuration."""
    parser = build_parser(add_server_commands)
    for argv, panel in (
        (["a red cube"], PanelSettings("a red cube")),
        (["a green cone", "--representation", "gaussians", "--seed", "7"], PanelSettings("a green cone", representation="gaussians", seed=7)),
        (
            ["a blue torus", "--method", "nfsd", "--negative-prompt", "a red torus", "--preset", "standard"],
            PanelSettings("a blue torus", method="nfsd", negative_prompt="a red torus", preset="standard"),
        ),
        (["a red cone", "--representation", "gaussians", "--init", "shap-e"], PanelSettings("a red cone", representation="gaussians", init="shap-e")),
        (["a red cone", "--init", "ball"], PanelSettings("a red cone", init="ball")),
        (["a red cone", "--face-budget", "5000"], PanelSettings("a red cone", face_budget=5000)),
    ):
        cli, _ = cli_request(parser.parse_args(["generate", *argv, "-o", "x.glb"]))
        body = msgpack.unpackb(msgpack.packb(panel_request("generate", panel).to_body()))
        accepted, _ = parse_request(body, 0)
        worker = JobRequest.from_body(msgpack.unpackb(msgpack.packb(accepted.to_body())))  # what the spool keeps and the worker reads
        assert worker == cli
        a, b = resolve(cli, builtin), resolve(worker, builtin)
        assert a.config == b.config and a.settings == b.settings


def test_the_panels_camera_modes(builtin):
    assert panel_request("generate", PanelSettings("a red cube")).cameras is None
    orbit = panel_request("generate", PanelSettings("a red cube", cameras="orbit", elevation=(5.0, 25.0), fov=30.0)).cameras
    assert orbit.orbit.elevation_deg == (5.0, 25.0) and orbit.orbit.fov_deg == (30.0, 30.0)
    with pytest.raises(ValueError, match="no camera in the scene"):
        panel_request("generate", PanelSettings("a red cube", cameras="scene"))
    assert panel_request("generate", PanelSettings("a red cube", method="auto")).method is None
    assert panel_request("refine", PanelSettings("a red cube", init="shap-e")).init == "auto"  # Refine starts from the mesh, whatever the panel says


@pytest.mark.parametrize("prompt", ["a red cube", "a wooden barrel", "A Red, cube!", "a red cube, side view", "an orange torus with spikes"])
def test_the_server_reads_the_priors_words_as_the_loaded_prior_does(builtin, prompt):
    vocabulary = word_vocabulary("builtin")
    assert [w.lower() for w in builtin.unknown_words(prompt) if w.isalnum()] == unknown_words(prompt, vocabulary)


def test_unknown_words_warn_and_a_prompt_with_no_known_word_is_refused(builtin, latent):
    assert prompt_warnings("a red cube", [], "builtin") == []
    assert "['wooden']" in prompt_warnings("a wooden cube", ["wooden"], "builtin")[0]
    with pytest.raises(RequestError, match="knows none of the words"):
        resolve(JobRequest("a wooden barrel"), builtin)
    from propdreamer.server.wire import ProtocolError

    with pytest.raises(ProtocolError, match="knows none of the words"):
        parse_request({"prompt": "a wooden barrel, front view"}, 0, word_vocabulary("builtin"), "builtin")  # articles and view words describe nothing
    assert resolve(JobRequest("a wooden red barrel"), builtin).warnings
    assert word_vocabulary("/nonexistent") is None
    assert resolve(JobRequest("a wooden barrel"), latent).warnings == ()  # a BPE tokenizer reads any word


def test_a_request_with_a_mesh_and_without():
    assert JobRequest("a red cube", kind="texture").needs_mesh and not JobRequest("a red cube").needs_mesh


def test_generate_runs_texture_and_refine_jobs_locally_through_the_same_request(tmp_path, monkeypatch, capsys):
    """`propdreamer generate --texture / --refine / --negative-prompt`: the request the server would get,
    resolved the same way, run by the same `run_request` as the server's worker."""
    import propdreamer.core.jobs as jobs
    from propdreamer.server.cli import main

    ran = []
    monkeypatch.setattr(jobs, "run_request", lambda prior, resolved, mesh, callbacks: ran.append((resolved, mesh)) or b"GLB")
    mesh = tmp_path / "in.glb"
    mesh.write_bytes(b"MESH")
    assert main(["generate", "a wooden cube", "--texture", str(mesh), "--negative-prompt", "a blue cube", "-o", str(tmp_path / "t.glb"), "--device", "cpu"]) == 0
    assert main(["generate", "a red cube", "--refine", str(mesh), "--method", "vsd", "-o", str(tmp_path / "r.glb"), "--device", "cpu"]) == 0
    (texture, texture_mesh), (refine, refine_mesh) = ran
    assert texture.request == JobRequest("a wooden cube", kind="texture", negative_prompt="a blue cube") and texture_mesh == b"MESH"
    assert texture.config.guidance_options == {"negative_prompt": "a blue cube"}
    assert refine.request.kind == "refine" and refine.config.method == "vsd" and refine_mesh == b"MESH"
    assert (tmp_path / "t.glb").read_bytes() == b"GLB"
    err = capsys.readouterr().err
    assert "does not know the word(s) ['wooden']" in err and "texture, draft 80 steps" in err
    assert main(["generate", "a red cube", "--texture", str(mesh), "--refine", str(mesh), "-o", str(tmp_path / "x.glb")]) == 2
    assert main(["generate", "a wooden barrel", "-o", str(tmp_path / "x.glb"), "--device", "cpu"]) == 2
    assert "knows none of the words" in capsys.readouterr().err


def test_the_typed_choices_are_the_listed_choices():
    from typing import get_args

    from propdreamer.core.request import INITS, REPRESENTATIONS, RepresentationName, StartName

    assert get_args(RepresentationName) == REPRESENTATIONS
    assert set(get_args(StartName)) == set(INITS) - {"auto"}


def test_the_face_budget_reaches_the_export_and_is_refused_where_it_cannot_apply(builtin):
    from propdreamer.core.request import MAX_FACE_BUDGET, MIN_FACE_BUDGET

    job = resolve(JobRequest("a red cube", face_budget=5000), builtin)
    assert job.config.face_budget == 5000 and job.settings["face_budget"] == 5000 and "face_budget" not in job.settings["defaults"]
    preset = resolve(JobRequest("a red cube", preset="standard"), builtin)
    assert preset.config.face_budget is None and preset.settings["face_budget"] == 100_000 and "face_budget" in preset.settings["defaults"]
    assert JobRequest.from_body({"prompt": "a red cube", "face_budget": 2000}).to_body()["face_budget"] == 2000
    for bad in (MIN_FACE_BUDGET - 1, MAX_FACE_BUDGET + 1, 2.5, "many"):
        with pytest.raises(RequestError, match="face_budget"):
            JobRequest.from_body({"prompt": "a red cube", "face_budget": bad})
    with pytest.raises(RequestError, match="keeps the artist's mesh"):
        JobRequest.from_body({"kind": "texture", "prompt": "a red cube", "face_budget": 5000}, 1)
    assert panel_request("texture", PanelSettings("a red cube", face_budget=5000)).face_budget is None  # the panel never sends it there
    assert panel_request("refine", PanelSettings("a red cube", face_budget=5000)).face_budget == 5000
