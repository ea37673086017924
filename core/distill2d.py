"""2D score distillation: optimise an image directly against the prior (the seeds' 2D experiment).

    propdreamer distill2d "a red cube, front view" --out out/distill2d

The image is the "generator" g(theta) = sigmoid(theta), one logit per pixel, so the rest of the
pipeline (guidance -> image gradient -> parameters) is exactly what the 3D stages use. Every method of
`core.guidance` works here; `particles` > 1 optimises several images at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from .guidance import METHODS, build_guidance
from .guidance.timesteps import TimestepSchedule
from .images import grid, save_png
from .priors.diffusers_prior import DiffusersPrior
from .stage1.defaults import PriorDefaults


@dataclass(frozen=True)
class Distill2DConfig:
    method: str = "sds"  # sds, nfsd, vsd, ssd, vdm
    steps: int = 400
    lr: float = 0.05
    # theta starts here (+ small noise): 2.0 is a near-white canvas like the builtin prior's backgrounds;
    # from mid-grey (0.0) SDS tends to fill the whole frame with colour.
    init_logit: float = 2.0
    size: int | None = None  # image size; None: the prior's own resolution
    seed: int = 0
    particles: int = 1  # images optimised together (VSD's particles share one eps_phi)
    snapshots: int = 8  # frames in the progress grid
    # None: the prior's 2D scale (stage1.defaults: SDS and SSD 30 on pixel priors), else the paper's
    # (SDS 100, NFSD / VSD / VDM 7.5, SSD 100).
    guidance_scale: float | None = None
    timesteps: TimestepSchedule = field(default_factory=lambda: TimestepSchedule("sqrt"))

    def guidance_overrides(self, defaults: PriorDefaults) -> dict:
        scale = self.guidance_scale if self.guidance_scale is not None else defaults.guidance_scale(self.method, dims=2)
        return {"timesteps": self.timesteps, **({"guidance_scale": scale} if scale is not None else {})}

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"distill2d method must be one of {sorted(METHODS)}, got '{self.method}'")
        if self.steps < 1:
            raise ValueError(f"distill2d steps must be at least 1, got {self.steps}")
        if self.particles < 1:
            raise ValueError(f"distill2d particles must be at least 1, got {self.particles}")
        if self.size is not None and self.size < 8:
            raise ValueError(f"distill2d size must be at least 8 pixels, got {self.size}")


@dataclass
class Distill2DResult:
    image: Tensor  # [3, H, W] in [0, 1], the first particle
    particles: Tensor  # [P, 3, H, W]
    snapshots: Tensor  # [S, 3, H, W] of the first particle
    seconds: float


def distill2d(prior: DiffusersPrior, prompt: str, config: Distill2DConfig = Distill2DConfig(), progress: Callable[[int, float, dict], None] | None = None) -> Distill2DResult:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    size = config.size or prior.image_size
    P = config.particles
    theta = (config.init_logit + 0.1 * torch.randn((P, 3, size, size), generator=generator)).to(prior.device).requires_grad_(True)
    optimiser = torch.optim.Adam([theta], lr=config.lr)
    guidance = build_guidance(config.method, prior, **config.guidance_overrides(prior.defaults))
    every = max(1, config.steps // config.snapshots)
    snapshots = []
    t0 = time.time()
    for step in range(config.steps):
        x = torch.sigmoid(theta)  # [P, 3, H, W]
        out = guidance(x, [prompt] * P, step, config.steps, generator=generator)
        optimiser.zero_grad(set_to_none=True)
        out.loss.backward()
        optimiser.step()
        if progress is not None:
            progress(step, float(out.update_norm), {k: float(v) for k, v in out.losses.items()})
        if (step + 1) % every == 0 or step + 1 == config.steps:
            snapshots.append(x.detach()[0].cpu())
    images = torch.sigmoid(theta).detach().cpu()
    return Distill2DResult(image=images[0], particles=images, snapshots=torch.stack(snapshots[-config.snapshots :]), seconds=time.time() - t0)


def write_outputs(result: Distill2DResult, out: Path, scale: int = 4) -> list[Path]:
    return [
        save_png(result.image, out / "distilled.png", scale=scale),
        *([save_png(grid(result.particles, columns=len(result.particles)), out / "particles.png", scale=scale)] if len(result.particles) > 1 else []),
        save_png(grid(result.snapshots, columns=len(result.snapshots)), out / "progress.png", scale=scale),
    ]
