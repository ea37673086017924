"""2D score distillation: optimise an image directly against the prior (the seeds' 2D experiment).

    propdreamer distill2d "a red cube, front view" --out out/distill2d

The image is the "generator" g(theta) = sigmoid(theta), one logit per pixel, so the rest of the
pipeline (guidance -> image gradient -> parameters) is exactly what the 3D stages use.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from .guidance.sds import SDS, SDSConfig
from .guidance.timesteps import TimestepSchedule
from .images import grid, save_png
from .priors.diffusers_prior import DiffusersPrior

METHODS = ("sds",)  # grows as the other guidance methods land


@dataclass(frozen=True)
class Distill2DConfig:
    method: str = "sds"
    steps: int = 400
    lr: float = 0.05
    size: int | None = None  # image size; None: the prior's own resolution
    seed: int = 0
    snapshots: int = 8  # frames in the progress grid
    # The builtin prior is small and pixel-space: CFG 100 (DreamFusion's default for SD) saturates
    # it, 30 keeps colours right (../shared/FINDINGS.md used the same for 3D).
    guidance: SDSConfig = field(default_factory=lambda: SDSConfig(guidance_scale=30.0, timesteps=TimestepSchedule("sqrt", t_min=0.02, t_max=0.98)))

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"distill2d method must be one of {list(METHODS)}, got '{self.method}'")
        if self.steps < 1:
            raise ValueError(f"distill2d steps must be at least 1, got {self.steps}")
        if self.size is not None and self.size < 8:
            raise ValueError(f"distill2d size must be at least 8 pixels, got {self.size}")


@dataclass
class Distill2DResult:
    image: Tensor  # [3, H, W] in [0, 1]
    snapshots: Tensor  # [S, 3, H, W]
    seconds: float


def distill2d(prior: DiffusersPrior, prompt: str, config: Distill2DConfig = Distill2DConfig(), progress: Callable[[int, float], None] | None = None) -> Distill2DResult:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    size = config.size or prior.image_size
    theta = (0.1 * torch.randn((1, 3, size, size), generator=generator)).to(prior.device).requires_grad_(True)
    optimiser = torch.optim.Adam([theta], lr=config.lr)
    guidance = SDS(prior, config.guidance)
    every = max(1, config.steps // config.snapshots)
    snapshots = []
    t0 = time.time()
    for step in range(config.steps):
        x = torch.sigmoid(theta)  # [1, 3, H, W]
        out = guidance(x, [prompt], step, config.steps, generator)
        optimiser.zero_grad(set_to_none=True)
        out.loss.backward()
        optimiser.step()
        if progress is not None:
            progress(step, out.update_norm)
        if (step + 1) % every == 0 or step + 1 == config.steps:
            snapshots.append(x.detach()[0].cpu())
    image = torch.sigmoid(theta).detach()[0].cpu()
    return Distill2DResult(image=image, snapshots=torch.stack(snapshots[-config.snapshots :]), seconds=time.time() - t0)


def write_outputs(result: Distill2DResult, out: Path, scale: int = 4) -> list[Path]:
    return [
        save_png(result.image, out / "distilled.png", scale=scale),
        save_png(grid(result.snapshots, columns=len(result.snapshots)), out / "progress.png", scale=scale),
    ]
