"""Where stage one's Gaussians start: a random ball, a given point cloud, or points on a mesh's surface
(the "iterate on a selected object" flow passes the artist's mesh)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GaussianInit:
    count: int = 2048  # for the random ball and for mesh sampling
    radius: float = 0.5  # the random ball's radius
    scale: float = 0.03  # initial splat radius (world units)
    opacity: float = 0.1
    albedo: float = 0.5  # grey, unless colours are given

    def __post_init__(self) -> None:
        if self.count < 1 or not self.radius > 0 or not self.scale > 0 or not 0 < self.opacity < 1:
            raise ValueError(f"GaussianInit needs count >= 1, radius > 0, scale > 0 and 0 < opacity < 1; got {self}")

    def make(self, points: Tensor | None = None, colours: Tensor | None = None, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Parameters in gsplat's layout from points [N, 3] (or a random ball) and colours [N, 3] in [0, 1]."""
        if points is None:
            direction = torch.nn.functional.normalize(torch.randn(self.count, 3, generator=generator), dim=-1)
            r = self.radius * torch.rand(self.count, 1, generator=generator) ** (1 / 3)  # uniform in the ball
            points = direction * r
        if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
            raise ValueError(f"Gaussian initial points must be a non-empty [N, 3] array, got shape {tuple(points.shape)}")
        N = len(points)
        if colours is None:
            colours = torch.full((N, 3), self.albedo)
        if colours.shape != (N, 3):
            raise ValueError(f"Gaussian initial colours must be [N, 3] matching the points, got {tuple(colours.shape)} for N = {N}")
        c = colours.float().clamp(0.02, 0.98)
        return {
            "means": points.float().clone(),
            "scales": torch.full((N, 3), math.log(self.scale)),
            "quats": torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(N, 1),
            "opacities": torch.full((N,), math.log(self.opacity / (1 - self.opacity))),
            "albedo": torch.log(c / (1 - c)),
        }
