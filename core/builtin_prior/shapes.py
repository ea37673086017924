"""Signed distance functions of the builtin prior's primitives, centred at the origin, Z up.

Each returns a value <= the true distance (exact or a conservative bound), which is all sphere tracing
needs. Negative inside. Sizes fit a unit box so that every object fills a similar part of the frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

SDF = Callable[[Tensor], Tensor]  # points [..., 3] -> distance [...]


def sphere(p: Tensor, r: float = 0.5) -> Tensor:
    return p.norm(dim=-1) - r


def cube(p: Tensor, half: float = 0.4) -> Tensor:
    q = p.abs() - half
    outside = q.clamp(min=0).norm(dim=-1)
    inside = q.max(dim=-1).values.clamp(max=0)
    return outside + inside


def cylinder(p: Tensor, r: float = 0.4, h: float = 0.9) -> Tensor:
    d = torch.stack([p[..., :2].norm(dim=-1) - r, p[..., 2].abs() - h / 2], dim=-1)
    return d.max(dim=-1).values.clamp(max=0) + d.clamp(min=0).norm(dim=-1)


def _slanted_side(radial: Tensor, z: Tensor, base: float, h: float) -> Tensor:
    """Distance to the line from (base, -h/2) to the apex (0, h/2) in the (radial, z) plane."""
    n = math.hypot(h, base)
    return (radial * h + (z - h / 2) * base) / n


def cone(p: Tensor, r: float = 0.45, h: float = 0.9) -> Tensor:
    side = _slanted_side(p[..., :2].norm(dim=-1), p[..., 2], r, h)
    return torch.maximum(side, -p[..., 2] - h / 2)


def torus(p: Tensor, major: float = 0.35, minor: float = 0.15) -> Tensor:
    q = torch.stack([p[..., :2].norm(dim=-1) - major, p[..., 2]], dim=-1)
    return q.norm(dim=-1) - minor


def capsule(p: Tensor, r: float = 0.25, half_length: float = 0.3) -> Tensor:
    axis_point = torch.zeros_like(p)
    axis_point[..., 2] = p[..., 2].clamp(-half_length, half_length)
    return (p - axis_point).norm(dim=-1) - r


def pyramid(p: Tensor, half_base: float = 0.45, h: float = 0.8) -> Tensor:
    side_x = _slanted_side(p[..., 0].abs(), p[..., 2], half_base, h)
    side_y = _slanted_side(p[..., 1].abs(), p[..., 2], half_base, h)
    return torch.maximum(torch.maximum(side_x, side_y), -p[..., 2] - h / 2)


SDFS: dict[str, SDF] = {
    "sphere": sphere,
    "cube": cube,
    "cylinder": cylinder,
    "cone": cone,
    "torus": torus,
    "capsule": capsule,
    "pyramid": pyramid,
}
