"""Levels of detail through the job an artist sends: `generate` with `lods` 4 on the builtin prior (the
panel's defaults otherwise), resolved and run by the worker's own functions (core/resolve.py,
core/jobs.run_request), and per level: triangles, seconds to make it (decimate, unwrap, bake colour and
normal map), and the shading difference against the refined high-detail surface it was made from
(core/mesh/lod_shading.py: Lambert under a key light, 8 views around at 256 px, mean absolute
difference where both cover the image), without and with its normal map; whether Blender reads the maps
in the frame they were baked in (its glTF importer, then MikkTSpace tangents at every face corner,
against the GLB's: bitangent signs that agree, the median and 95th-percentile angle between tangents);
then the Khronos validator's report on the GLB the artist receives.

    python benchmarks/lod_shading.py [--prompts "a green cube,a white sphere,a blue torus"] [--out out/lods]
    python benchmarks/lod_shading.py --via-server      # the same jobs through `propdreamer serve` and the add-on's tracker

--via-server sends each job as the add-on does (benchmarks/via_server.py: the panel's request with LODs
4, a `propdreamer serve` process, the add-on's job tracker) and reports what the artist receives: the
GLB's levels (node names, triangles, which carry a normal map), seconds from submit to done, and the
Khronos validator's report (the refined surface is not in the GLB, so no shading figure).
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


def corner_vertices(lod, positions, uvs, centre, size):
    """Our vertex [C] under each of Blender's face corners: the importer keeps the triangles and their
    corner order, so corner i is faces.reshape(-1)[i] (checked by place and UV; by nearest place and UV
    when the importer reordered)."""
    import numpy as np
    from scipy.spatial import cKDTree

    ours = np.concatenate([(lod.mesh.vertices - centre) / size, lod.mesh.uvs], 1)
    theirs = np.concatenate([positions, uvs], 1)
    index = lod.mesh.faces.reshape(-1)
    if len(index) == len(theirs) and np.abs(ours[index] - theirs).max() < 1e-4:
        return index
    return cKDTree(ours).query(theirs)[1]


def blender_agreement(lods, path: Path, scratch: Path) -> str:
    """Blender's tangent frame (tests/blender/lod_tangents.py, real bpy) against the one the maps were baked in."""
    import numpy as np

    subprocess.run([sys.executable, str(ROOT / "tests/blender/lod_tangents.py"), str(path), str(scratch)], capture_output=True, text=True, check=True, timeout=600)
    frames = np.load(scratch)
    lo, hi = lods[0].mesh.vertices.min(0), lods[0].mesh.vertices.max(0)
    rows = []
    for k, lod in enumerate(lods):
        key = next(name.split("/")[0] for name in frames.files if name.endswith(f"_LOD{k}/position"))
        index = corner_vertices(lod, frames[f"{key}/position"], frames[f"{key}/uv"], (lo + hi) / 2, float((hi - lo).max()))
        t = lod.mesh.uvs[lod.mesh.faces].astype(np.float64)  # [F, 3, 2]
        p = lod.mesh.vertices[lod.mesh.faces].astype(np.float64)
        shows = (np.abs(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])) > 1e-12) & (np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1) > 1e-12)
        some = np.repeat(shows, 3) if len(index) == 3 * len(shows) else np.ones(len(index), dtype=bool)  # faces without area (slivers) show nothing
        theirs = frames[f"{key}/tangent"][some]
        theirs = theirs / np.maximum(np.linalg.norm(theirs, axis=1, keepdims=True), 1e-12)
        angle = np.degrees(np.arccos(np.clip((theirs * lod.tangents[index[some], :3]).sum(1), -1, 1)))
        signs = (frames[f"{key}/sign"][some] == lod.tangents[index[some], 3]).mean()
        left_out = f"{100 * (1 - some.mean()):.1f}% of corners on faces without area left out"
        rows.append(f"LOD{k} signs {100 * signs:.2f}%, angle median {np.median(angle):.2f} / p95 {np.quantile(angle, 0.95):.1f} deg ({left_out})")
    return "; ".join(rows)


def via_server(prompts: list[str], lods: int, out: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from via_server import ArtistPath

    from propdreamer.core import provenance

    with ArtistPath(prior="builtin") as path:
        for prompt in prompts:
            glb, seconds, _ = path.generate(prompt, lods=lods)
            file = out / f"{prompt.replace(' ', '_')}_via_server.glb"
            file.write_bytes(glb)
            doc, _ = provenance._split(glb)  # the GLB's JSON chunk
            levels = []
            for node in doc["nodes"]:
                primitive = doc["meshes"][node["mesh"]]["primitives"][0]
                mapped = "normalTexture" in doc["materials"][primitive["material"]]
                levels.append(f"{node['name']} {doc['accessors'][primitive['indices']]['count'] // 3:,}{' +map' if mapped else ''}")
            report = validate(file)
            checked = f"{report['numErrors']} errors, {report['numWarnings']} warnings, {report['numInfos']} infos"
            print(f"{prompt} (via the server): {seconds:.0f} s; {'; '.join(levels)}; Khronos validator: {checked}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", default="a green cube,a white sphere,a blue torus")
    ap.add_argument("--lods", type=int, default=4)
    ap.add_argument("--out", default="out/lods")
    ap.add_argument("--via-server", action="store_true", help="through `propdreamer serve` and the add-on's tracker: the GLB the artist receives")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.via_server:
        via_server([p.strip() for p in args.prompts.split(",") if p.strip()], args.lods, out)
        return 0
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
            mapped = f"{with_map:.4f} ({without / max(with_map, 1e-9):.2f}x)" if lod.normal_map is not None else "no map (the level is the high-detail surface)"
            print(f"{prompt} | LOD{k} | {len(lod.mesh.faces):,} | {lod.seconds:.1f} | {without:.4f} / {mapped}")
        print(f"{prompt}: Blender's tangent frame against the baked one: {blender_agreement(lods, path, out / 'frames.npz')}")
        report = validate(path)
        checked = f"{report['numErrors']} errors, {report['numWarnings']} warnings, {report['numInfos']} infos"
        print(f"{prompt}: high-detail surface {len(f):,} triangles; job {time.time() - t0:.0f} s; GLB {len(glb) / 1024:.0f} KiB; Khronos validator: {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
