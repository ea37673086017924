"""README command 1 after setup (packaging/demo.sh runs it): the artist's whole flow on one machine.

1. build the Blender extension zip (packaging/build_extension.py),
2. start `propdreamer serve` on loopback with the builtin prior (or Stable Diffusion: --sd),
3. install the zip into headless Blender and press the add-on's Generate for "a red cube"
   (packaging/demo_blender.py),
4. save OUT/demo.blend, a Cycles render OUT/demo.png and OUT/demo.glb, stop the server, print where.

    python packaging/demo.py [--out out/demo] [--prompt "a red cube"] [--sd | --prior ID_OR_FOLDER]
                             [--preset draft|standard|high] [--method ...] [--representation ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from propdreamer.core.request import METHODS, PRESETS, REPRESENTATIONS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from build_extension import build  # noqa: E402

from propdreamer.core.priors.loading import DEFAULT_SD_ID as SD_MODEL  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(endpoint: str, prior: str, device: str, spool: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "propdreamer.server.cli", "serve", "--bind", endpoint, "--prior", prior, "--device", device, "--spool", str(spool)]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def run(args: argparse.Namespace) -> dict:
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in ("demo.blend", "demo.png", "demo.glb"):
        (out / name).unlink(missing_ok=True)
    start = time.perf_counter()
    print("[1/3] building the Blender extension", flush=True)
    try:
        archive = build(ROOT / "dist")
    except subprocess.CalledProcessError as err:  # no PyPI: bpy uses the venv's pyzmq / msgpack
        reason = (err.stderr or "").strip().splitlines()[-1:] or ["pip failed"]
        print(f"      could not download the pyzmq / msgpack wheels ({reason[0]}); building without them", flush=True)
        archive = build(ROOT / "dist", wheels=False)
    print(f"      {archive}", flush=True)

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    log = out / "server.log"
    print(f"[2/3] starting `propdreamer serve` on {endpoint} with prior {args.prior} (log: {log})", flush=True)
    server = start_server(endpoint, args.prior, args.device, out / "spool", log)
    blender_home = out / "blender_user"  # a scratch Blender profile: the artist's own is never touched
    shutil.rmtree(blender_home, ignore_errors=True)
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(blender_home), "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        str(ROOT / "packaging/demo_blender.py"),
        "--zip",
        str(archive),
        "--server",
        endpoint,
        "--out",
        str(out),
        "--prompt",
        args.prompt,
        "--preset",
        args.preset,
        "--method",
        args.method,
        "--representation",
        args.representation,
        "--seed",
        str(args.seed),
        "--samples",
        str(args.samples),
        "--resolution",
        str(args.resolution),
    ]
    print(f'[3/3] headless Blender: install the extension, Generate "{args.prompt}", render with Cycles', flush=True)
    result = None
    try:
        blender = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in blender.stdout:
            if line.startswith("RESULT "):
                result = json.loads(line[7:])
            elif line.startswith(("PropDreamer", "Installed", "Error", "Traceback", "SystemExit")) or "Error" in line:
                print("      " + line.rstrip(), flush=True)
        blender.wait()
    finally:
        stop(server)
    if blender.returncode != 0 or result is None:
        raise SystemExit(f"the demo failed in Blender (exit {blender.returncode}); the server's log is {log}")
    result["total_s"] = time.perf_counter() - start
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    ap.add_argument("--prompt", default="a red cube")
    ap.add_argument("--prior", default="builtin", help="'builtin' (default: offline, CPU is fine), a diffusers folder or a Hub id")
    ap.add_argument("--sd", action="store_true", help=f"use Stable Diffusion ({SD_MODEL}) on the GPU with the standard preset")
    ap.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    ap.add_argument("--preset", default=None, choices=PRESETS, help="draft (default), standard with --sd")
    ap.add_argument("--method", default="auto", choices=["auto", *METHODS], help="auto (default): the panel's Auto, the prior's method")
    ap.add_argument("--representation", default="nerf", choices=REPRESENTATIONS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=32, help="Cycles samples of demo.png")
    ap.add_argument("--resolution", type=int, default=512, help="demo.png is this many pixels square")
    args = ap.parse_args()
    if args.sd:
        args.prior, args.device = SD_MODEL if args.prior == "builtin" else args.prior, "cuda"
    args.preset = args.preset or ("standard" if args.sd else "draft")
    r = run(args)
    t = r["times"]
    print(f"\nDone in {r['total_s']:.0f} s (generate {t['generate_s']:.0f} s, render {t['render_s']:.0f} s): '{r['object']}', {r['faces']} faces, textured={r['textured']}.")
    for kind, path in r["files"].items():
        print(f"  {kind:5s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
