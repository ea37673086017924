"""Stage one's presets: how long, how large, how many views. Typed and frozen, so a preset is its own
saved config (it round-trips through `dataclasses.asdict`).

Render resolutions are written for Stable Diffusion; a prior with a smaller native resolution (the
builtin prior's 32 px) renders at its own size instead, since larger renders would only be downsampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..gaussians.model import DensifyConfig, GaussiansConfig
from ..nerf.field import FieldConfig
from ..nerf.hashgrid import HashGridConfig
from ..nerf.model import NeRFConfig
from ..nerf.occupancy import OccupancyConfig
from ..nerf.volume import VolumeConfig


@dataclass(frozen=True)
class StagePreset:
    """How long and at what size one stage distils: stage one's presets below, stage two's in stage2/presets.py."""

    name: str
    steps: int
    batch: int  # views per step, azimuths stratified
    resolutions: tuple[tuple[float, int], ...]  # (from this fraction of the run, render this many pixels)
    nerf: NeRFConfig = field(default_factory=NeRFConfig)
    gaussians: GaussiansConfig = field(default_factory=GaussiansConfig)
    report_every: int = 10  # progress callbacks (each reads values back from the device: a host sync)
    preview_every: int = 50  # preview images in the progress callback

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1:
            raise ValueError(f"preset '{self.name}' needs steps >= 1 and batch >= 1")
        if not self.resolutions or self.resolutions[0][0] != 0.0:
            raise ValueError(f"preset '{self.name}' resolutions must start at fraction 0.0, got {self.resolutions}")

    def resolution(self, step: int, native: int) -> int:
        """The render resolution at `step`, never above the prior's native resolution."""
        progress = step / max(self.steps, 1)
        current = [r for start, r in self.resolutions if progress >= start][-1]
        return min(current, native)


def _nerf(levels: int, log2_table: int, max_resolution: int, samples: int, occupancy: int) -> NeRFConfig:
    grid = HashGridConfig(levels=levels, log2_table=log2_table, max_resolution=max_resolution)
    return NeRFConfig(field=FieldConfig(grid=grid), occupancy=OccupancyConfig(resolution=occupancy), volume=VolumeConfig(samples_per_ray=samples))


PRESETS: dict[str, StagePreset] = {
    # Two CPU cores and the builtin prior: about a minute (BENCHMARKS.md).
    "draft": StagePreset(
        "draft",
        steps=300,
        batch=4,
        resolutions=((0.0, 32),),
        nerf=_nerf(levels=6, log2_table=13, max_resolution=32, samples=32, occupancy=32),
        gaussians=GaussiansConfig(densify=DensifyConfig(start=50, stop=250, every=25, max_gaussians=3000)),
        report_every=10,
        preview_every=100,
    ),
    "standard": StagePreset(
        "standard",
        steps=2500,
        batch=4,
        resolutions=((0.0, 64), (0.5, 128)),
        nerf=_nerf(levels=12, log2_table=17, max_resolution=512, samples=64, occupancy=64),
        gaussians=GaussiansConfig(densify=DensifyConfig(start=300, stop=2000, every=100, max_gaussians=100_000)),
        report_every=25,
        preview_every=250,
    ),
    "high": StagePreset(
        "high",
        steps=5000,
        batch=4,
        resolutions=((0.0, 64), (0.3, 128), (0.6, 256)),
        nerf=_nerf(levels=16, log2_table=19, max_resolution=2048, samples=96, occupancy=128),
        gaussians=GaussiansConfig(densify=DensifyConfig(start=500, stop=4000, every=100, max_gaussians=300_000)),
        report_every=50,
        preview_every=500,
    ),
}


def get_preset(name: str, steps: int | None = None) -> StagePreset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}'; choose one of {sorted(PRESETS)}")
    preset = PRESETS[name]
    return replace(preset, steps=steps) if steps is not None else preset
