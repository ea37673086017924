"""Sphere-traced, Lambert-shaded renders of analytic primitives: the builtin prior's training images."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cameras import Cameras, camera_rays
from .shapes import SDF


@dataclass(frozen=True)
class ShadingConfig:
    ambient: float = 0.35  # light that reaches every surface, as a fraction of the albedo
    light_jitter: float = 0.6  # how far the point light strays from the camera's direction
    background: float = 1.0  # plain white background
    supersample: int = 2  # render at this multiple of the resolution, then average (antialiasing)
    march_steps: int = 64
    hit_epsilon: float = 1e-3


@dataclass
class Render:
    rgb: Tensor  # [B, 3, H, W] in [0, 1], composited over the background
    alpha: Tensor  # [B, 1, H, W] coverage in [0, 1]
    depth: Tensor  # [B, 1, H, W] distance along the camera's -Z to the surface; 0 where empty


def sphere_trace(sdf: SDF, origins: Tensor, dirs: Tensor, steps: int, eps: float) -> tuple[Tensor, Tensor]:
    """March rays [..., 3] through `sdf`; returns ray distance [...] and a hit mask [...]."""
    t = (origins.norm(dim=-1) - 1.0).clamp(min=0.0)  # every primitive fits the unit sphere
    far = origins.norm(dim=-1) + 1.0
    for _ in range(steps):
        d = sdf(origins + t[..., None] * dirs)
        t = torch.where(t < far, t + d, t)
    hit = (sdf(origins + t[..., None] * dirs).abs() < 10 * eps) & (t < far)
    return t, hit


def sdf_normals(sdf: SDF, points: Tensor, h: float = 1e-3) -> Tensor:
    """Unit normals [..., 3] by central differences."""
    offsets = torch.eye(3, dtype=points.dtype, device=points.device) * h
    grads = [sdf(points + o) - sdf(points - o) for o in offsets]
    return F.normalize(torch.stack(grads, dim=-1), dim=-1)


@torch.no_grad()
def render_sdf(
    sdf: SDF,
    cameras: Cameras,
    albedo: Tensor,  # [B, 3]
    light_dirs: Tensor,  # [B, 3] unit vectors pointing from the object toward the light
    resolution: int,
    shading: ShadingConfig = ShadingConfig(),
) -> Render:
    s = shading.supersample
    origins, dirs = camera_rays(cameras, resolution * s)  # [B, h, w, 3]
    t, hit = sphere_trace(sdf, origins, dirs, shading.march_steps, shading.hit_epsilon)
    points = origins + t[..., None] * dirs
    normals = sdf_normals(sdf, points)
    lambert = (normals * light_dirs[:, None, None, :]).sum(-1).clamp(min=0)  # [B, h, w]
    shade = shading.ambient + (1 - shading.ambient) * lambert
    colour = albedo[:, None, None, :] * shade[..., None]  # [B, h, w, 3]
    mask = hit.to(colour.dtype)[..., None]
    rgb = colour * mask + shading.background * (1 - mask)
    cam_forward = -cameras.c2w[:, None, None, :3, 2]
    depth = (t[..., None] * (dirs * cam_forward).sum(-1, keepdim=True)) * mask

    def down(x: Tensor) -> Tensor:  # [B, h, w, C] -> [B, C, H, W]
        return F.avg_pool2d(x.permute(0, 3, 1, 2), s) if s > 1 else x.permute(0, 3, 1, 2)

    alpha = down(mask)
    depth = down(depth) / alpha.clamp(min=1e-6) * (alpha > 0)  # mean depth of the covered sub-pixels
    return Render(rgb=down(rgb).clamp(0, 1), alpha=alpha, depth=depth)


def jittered_lights(cameras: Cameras, jitter: float, generator: torch.Generator | None = None) -> Tensor:
    """Point-light directions near each camera's direction, so the visible side is mostly lit."""
    from ..shading import light_directions

    return light_directions(cameras, jitter, generator)
