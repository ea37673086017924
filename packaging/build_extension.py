"""Build the Blender extension zip: the add-on, the protocol code and the job request vendored from server/ and core/ (one source,
never a hand-kept copy), and pyzmq + msgpack wheels for each platform listed in the manifest.

    python packaging/build_extension.py [--out dist] [--no-wheels]

Then in Blender: Edit > Preferences > Get Extensions > Install from Disk... and pick the zip.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADDON = ROOT / "blender_addon" / "propdreamer_blender"
VENDORED = ("server/wire.py", "server/client.py", "core/request.py")  # bpy-free, torch-free: the protocol and the job request
PLATFORMS = {  # Blender 5.0 bundles Python 3.11
    "windows-x64": "win_amd64",
    "linux-x64": "manylinux_2_28_x86_64",
    "macos-arm64": "macosx_11_0_arm64",
    "macos-x64": "macosx_10_15_x86_64",
}
PACKAGES = ("pyzmq>=25", "msgpack>=1.0")


def build(out: Path, wheels: bool = True) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "propdreamer_blender"
        shutil.copytree(ADDON, stage, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_vendor"))
        vendor = stage / "_vendor"
        vendor.mkdir()
        (vendor / "__init__.py").write_text('"""Vendored at build time from PropDreamer\'s server/ package; do not edit."""\n')
        for path in VENDORED:
            shutil.copy(ROOT / path, vendor / Path(path).name)
        wheel_names = []
        if wheels:
            wheel_dir = stage / "wheels"
            for platform_tag in PLATFORMS.values():
                cmd = [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--only-binary=:all:",
                    "--no-deps",
                    "--python-version",
                    "3.11",
                    "--platform",
                    platform_tag,
                    "--dest",
                    str(wheel_dir),
                    *PACKAGES,
                ]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    raise subprocess.CalledProcessError(done.returncode, cmd, done.stdout, done.stderr)
            wheel_names = sorted(p.name for p in wheel_dir.glob("*.whl"))
        manifest = stage / "blender_manifest.toml"
        listing = "wheels = [" + ", ".join(f'"./wheels/{w}"' for w in wheel_names) + "]"
        manifest.write_text(re.sub(r"^wheels = \[\]$", listing, manifest.read_text(), flags=re.M))
        version = re.search(r'^version = "([^"]+)"', manifest.read_text(), flags=re.M).group(1)
        target = out / f"propdreamer-{version}.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
            for path in sorted(stage.rglob("*")):
                if path.is_file():
                    z.write(path, path.relative_to(stage))
    return target


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "dist"))
    ap.add_argument("--no-wheels", action="store_true", help="skip downloading pyzmq / msgpack wheels (development builds)")
    args = ap.parse_args()
    print(build(Path(args.out), wheels=not args.no_wheels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
