"""Where a generated surface's error comes from: the surface measure (core/geometry/surface.py: normal
error, Chamfer) after each step of the generate pipeline, for the same stage-one result.

    python benchmarks/surface_stages.py --prompts "a green cube,a yellow pyramid,a blue torus" --out out/surface_stages

Per prompt, stage one runs once with the settings the server resolves for the panel's defaults (the
request an artist's Generate sends); then stage two runs from it twice, with the DMTet started from the
clamped density (`clamped`: s = clamp(tau - sigma, -1, 1), the old start) and from the signed distance
to the iso-surface (`distance`: today's). Measured at each step, in the normalised frame, at the true
shape's best turn about Z:

    stage1      the stage-one density's iso-surface, extracted finely (96 cells, bisected crossings)
    init        the DMTet's first surface at the preset's resolution
    geometry    after geometry refinement
    export      the exported mesh (cleaned, decimated to the face budget, unwrapped): what the GLB holds
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

from propdreamer.core.builtin_prior.shapes import SDFS
from propdreamer.core.geometry.surface import crease_fraction, surface_error, true_surface
from propdreamer.core.mesh import dmtet as dmtet_module
from propdreamer.core.mesh.dmtet import DMTet, DMTetConfig
from propdreamer.core.priors.diffusers_prior import PriorConfig, load_prior
from propdreamer.core.request import JobRequest
from propdreamer.core.resolve import resolve
from propdreamer.core.stage1.trainer import DistillationTrainer
from propdreamer.core.stage2.presets import get_refine_preset

TURNS = tuple(range(0, 90, 10))


def best(vertices: torch.Tensor, faces: torch.Tensor, shape: str, truths: dict) -> tuple[float, float]:
    """(normal error, Chamfer) at the true shape's turn with the lowest normal error."""
    errors = [
        surface_error(vertices.detach().cpu().float(), faces.cpu(), SDFS[shape], turn, samples=10_000, truth=truths[(shape, turn)])
        for turn in (TURNS if shape in ("cube", "pyramid") else (0,))
    ]
    top = min(errors, key=lambda e: e.normal_deg)
    return round(top.normal_deg, 1), round(top.chamfer, 4)


def clamped_from_field(field, bound, config):
    """The old start: s = clamp(tau - sigma, -1, 1) on the tight grid."""
    from propdreamer.core.geometry.voxels import auto_threshold
    from propdreamer.core.mesh.marching_tets import marching_tets
    from propdreamer.core.mesh.tets import tet_grid

    lo, hi = torch.full((3,), -bound), torch.full((3,), bound)
    v, t = tet_grid(config.resolution, lo, hi)
    density = field(v)
    tau = auto_threshold(density)
    first, _ = marching_tets(v, t, dmtet_module._sdf(tau, density))
    size = first.max(0).values - first.min(0).values
    lo = (first.min(0).values - config.margin * size).clamp(min=-bound)
    hi = (first.max(0).values + config.margin * size).clamp(max=bound)
    v, t = tet_grid(config.resolution, lo, hi)
    return DMTet(v, t, dmtet_module._sdf(tau, field(v)), float((hi - lo).max()) / config.resolution)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", default="a green cube,a yellow pyramid,a blue torus")
    ap.add_argument("--preset", default="draft")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="out/surface_stages")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prior = load_prior(PriorConfig(source="builtin"))
    refine = get_refine_preset(args.preset)
    truths = {(shape, turn): true_surface(SDFS[shape], turn) for shape in SDFS for turn in (TURNS if shape in ("cube", "pyramid") else (0,))}
    fields = ["prompt", "start", "step", "normal_deg", "chamfer", "creases", "faces", "seconds"]
    rows = []
    with open(out / "surface_stages.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        print(",".join(fields), flush=True)

        def record(prompt, start, step, v, fc, seconds):
            normal, chamfer = best(v, fc, prompt.split()[-1], truths)
            row = {
                "prompt": prompt,
                "start": start,
                "step": step,
                "normal_deg": normal,
                "chamfer": chamfer,
                "creases": round(crease_fraction(v.detach().cpu().numpy(), fc.cpu().numpy()), 3),
                "faces": len(fc),
                "seconds": round(seconds, 1),
            }
            writer.writerow(row), f.flush(), rows.append(row)
            print(",".join(str(row[k]) for k in fields), flush=True)

        for prompt in [p.strip() for p in args.prompts.split(",")]:
            resolved = resolve(JobRequest(prompt=prompt, preset=args.preset, seed=args.seed), prior)
            t0 = time.time()
            rep = DistillationTrainer(prior, prompt, resolved.config).run().representation
            field = lambda x, rep=rep: rep.density(x.to(prior.device)).detach().cpu()
            fine = DMTet.from_field(field, rep.bound, DMTetConfig(resolution=96))
            record(prompt, "-", "stage1", *fine.extract(), time.time() - t0)
            for start in ("clamped", "distance"):
                t0 = time.time()
                config = DMTetConfig(resolution=refine.dmtet_resolution)
                dmtet = clamped_from_field(field, rep.bound, config) if start == "clamped" else DMTet.from_field(field, rep.bound, config)
                record(prompt, start, "init", *dmtet.extract(), time.time() - t0)
                result = _stage_two(prior, prompt, resolved.config, refine, rep, dmtet, record, start)
                record(prompt, start, "export", torch.from_numpy(result.vertices), torch.from_numpy(result.faces.astype("int64")), time.time() - t0)
    print("\nmean normal error (deg) / Chamfer / creases per step and start:")
    for start in ("-", "clamped", "distance"):
        for step in ("stage1", "init", "geometry", "export"):
            group = [r for r in rows if r["start"] == start and r["step"] == step]
            if group:
                print(
                    f"  {start:8s} {step:8s} {sum(r['normal_deg'] for r in group) / len(group):5.1f} / {sum(r['chamfer'] for r in group) / len(group):.4f} / "
                    f"{sum(r['creases'] for r in group) / len(group):.3f}"
                )
    return 0


def _stage_two(prior, prompt, config, refine, rep, dmtet, record, start):
    """pipeline.from_stage_one with a given DMTet, recording the surface after geometry refinement."""
    from propdreamer.core import pipeline
    from propdreamer.core.mesh.colour_field import ColourField
    from propdreamer.core.mesh.model import MeshModel

    device = prior.device
    colour = ColourField()
    v, f = dmtet.extract()
    colour.fit(lambda x: rep.albedo(x.to(device)).cpu(), pipeline._surface_points(v, f), refine.colour_fit_steps, torch.Generator().manual_seed(config.seed))
    lr = prior.defaults.surface_lr  # as pipeline.from_stage_one
    model = MeshModel(colour, dmtet.to(device), lr_sdf=lr, lr_deform=lr).to(device)
    t0 = time.time()
    original = pipeline.DistillationTrainer

    class Recording(original):  # after geometry refinement, before texture: the surface it left
        def run(self, callbacks=pipeline.Callbacks()):
            out = super().run(callbacks)
            if self.stage == "geometry":
                with torch.no_grad():
                    record(prompt, start, "geometry", *model.mesh(), time.time() - t0)
            return out

    pipeline.DistillationTrainer = Recording
    try:
        return pipeline._refine_and_export(prior, prompt, config, refine, model, pipeline.Callbacks(), {})
    finally:
        pipeline.DistillationTrainer = original


if __name__ == "__main__":
    sys.exit(main())
