"""The benchmark's ceiling: stage one fitted to the true primitive's renders instead of a prior's guidance.

Same representation, preset, cameras, regularisers, extraction and scorer as a real run; only the
guidance is replaced by a photometric loss against the true shape rendered in the prompted colour from
each step's cameras (flat colour, so the NeRF renders albedo only). What it scores is what this stage-one
configuration can reach with perfect guidance: the gap to a prior's score is the prior's and the method's,
the gap from the oracle to 1 is the representation's and the scorer's (renders of 32 px resolve the
object to about one and a half voxels of the 64^3 scoring grid, and a voxel of a 28-voxel-wide cylinder
is 10% of its IoU).

    python benchmarks/synthetic3d.py --methods oracle --representations nerf --prompts 12
"""

from __future__ import annotations

import torch
from torch import Tensor

from propdreamer.core.builtin_prior.render import ShadingConfig as RenderShading
from propdreamer.core.builtin_prior.render import render_sdf
from propdreamer.core.builtin_prior.shapes import SDFS
from propdreamer.core.builtin_prior.vocabulary import COLOURS
from propdreamer.core.guidance.base import GuidanceOutput
from propdreamer.core.shading import ShadingConfig

# The NeRF renders albedo only, to match the flat-colour targets.
ORACLE_SHADING = ShadingConfig(probabilities=(1.0, 0.0, 0.0))


class OracleFit:
    """Called like a guidance method: loss = scale * (mean |x - x_true|^2 + mean |alpha - alpha_true|^2) over
    the step's renders. The coverage term carries the shape whatever the colour (a white object on the
    white background gives the colour term almost nothing to fit)."""

    def __init__(self, colour: str, shape: str, scale: float = 1000.0) -> None:
        if shape not in SDFS or colour not in COLOURS:
            raise ValueError(f"the oracle knows the builtin primitives {list(SDFS)} in {list(COLOURS)}, got '{colour} {shape}'")
        self.sdf, self.albedo, self.scale = SDFS[shape], torch.tensor(COLOURS[colour]), scale

    def __call__(self, images: Tensor, prompts: list[str], step: int, steps: int, cameras=None, alpha: Tensor | None = None, **_) -> GuidanceOutput:
        n, res = images.shape[0], images.shape[-1]  # images [B, 3, H, W], alpha [B, 1, H, W]
        with torch.no_grad():
            flat = RenderShading(ambient=1.0)  # shade = 1: the albedo itself, on the white background
            true = render_sdf(self.sdf, cameras.to("cpu"), self.albedo.expand(n, 3), torch.zeros(n, 3), res, flat)
        residual = images - true.rgb.to(images.device)
        loss = residual.pow(2).mean()
        if alpha is not None:
            loss = loss + (alpha - true.alpha.to(alpha.device)).pow(2).mean()
        return GuidanceOutput(loss=self.scale * loss, t=torch.zeros(n, dtype=torch.long), update_norm=residual.flatten(1).norm(dim=1).mean().detach())
