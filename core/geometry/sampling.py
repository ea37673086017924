"""Points on a triangle mesh's surface: where Gaussians start on an artist's mesh, the samples a mesh's
distance field and colour fit read."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def points_on_mesh(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int = 0) -> Tensor:
    """`count` points [count, 3] uniformly on the surface of a triangle mesh (area-weighted)."""
    import trimesh

    if len(faces) == 0:
        raise ValueError("cannot sample points on a mesh without faces; select an object with polygons")
    mesh = trimesh.Trimesh(vertices=np.asarray(vertices, dtype=np.float64), faces=np.asarray(faces), process=False)
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return torch.from_numpy(np.asarray(points, dtype=np.float32))
