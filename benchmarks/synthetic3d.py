"""The synthetic 3D benchmark: does stage one make the prompted primitive, in the prompted colour?

    python benchmarks/synthetic3d.py --methods sds --representations nerf --out out/synthetic3d

For prompts "a {colour} {shape}" over the builtin prior's vocabulary, run stage one, voxelise its
geometry (density iso-surface at the "auto" threshold, or the Gaussians' opacity field), normalise it
(centred, unit bounding box) and compare with every true primitive normalised the same way, at its
best turn about the vertical axis (the prompt does not fix that turn):
volume IoU with the prompted shape, whether the prompted shape is the nearest (highest IoU), and the
CIE76 delta-E of the mean surface albedo against the prompted colour. With --final, stage two runs
too (DMTet -> texture -> export) and the exported mesh is scored the same way (voxelised by winding
number), with the delta-E of the mean baked texture colour over the UV charts, and its surface against
the true primitive's at the same best turn (core/geometry/surface.py): the mean angle between their
normals (degrees, area-weighted) and the symmetric Chamfer distance (normalised frame: largest side 1). Prints one CSV row per
run and a summary per method x representation; writes the CSV and a turntable sheet into --out.
`--methods oracle` fits stage one to the true primitive's renders instead (oracle.py): the ceiling of
the representation, preset and scorer, against which a method's score reads.

`--via-server` is the benchmark of record: each prompt goes to a `propdreamer serve` on loopback as the
Blender add-on sends it (its own request code, the panel's defaults: method Auto, the prior's cameras),
and the returned GLB is scored as above. `--methods auto` (the default there) is the panel's Auto.

    python benchmarks/synthetic3d.py --via-server --prompts 12 --seed 0 --out out/bench_server
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from propdreamer.core.builtin_prior.shapes import SDFS
from propdreamer.core.builtin_prior.vocabulary import COLOURS, SHAPES, caption
from propdreamer.core.geometry.surface import crease_fraction, surface_error
from propdreamer.core.geometry.voxels import auto_threshold, delta_e, grid_points, iou, normalise, surface_voxels
from propdreamer.core.images import grid, save_png
from propdreamer.core.priors.diffusers_prior import PriorConfig, load_prior
from propdreamer.core.request import JobRequest
from propdreamer.core.resolve import resolve
from propdreamer.core.stage1.trainer import DistillationTrainer, render_views, turntable_cameras

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oracle import ORACLE_SHADING, OracleFit

GRID = 64  # voxels per axis over the field's box
CANONICAL = 48  # voxels per axis in the normalised frame


def prompts(count: int) -> list[tuple[str, str]]:
    """(colour, shape) pairs cycling through every shape, colours spread over the palette."""
    colours = list(COLOURS)
    return [(colours[(3 * k + k // len(SHAPES)) % len(colours)], SHAPES[k % len(SHAPES)]) for k in range(count)]


TURNS_DEG = tuple(range(0, 90, 10))  # cube and pyramid repeat every 90 degrees about Z


def reference_shapes(bound: float) -> dict[str, list[torch.Tensor]]:
    """Each primitive, normalised, at every turn about the vertical axis that changes it.

    The builtin prior learns every primitive from cameras at all azimuths, so a prompt fixes the shape
    only up to a turn about Z: a cube standing at 30 degrees is as much "a cube" as an axis-aligned
    one. Scores take the best turn (only the cube and the pyramid have more than one)."""
    points = grid_points(GRID, bound)
    refs: dict[str, list[torch.Tensor]] = {}
    for name, sdf in SDFS.items():
        turns = TURNS_DEG if name in ("cube", "pyramid") else (0,)
        refs[name] = []
        for deg in turns:
            c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
            turn = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
            refs[name].append(normalise((sdf(points @ turn) < 0).reshape(GRID, GRID, GRID), bound, CANONICAL))  # the shape turned by +deg
    return refs


def best_ious(canonical: torch.Tensor, references: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    return {name: max(iou(canonical, ref) for ref in turns) for name, turns in references.items()}


def score(rep, colour: str, shape: str, references: dict[str, list[torch.Tensor]]) -> dict:
    points = grid_points(GRID, rep.bound)
    density = rep.density(points.to(next(rep.parameters()).device)).cpu()
    threshold = auto_threshold(density)
    occupancy = (density >= threshold).reshape(GRID, GRID, GRID)
    canonical = normalise(occupancy, rep.bound, CANONICAL)
    ious = best_ious(canonical, references)
    nearest = max(ious, key=ious.get)
    surface = surface_voxels(occupancy).reshape(-1)
    albedo = rep.albedo(points[surface].to(next(rep.parameters()).device)).cpu().mean(0) if surface.any() else torch.zeros(3)
    return {
        "iou": ious[shape],
        "nearest": nearest,
        "correct": nearest == shape,
        "delta_e": delta_e(albedo, torch.tensor(COLOURS[colour])),
        "albedo": [round(float(a), 3) for a in albedo],
        "threshold": threshold,
        "occupied": float(occupancy.float().mean()),
        "ious": {name: round(value, 3) for name, value in ious.items()},
    }


def score_mesh(vertices, faces, texture, uvs, colour: str, shape: str, references: dict[str, list[torch.Tensor]]) -> dict:
    """The exported mesh: IoU and nearest primitive (winding-number voxels), delta-E of the baked texture."""
    import fast_simplification
    import numpy as np

    from propdreamer.core.mesh.export import uv_rasterize
    from propdreamer.core.mesh.mesh_sdf import winding_number

    v, f = vertices, faces
    if len(f) > 2000:  # scoring only: a coarser copy keeps the winding numbers cheap
        v, f = fast_simplification.simplify(v.astype(np.float32), f.astype(np.int32), target_count=2000)
    bound, res = float(np.abs(v).max()) * 1.05, 48
    pts = grid_points(res, bound)
    occupancy = (winding_number(torch.tensor(v, dtype=torch.float32), torch.tensor(f, dtype=torch.long), pts) > 0.5).reshape(res, res, res)
    canonical = normalise(occupancy, bound, CANONICAL)
    ious = best_ious(canonical, references)
    nearest = max(ious, key=ious.get)
    face_map, _ = uv_rasterize(torch.from_numpy(uvs), torch.from_numpy(faces), texture.shape[0])
    mean = torch.from_numpy(texture[face_map.numpy() >= 0].astype(np.float32) / 255).mean(0)
    turns = TURNS_DEG if len(references[shape]) > 1 else (0,)
    turn = turns[max(range(len(turns)), key=lambda i: iou(canonical, references[shape][i]))]  # the turn the volume score found best
    surface = surface_error(torch.as_tensor(vertices, dtype=torch.float32), torch.as_tensor(faces, dtype=torch.long), SDFS[shape], turn)  # the full mesh
    return {
        "final_iou": round(ious[shape], 3),
        "final_nearest": nearest,
        "final_correct": nearest == shape,
        "texture_delta_e": round(delta_e(mean, torch.tensor(COLOURS[colour])), 1),
        "normal_deg": round(surface.normal_deg, 1),
        "chamfer": round(surface.chamfer, 4),
        "creases": round(crease_fraction(vertices, faces), 3),
        "faces": len(faces),
    }


def by_method(rows: list[dict]) -> list[tuple[tuple[str, str], list[dict]]]:
    """The rows grouped by (method, representation), in the order they ran."""
    keys = dict.fromkeys((r["method"], r["representation"]) for r in rows)
    return [(key, [r for r in rows if (r["method"], r["representation"]) == key]) for key in keys]


def run_via_server(args) -> int:
    """Every prompt through the artist's path (via_server.py); one CSV row each and a summary."""
    from via_server import ArtistPath, read_glb

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    references = reference_shapes(1.0)  # scores normalise both shapes, so the box only sets the sampling
    fields = [
        "method",
        "representation",
        "prompt",
        "seconds",
        "final_iou",
        "final_nearest",
        "final_correct",
        "texture_delta_e",
        "normal_deg",
        "chamfer",
        "creases",
        "faces",
        "settings",
        "warnings",
    ]
    rows = []
    with ArtistPath(prior=args.prior, spool=out / "spool", log=out / "server.log") as path, open(out / "synthetic3d_server.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        print(",".join(fields), flush=True)
        for representation in args.representations.split(","):
            for method in args.methods.split(","):
                for colour, shape in prompts(args.prompts):
                    prompt = caption(colour, shape)
                    glb, seconds, job = path.generate(prompt, seed=args.seed, method=method, representation=representation, preset=args.preset)
                    (out / "glb").mkdir(exist_ok=True)
                    (out / "glb" / f"{method}_{representation}_{colour}_{shape}.glb").write_bytes(glb)
                    vertices, faces, uvs, texture = read_glb(glb)
                    row = {
                        "method": method,
                        "representation": representation,
                        "prompt": prompt,
                        "seconds": round(seconds, 1),
                        **score_mesh(vertices, faces, texture, uvs, colour, shape, references),
                        "settings": job.summary,
                        "warnings": "; ".join(job.warnings),
                    }
                    writer.writerow(row), f.flush(), rows.append(row)
                    print(",".join(str(row[k]) for k in fields), flush=True)
    print("\nthrough the server (returned GLB): prompts, shape nearest, mean IoU, mean texture delta-E, mean normal error (deg), mean Chamfer, mean creases, mean / max seconds")
    for key, group in by_method(rows):
        n = len(group)
        print(
            f"{key[0]} x {key[1]}: {n}, {sum(r['final_correct'] for r in group)}/{n}, {sum(r['final_iou'] for r in group) / n:.3f}, "
            f"{sum(r['texture_delta_e'] for r in group) / n:.1f}, {sum(r['normal_deg'] for r in group) / n:.1f}, {sum(r['chamfer'] for r in group) / n:.4f}, "
            f"{sum(r['creases'] for r in group) / n:.3f}, {sum(r['seconds'] for r in group) / n:.1f} / {max(r['seconds'] for r in group):.1f}"
        )
    return 0


def rescore(folder: Path, threads: int) -> int:
    """The GLBs of an earlier --via-server run, scored by today's measures; one CSV row each and a summary."""
    from via_server import read_glb

    torch.set_num_threads(threads)
    references = reference_shapes(1.0)
    fields = ["method", "representation", "prompt", "final_iou", "final_nearest", "final_correct", "texture_delta_e", "normal_deg", "chamfer", "creases", "faces"]
    print(",".join(fields), flush=True)
    rows = []
    for path in sorted((folder / "glb").glob("*.glb"), key=lambda p: p.stat().st_mtime):  # the order they were made
        method, representation, colour, shape = path.stem.split("_")
        vertices, faces, uvs, texture = read_glb(path.read_bytes())
        row = {"method": method, "representation": representation, "prompt": caption(colour, shape), **score_mesh(vertices, faces, texture, uvs, colour, shape, references)}
        rows.append(row)
        print(",".join(str(row[k]) for k in fields), flush=True)
    for key, group in by_method(rows):
        n = len(group)
        print(
            f"{key[0]} x {key[1]}: {n} GLBs, nearest {sum(r['final_correct'] for r in group)}/{n}, mean IoU {sum(r['final_iou'] for r in group) / n:.3f}, "
            f"mean normal error {sum(r['normal_deg'] for r in group) / n:.1f} deg, mean Chamfer {sum(r['chamfer'] for r in group) / n:.4f}, "
            f"mean creases {sum(r['creases'] for r in group) / n:.3f}, "
            f"mean faces {sum(r['faces'] for r in group) / n:.0f}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--methods",
        default=None,
        help="comma-separated: auto (the prior's default), sds,nfsd,vsd,ssd,vdm, or oracle (the ceiling: a fit to the true shape, oracle.py); default sds, auto with --via-server",
    )
    ap.add_argument("--representations", default="nerf", help="comma-separated: nerf,gaussians")
    ap.add_argument("--prompts", type=int, default=14, help="how many prompts (cycling through the 7 shapes)")
    ap.add_argument("--preset", default="draft")
    ap.add_argument("--steps", type=int, default=None, help="override the preset's steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prior", default="builtin", help="'builtin' or a folder `propdreamer prior train` wrote (to compare priors)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="out/synthetic3d")
    ap.add_argument("--final", action="store_true", help="also run stage two and score the exported mesh")
    ap.add_argument("--via-server", action="store_true", help="the artist's path: each prompt through `propdreamer serve` as the add-on sends it; scores the returned GLB")
    ap.add_argument(
        "--rescore",
        default=None,
        metavar="DIR",
        help="score the GLBs an earlier --via-server run kept (DIR/glb/METHOD_REPRESENTATION_COLOUR_SHAPE.glb) without running anything: a new measure on results already made",
    )
    args = ap.parse_args(argv)
    if args.rescore:
        return rescore(Path(args.rescore), args.threads)
    if args.via_server:
        args.methods = args.methods or "auto"
        if args.steps is not None or "oracle" in args.methods.split(","):
            ap.error("--via-server sends what the panel sends: no --steps, no oracle")
        return run_via_server(args)
    args.methods = args.methods or "sds"
    if args.final and "oracle" in args.methods.split(","):
        ap.error("--final refines with the prior's guidance; the oracle scores stage one only (drop --final)")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prior = load_prior(PriorConfig(source=args.prior))
    rows, sheets = [], []
    fields = ["method", "representation", "prompt", "seconds", "iou", "nearest", "correct", "delta_e", "albedo", "threshold", "occupied"]
    if args.final:
        fields += ["final_seconds", "final_iou", "final_nearest", "final_correct", "texture_delta_e", "normal_deg", "chamfer", "creases", "faces"]
    fields += ["ious"]  # every primitive's IoU (the prompted one is "iou")
    with open(out / "synthetic3d.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        print(",".join(fields), flush=True)
        for representation in args.representations.split(","):
            references = None
            for method in args.methods.split(","):
                for colour, shape in prompts(args.prompts):
                    prompt = caption(colour, shape)
                    oracle = method == "oracle"
                    request = JobRequest(
                        prompt, method=None if oracle or method == "auto" else method, representation=representation, preset=args.preset, steps=args.steps, seed=args.seed
                    )
                    config = resolve(request, prior).config  # what the server's worker resolves for the same request
                    config = replace(config, shading=ORACLE_SHADING) if oracle else config
                    t0 = time.time()
                    trainer = DistillationTrainer(prior, prompt, config)
                    if oracle:
                        trainer.guidance = OracleFit(colour, shape)
                    result = trainer.run()
                    seconds = time.time() - t0
                    references = references or reference_shapes(trainer.rep.bound)
                    row = {"method": method, "representation": representation, "prompt": prompt, "seconds": round(seconds, 1), **score(trainer.rep, colour, shape, references)}
                    row["iou"], row["delta_e"] = round(row["iou"], 3), round(row["delta_e"], 1)
                    if args.final:
                        from propdreamer.core.pipeline import from_stage_one
                        from propdreamer.core.stage2.presets import get_refine_preset

                        t1 = time.time()
                        mesh = from_stage_one(prior, prompt, config, get_refine_preset(args.preset), result.representation)
                        row["final_seconds"] = round(time.time() - t1, 1)
                        row.update(score_mesh(mesh.vertices, mesh.faces, mesh.texture, mesh.uvs, colour, shape, references))
                    writer.writerow(row), f.flush(), rows.append(row)
                    print(",".join(str(row[k]) for k in fields), flush=True)
                    sheets.append(render_views(result.representation, result.background, turntable_cameras(4), 32, config.shading).cpu())
    save_png(grid(torch.cat(sheets), columns=4), out / "turntables.png", scale=2)
    print("\nmethod x representation: prompts, shape nearest, mean IoU, mean delta-E, mean seconds")
    for key, group in by_method(rows):
        n = len(group)
        print(
            f"{key[0]} x {key[1]}: {n}, {sum(r['correct'] for r in group)}/{n} = {sum(r['correct'] for r in group) / n:.0%}, "
            f"{sum(r['iou'] for r in group) / n:.3f}, {sum(r['delta_e'] for r in group) / n:.1f}, {sum(r['seconds'] for r in group) / n:.1f}"
        )
        if args.final:
            print(
                f"  final mesh: shape nearest {sum(r['final_correct'] for r in group)}/{n}, mean IoU {sum(r['final_iou'] for r in group) / n:.3f} "
                f"(stage one {sum(r['iou'] for r in group) / n:.3f}), texture delta-E {sum(r['texture_delta_e'] for r in group) / n:.1f}, "
                f"stage two {sum(r['final_seconds'] for r in group) / n:.1f} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
