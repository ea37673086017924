"""Packaging: the Python wheel holds every module and the builtin prior; the Blender extension zip
carries pyzmq + msgpack wheels for every platform Blender 5.0 ships on and installs into headless
Blender; README command 1's flow (packaging/demo.py) runs end to end."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "packaging"))
from build_extension import PLATFORMS, build  # noqa: E402

# What a wheel's platform tag must contain to load on each Blender platform (Python 3.11).
ACCEPTS = {
    "linux-x64": lambda tag: "linux" in tag and "x86_64" in tag,
    "windows-x64": lambda tag: tag == "win_amd64",
    "macos-arm64": lambda tag: tag.startswith("macosx") and ("arm64" in tag or "universal2" in tag),
    "macos-x64": lambda tag: tag.startswith("macosx") and ("x86_64" in tag or "universal2" in tag),
}

INSTALL = """
import json, sys
import bpy
res = bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default", enable_on_install=True)
name = "bl_ext.user_default.propdreamer"
out = {"result": sorted(res), "enabled": name in bpy.context.preferences.addons,
       "operators": [op for op in ("generate", "texture_selected", "refine_selected", "check_server") if hasattr(bpy.ops.propdreamer, op)],
       "settings": hasattr(bpy.types.Scene, "propdreamer")}
out["prefs_server"] = bpy.context.preferences.addons[name].preferences.server if out["enabled"] else None
print("RESULT " + json.dumps(out))
"""


def test_python_wheel_holds_every_package_and_the_builtin_weights(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    names = zipfile.ZipFile(next(tmp_path.glob("propdreamer-*.whl"))).namelist()
    for init in [*ROOT.glob("core/**/__init__.py"), *ROOT.glob("server/**/__init__.py")]:
        rel = init.relative_to(ROOT).as_posix()
        assert f"propdreamer/{rel}" in names, f"{rel} is missing from the wheel: add its package to pyproject.toml"
    weights = [n for n in names if n.endswith(".safetensors")]
    assert any("builtin_prior/weights/unet" in n for n in weights) and any("builtin_prior/depth" in n for n in weights)
    assert "propdreamer/core/priors/architectures/sd21-base/unet.json" in names  # the GPU benchmark's architecture


@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory):
    return build(tmp_path_factory.mktemp("dist"))  # downloads the wheels from PyPI, as the release build does


def test_extension_zip_has_pyzmq_and_msgpack_for_every_blender_platform(extension_zip):
    names = zipfile.ZipFile(extension_zip).namelist()
    wheels = [Path(n).name for n in names if n.startswith("wheels/") and n.endswith(".whl")]
    manifest = zipfile.ZipFile(extension_zip).read("blender_manifest.toml").decode()
    for wheel in wheels:
        assert f'"./wheels/{wheel}"' in manifest  # Blender installs only the wheels its manifest lists
    for platform in PLATFORMS:
        for package in ("pyzmq", "msgpack"):
            fits = [w for w in wheels if w.startswith(package + "-") and "cp311" in w and any(ACCEPTS[platform](tag) for tag in w[:-4].split("-")[-1].split("."))]
            assert fits, f"no {package} wheel for {platform} in {wheels}"


@pytest.mark.slow
def test_extension_zip_installs_and_enables_in_headless_blender(extension_zip, tmp_path):
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "blender")}  # a scratch Blender profile
    out = subprocess.run([sys.executable, "-c", INSTALL, str(extension_zip)], env=env, capture_output=True, text=True, timeout=300)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
    assert line, out.stdout[-2000:] + out.stderr[-2000:]
    r = json.loads(line[7:])
    assert r["result"] == ["FINISHED"] and r["enabled"] and r["settings"]
    assert r["operators"] == ["generate", "texture_selected", "refine_selected", "check_server"]
    assert r["prefs_server"].startswith("tcp://127.0.0.1:")
    # Blender unpacked this platform's wheels into the extensions' site-packages; they import on their own.
    site = next((tmp_path / "blender" / "extensions" / ".local" / "lib").glob("python3.11/site-packages"))
    probe = "import sys; sys.path.insert(0, sys.argv[1]); import zmq, msgpack; print(zmq.__file__); print(msgpack.unpackb(msgpack.packb([1, 'a'])))"
    imported = subprocess.run([sys.executable, "-S", "-c", probe, str(site)], capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.splitlines() == [str(site / "zmq" / "__init__.py"), "[1, 'a']"]


@pytest.mark.slow
def test_demo_generates_through_the_addon_and_saves_blend_png_glb(tmp_path):
    """README command 1 after setup: server on the builtin prior, the add-on's Generate in headless
    Blender, a Cycles render (small here), the .blend and the GLB."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "packaging/demo.py"), "--out", str(tmp_path), "--samples", "4", "--resolution", "128"], capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Done in" in out.stdout and str(tmp_path / "demo.blend") in out.stdout
    from PIL import Image

    render = np.asarray(Image.open(tmp_path / "demo.png").convert("RGB")).astype(float)
    centre = render[32:96, 32:96].reshape(-1, 3)
    assert render.std() > 5.0 and (centre[:, 0] > centre[:, 1] + 40).mean() > 0.2  # a red object in the frame
    from test_pipeline import _validate

    assert _validate(tmp_path / "demo.glb")["numErrors"] == 0
    check = f"""
import bpy, json
bpy.ops.wm.open_mainfile(filepath={str(tmp_path / "demo.blend")!r})
o = next(o for o in bpy.data.objects if o.name.startswith('PropDreamer'))
images = [n.image for n in o.active_material.node_tree.nodes if n.type == 'TEX_IMAGE' and n.image]
print('RESULT ' + json.dumps({{'faces': len(o.data.polygons), 'uv': len(o.data.uv_layers), 'packed': all(i.packed_file for i in images) and bool(images)}}))
"""
    got = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300)
    r = json.loads(next(l for l in got.stdout.splitlines() if l.startswith("RESULT "))[7:])
    assert r["faces"] > 100 and r["uv"] >= 1 and r["packed"]  # the .blend carries its texture


def test_dockerfile_runs_a_valid_serve_command_on_files_that_exist():
    from propdreamer.core.cli import build_parser
    from propdreamer.server.cli import add_server_commands

    lines = (ROOT / "packaging/Dockerfile").read_text().splitlines()
    entry = json.loads(next(l for l in lines if l.startswith("ENTRYPOINT "))[len("ENTRYPOINT ") :])
    cmd = json.loads(next(l for l in lines if l.startswith("CMD "))[len("CMD ") :])
    assert entry[0] == "propdreamer"
    args = build_parser(add_server_commands).parse_args(entry[1:] + cmd)  # exits (fails) on an unknown flag
    assert args.command == "serve" and args.key_file and args.device == "cuda"  # off loopback, so a key is required
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
    torch_pin = next(l for l in lines if "pip install" in l and "torch==" in l).split()[-1]
    assert f'"{torch_pin}"' in (ROOT / "packaging/setup_env.sh").read_text()  # one torch version everywhere
    assert torch_pin in (ROOT / "packaging/constraints.txt").read_text().splitlines()  # ... the lock's too


def test_serve_launcher_sets_up_and_reaches_the_server_cli():
    out = subprocess.run(["bash", str(ROOT / "packaging/serve.sh"), "--help"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--prior" in out.stdout and "--key-file" in out.stdout
