"""Reading geometry out of any representation as voxels, and comparing shapes (the synthetic benchmark,
and stage two's initialisation).

- `auto_threshold`: METHODS.md's rule, the mean density over points with density > 1e-5.
- `normalise`: an occupancy grid moved into a canonical frame: centred on its bounding box and scaled
  uniformly so the box's largest side is 1 (aspect ratio kept: a tall cylinder stays tall).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def grid_points(resolution: int, bound: float) -> Tensor:
    """Voxel centres [R^3, 3] of [-bound, bound]^3, x fastest last (index [i, j, k] = (x_i, y_j, z_k))."""
    axis = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution * 2 * bound - bound
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)


def auto_threshold(density: Tensor, floor: float = 1e-5) -> float:
    above = density[density > floor]
    if above.numel() == 0:
        raise ValueError("the field is empty (no density above 1e-5): stage one produced nothing to extract")
    return float(above.mean())


def normalise(occupancy: Tensor, bound: float, out_resolution: int = 48) -> Tensor:
    """occupancy [R, R, R] bool over [-bound, bound]^3 -> [S, S, S] bool in the canonical frame [-0.5, 0.5]^3."""
    R = occupancy.shape[0]
    idx = occupancy.nonzero().float()  # [M, 3]
    if idx.numel() == 0:
        return torch.zeros(out_resolution, out_resolution, out_resolution, dtype=torch.bool)
    lo = (idx.min(0).values) / R * 2 * bound - bound
    hi = (idx.max(0).values + 1) / R * 2 * bound - bound
    centre, size = (lo + hi) / 2, float((hi - lo).max())
    canonical = grid_points(out_resolution, 0.5)  # [S^3, 3]
    world = canonical * size + centre  # back into the field's frame
    # grid_sample wants (x, y, z) -> (W, H, D) order with the volume as [1, 1, D, H, W] = [k, j, i].
    volume = occupancy.float().permute(2, 1, 0)[None, None]
    sample = F.grid_sample(volume, (world / bound)[None, :, None, None, :], mode="nearest", align_corners=False)
    return sample.reshape(out_resolution, out_resolution, out_resolution) > 0.5


def iou(a: Tensor, b: Tensor) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union > 0 else 0.0


def surface_voxels(occupancy: Tensor) -> Tensor:
    """Occupied voxels [R, R, R] with at least one empty 6-neighbour."""
    padded = F.pad(occupancy.float()[None, None], (1, 1, 1, 1, 1, 1))
    interior = -F.max_pool3d(-padded, 3, stride=1)[0, 0]  # erosion (3x3x3; close enough to 6-neighbours)
    return occupancy & ~(interior > 0.5)


def srgb_to_lab(rgb: Tensor) -> Tensor:
    """CIE L*a*b* (D65) [..., 3] of sRGB values [..., 3] in [0, 1]."""
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = torch.tensor([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]], dtype=rgb.dtype)
    xyz = linear @ m.T / torch.tensor([0.95047, 1.0, 1.08883], dtype=rgb.dtype)
    f = torch.where(xyz > (6 / 29) ** 3, xyz.clamp(min=1e-12) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return torch.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], dim=-1)


def delta_e(rgb_a: Tensor, rgb_b: Tensor) -> float:
    """CIE76 colour difference between two sRGB colours [3]."""
    return float((srgb_to_lab(rgb_a) - srgb_to_lab(rgb_b)).norm())
