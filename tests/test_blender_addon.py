"""The Blender add-on in real Blender (bpy 5.0.1, headless) against a real server on loopback, with a
fast stand-in pipeline (only the add-on is under test; tests/test_pipeline.py covers the real one)."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture
def server(tmp_path):
    from propdreamer.server.app import Server, ServerConfig
    from propdreamer.server.worker import WorkerConfig

    server = Server(
        ServerConfig(
            bind="tcp://127.0.0.1:0", spool=tmp_path / "spool", prior="stand-in", worker=WorkerConfig(pipeline="addon_pipeline:run", preview_interval_s=0.0, cancel_grace_s=5.0)
        )
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.stop()
    thread.join(5)
    server.close()


def check_lods(r: dict) -> None:
    """Generate with LODs 3, as the flow script saw it in Blender (5.0 here, the LTS releases in test_blender_lts.py)."""
    assert r["lods"] == ["FINISHED"] and r["sent_lods"] == 3
    lods = r["lod_objects"]  # LOD0..LOD2 in one collection, LOD0 shown, each a quarter of the one before, each normal-mapped
    assert [o["name"] for o in lods] == [f"PropDreamer a red cube_LOD{k}" for k in range(3)], lods
    assert [(o["hidden"], o["hide_render"]) for o in lods] == [(False, False), (True, True), (True, True)]
    assert all(o["collections"] == ["PropDreamer a red cube LODs"] for o in lods) and all(o["normal_map"] and o["seed"] == 9 for o in lods)
    assert lods[0]["faces"] > lods[1]["faces"] > lods[2]["faces"] and lods[1]["faces"] <= 0.3 * lods[0]["faces"]
    assert all(o["location"] == pytest.approx([0.0, 10.0, 0.0], abs=1e-4) and o["size"] == pytest.approx(lods[0]["size"], rel=0.05) for o in lods)


@pytest.mark.slow
def test_addon_flows_in_real_blender(server, tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "tests/blender/addon_flows.py"), server.endpoint, str(tmp_path)], capture_output=True, text=True, timeout=600)
    lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, out.stdout[-3000:] + out.stderr[-3000:]
    r = json.loads(lines[-1][7:])
    assert r["registered"] and r["settings"][:5] == ["a red cube", "auto", "nerf", "draft", "prior"]  # Auto method, the prior's cameras
    assert r["settings"][6] == "auto" and r["sent_init"] == "ball" and r["sent_face_budget"] == 5000  # Start from: Auto by default; the panel's choice reaches the request
    assert r["check"] == ["FINISHED"] and "protocol 1." in r["check_text"]
    assert r["generate"] == ["FINISHED"]
    g = r["generated"]
    assert g["n"] == 1 and g["uv"] >= 1 and g["image"]
    assert g["asset"] == ["a red cube (PropDreamer, seed 7)", ["PropDreamer", "nerf", "sds"]]  # Mark as Asset: for the Asset Browser
    assert g["location"] == pytest.approx([1.0, 2.0, 3.0]) and g["size"] == pytest.approx(2.0, rel=1e-4)
    assert r["rerun"] == ["FINISHED"] and r["rerun_new"] == 1 and r["rerun_prompt"] == "a red cube"
    p = r["provenance"]  # the manifest as the object's custom properties
    assert p["prompt"] == "a red cube" and p["seed"] == 7 and p["prior"] == "stand-in" and p["generator"].startswith("PropDreamer ")
    assert p["settings"].startswith("sds on nerf, draft 3 steps") and r["importer_group_removed"]
    assert r["manifest_request"]["prompt"] == "a red cube" and r["manifest_request"]["seed"] == 7 and r["manifest_request"]["init"] == "ball"
    assert r["manifest_request"]["face_budget"] == 5000  # the artist's budget travels in the manifest (and Re-run sends it again)
    assert r["rerun_selected"] == ["FINISHED"]
    again = r["rerun_selected_new"]  # made again with its own settings (not the panel's), beside it, and the panel shows them
    assert again["n"] == 1 and again["prompt"] == "a red cube" and again["seed"] == 7 and again["panel"] == ["a red cube", 7]
    assert again["offset"] == pytest.approx([2.5, 0.0, 0.0], abs=1e-4)
    assert r["variations"] == ["FINISHED"]
    assert [seed for seed, _ in r["variation_objects"]] == [40, 41, 42]
    assert [c for _, loc in r["variation_objects"] for c in loc] == pytest.approx([0.0, -5.0, 0.0, 2.5, -5.0, 0.0, 5.0, -5.0, 0.0], abs=1e-4)
    check_lods(r)
    assert r["texture"] == ["FINISHED"] and len(r["textured"]) == 3 and r["selection_kept"]
    for name, t in r["textured"].items():
        assert t == {"same_geometry": True, "kept_uv": True, "new_uv": True, "new_material": True}, name
    assert r["uv_stats"]["Suzanne subdivided"][0] == 7872
    for name, (polygons, torn, flipped) in r["uv_stats"].items():  # the new UV map: no polygon cut by a seam, none mirrored
        assert polygons > 0 and torn == 0 and flipped == 0, (name, torn, flipped)
    assert r["texture_existing"] == ["FINISHED"]
    assert r["existing"] == {"same_uv": True, "same_geometry": True, "material_reads": [r["existing"]["active_map"]], "active_map": "UVMap"}
    overlap, outside = r["mirror_warnings"]
    assert "overlap others in UV map 'mirrored'" in overlap and "same texture" in overlap
    assert "reach outside [0, 1]" in outside
    assert r["refine"] == ["FINISHED"] and r["refined"] == {"new": 1, "original_kept": True, "original_hidden": True}
    assert r["failed"][0] == "CANCELLED" and "job failed" in r["failed"][1] and r["failed_job"][0] == "failed" and "boom" in r["failed_job"][1]
    assert r["failed_job"][2].startswith("sds on nerf, draft 3 steps")  # the resolved settings reach the job list
    assert r["cancel"] == ["FINISHED"] and r["cancelled_state"] == "cancelled"
    assert r["unregistered"]
    assert {"prop", "operator", "label"} <= set(r["panel_calls"])
    import numpy as np
    from PIL import Image

    render = np.asarray(Image.open(r["render"]).convert("RGB")).astype(float)
    assert render.std() > 1.0  # the object shows up in the render
    keep = ROOT / "out" / "blender"
    keep.mkdir(parents=True, exist_ok=True)
    Image.open(r["render"]).save(keep / "generated_cycles.png")  # for people to look at


def test_glb_helpers_round_trip_without_blender():
    """The add-on's upload (one vertex per face corner, with the UVs to bake into) reads back on the server
    in the same vertex order with the same UVs, and the server's texture result reads back in the add-on."""
    sys.path.insert(0, str(ROOT / "blender_addon"))
    import numpy as np

    from propdreamer.core.gltf import read_mesh, textured_glb
    from propdreamer_blender.glb import read_texture_result, write_mesh_glb

    positions = [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    triangles = [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)]
    v, f, uv = read_mesh(write_mesh_glb(positions, triangles))
    np.testing.assert_array_equal(v, np.array(positions, dtype=np.float32))
    np.testing.assert_array_equal(f, np.array(triangles))
    assert uv is None  # no UV map sent: none read
    corners = np.array(positions, dtype=np.float32)[np.array(triangles)].reshape(-1, 3)  # [12, 3] one vertex per corner
    sent = np.random.default_rng(0).random((12, 2)).astype(np.float32) * 3 - 1  # outside [0, 1] too
    v, f, uv = read_mesh(write_mesh_glb(corners, np.arange(12).reshape(4, 3), sent))
    np.testing.assert_array_equal(v, corners)
    np.testing.assert_allclose(uv, sent, atol=1e-6)
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(png, format="PNG")
    uvs, indices, image = read_texture_result(textured_glb(v, f, uv, png.getvalue()))
    np.testing.assert_allclose(uvs, sent, atol=1e-6)  # Blender's v-up convention, in the order sent
    np.testing.assert_array_equal(indices, np.arange(12))
    assert Image.open(io.BytesIO(image)).getpixel((0, 0)) == (1, 2, 3)


def test_extension_build_vendors_the_protocol_and_loads_from_the_zip(tmp_path):
    sys.path.insert(0, str(ROOT / "packaging"))
    import zipfile

    from build_extension import build

    archive = build(tmp_path / "dist", wheels=False)
    names = zipfile.ZipFile(archive).namelist()
    assert {"blender_manifest.toml", "__init__.py", "_vendor/wire.py", "_vendor/client.py", "_vendor/request.py", "jobs.py", "request_body.py"} <= set(names)
    target = tmp_path / "ext" / "propdreamer_ext"
    zipfile.ZipFile(archive).extractall(target)
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); from propdreamer_ext import protocol, request_body as rb; print(protocol.Client.__module__); "
        "print(protocol.request.__name__); print(rb.job_request('generate', rb.PanelSettings('a red cube')).to_body())"
    )
    out = subprocess.run([sys.executable, "-c", script, str(target.parent)], capture_output=True, text=True, check=True)
    client, request, body = out.stdout.strip().splitlines()
    assert client == "propdreamer_ext._vendor.client"  # the vendored copy, under any package name
    assert request == "propdreamer_ext._vendor.request"  # the one job request, vendored too
    assert body == "{'kind': 'generate', 'prompt': 'a red cube', 'representation': 'nerf', 'preset': 'draft', 'seed': 0}"  # the prior's defaults: left unset


@pytest.mark.slow
def test_results_survive_a_blender_crash_between_submit_and_result(server, tmp_path):
    """Blender dies (SIGKILL) after submitting and saving; a new Blender opens the .blend, is offered the
    finished results, imports them where they belong, and refuses a texture whose mesh was edited since."""
    import os

    env = {**os.environ, "BLENDER_USER_CONFIG": str(tmp_path / "config")}
    script = str(ROOT / "tests/blender/crash_recovery.py")

    def run(phase):
        out = subprocess.run([sys.executable, script, server.endpoint, str(tmp_path), phase], capture_output=True, text=True, timeout=300, env=env)
        lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
        assert lines, out.stdout[-3000:] + out.stderr[-3000:]
        return out.returncode, json.loads(lines[-1][7:])

    code, first = run("submit")
    assert code == -9  # it really crashed
    assert first["texture_Crate"] == first["texture_Barrel"] == first["generate"] == ["FINISHED"]
    assert first["recorded"] == [["texture", "Crate", "submitted"], ["texture", "Barrel", "submitted"], ["generate", "", "submitted"]]
    assert first["client_id"] == first["client_id_file"]  # written the moment it was made
    code, r = run("reopen")
    assert code == 0 and r["client_id"] == first["client_id"]
    assert r["waiting"][0] == 3 and "finished while this file was closed" in r["waiting"][1]
    assert r["fetch"] == ["FINISHED"]
    assert len(r["crate"]["uv_maps"]) == 2 and r["crate"]["materials"][-1].startswith("PropDreamer")  # its texture, on a new UV map
    assert r["barrel"] == {"uv_maps": ["UVMap"], "materials": []}  # refused: edited since it was sent
    assert "changed since it was sent" in r["records"]["texture:Barrel"][1] and r["records"]["texture:Barrel"][0] == "submitted"
    ((name, location, size),) = r["generated"]
    assert location == pytest.approx([0.0, 5.0, 0.0]) and size == pytest.approx(1.5, rel=1e-4)  # where it was asked for, not at today's cursor
    assert r["records"]["texture:Crate"][0] == r["records"]["generate:"][0] == "imported"
    assert r["waiting_after"] == 1  # Barrel's result stays on the server until the artist decides


@pytest.mark.slow
def test_texture_selected_end_to_end_on_the_real_pipeline(tmp_path):
    """From the panel's request to a textured object: the real server and pipeline (builtin prior, draft)
    bake into the UV map the add-on sent: a new one for Suzanne (no polygon torn or flipped), the
    cylinder's own for the cylinder; the texture takes the prompt's colour."""
    from conftest import real_pipeline_server

    with real_pipeline_server(tmp_path / "spool") as server:
        out = subprocess.run([sys.executable, str(ROOT / "tests/blender/texture_real.py"), server.endpoint], capture_output=True, text=True, timeout=900)
    lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, out.stdout[-3000:] + out.stderr[-3000:]
    r = json.loads(lines[-1][7:])
    monkey, cylinder = r["Suzanne"], r["Cylinder"]
    assert monkey["status"] == cylinder["status"] == ["FINISHED"]
    assert monkey["uv_maps"] == ["UVMap", monkey["uv_map"]] and monkey["torn"] == monkey["flipped"] == 0
    assert cylinder["uv_maps"] == ["UVMap"] and cylinder["uv_map"] == "UVMap"  # baked into the artist's own map
    # How each texture was made (prompt, prior, its weights' SHA-256): on the material it added, not on the artist's object.
    assert monkey["made_by"] == ["a blue cube", "builtin", 64, False] and cylinder["made_by"] == ["a yellow cylinder", "builtin", 64, False]
    red, green, blue = monkey["mean_rgb"]
    assert blue > red + 0.1 and blue > green + 0.1, monkey["mean_rgb"]
    red, green, blue = cylinder["mean_rgb"]
    assert min(red, green) > blue + 0.1, cylinder["mean_rgb"]
