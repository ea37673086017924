"""How close a level of detail shades to the high-detail surface it was made from: Lambert shading
under one key light per view, rendered at 256 px by the mesh rasteriser, compared pixel by pixel where
both cover the image (the silhouette is the same with and without a normal map, so it is left out).

The level's per-pixel normal is its interpolated smooth normal, or, with the normal map, the map's
tangent-space normal turned into the world by the interpolated frame (T, B = w N x T, N), exactly as
glTF specifies it (lod.py).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..cameras import Cameras
from .lod import Lod, smooth_normals
from .rasterize import interpolate, rasterize


def key_lights(cameras: Cameras) -> Tensor:
    """[B, 3] a light from above the camera and to its right: shading that shows a surface's relief."""
    c2w = cameras.c2w
    towards_camera = F.normalize(c2w[:, :3, 3], dim=-1)
    return F.normalize(towards_camera + 0.7 * c2w[:, :3, 0] + 0.7 * torch.tensor([0.0, 0.0, 1.0]), dim=-1)


@torch.no_grad()
def lambert(vertices: np.ndarray, faces: np.ndarray, cameras: Cameras, resolution: int, normal: Lod | np.ndarray) -> tuple[Tensor, Tensor]:
    """Shading [B, H, W] in [0, 1] and coverage [B, H, W] bool; `normal` is per-vertex normals [V, 3], or a
    level (its normals, tangents and normal map)."""
    v, f = torch.from_numpy(np.asarray(vertices, dtype=np.float32)), torch.from_numpy(np.asarray(faces, dtype=np.int64))
    frags = rasterize(v, f, cameras, resolution)
    covered = frags.face >= 0
    if isinstance(normal, np.ndarray) or normal.normal_map is None:
        n = F.normalize(interpolate(torch.from_numpy(normal if isinstance(normal, np.ndarray) else normal.normals), f, frags), dim=-1, eps=1e-12)
    else:
        n = F.normalize(interpolate(torch.from_numpy(normal.normals), f, frags), dim=-1, eps=1e-12)
        t = interpolate(torch.from_numpy(normal.tangents[:, :3]), f, frags)
        t = F.normalize(t - n * (t * n).sum(-1, keepdim=True), dim=-1, eps=1e-12)
        w = torch.from_numpy(normal.tangents[:, 3])[f[frags.face.clamp(min=0), 0]][..., None]  # [B, H, W, 1]
        b = w * torch.cross(n, t, dim=-1)
        uv = interpolate(torch.from_numpy(normal.mesh.uvs), f, frags)  # [B, H, W, 2], v up
        grid = torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], -1)  # image row 0 at v = 1
        image = torch.from_numpy(normal.normal_map).float().permute(2, 0, 1)[None].expand(len(cameras), -1, -1, -1) / 255
        ts = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False).permute(0, 2, 3, 1) * 2 - 1  # [B, H, W, 3]
        n = F.normalize(ts[..., :1] * t + ts[..., 1:2] * b + ts[..., 2:] * n, dim=-1, eps=1e-12)
    light = key_lights(cameras)[:, None, None, :]
    return (n * light).sum(-1).clamp(min=0) * covered, covered


def shading_difference(lod: Lod, high_vertices: np.ndarray, high_faces: np.ndarray, cameras: Cameras, resolution: int = 256) -> tuple[float, float]:
    """Mean absolute Lambert difference against the high-detail surface where both cover the image:
    (without the normal map, with it)."""
    reference, covered = lambert(high_vertices, high_faces, cameras, resolution, smooth_normals(high_vertices, high_faces))
    plain, covered_lod = lambert(lod.mesh.vertices, lod.mesh.faces, cameras, resolution, lod.normals)
    mapped, _ = lambert(lod.mesh.vertices, lod.mesh.faces, cameras, resolution, lod)
    both = covered & covered_lod
    return float((plain - reference).abs()[both].mean()), float((mapped - reference).abs()[both].mean())
