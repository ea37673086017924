"""DMTet: a tetrahedral grid with an SDF value s_i and a bounded offset dv_i per vertex (Magic3D,
ProlificDreamer; METHODS.md "The second stage"). The surface is marching tetrahedra over

    v_i' = v_i + tanh(dv_i) * cell / 2        (the offset never moves a vertex past half a cell)

Initialisation: from any stage-one representation's density (s_i = clamp(tau - sigma(v_i), -1, 1),
tau "auto" = mean density over points with density > 1e-5; extracted once in the full box, then
re-gridded over a tight box around that surface plus a 10% margin), or from a user's mesh (its signed
distance). Inside is negative everywhere in PropDreamer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from ..geometry.voxels import auto_threshold
from .marching_tets import marching_tets
from .tets import tet_grid


@dataclass(frozen=True)
class DMTetConfig:
    resolution: int = 32  # cubes per axis (6 tets each)
    margin: float = 0.1  # around the first extraction's bounding box

    def __post_init__(self) -> None:
        if self.resolution < 4:
            raise ValueError(f"DMTetConfig.resolution must be at least 4, got {self.resolution}")


def _sdf(tau: float, density: Tensor) -> Tensor:
    """s = clamp(tau - sigma, -1, 1); inside where sigma >= tau, so s = 0 counts as inside."""
    s = (tau - density).clamp(-1, 1)
    return torch.where(s == 0, torch.full_like(s, -1e-4), s)


class DMTet(nn.Module):
    def __init__(self, vertices: Tensor, tets: Tensor, sdf: Tensor, cell: float) -> None:
        super().__init__()
        self.register_buffer("grid", vertices)  # [V, 3]
        self.register_buffer("tets", tets)  # [T, 4]
        self.sdf = nn.Parameter(sdf.clone())  # [V]
        self.deform = nn.Parameter(torch.zeros_like(vertices))  # [V, 3]
        self.cell = cell

    def vertices(self) -> Tensor:
        return self.grid + torch.tanh(self.deform) * self.cell / 2

    def extract(self) -> tuple[Tensor, Tensor]:
        """Mesh vertices [M, 3] (differentiable in sdf and deform) and faces [F, 3]."""
        v, f = marching_tets(self.vertices(), self.tets, self.sdf)
        if f.shape[0] == 0:
            raise ValueError("the DMTet surface is empty: stage one left no density above the threshold; run stage one longer or with another seed")
        return v, f

    @classmethod
    def from_field(cls, field: Callable[[Tensor], Tensor], bound: float, config: DMTetConfig = DMTetConfig(), threshold: float | None = None) -> "DMTet":
        """From a density (or opacity) field over [-bound, bound]^3, inside where it exceeds the threshold."""
        lo, hi = torch.full((3,), -bound), torch.full((3,), bound)
        v, t = tet_grid(config.resolution, lo, hi)
        density = field(v)
        tau = auto_threshold(density) if threshold is None else threshold
        first, _ = marching_tets(v, t, _sdf(tau, density))
        if first.shape[0] == 0:
            raise ValueError(f"no surface at density threshold {tau:.4g}: the field is empty or fills the whole box")
        size = first.max(0).values - first.min(0).values
        lo = (first.min(0).values - config.margin * size).clamp(min=-bound)
        hi = (first.max(0).values + config.margin * size).clamp(max=bound)
        v, t = tet_grid(config.resolution, lo, hi)
        sdf = _sdf(tau, field(v))
        return cls(v, t, sdf, float((hi - lo).max()) / config.resolution)

    @classmethod
    def from_mesh(cls, vertices: Tensor, faces: Tensor, config: DMTetConfig = DMTetConfig()) -> "DMTet":
        """From a closed triangle mesh: its signed distance at the grid vertices (inside negative), in
        cells and truncated to [-1, 1], the range `from_field` gives. A raw distance is a fraction of a
        cell at the vertices next to the surface, so a few optimiser steps (lr 1e-2) flipped their signs
        and a refined box came back as flakes (BENCHMARKS.md, issue 23)."""
        from .mesh_sdf import signed_distance

        lo, hi = vertices.min(0).values, vertices.max(0).values
        pad = config.margin * float((hi - lo).max())
        v, t = tet_grid(config.resolution, lo - pad, hi + pad)
        cell = float((hi - lo).max() + 2 * pad) / config.resolution
        return cls(v, t, (signed_distance(vertices, faces, v) / cell).clamp(-1, 1), cell)
