"""An occupancy grid over the NeRF's box so that samples in empty space are never evaluated.

Each cell keeps an exponential moving maximum of the density seen at a random point inside it
(Instant-NGP: d <- max(decay * d, sigma(x))); a cell is occupied while that value exceeds a threshold.
The grid starts fully occupied and is refreshed every few steps; refreshing costs one density query
per cell and never sees gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..device import device_generator


@dataclass(frozen=True)
class OccupancyConfig:
    resolution: int = 32  # G cells per axis
    decay: float = 0.95
    threshold: float = 0.5  # density; with ~64 samples over 2 m this is an alpha of ~1.5 % per sample
    update_every: int = 8  # steps

    def __post_init__(self) -> None:
        if self.resolution < 2 or not 0 < self.decay <= 1 or self.update_every < 1:
            raise ValueError(f"OccupancyConfig needs resolution >= 2, 0 < decay <= 1, update_every >= 1; got {self}")


class OccupancyGrid(nn.Module):
    value: Tensor  # registered buffers (see __init__)
    occupied: Tensor

    def __init__(self, bound: float, config: OccupancyConfig = OccupancyConfig()) -> None:
        super().__init__()
        self.bound, self.config = bound, config
        G = config.resolution
        self.register_buffer("value", torch.full((G, G, G), float("inf")))  # [G, G, G] moving max of sigma
        self.register_buffer("occupied", torch.ones(G, G, G, dtype=torch.bool))  # [G, G, G]

    def cell_index(self, x: Tensor) -> Tensor:
        """x [N, 3] world -> integer cells [N, 3] (clamped to the grid)."""
        G = self.config.resolution
        return ((x / self.bound + 1) / 2 * G).floor().long().clamp(0, G - 1)

    def lookup(self, x: Tensor) -> Tensor:
        """bool [N]: is the cell containing x [N, 3] occupied?"""
        i = self.cell_index(x)
        return self.occupied[i[:, 0], i[:, 1], i[:, 2]]

    @torch.no_grad()
    def update(self, density: Callable[[Tensor], Tensor], generator: torch.Generator | None = None) -> None:
        G, device = self.config.resolution, self.value.device
        axis = torch.arange(G, device=device, dtype=torch.float32)
        cells = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)  # [G^3, 3]
        jitter = torch.rand(cells.shape, generator=device_generator(generator, device), device=device)
        x = ((cells + jitter) / G * 2 - 1) * self.bound  # a random point inside each cell
        sigma = torch.cat([density(chunk) for chunk in x.split(65536)]).reshape(G, G, G)
        finite = torch.where(torch.isinf(self.value), torch.zeros_like(self.value), self.value)
        self.value.copy_(torch.maximum(finite * self.config.decay, sigma))
        self.occupied.copy_(self.value > self.config.threshold)

    def occupied_fraction(self) -> float:
        return float(self.occupied.float().mean())
