"""Levels of detail through the job an artist sends: `generate` with `lods` 4 on the builtin prior (the
panel's defaults otherwise), resolved and run by the worker's own functions (core/resolve.py,
core/jobs.run_request), and per level: triangles, seconds to make it (decimate, unwrap, bake colour and
normal map), and the shading difference against the refined high-detail surface it was made from
(core/mesh/lod_shading.py: Lambert under a key light, 8 views around at 256 px, mean absolute
difference where both cover the image), without and with its normal map; then the Khronos validator's
report on the GLB the artist receives.

    python benchmarks/lod_shading.py [--prompts "a green cube,a white sphere,a blue torus"] [--out out/lods]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from propdreamer.core import jobs, pipeline
from propdreamer.core.mesh.lod_shading import shading_difference
from propdreamer.core.request import JobRequest
from propdreamer.core.resolve import resolve
from propdreamer.core.stage1.trainer import Callbacks, turntable_cameras

ROOT = Path(__file__).resolve().parents[1]


def validate(path: Path) -> dict:
    prefix = subprocess.run(["bash", str(ROOT / "packaging/gltf_validator.sh")], capture_output=True, text=True, check=True).stdout.strip()
    out = subprocess.run(["node", str(ROOT / "packaging/validate_glb.js"), f"{prefix}/node_modules/gltf-validator", str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", default="a green cube,a white sphere,a blue torus")
    ap.add_argument("--lods", type=int, default=4)
    ap.add_argument("--out", default="out/lods")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prior = jobs._prior({"prior": "builtin", "device": "cpu"})
    cameras = turntable_cameras(8)
    seen: dict = {}
    export_lods = pipeline.export_lods

    def keeping(vertices, faces, colour, config, lods):  # the high-detail surface the levels are made from
        seen["high"] = (vertices, faces)
        seen["lods"] = export_lods(vertices, faces, colour, config, lods)
        return seen["lods"]

    pipeline.export_lods = keeping
    print("prompt | level | triangles | seconds | shading difference without / with the normal map")
    for prompt in [p.strip() for p in args.prompts.split(",") if p.strip()]:
        t0 = time.time()
        glb = jobs.run_request(prior, resolve(JobRequest(prompt=prompt, lods=args.lods), prior), None, Callbacks())
        path = out / f"{prompt.replace(' ', '_')}.glb"
        path.write_bytes(glb)
        (v, f), lods = seen["high"], seen["lods"]
        for k, lod in enumerate(lods):
            without, with_map = shading_difference(lod, v, f, cameras, 256)
            print(f"{prompt} | LOD{k} | {len(lod.mesh.faces):,} | {lod.seconds:.1f} | {without:.4f} / {with_map:.4f} ({without / max(with_map, 1e-9):.2f}x)")
        report = validate(path)
        checked = f"{report['numErrors']} errors, {report['numWarnings']} warnings, {report['numInfos']} infos"
        print(f"{prompt}: high-detail surface {len(f):,} triangles; job {time.time() - t0:.0f} s; GLB {len(glb) / 1024:.0f} KiB; Khronos validator: {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
