"""Stage two's presets (Magic3D's fine stage): DMTet resolution, refinement steps, render resolutions,
and the export budget. Same shape as stage one's presets; the same `get_preset` name picks both."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..mesh.export import ExportConfig
from ..stage1.presets import StagePreset


@dataclass(frozen=True)
class RefinePreset:
    name: str
    dmtet_resolution: int
    geometry: StagePreset  # steps, batch, render resolutions of geometry refinement
    texture: StagePreset  # the same for texture refinement (geometry fixed)
    export: ExportConfig = field(default_factory=ExportConfig)
    colour_fit_steps: int = 150  # regress the colour field onto stage one's albedo before refining
    input_mesh_lr: float = 3e-3  # refine jobs: the geometry's learning rate (SDF and offsets) when an artist's mesh seeds it
    texture_proxy_faces: int = 20_000  # texture jobs optimise on a decimated copy above this many triangles, then bake onto the full mesh


def _stage(name: str, steps: int, resolutions: tuple[tuple[float, int], ...], every: int) -> StagePreset:
    return StagePreset(name, steps=steps, batch=4, resolutions=resolutions, report_every=every, preview_every=max(steps, 1))


REFINE_PRESETS: dict[str, RefinePreset] = {
    "draft": RefinePreset(
        "draft", 32, _stage("draft-geometry", 120, ((0.0, 32),), 10), _stage("draft-texture", 80, ((0.0, 32),), 10), ExportConfig(face_budget=20_000, texture_size=256)
    ),
    "standard": RefinePreset(
        "standard",
        64,
        _stage("standard-geometry", 1500, ((0.0, 256), (0.5, 512)), 25),
        _stage("standard-texture", 800, ((0.0, 512),), 25),
        ExportConfig(face_budget=100_000, texture_size=1024),
        texture_proxy_faces=100_000,
    ),
    "high": RefinePreset(
        "high",
        96,
        _stage("high-geometry", 3000, ((0.0, 256), (0.3, 512)), 50),
        _stage("high-texture", 1500, ((0.0, 512),), 50),
        ExportConfig(face_budget=100_000, texture_size=1024),
        texture_proxy_faces=200_000,
    ),
}


def get_refine_preset(name: str) -> RefinePreset:
    if name not in REFINE_PRESETS:
        raise ValueError(f"unknown preset '{name}'; choose one of {sorted(REFINE_PRESETS)}")
    return REFINE_PRESETS[name]
