"""The add-on in the Blender LTS releases artists use besides 5.0 (its manifest declares 4.2 as the
minimum): the same flows as tests/test_blender_addon.py, in real Blender 4.2 and 4.5, each from its own
environment (packaging/blender_lts.sh, run by packaging/test.sh), against a real server on loopback."""

import json
import subprocess
from pathlib import Path

import pytest
from test_blender_addon import check_lods, server  # noqa: F401  (the same loopback server with the stand-in pipeline)

ROOT = Path(__file__).parents[1]
LTS = ("4.2.23", "4.5.15")  # packaging/blender_lts.sh installs these


@pytest.mark.slow
@pytest.mark.parametrize("version", LTS)
def test_addon_flows_in_blender_lts(version, server, tmp_path):  # noqa: F811
    python = ROOT / ".venv-blender" / version / "bin" / "python"
    if not python.is_file():
        pytest.skip(f"Blender {version} is not set up here: bash packaging/blender_lts.sh {version}")
    out = subprocess.run([str(python), str(ROOT / "tests/blender/addon_flows.py"), server.endpoint, str(tmp_path)], capture_output=True, text=True, timeout=600)
    lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, out.stdout[-3000:] + out.stderr[-3000:]
    r = json.loads(lines[-1][7:])
    assert r["blender"].startswith(version.rsplit(".", 1)[0]), r["blender"]  # the release under test, not another on the path
    assert r["registered"] and r["check"] == ["FINISHED"] and r["generate"] == ["FINISHED"]
    g = r["generated"]
    assert g["n"] == 1 and g["uv"] >= 1 and g["image"]  # imported, with its UV map and its texture
    assert g["asset"] == ["a red cube (PropDreamer, seed 7)", ["PropDreamer", "nerf", "sds"]]
    assert r["rerun"] == ["FINISHED"] and r["rerun_selected"] == ["FINISHED"] and r["variations"] == ["FINISHED"]
    check_lods(r)
    assert r["texture"] == ["FINISHED"] and r["selection_kept"]
    for name, t in r["textured"].items():  # the artists' geometry and UVs untouched, in this release too
        assert t == {"same_geometry": True, "kept_uv": True, "new_uv": True, "new_material": True}, name
    assert r["texture_existing"] == ["FINISHED"] and r["existing"]["same_uv"] and r["existing"]["same_geometry"]
    assert "overlap others in UV map 'mirrored'" in r["mirror_warnings"][0]  # UV selection lives elsewhere before 5.0
    assert r["refine"] == ["FINISHED"] and r["refined"]["new"] == 1
    assert r["cancel"] == ["FINISHED"] and r["cancelled_state"] == "cancelled"
    assert r["unregistered"]
