"""DMTet: a tetrahedral grid with an SDF value s_i and a bounded offset dv_i per vertex (Magic3D,
ProlificDreamer; METHODS.md "The second stage"). The surface is marching tetrahedra over

    v_i' = v_i + tanh(dv_i) * cell / 2        (the offset never moves a vertex past half a cell)

Initialisation: from any stage-one representation's density sigma: its iso-surface sigma = tau (tau
"auto" = mean density over points with density > 1e-5) is found once in the full box, the grid is
re-made over a tight box around it plus a 10% margin, the iso-surface is extracted again there with
each crossing placed by the field's own values, and s_i is the signed distance to that surface in
cells, truncated to [-1, 1]. Or from a user's mesh: its signed distance, the same way. Inside is
negative everywhere in PropDreamer.

Why a distance and not the density: a NeRF's density jumps from about 0 to tens or hundreds within a
cell, so clamp(tau - sigma, -1, 1) is +-1 at nearly every vertex, every crossing lands mid-edge, and
the surface comes out as terraces aligned with the grid (mean normal error 33 deg on a sharp field's
sphere, 3.4 deg with the distance; tests/test_mesh.py) which geometry refinement did not remove
(BENCHMARKS.md, "Surface quality").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..geometry.voxels import auto_threshold
from .marching_tets import marching_tets
from .mesh_sdf import unsigned_distance
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
    grid: Tensor  # registered buffers (see __init__)
    tets: Tensor

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
    def from_field(cls, field: Callable[[Tensor], Tensor], bound: float, config: DMTetConfig = DMTetConfig(), threshold: float | None = None) -> DMTet:
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
        cell = float((hi - lo).max()) / config.resolution
        inside = field(v) >= tau  # [V]
        with torch.no_grad():
            surface, faces, ends = marching_tets(v, t, torch.where(inside, -1.0, 1.0), with_edges=True)
        if faces.shape[0] == 0:
            raise ValueError(f"no surface at density threshold {tau:.4g} in the refined box; run stage one longer or with another seed")
        surface = _crossings(field, tau, v[ends[:, 0]], v[ends[:, 1]], inside[ends[:, 0]])
        near = _band(t, inside)  # beyond it the distance is over a cell: +-1 after truncation anyway
        distance = torch.ones(len(v))
        distance[near] = unsigned_distance(surface.detach(), faces, v[near]) / cell
        return cls(v, t, torch.where(inside, -distance, distance).clamp(-1, 1), cell)

    @classmethod
    def from_mesh(cls, vertices: Tensor, faces: Tensor, config: DMTetConfig = DMTetConfig()) -> DMTet:
        """From a closed triangle mesh: its signed distance at the grid vertices (inside negative), in
        cells and truncated to [-1, 1], the range `from_field` gives. A raw distance is a fraction of a
        cell at the vertices next to the surface, so a few optimiser steps (lr 1e-2) flipped their signs
        and a refined box came back as flakes (BENCHMARKS.md, issue 23)."""
        lo, hi = vertices.min(0).values, vertices.max(0).values
        pad = config.margin * float((hi - lo).max())
        v, t = tet_grid(config.resolution, lo - pad, hi + pad)
        cell = float((hi - lo).max() + 2 * pad) / config.resolution
        return cls(v, t, _distance_in_cells(vertices, faces, v, cell), cell)


def _crossings(field: Callable[[Tensor], Tensor], tau: float, a: Tensor, b: Tensor, a_inside: Tensor, steps: int = 10) -> Tensor:
    """Where the field passes tau on each edge a -> b ([M, 3] each; exactly one end inside): bisection,
    to 1/1024 of the edge. Interpolating the values at the ends instead puts every crossing of a jump
    (a NeRF's density) at the same fraction of its edge: terraces."""
    lo = torch.where(a_inside[:, None], a, b)  # the end inside
    hi = torch.where(a_inside[:, None], b, a)
    with torch.no_grad():
        for _ in range(steps):
            mid = (lo + hi) / 2
            mid_inside = (field(mid) >= tau)[:, None]
            lo, hi = torch.where(mid_inside, mid, lo), torch.where(mid_inside, hi, mid)
    return (lo + hi) / 2


def _band(tets: Tensor, inside: Tensor) -> Tensor:
    """[V] bool: the vertices of the tets the surface crosses, and of the tets touching those. A vertex
    outside this band is more than a cell from the surface (its star of tets holds a ball of over half a
    cell around it, and so does its neighbours')."""
    occ = inside[tets]  # [T, 4]
    crossed = occ.any(1) & ~occ.all(1)
    band = torch.zeros(len(inside), dtype=torch.bool)
    band[tets[crossed].reshape(-1)] = True
    touching = band[tets].any(1)
    band[tets[touching].reshape(-1)] = True
    return band


def _distance_in_cells(vertices: Tensor, faces: Tensor, points: Tensor, cell: float) -> Tensor:
    """[P] the signed distance from points to a closed mesh (inside negative), in cells, truncated to [-1, 1]."""
    from .mesh_sdf import signed_distance

    return (signed_distance(vertices.detach().float(), faces, points) / cell).clamp(-1, 1)
