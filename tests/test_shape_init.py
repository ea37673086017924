"""Shap-E's shape of the prompt as stage one's start (DreamMapping, GaussianDreamer), on a tiny random
Shap-E pipeline built and saved by the tests: loading (folder, offline Hub cache, the teaching error),
the frame, the coloured points the Gaussians start from, the NeRF density fitted to the shape, and the
choice `resolve` makes for each prior and request."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from propdreamer.core.mesh.mesh_sdf import winding_number
from propdreamer.core.priors import PriorConfig, load_prior
from propdreamer.core.priors.loading import PriorNotFoundError
from propdreamer.core.request import JobRequest, RequestError
from propdreamer.core.resolve import resolve
from propdreamer.core.shape_init import (
    DEFAULT_SHAP_E_ID,
    ShapEConfig,
    StartingShape,
    _decimated,
    fit_nerf_density,
    from_shap_e_frame,
    load_shap_e,
    shap_e_shape,
)

FAST = dict(steps=2, grid_size=32)  # Shap-E sampling steps and the decoder's grid, small for the CPU


@pytest.fixture(scope="module")
def tiny_shap_e(tmp_path_factory):
    from tiny_models import build_tiny_shap_e

    return build_tiny_shap_e(tmp_path_factory.mktemp("tiny-shap-e"))


@pytest.fixture(scope="module")
def shape(tiny_shap_e) -> StartingShape:
    return shap_e_shape(load_shap_e(str(tiny_shap_e), "cpu"), "a red cube", 0, ShapEConfig(**FAST))


@pytest.fixture(scope="module")
def latent_prior(tiny_sd_folder):
    return load_prior(PriorConfig(source=str(tiny_sd_folder), device="cpu"))


def test_shape_is_in_the_unit_frame_with_colours(shape):
    v, f, c = shape.vertices, shape.faces, shape.colours
    assert len(f) > 100 and f.max() < len(v) and c.shape == v.shape
    np.testing.assert_allclose(v.max(0) + v.min(0), 0, atol=1e-5)  # centred
    assert float((v.max(0) - v.min(0)).max()) == pytest.approx(1.0, abs=1e-5)  # largest side 1
    assert 0 <= c.min() and c.max() <= 1 and c.std() > 0.01  # sRGB, not one flat grey


def test_shap_e_front_becomes_ours():
    """Shap-E's objects face +X (GaussianDreamer's threestudio front); ours face -Y; Z stays up."""
    tip = np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 0, 2.0], [0, 0, -2.0]])  # a nose on +X, tall along Z
    ours = from_shap_e_frame(tip)
    assert ours[0, 1] < 0 and ours[1, 1] > 0 and abs(ours[0, 0]) < 1e-6  # the nose points to -Y
    assert ours[2, 2] == pytest.approx(0.5) and ours[3, 2] == pytest.approx(-0.5)  # Z up, largest side 1


def test_points_lie_on_the_shape_with_its_colours(shape):
    points, colours = shape.sample(2000, seed=1)
    assert points.shape == (2000, 3) and colours.shape == (2000, 3)
    v, f = torch.from_numpy(shape.vertices), torch.from_numpy(shape.faces)
    surface = v[f].mean(1)  # face centres of a fine mesh: every sample is close to one
    assert float(torch.cdist(points, surface).min(1).values.max()) < 0.05
    nearest = torch.cdist(points, v).argmin(1)  # a sample's colour is its triangle's blend: close to the nearest vertex's
    assert float((colours - torch.from_numpy(shape.colours)[nearest]).abs().mean()) < 0.05


def test_gaussians_start_from_shap_e_points(latent_prior, tiny_shap_e):
    from propdreamer.core.pipeline import starting_point
    from propdreamer.core.stage1.trainer import DistillationConfig, DistillationTrainer

    config = DistillationConfig(representation="gaussians", method="vdm", steps=2, init="shap-e", shap_e=ShapEConfig(source=str(tiny_shap_e), **FAST))
    start = starting_point(latent_prior, "a red cube", config)
    cap = config.resolved_preset().gaussians.densify.max_gaussians
    assert start["init_points"].shape == (min(50_000, cap), 3) and start["init_colours"].shape == (min(50_000, cap), 3)
    trainer = DistillationTrainer(latent_prior, "a red cube", config, **start)
    torch.testing.assert_close(trainer.rep.params["means"].detach().cpu(), start["init_points"])
    assert not starting_point(latent_prior, "a red cube", replace(config, init="ball"))  # the ball: nothing to pass


def _inside_agreement(nerf, shape: StartingShape) -> float:
    """IoU of the NeRF's occupied space (sigma > 5) with the inside of the shape, on random points."""
    x = (torch.rand(6000, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.6
    v, f = _decimated(shape)
    inside = winding_number(v, f, x) > 0.5
    occupied = nerf.density(x) > 5
    return float((inside & occupied).sum() / (inside | occupied).sum())


def test_nerf_density_is_fitted_to_the_shape(shape):
    from propdreamer.core.nerf.model import NeRF
    from propdreamer.core.stage1.presets import get_preset

    blob = NeRF(get_preset("draft").nerf)
    fitted = NeRF(get_preset("draft").nerf)
    losses = fit_nerf_density(fitted, shape, ShapEConfig(nerf_fit_steps=150, nerf_fit_batch=2048))
    assert losses["density"] < 0.05 and losses["albedo"] < 0.02
    assert _inside_agreement(fitted, shape) > 0.6 > _inside_agreement(blob, shape) + 0.2
    # Albedo on the surface is the shape's colour.
    points, colours = shape.sample(500, seed=2)
    with torch.no_grad():
        _, albedo, _ = fitted.field(points)
    assert float((albedo - colours).abs().mean()) < 0.08


def test_shap_e_loads_from_the_offline_hub_cache(tiny_shap_e, tmp_path, monkeypatch):
    from huggingface_hub import constants
    from tiny_models import install_in_hub_cache

    cache = tmp_path / "hub"
    install_in_hub_cache(tiny_shap_e, cache, DEFAULT_SHAP_E_ID)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    pipe = load_shap_e(DEFAULT_SHAP_E_ID, "cpu")
    assert type(pipe).__name__ == "ShapEPipeline"


def test_missing_shap_e_says_what_to_download_or_to_start_from_the_ball(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(PriorNotFoundError) as err:
        load_shap_e("someone/not-here", "cpu", offline=True)
    message = str(err.value)
    for needle in ("Shap-E", "huggingface-cli download someone/not-here", str(tmp_path / "empty-cache"), "shap_e_renderer/", "--init ball"):
        assert needle in message
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text("{}")
    with pytest.raises(PriorNotFoundError, match="lacks the component folder"):
        load_shap_e(str(broken), "cpu")


def test_resolve_chooses_where_stage_one_starts(builtin_prior, latent_prior, tiny_shap_e, tmp_path):
    here, missing = ShapEConfig(source=str(tiny_shap_e)), ShapEConfig(source=str(tmp_path / "no-shap-e"))
    gaussians_vdm = JobRequest("a red cube", representation="gaussians")  # auto method: VDM, as DreamMapping
    # Stable Diffusion (here the tiny latent prior): auto starts VDM on Gaussians from Shap-E when its weights are here.
    r = resolve(gaussians_vdm, latent_prior, here)
    assert r.config.init == "shap-e" and r.config.shap_e == here and r.settings["init"] == "shap-e" and "init" in r.settings["defaults"]
    assert resolve(gaussians_vdm, latent_prior, missing).config.init == "ball"  # never a download on its own
    assert resolve(JobRequest("a red cube"), latent_prior, here).config.init == "ball"  # SDS on a NeRF: the ball, as DreamFusion
    assert resolve(JobRequest("a red cube", init="shap-e"), latent_prior, missing).config.init == "shap-e"  # asked for: loading will teach
    assert resolve(replace(gaussians_vdm, init="ball"), latent_prior, here).config.init == "ball"
    # The builtin prior starts from the ball, and says so when Shap-E was asked for.
    assert resolve(gaussians_vdm, builtin_prior, here).config.init == "ball"
    r = resolve(JobRequest("a red cube", init="shap-e"), builtin_prior, here)
    assert r.config.init == "ball" and any("shap-e" in w and "ball" in w for w in r.warnings)
    # Refine and texture start from the artist's mesh.
    assert resolve(JobRequest("a red cube", kind="refine"), latent_prior, here).settings["init"] == "mesh"
    with pytest.raises(RequestError, match="init"):
        JobRequest("a red cube", kind="refine", init="shap-e")
    with pytest.raises(RequestError, match="init"):
        JobRequest.from_body({"prompt": "a red cube", "init": "point-e"})


def test_generate_from_shap_e_on_gaussians_and_on_a_nerf(latent_prior, tiny_shap_e):
    """The whole generate job, stage one started from Shap-E's shape (tiny random models end to end)."""
    import trimesh
    from test_pipeline import TINY

    from propdreamer.core.pipeline import generate

    for representation in ("gaussians", "nerf"):
        request = JobRequest("a red cube", representation=representation, method="vdm" if representation == "gaussians" else "sds", steps=2, init="shap-e")
        config = resolve(request, latent_prior, ShapEConfig(source=str(tiny_shap_e), nerf_fit_steps=20, **FAST)).config
        result = generate(latent_prior, "a red cube", config, refine=TINY)
        assert "init" in result.seconds and result.seconds["init"] > 0
        assert len(trimesh.load(__import__("io").BytesIO(result.glb), file_type="glb", force="mesh").faces) > 0


def test_the_servers_worker_passes_its_shap_e_to_the_job(tiny_sd_folder, tiny_shap_e, monkeypatch):
    from propdreamer.core import jobs

    seen = {}

    def run_request(prior, resolved, input_mesh, callbacks):
        seen["config"] = resolved.config
        return b"glb"

    class Job:
        settings = {"prior": str(tiny_sd_folder), "device": "cpu", "shap_e": str(tiny_shap_e)}
        events: list = []

        def event(self, kind, data):
            self.events.append((kind, data))

        def cancelled(self):
            return False

    monkeypatch.setattr(jobs, "run_request", run_request)
    job = Job()
    assert jobs.run_job({"prompt": "a red cube", "representation": "gaussians"}, None, job) == b"glb"
    assert seen["config"].init == "shap-e" and seen["config"].shap_e.source == str(tiny_shap_e)
    assert job.events[0][0] == "resolved" and job.events[0][1]["settings"]["init"] == "shap-e"
