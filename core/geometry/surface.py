"""How close a mesh's surface is to a true shape's: normal error and Chamfer distance.

Volume IoU cannot tell a smooth cube from a lumpy or terraced one (both fill the same voxels); these
two measures can. Both shapes are put in the same normalised frame first (each centred on its
bounding box, its largest side 1; the frame the volume scores use), the true shape turned about Z as
the caller says (the turn the volume score found best).

- normal error: the mean angle, in degrees, between the mesh's face normals and the true surface's
  normals at the nearest true surface point, over points spread evenly over the mesh's area (so it is
  area-weighted). A smooth, faithful surface scores a few degrees; terraces tens.
- Chamfer distance: the mean of (the mean distance from mesh points to the nearest true surface point)
  and (the mean distance from true surface points to the nearest mesh point), in units of the
  normalised frame (the largest side is 1). Between point sets it has a floor: two samplings of the
  same surface with 20,000 points each are about 0.006 apart on a unit sphere.
- creases (`crease_fraction`): the share of neighbouring faces that meet at over 30 degrees, with no
  reference shape: the staircase and the lumps themselves, apart from how far the shape is from the
  prompt's.

The true surface is the zero set of its signed distance function, extracted by marching tetrahedra
on a fine grid, each vertex moved onto the surface along the SDF's gradient, with normals from the
gradient; points are then spread over it by area like the mesh's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

SDF = Callable[[Tensor], Tensor]  # points [..., 3] -> signed distance [...] (negative inside)


@dataclass(frozen=True)
class SurfaceError:
    normal_deg: float  # mean angle between the mesh's normals and the true ones (area-weighted)
    chamfer: float  # symmetric mean nearest-point distance, in units of the normalised frame's largest side


def crease_fraction(vertices, faces, angle_deg: float = 30.0) -> float:
    """The fraction of neighbouring face pairs that meet at more than `angle_deg`: the steps of a
    staircase and the folds of a lumpy surface (a smooth 20k-face sphere has none; a cube's true edges
    are a small fraction at that face count). Vertices are merged first, so UV seams do not cut it."""
    import numpy as np
    import trimesh

    mesh = trimesh.Trimesh(np.asarray(vertices, dtype=np.float64), np.asarray(faces), process=True)
    angles = np.degrees(mesh.face_adjacency_angles)
    return float((angles > angle_deg).mean()) if len(angles) else 0.0


def sample_surface(vertices: Tensor, faces: Tensor, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """`count` points spread evenly over a mesh's area [count, 3], each with its face's unit normal [count, 3]."""
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    cross = torch.linalg.cross(b - a, c - a)  # [F, 3]
    area = cross.norm(dim=-1)
    keep = area > 0
    if not keep.any():
        raise ValueError("the mesh has no face with area")
    face = torch.multinomial(area, count, replacement=True, generator=generator)  # faces by area
    u, v = torch.rand(count, generator=generator), torch.rand(count, generator=generator)
    flip = u + v > 1
    u, v = torch.where(flip, 1 - u, u), torch.where(flip, 1 - v, v)  # uniform over the triangle
    points = a[face] + u[:, None] * (b - a)[face] + v[:, None] * (c - a)[face]
    return points, cross[face] / area[face, None]


def normalising(points: Tensor) -> tuple[Tensor, float]:
    """The centre [3] and size (largest side) of a point set's bounding box."""
    lo, hi = points.min(0).values, points.max(0).values
    return (lo + hi) / 2, float((hi - lo).max())


def true_surface(sdf: SDF, turn_deg: float = 0.0, resolution: int = 64, bound: float = 0.6) -> tuple[Tensor, Tensor]:
    """The zero set of `sdf` turned by `turn_deg` about Z: a mesh (vertices [V, 3], faces [F, 3]) whose
    vertices lie on the surface (two Newton steps along the gradient)."""
    from ..mesh.marching_tets import marching_tets
    from ..mesh.tets import tet_grid

    c, s = math.cos(math.radians(turn_deg)), math.sin(math.radians(turn_deg))
    turn = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    turned = lambda p: sdf(p @ turn)  # the shape turned by +turn_deg, as the volume references are
    grid, tets = tet_grid(resolution, torch.full((3,), -bound), torch.full((3,), bound))
    with torch.no_grad():
        vertices, faces = marching_tets(grid, tets, turned(grid))
    for _ in range(2):
        vertices = vertices - turned(vertices)[:, None] * _unit_gradient(turned, vertices)
    return vertices.detach(), faces


def _unit_gradient(sdf: SDF, points: Tensor) -> Tensor:
    with torch.enable_grad():
        p = points.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(sdf(p).sum(), p)
    return grad / grad.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def _nearest(queries: Tensor, points: Tensor, chunk: int = 2048) -> tuple[Tensor, Tensor]:
    """For each query [Q, 3]: the distance to its nearest point [Q] and that point's index [Q]."""
    dist, index = [], []
    for start in range(0, len(queries), chunk):
        d = torch.cdist(queries[start : start + chunk], points)  # [q, P]
        best = d.min(dim=1)
        dist.append(best.values)
        index.append(best.indices)
    return torch.cat(dist), torch.cat(index)


def surface_error(
    vertices: Tensor, faces: Tensor, sdf: SDF, turn_deg: float = 0.0, samples: int = 20_000, seed: int = 0, truth: tuple[Tensor, Tensor] | None = None
) -> SurfaceError:
    """The mesh (vertices [V, 3], faces [F, 3], Z up, outward faces) against the shape `sdf` turned by
    `turn_deg`, both normalised (see the module's docstring). `truth`: `true_surface(sdf, turn_deg)`
    when the caller already has it."""
    generator = torch.Generator().manual_seed(seed)
    vertices = vertices.to(torch.float32)
    true_v, true_f = truth if truth is not None else true_surface(sdf, turn_deg)
    centre, size = normalising(vertices)
    mesh_points, mesh_normals = sample_surface((vertices - centre) / size, faces, samples, generator)
    true_centre, true_size = normalising(true_v)
    true_points, _ = sample_surface((true_v - true_centre) / true_size, true_f, samples, generator)
    c, s = math.cos(math.radians(turn_deg)), math.sin(math.radians(turn_deg))
    turn = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    turned = lambda p: sdf(p @ turn)
    true_normals = _unit_gradient(turned, true_points * true_size + true_centre)  # normals where the points lie on the shape
    to_truth, nearest = _nearest(mesh_points, true_points)
    to_mesh, _ = _nearest(true_points, mesh_points)
    cosine = (mesh_normals * true_normals[nearest]).sum(-1).clamp(-1.0, 1.0)
    return SurfaceError(normal_deg=float(torch.rad2deg(torch.acos(cosine)).mean()), chamfer=float((to_truth.mean() + to_mesh.mean()) / 2))
