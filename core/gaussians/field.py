"""The 3D Gaussians read as a solid: what stage two and the benchmark extract a surface from.

Two things separate the raw opacity field sum_i o_i G_i(x) from the object the renders show:

- The renders low-pass every splat on screen (Sigma' = J W Sigma W^T J^T + eps2d I, rasterize.py), so
  SDS is free to shrink splats far below a pixel; the renders keep them a pixel wide and the raw field
  does not (at 32 px, splats end about 0.007 across where a pixel spans 0.05: the raw field is dust).
  The field here adds that filter in 3D, as Mip-Splatting's 3D smoothing does: Sigma_i + s^2 I with s
  the world size of sqrt(eps2d) pixels at the finest sampling any training view had (`footprint`).
  Opacity is not rescaled, as the 2D filter does not rescale it: a splat's peak is o_i in both.
- Splats sit on the surface; the inside of a shell is empty, and the shell has gaps between splats
  that no training render could see (narrower than a pixel or two, where the on-screen filter already
  covers them). The shell (filtered opacity >= SHELL) is closed over gaps up to `seal` wide (dilate,
  fill what the border cannot reach, erode), and what it then encloses is filled.

    shell = { x : min(1, sum_i o_i exp(-1/2 (x - mu_i)^T (Sigma_i + s^2 I)^-1 (x - mu_i))) >= SHELL }

    field(x) = max( filtered opacity(x),  1 inside the sealed, filled shell )

The filter thickens the shell by about 2 s beyond the splats: a sphere of splats of radius 0.4 reads
as radius 0.46 at the draft preset's s = 0.025. Eroding that back (chessboard erosion, or the shell's
midline) was measured to cost more than it gives on trained splats, whose interiors are porous: the
benchmark's sphere 0.90 -> 0.83 / 0.73 IoU.

Measured on draft-preset Gaussians (BENCHMARKS.md): the raw field read a sphere at IoU 0.09; filtered
and filled without sealing 0.78; sealed over two pixels 0.90.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .projection import Splats, covariances

SHELL = 0.2  # the filtered opacity that counts as the shell (0.5 lost about 0.05 IoU: thinner shells leak)


def fill_enclosed(occupied: Tensor) -> Tensor:
    """[R, R, R] bool: `occupied` plus every empty voxel that the border cannot reach through empty
    6-neighbours (a flood fill from the outside, by repeated dilation inside the empty space)."""
    empty = ~occupied
    outside = torch.zeros_like(occupied)
    outside[0], outside[-1], outside[:, 0], outside[:, -1], outside[:, :, 0], outside[:, :, -1] = (True,) * 6
    outside &= empty
    cross = torch.zeros(1, 1, 3, 3, 3)
    cross[0, 0, 1, 1, :] = cross[0, 0, 1, :, 1] = cross[0, 0, :, 1, 1] = 1.0  # the 6-neighbourhood
    while True:
        grown = (F.conv3d(outside.float()[None, None], cross, padding=1)[0, 0] > 0) & empty
        if torch.equal(grown, outside):
            return occupied | (empty & ~outside)
        outside = grown


def filtered_covariances(splats: Splats, filter_std: float) -> Tensor:
    """Sigma_i + s^2 I [N, 3, 3] (a tiny floor keeps a flat splat invertible without the filter)."""
    eye = torch.eye(3, device=splats.means.device)
    return covariances(splats.quats, splats.scales).float() + (filter_std**2 + 1e-8) * eye


def filtered_opacity_grid(splats: Splats, bound: float, resolution: int, filter_std: float, budget: int = 4_000_000) -> Tensor:
    """[R, R, R] min(1, sum_i o_i G_i) on the voxel centres of [-bound, bound]^3 (index [i, j, k] = (x_i, y_j, z_k)),
    with each covariance widened by filter_std^2 I; each splat only touches the voxels within 3 sigma of it."""
    R, cell = resolution, 2 * bound / resolution
    with torch.no_grad():
        cov = filtered_covariances(splats, filter_std)  # [N, 3, 3]
        precision = torch.linalg.inv(cov)
        reach = 3 * torch.linalg.eigvalsh(cov)[:, -1].sqrt()  # [N] 3 sigma of the longest axis
        lo = ((splats.means - reach[:, None] + bound) / cell - 0.5).ceil().clamp(0, R - 1).long()  # [N, 3]
        hi = ((splats.means + reach[:, None] + bound) / cell - 0.5).floor().clamp(0, R - 1).long()
        size = (hi - lo + 1).clamp(min=0)  # [N, 3]
        counts = size.prod(-1)
        grid = torch.zeros(R**3)
        start = 0
        while start < len(counts):  # splats in chunks of at most `budget` (splat, voxel) pairs
            stop = start + 1 + int(torch.searchsorted(torch.cumsum(counts[start:], 0), budget))
            sel = torch.arange(start, min(stop, len(counts)))
            start = int(sel[-1]) + 1
            n = counts[sel]
            owner = sel.repeat_interleave(n)  # [Q]
            local = torch.arange(int(n.sum())) - (torch.cumsum(n, 0) - n).repeat_interleave(n)
            sy = size[owner, 1]
            ijk = lo[owner] + torch.stack([local // (sy * size[owner, 2]), (local // size[owner, 2]) % sy, local % size[owner, 2]], -1)
            centre = (ijk.float() + 0.5) * cell - bound  # [Q, 3]
            d = centre - splats.means[owner]
            m = torch.einsum("qi,qij,qj->q", d, precision[owner], d)
            grid.index_add_(0, (ijk[:, 0] * R + ijk[:, 1]) * R + ijk[:, 2], splats.opacities[owner] * torch.exp(-0.5 * m))
    return grid.clamp(max=1.0).reshape(R, R, R)


def dilate(occupied: Tensor, k: int) -> Tensor:
    """[R, R, R] bool grown by a (2k+1)^3 cube."""
    return F.max_pool3d(occupied.float()[None, None], 2 * k + 1, stride=1, padding=k)[0, 0] > 0.5 if k > 0 else occupied


def solid_grid(splats: Splats, bound: float, resolution: int, filter_std: float, seal: float) -> Tensor:
    """[R, R, R] the field of the module docstring on voxel centres; `seal`: the widest gap closed, world units."""
    grid = filtered_opacity_grid(splats, bound, resolution, filter_std)
    shell = grid >= SHELL
    k = round(seal / (2 * bound / resolution))  # voxels
    closed = ~dilate(~fill_enclosed(dilate(shell, k)), k) | shell  # sealed, and the enclosed space filled
    return torch.maximum(grid, closed.float())


def sample_grid(grid: Tensor, bound: float, x: Tensor) -> Tensor:
    """Trilinear values [P] of `grid` [R, R, R] (voxel-centred over [-bound, bound]^3) at points x [P, 3]."""
    volume = grid.permute(2, 1, 0)[None, None]  # grid_sample reads (x, y, z) as (W, H, D)
    out = F.grid_sample(volume, (x / bound)[None, :, None, None, :].float(), mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(-1)
