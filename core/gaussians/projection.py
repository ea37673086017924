"""3D Gaussians seen from a camera (EWA splatting, 3DGS): what the dense reference compositor and the
sparse one (rasterize.py, pairs.py) share.

    Sigma = R S S^T R^T,  Sigma' = J W Sigma W^T J^T + eps2d I,   J the perspective Jacobian at the mean
    alpha_i(p) = min(0.999, o_i exp(-1/2 (p - mu'_i)^T Sigma'^-1 (p - mu'_i)))     (dropped below 1/255)

Cameras are OpenCV-style world-to-camera `viewmats` [C, 4, 4] and intrinsics `Ks` [C, 3, 3], as gsplat
takes them (`cameras.opencv_cameras` converts PropDreamer's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
EPS2D = 0.3  # px^2 added to every projected covariance: no splat renders narrower than about a pixel


@dataclass
class Splats:
    means: Tensor  # [N, 3]
    quats: Tensor  # [N, 4] wxyz, any norm
    scales: Tensor  # [N, 3] (not log)
    opacities: Tensor  # [N] in (0, 1)


def quat_to_rotmat(quats: Tensor) -> Tensor:  # [N, 4] wxyz -> [N, 3, 3]
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)


def covariances(quats: Tensor, scales: Tensor) -> Tensor:
    """Sigma = R S S^T R^T [N, 3, 3]."""
    M = quat_to_rotmat(quats) * scales[:, None, :]
    return M @ M.transpose(1, 2)


@dataclass
class Projected:
    """Every splat seen from every camera (EWA splatting), shared by the dense and the sparse compositor."""

    means2d: Tensor  # [C, N, 2] pixel coordinates
    conic: Tensor  # [C, N, 3] inverse 2D covariance (xx, xy, yy)
    depth: Tensor  # [C, N] camera depth of the mean
    radius: Tensor  # [C, N] 3 sigma of the longer 2D axis, whole pixels; 0 when culled
    sigma: Tensor  # [C, N] standard deviation along the longer 2D axis, pixels
    visible: Tensor  # [C, N] bool: in front of the near plane and overlapping the image


def project(splats: Splats, viewmats: Tensor, Ks: Tensor, width: int, height: int, near: float = 0.01, eps2d: float = EPS2D) -> Projected:
    C, N = viewmats.shape[0], splats.means.shape[0]
    cov_world = covariances(splats.quats, splats.scales)  # [N, 3, 3]
    R, T = viewmats[:, :3, :3], viewmats[:, :3, 3]  # [C, 3, 3], [C, 3]
    mean_cam = torch.einsum("cij,nj->cni", R, splats.means) + T[:, None]  # [C, N, 3]
    x, y, z = mean_cam.unbind(-1)
    z_safe = z.clamp(min=near)
    fx, fy, cx, cy = Ks[:, 0, 0, None], Ks[:, 1, 1, None], Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    means2d = torch.stack([fx * x / z_safe + cx, fy * y / z_safe + cy], dim=-1)  # [C, N, 2]
    zeros = torch.zeros_like(z)
    J = torch.stack([fx / z_safe, zeros, -fx * x / z_safe**2, zeros, fy / z_safe, -fy * y / z_safe**2], dim=-1).reshape(C, N, 2, 3)
    cov_cam = R[:, None] @ cov_world[None] @ R[:, None].transpose(-1, -2)  # [C, N, 3, 3]
    cov2d = J @ cov_cam @ J.transpose(-1, -2) + eps2d * torch.eye(2, dtype=z.dtype, device=z.device)  # [C, N, 2, 2]
    a, b, d = cov2d[..., 0, 0], cov2d[..., 0, 1], cov2d[..., 1, 1]
    det = (a * d - b * b).clamp(min=1e-12)
    conic = torch.stack([d / det, -b / det, a / det], dim=-1)  # [C, N, 3]
    mid = 0.5 * (a + d)
    lam_max = mid + (mid * mid - det).clamp(min=0.1).sqrt()
    sigma = lam_max.sqrt().detach()  # [C, N]
    radius = torch.ceil(3 * sigma)
    visible = (z > near) & (means2d[..., 0] + radius > 0) & (means2d[..., 0] - radius < width)
    visible &= (means2d[..., 1] + radius > 0) & (means2d[..., 1] - radius < height)
    return Projected(means2d, conic, z, radius * visible, sigma, visible)


def splat_alpha(opacity: Tensor, conic: Tensor, delta: Tensor) -> Tensor:
    """alpha_i(p) = min(0.999, o_i exp(-1/2 delta^T Sigma'^-1 delta)), zero below 1/255; delta [..., 2] = p - mu'."""
    power = -0.5 * (conic[..., 0] * delta[..., 0] ** 2 + conic[..., 2] * delta[..., 1] ** 2) - conic[..., 1] * delta[..., 0] * delta[..., 1]
    alpha = (opacity * torch.exp(power.clamp(max=0))).clamp(max=ALPHA_MAX)
    return alpha * ((alpha >= ALPHA_MIN) & (power <= 0))


def gsplat_info(p: Projected, width: int, height: int) -> dict[str, Any]:
    """What gsplat's densification strategy reads from a render, in gsplat's layout."""
    C, N = p.depth.shape
    radii = p.radius.to(torch.int32)[..., None].expand(C, N, 2)  # [C, N, 2]
    return {"means2d": p.means2d, "radii": radii, "width": width, "height": height, "n_cameras": C, "gaussian_ids": None}
