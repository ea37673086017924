"""The texture of stage two before it is baked: albedo as a field over space, a(x) = sigmoid(MLP(hash(x))).

A field (rather than a UV image) lets texture refinement start before the mesh is unwrapped, survives
remeshing, and bakes into any UV layout afterwards (rasterise in UV space, query at the 3D point).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..nerf.hashgrid import HashGrid, HashGridConfig


@dataclass(frozen=True)
class ColourFieldConfig:
    bound: float = 1.0
    grid: HashGridConfig = field(default_factory=lambda: HashGridConfig(levels=8, log2_table=15, max_resolution=128))
    hidden: int = 32
    lr_encoding: float = 1e-2
    lr_network: float = 1e-3


class ColourField(nn.Module):
    def __init__(self, config: ColourFieldConfig = ColourFieldConfig()) -> None:
        super().__init__()
        self.config = config
        self.encoding = HashGrid(config.grid)
        self.net = nn.Sequential(nn.Linear(config.grid.output_dim, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 3))

    def forward(self, x: Tensor) -> Tensor:
        """albedo [N, 3] in (0, 1) at world points x [N, 3]."""
        return torch.sigmoid(self.net(self.encoding((x / self.config.bound + 1) / 2)))

    def optimiser(self) -> torch.optim.Optimizer:
        c = self.config
        return torch.optim.Adam(
            [
                {"params": self.encoding.parameters(), "lr": c.lr_encoding},
                {"params": self.net.parameters(), "lr": c.lr_network},
            ],
            betas=(0.9, 0.99),
            eps=1e-15,
        )

    def fit(self, target: Callable[[Tensor], Tensor], points: Tensor, steps: int = 200, generator: torch.Generator | None = None) -> float:
        """Regress the field onto another albedo (stage one's) at `points` [N, 3] near the surface; final MSE."""
        with torch.no_grad():
            colours = target(points)
        opt = torch.optim.Adam(self.parameters(), lr=1e-2)
        for _ in range(steps):
            idx = torch.randint(0, points.shape[0], (min(8192, points.shape[0]),), generator=generator).to(points.device)
            loss = ((self(points[idx]) - colours[idx]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return float(loss.detach())
