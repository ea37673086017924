"""A tetrahedral grid the project generates itself: a regular (R+1)^3 lattice over a box, each cube cut
into 6 tetrahedra around its main diagonal (Freudenthal / Kuhn). The cut is the same in every cube, so
neighbouring tetrahedra share faces exactly and marching tetrahedra yields a watertight surface.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor


def tet_grid(resolution: int, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Vertices [(R+1)^3, 3] over the box [lo, hi] (each [3]) and tetrahedra [6 R^3, 4] (vertex indices)."""
    if resolution < 1:
        raise ValueError(f"tet grid resolution must be at least 1, got {resolution}")
    R = resolution
    n = R + 1
    axis = torch.linspace(0, 1, n)
    ijk = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)  # [n^3, 3]
    vertices = lo + ijk * (hi - lo)
    index = lambda i, j, k: (i * n + j) * n + k
    cells = torch.stack(torch.meshgrid(torch.arange(R), torch.arange(R), torch.arange(R), indexing="ij"), dim=-1).reshape(-1, 3)  # [R^3, 3]
    tets = []
    for perm in itertools.permutations(range(3)):  # a path 000 -> e_a -> e_a + e_b -> 111 per axis order
        corner = torch.zeros(3, dtype=torch.long)
        path = [corner.clone()]
        for axis_k in perm:
            corner[axis_k] = 1
            path.append(corner.clone())
        tets.append(torch.stack([index(*(cells + p).unbind(-1)) for p in path], dim=-1))  # [R^3, 4]
    return vertices, torch.cat(tets)
