"""The CPU's fast Gaussian compositor: only the (splat, pixel) pairs where a splat can be seen.

The dense reference (`rasterize.rasterize_torch`) evaluates every splat at every pixel, P x N per
camera; at 32 px and 3000 splats that is 3 M terms a view, of which a few percent are non-zero, and it
was most of a stage-one step on the CPU. Here, as gsplat does on the GPU with tiles, each visible splat
lists the pixels of its box (out to where its alpha falls under 1/255, clipped to the image), the
pairs are sorted by (camera, pixel, depth), and compositing is a segmented scan over that list:

    T_i = exp( sum_{j<i, same pixel} log(1 - alpha_j) )     an exclusive cumulative sum per pixel
    C(p) = sum_i c_i alpha_i T_i,   A(p) = sum_i alpha_i T_i,   D(p) = sum_i z_i alpha_i T_i / A(p)

Same equations, same result as the reference (tests/test_gaussians.py checks values and gradients).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .projection import EPS2D, Splats, gsplat_info, project, splat_alpha


def covered_pixels(centre: Tensor, radius: Tensor, width: int, height: int) -> tuple[Tensor, Tensor, Tensor]:
    """For boxes [K] around `centre` [K, 2] of half-size `radius` [K]: (box index, pixel x, pixel y) [Q] of
    every pixel a box covers inside the image. A box spans pixels whose centres lie within its radius."""
    lo = (centre - radius[:, None] - 0.5).ceil().clamp(min=0)  # first pixel index with centre >= mu - r
    hi_x = (centre[:, 0] + radius - 0.5).floor().clamp(max=width - 1)
    hi_y = (centre[:, 1] + radius - 0.5).floor().clamp(max=height - 1)
    nx, ny = (hi_x - lo[:, 0] + 1).clamp(min=0).long(), (hi_y - lo[:, 1] + 1).clamp(min=0).long()  # [K]
    counts = nx * ny
    box = torch.repeat_interleave(torch.arange(len(counts), device=centre.device), counts)  # [Q]
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(int(counts.sum()), device=centre.device) - start[box]  # position inside the box
    px = lo[box, 0].long() + local % nx[box]
    py = lo[box, 1].long() + local // nx[box]
    return box, px, py


def rasterize_pairs(
    splats: Splats,
    colours: Tensor,  # [C, N, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    near: float = 0.01,
    eps2d: float = EPS2D,
) -> tuple[Tensor, Tensor, Tensor, dict[str, Any]]:
    """premultiplied colour [C, H, W, 3], alpha [C, H, W, 1], expected depth [C, H, W, 1], info (as gsplat)."""
    C, N = colours.shape[:2]
    p = project(splats, viewmats, Ks, width, height, near, eps2d)
    cam, idx = p.visible.nonzero(as_tuple=True)  # [K] visible (camera, splat)
    # Where alpha falls below 1/255: o exp(-r^2 / 2 sigma^2) = 1/255 on the longer axis (about 3.3 sigma).
    reach = p.sigma[cam, idx] * (2 * torch.log(255 * splats.opacities.detach()[idx]).clamp(min=0)).sqrt()
    box, px, py = covered_pixels(p.means2d[cam, idx].detach(), reach, width, height)
    cam, idx = cam[box], idx[box]  # [Q] one entry per (splat, pixel) pair
    pixel = (cam * height + py) * width + px  # [Q] flat index into [C, H, W]
    # Front to back within each pixel: sort by (pixel, depth rank in the camera).
    rank = torch.empty_like(p.depth, dtype=torch.long)
    rank.scatter_(1, p.depth.detach().argsort(dim=1), torch.arange(N, device=rank.device).expand(C, N).contiguous())
    order = torch.argsort(pixel * N + rank[cam, idx])
    cam, idx, pixel, px, py = cam[order], idx[order], pixel[order], px[order], py[order]

    centres = torch.stack([px, py], dim=-1).to(p.means2d.dtype) + 0.5  # [Q, 2]
    alpha = splat_alpha(splats.opacities[idx], p.conic[cam, idx], centres - p.means2d[cam, idx])  # [Q]
    # Exclusive per-pixel sum of log(1 - alpha): a running sum, less its value where the pixel's run began
    # (float64, so that pixels late in the list keep their precision).
    log_t = torch.log1p(-alpha).double()
    inclusive = torch.cumsum(log_t, 0)
    exclusive = inclusive - log_t
    first = torch.ones_like(pixel, dtype=torch.bool)
    first[1:] = pixel[1:] != pixel[:-1]
    run_start = torch.cummax(torch.where(first, torch.arange(len(pixel), device=pixel.device), 0), 0).values
    trans = torch.exp(exclusive - exclusive[run_start]).float()
    w = alpha * trans  # [Q]

    P = C * height * width
    acc = torch.zeros(P, dtype=w.dtype, device=w.device).index_add(0, pixel, w)
    rgb = torch.zeros(P, 3, dtype=w.dtype, device=w.device).index_add(0, pixel, w[:, None] * colours[cam, idx])
    depth = torch.zeros(P, dtype=w.dtype, device=w.device).index_add(0, pixel, w * p.depth[cam, idx]) / acc.clamp(min=1e-10)
    shape = (C, height, width)
    return rgb.reshape(*shape, 3), acc.reshape(*shape, 1), depth.reshape(*shape, 1), gsplat_info(p, width, height)
