"""What moves a generated surface's normal error on the builtin prior: the levers behind the defaults of
issue 27 (BENCHMARKS.md, "Surface quality"), each measured with the surface measure of
core/geometry/surface.py (normal error in degrees / Chamfer, at the true shape's best turn about Z).

    python benchmarks/surface_levers.py stage1 --prompts "a green cube,a yellow pyramid" \\
        --variant "off:normal_smooth=0" --variant "on:"
    python benchmarks/surface_levers.py stage2 --prompts "a blue torus,a green cube" --variant "lr=0.01" --variant "lr=0.003"
    python benchmarks/surface_levers.py from-truth --prompts "a green cube"

- stage1: stage one with the settings the server resolves for the panel's defaults, its regularisers
  replaced by the variant's (`name:field=value,...`: fields of stage1.defaults.RegulariserWeights, or of the
  config as `configured` reads them: cfg, t_min, t_max, annealed_max, anneal_at, textureless, light_jitter); the
  density's iso-surface extracted at 96 cells.
- stage2: one stage one per prompt, then geometry refinement from it once per variant (`lr=` the DMTet's
  learning rate; other fields are RegulariserWeights' for stage two); the surface before and after.
- from-truth (variants as stage1's, and res=N: the renders' resolution): stage one started from the true primitive (its density fitted as a Shap-E start is) and
  distilled for 300 steps: whether SDS on this prior holds a true shape or pulls it away.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from propdreamer.core.builtin_prior.shapes import SDFS
from propdreamer.core.geometry.surface import crease_fraction, true_surface
from propdreamer.core.mesh.dmtet import DMTet, DMTetConfig
from propdreamer.core.priors.diffusers_prior import PriorConfig, load_prior
from propdreamer.core.request import JobRequest
from propdreamer.core.resolve import resolve
from propdreamer.core.stage1.defaults import RegulariserWeights
from propdreamer.core.stage1.trainer import DistillationTrainer, build_representation

sys.path.insert(0, str(Path(__file__).parent))
from surface_stages import TURNS, best

COLOURS = {"red": (0.8, 0.1, 0.1), "green": (0.1, 0.6, 0.1), "blue": (0.1, 0.2, 0.8), "yellow": (0.9, 0.8, 0.1), "white": (0.9, 0.9, 0.9)}


_truths: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}


def score(vertices: torch.Tensor, faces: torch.Tensor, shape: str) -> str:
    """'normal error / Chamfer' at the turn with the lowest normal error (surface_stages.best; each true
    surface extracted once)."""
    for turn in TURNS if shape in ("cube", "pyramid") else (0,):
        if (shape, turn) not in _truths:
            _truths[(shape, turn)] = true_surface(SDFS[shape], turn)
    normal, chamfer = best(vertices, faces, shape, _truths)
    return f"{normal:.1f} / {chamfer:.4f}"


def iso_surface(rep) -> tuple[torch.Tensor, torch.Tensor]:
    return DMTet.from_field(lambda x: rep.density(x).detach(), rep.bound, DMTetConfig(resolution=96)).extract()


def parse(variant: str) -> tuple[str, dict[str, float]]:
    name, _, spec = variant.rpartition(":") if ":" in variant else (variant, "", variant)
    return name or "default", {k: float(v) for k, v in (item.split("=") for item in spec.split(",") if item)}


# Variant fields that set the distillation's config rather than a regulariser's weight.
SCHEDULE_FIELDS = ("t_min", "t_max", "annealed_max", "anneal_at")


def configured(config, prior, fields: dict[str, float]):
    """`config` with the variant's fields: cfg (the CFG scale), supersample (rays a pixel per side),
    t_min / t_max / annealed_max / anneal_at (the timestep schedule; annealed_max makes it a step
    schedule), textureless (the share of geometry-only renders, the rest diffuse), light_jitter; the rest
    are RegulariserWeights' fields."""
    fields = dict(fields)
    if "cfg" in fields:
        config = replace(config, guidance_scale=fields.pop("cfg"))
    if "supersample" in fields:
        config = replace(config, supersample=int(fields.pop("supersample")))
    schedule = {k: fields.pop(k) for k in SCHEDULE_FIELDS if k in fields}
    if schedule:
        base = config.timesteps or prior.defaults.timesteps_for(config.resolved_method)
        kind = "step" if "annealed_max" in schedule or base.kind == "step" else base.kind
        config = replace(config, timesteps=replace(base, kind=kind, **schedule))
    shading = config.shading
    if "textureless" in fields:
        share = fields.pop("textureless")
        shading = replace(shading, probabilities=(0.0, 1.0 - share, share))
    if "light_jitter" in fields:
        shading = replace(shading, light_jitter=fields.pop("light_jitter"))
    return replace(config, shading=shading, regularisers=replace(prior.defaults.regularisers, **fields))


def stage1(prior, prompts: list[str], variants: list[str]) -> None:
    for variant in variants:
        name, fields = parse(variant)
        cells = []
        for prompt in prompts:
            config = configured(resolve(JobRequest(prompt=prompt, preset="draft", seed=0), prior).config, prior, fields)
            t0 = time.time()
            rep = DistillationTrainer(prior, prompt, config).run().representation
            seconds = time.time() - t0
            v, f = iso_surface(rep)
            creases = crease_fraction(v.detach().numpy(), f.numpy())
            cells.append(f"{prompt}: {score(v, f, prompt.split()[-1])}, creases {creases:.3f}, {seconds:.0f} s")
        print(f"stage1 {name} {fields} | " + " | ".join(cells), flush=True)


def stage2(prior, prompts: list[str], variants: list[str]) -> None:
    from propdreamer.core import pipeline
    from propdreamer.core.mesh.colour_field import ColourField
    from propdreamer.core.mesh.model import MeshModel
    from propdreamer.core.stage2.presets import get_refine_preset

    refine = get_refine_preset("draft")
    for prompt in prompts:
        config = resolve(JobRequest(prompt=prompt, preset="draft", seed=0), prior).config
        rep = DistillationTrainer(prior, prompt, config).run().representation
        for variant in variants:
            name, fields = parse(variant)
            lr = fields.pop("lr", prior.defaults.surface_lr)
            torch.manual_seed(0)
            dmtet = DMTet.from_field(lambda x, rep=rep: rep.density(x).detach(), rep.bound, DMTetConfig(resolution=refine.dmtet_resolution))
            v, f = dmtet.extract()
            before = score(v, f, prompt.split()[-1])
            colour = ColourField()
            colour.fit(rep.albedo, pipeline._surface_points(v, f), refine.colour_fit_steps, torch.Generator().manual_seed(0))
            model = MeshModel(colour, dmtet, lr_sdf=lr, lr_deform=lr)
            refined = replace(config, regularisers=RegulariserWeights(**fields), timesteps=config.timesteps or pipeline.LATENT_PRIOR_TIMESTEPS)
            refined = replace(refined, shading=pipeline.GEOMETRY_SHADING)
            DistillationTrainer(prior, prompt, refined, representation=model, preset=refine.geometry, stage="geometry").run()
            with torch.no_grad():
                v, f = model.mesh()
            print(f"stage2 {prompt} {name} lr {lr} {fields} | DMTet start {before} | after geometry refinement {score(v, f, prompt.split()[-1])}", flush=True)


def from_truth(prior, prompts: list[str], steps: int, variants: list[str]) -> None:
    from propdreamer.core.shape_init import ShapEConfig, StartingShape, fit_nerf_density

    for prompt, variant in ((p, v) for v in variants for p in prompts):
        name, fields = parse(variant)
        res = fields.pop("res", None)  # the renders' resolution (the draft preset's 32 px; capped at the prior's own)
        shape = prompt.split()[-1]
        tv, tf = true_surface(SDFS[shape], 0.0)
        colour = np.array(COLOURS.get(prompt.split()[1], (0.5, 0.5, 0.5)), dtype=np.float32)
        start = StartingShape(tv.numpy(), tf.numpy(), np.tile(colour, (len(tv), 1)))
        config = configured(resolve(JobRequest(prompt=prompt, preset="draft", seed=0), prior).config, prior, fields)
        preset = config.resolved_preset()
        if res is not None:
            preset = replace(preset, resolutions=((0.0, int(res)),))
        nerf = build_representation(config, preset)
        fit_nerf_density(nerf, start, ShapEConfig())
        print(f"from-truth {prompt} {name} {fields | ({'res': res} if res is not None else {})} | fitted: {score(*iso_surface(nerf), shape)}", flush=True)
        trainer = DistillationTrainer(prior, prompt, config, representation=nerf, preset=preset)
        for done in range(steps // 3, steps + 1, steps // 3):
            trainer.preset = replace(trainer.preset, steps=done)
            trainer.run()
            print(f"from-truth {prompt} {name} | after {done} SDS steps: {score(*iso_surface(nerf), shape)}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lever", choices=("stage1", "stage2", "from-truth"))
    ap.add_argument("--prompts", default="a green cube,a yellow pyramid")
    ap.add_argument("--variant", action="append", default=[], help="name:field=value,... (stage1, stage2); repeat for several")
    ap.add_argument("--steps", type=int, default=300, help="from-truth: SDS steps (measured at each third)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prior", default="builtin", help="'builtin' or a prior folder (e.g. one `prior train --resolution 64` wrote)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    prior = load_prior(PriorConfig(source=args.prior))
    prompts = [p.strip() for p in args.prompts.split(",")]
    if args.lever == "stage1":
        stage1(prior, prompts, args.variant or ["default:"])
    elif args.lever == "stage2":
        stage2(prior, prompts, args.variant or ["default:"])
    else:
        from_truth(prior, prompts, args.steps, args.variant or ["default:"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
