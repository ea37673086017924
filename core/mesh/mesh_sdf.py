"""Signed distance to a triangle mesh, in PyTorch: the distance to the nearest of many surface samples,
signed by the generalised winding number (Jacobson et al. 2013: inside where the solid angles the
triangles subtend sum to 4 pi), which also behaves on meshes with small holes."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def winding_number(vertices: Tensor, faces: Tensor, points: Tensor, chunk: int = 2048) -> Tensor:
    """[P] about 1 inside, 0 outside (Van Oosterom & Strackee solid angles / 4 pi)."""
    tri = vertices[faces]  # [F, 3, 3]
    out = []
    for p in points.split(chunk):
        a, b, c = (tri[None, :, k] - p[:, None] for k in range(3))  # [p, F, 3] each
        la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
        det = (a * torch.cross(b, c, dim=-1)).sum(-1)
        denom = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        out.append(2 * torch.atan2(det, denom).sum(-1) / (4 * math.pi))
    return torch.cat(out)


def unsigned_distance(vertices: Tensor, faces: Tensor, points: Tensor, samples: int = 20000) -> Tensor:
    """[P] distance from points [P, 3] to the mesh's surface (its vertices and `samples` points spread over it)."""
    from ..geometry.sampling import points_on_mesh

    surface = torch.cat([points_on_mesh(vertices.numpy(), faces.numpy(), samples), vertices.float()])
    return torch.cat([torch.cdist(p, surface).min(1).values for p in points.split(4096)])


def signed_distance(vertices: Tensor, faces: Tensor, points: Tensor, samples: int = 20000) -> Tensor:
    """[P] signed distance (inside negative) from points [P, 3] to the mesh (vertices [V, 3], faces [F, 3])."""
    dist = unsigned_distance(vertices, faces, points, samples)
    inside = winding_number(vertices.float(), faces, points) > 0.5
    return torch.where(inside, -dist, dist)
