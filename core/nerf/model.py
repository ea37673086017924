"""The NeRF representation of stage one: hash-grid fields, occupancy grid, volume renderer."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field

import torch
from torch import Tensor

from ..representation import Rendered, RenderRequest, Representation, StepInfo
from .compact import SampleCompactor
from .field import FieldConfig, NeRFField
from .occupancy import OccupancyConfig, OccupancyGrid
from .volume import VolumeConfig, render_volume


@dataclass(frozen=True)
class NeRFConfig:
    field: FieldConfig = dc_field(default_factory=FieldConfig)
    occupancy: OccupancyConfig = dc_field(default_factory=OccupancyConfig)
    volume: VolumeConfig = dc_field(default_factory=VolumeConfig)
    lr_encoding: float = 1e-2  # hash tables
    lr_network: float = 1e-3  # the MLPs


class NeRF(Representation):
    kind = "nerf"

    def __init__(self, config: NeRFConfig = NeRFConfig()) -> None:
        super().__init__()
        self.config = config
        self.field = NeRFField(config.field)
        self.grid = OccupancyGrid(config.field.bound, config.occupancy)
        self.compactor = SampleCompactor(config.volume.static_compaction)
        self._generator: torch.Generator | None = None

    @property
    def bound(self) -> float:
        return self.config.field.bound

    def render(self, request: RenderRequest) -> Rendered:
        self._generator = request.generator
        return render_volume(self.field, self.grid, request, self.config.volume, self.compactor)

    def optimisers(self, lr_scale: float = 1.0) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        groups = [
            {"params": self.field.encoding.parameters(), "lr": c.lr_encoding * lr_scale, "name": "encoding"},
            {"params": [*self.field.density_net.parameters(), *self.field.albedo_net.parameters()], "lr": c.lr_network * lr_scale, "name": "network"},
        ]
        return {"nerf": torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)}

    def before_step(self, info: StepInfo) -> None:
        if info.step % self.config.occupancy.update_every == 0:
            self.grid.update(self.field.density, self._generator)

    @torch.no_grad()
    def density(self, x: Tensor) -> Tensor:
        inside = (x.abs() <= self.bound).all(-1)
        return torch.cat([self.field.density(c) for c in x.split(65536)]) * inside

    @torch.no_grad()
    def albedo(self, x: Tensor) -> Tensor:
        return torch.cat([self.field(c)[1] for c in x.split(65536)])
