"""Rasterising 3D Gaussians, three ways behind one signature: a dense pure-PyTorch reference (every
splat at every pixel), the sparse PyTorch compositor that the CPU runs (pairs.py), and gsplat's CUDA
kernels. Tests check the sparse path against the reference in values and gradients, and (CUDA only)
gsplat against it (STYLE.md: a reference for every fast path).

Cameras are OpenCV-style world-to-camera `viewmats` [C, 4, 4] and intrinsics `Ks` [C, 3, 3], as gsplat
takes them; `opencv_cameras` converts PropDreamer's Blender-convention cameras.

Per camera (EWA splatting, 3DGS):
    Sigma = R S S^T R^T,  Sigma' = J W Sigma W^T J^T + eps2d I,   J the perspective Jacobian at the mean
    alpha_i(p) = min(0.999, o_i exp(-1/2 (p - mu'_i)^T Sigma'^-1 (p - mu'_i)))     (dropped below 1/255)
    C(p) = sum_i c_i alpha_i T_i,  T_i = prod_{j<i} (1 - alpha_j),  front to back
Returned colours are premultiplied (no background); depth is the expected camera depth sum w z / A.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cameras import Cameras

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
EPS2D = 0.3  # px^2 added to every projected covariance: no splat renders narrower than about a pixel


@dataclass
class Splats:
    means: Tensor  # [N, 3]
    quats: Tensor  # [N, 4] wxyz, any norm
    scales: Tensor  # [N, 3] (not log)
    opacities: Tensor  # [N] in (0, 1)


def opencv_cameras(cameras: Cameras, resolution: int) -> tuple[Tensor, Tensor]:
    """viewmats [C, 4, 4] (world -> OpenCV camera: +Z forward, +Y down) and Ks [C, 3, 3]."""
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=cameras.c2w.dtype, device=cameras.c2w.device))
    viewmats = torch.linalg.inv(cameras.c2w @ flip)
    f = cameras.focal_px(resolution).to(cameras.c2w.dtype)
    Ks = torch.zeros(len(cameras), 3, 3, dtype=cameras.c2w.dtype, device=cameras.c2w.device)
    Ks[:, 0, 0], Ks[:, 1, 1], Ks[:, 0, 2], Ks[:, 1, 2], Ks[:, 2, 2] = f, f, resolution / 2, resolution / 2, 1.0
    return viewmats, Ks


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
