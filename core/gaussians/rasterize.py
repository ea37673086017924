"""Rasterising 3D Gaussians, three ways behind one signature: a dense pure-PyTorch reference (every
splat at every pixel), the sparse PyTorch compositor that the CPU runs (pairs.py), and gsplat's CUDA
kernels. Tests check the sparse path against the reference in values and gradients, and (CUDA only)
gsplat against it (STYLE.md: a reference for every fast path).

Each splat seen from each camera as projection.py states it; composited per pixel
    C(p) = sum_i c_i alpha_i T_i,  T_i = prod_{j<i} (1 - alpha_j),  front to back
Returned colours are premultiplied (no background); depth is the expected camera depth sum w z / A.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .projection import EPS2D, Splats, gsplat_info, project, splat_alpha


def rasterize_torch(
    splats: Splats,
    colours: Tensor,  # [C, N, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    near: float = 0.01,
    eps2d: float = EPS2D,
) -> tuple[Tensor, Tensor, Tensor, dict[str, Any]]:
    """The dense reference: every splat at every pixel. premultiplied colour [C, H, W, 3], alpha
    [C, H, W, 1], expected depth [C, H, W, 1], info. Simple and slow (P x N per camera): the tests'
    ground truth for `rasterize_pairs` and gsplat."""
    p = project(splats, viewmats, Ks, width, height, near, eps2d)
    z = p.depth
    py, px = torch.meshgrid(torch.arange(height, device=z.device, dtype=z.dtype) + 0.5, torch.arange(width, device=z.device, dtype=z.dtype) + 0.5, indexing="ij")
    pixels = torch.stack([px, py], dim=-1).reshape(-1, 2)  # [P, 2]
    rgb, alpha_out, depth_out = [], [], []
    for c in range(viewmats.shape[0]):
        order = torch.argsort(torch.where(p.visible[c], z[c], torch.full_like(z[c], float("inf"))))
        keep = order[p.visible[c][order]]  # visible Gaussians, front to back
        alpha = splat_alpha(splats.opacities[keep][None], p.conic[c, keep][None], pixels[:, None, :] - p.means2d[c, keep][None])  # [P, M]
        trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], dim=1), dim=1)
        w = alpha * trans  # [P, M]
        acc = w.sum(1, keepdim=True)  # [P, 1]
        rgb.append((w @ colours[c, keep]).reshape(height, width, 3))
        alpha_out.append(acc.reshape(height, width, 1))
        depth_out.append(((w @ z[c, keep][:, None]) / acc.clamp(min=1e-10)).reshape(height, width, 1))
    return torch.stack(rgb), torch.stack(alpha_out), torch.stack(depth_out), gsplat_info(p, width, height)


def rasterize_gsplat(
    splats: Splats, colours: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int, near: float = 0.01, eps2d: float = EPS2D
) -> tuple[Tensor, Tensor, Tensor, dict[str, Any]]:
    """The same through gsplat's CUDA rasteriser (CUDA tensors only)."""
    from gsplat import rasterization

    out, alpha, info = rasterization(
        splats.means,
        F.normalize(splats.quats, dim=-1),
        splats.scales,
        splats.opacities,
        colours,
        viewmats,
        Ks,
        width,
        height,
        near_plane=near,
        eps2d=eps2d,
        render_mode="RGB+ED",
        packed=False,
    )
    return out[..., :3], alpha, out[..., 3:4], info


def rasterize(splats: Splats, colours: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int) -> tuple[Tensor, Tensor, Tensor, dict[str, Any]]:
    """gsplat on CUDA when its kernels load (kernels.py), the sparse PyTorch compositor otherwise."""
    from .kernels import kernel_status

    if kernel_status(splats.means.is_cuda).compositor == "gsplat":
        return rasterize_gsplat(splats, colours, viewmats, Ks, width, height)
    from .pairs import rasterize_pairs

    return rasterize_pairs(splats, colours, viewmats, Ks, width, height)
