"""Volume rendering of the NeRF (DreamFusion / NeRF quadrature) with empty-space skipping.

Along each ray r(t) = o + t d, inside the box only (density is exactly zero outside), S stratified
samples t_i with spacing delta_i:

    alpha_i = 1 - exp(-sigma_i delta_i),   T_i = prod_{j<i} (1 - alpha_j),   w_i = alpha_i T_i
    C = sum_i w_i c_i (premultiplied),     A = sum_i w_i,                   D = sum_i w_i z_i / A

Samples in unoccupied cells of the occupancy grid keep sigma = 0 and are never sent to the field
(compact.py picks the others, without a host sync on CUDA).
Orientation regulariser (DreamFusion): R_orient = sum_i stopgrad(w_i) max(0, n_i . d)^2 per ray.
3D normal smoothness (stable-dreamfusion's lambda_3d_normal_smooth), when the request gives a step:
R_smooth = mean over the evaluated samples and the three components of |n(x_i) - n(x_i + eps_i)|,
eps_i ~ N(0, step^2 I): the normal field may turn only as fast as the shape asks, which keeps ripples
and bulges too small for the prior to see out of flat faces. With a share below 1 the mean is taken over
that random share of the samples (the same expectation, a fraction of the cost of the second normals).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..cameras import camera_rays
from ..device import device_generator
from ..representation import Rendered, RenderRequest, ShapeTerms
from ..shading import shade
from .compact import SampleCompactor
from .field import NeRFField
from .occupancy import OccupancyGrid


@dataclass(frozen=True)
class VolumeConfig:
    samples_per_ray: int = 48  # S
    chunk: int = 1 << 18  # field queries per call, to bound memory at high resolutions
    static_compaction: bool | None = None  # fixed-size sample compaction, no host sync (compact.py); None: on CUDA

    def __post_init__(self) -> None:
        if self.samples_per_ray < 2:
            raise ValueError(f"VolumeConfig.samples_per_ray must be at least 2, got {self.samples_per_ray}")


def ray_box(origins: Tensor, dirs: Tensor, bound: float) -> tuple[Tensor, Tensor]:
    """Entry and exit distances [R] of rays [R, 3] through the box [-bound, bound]^3 (near >= far: a miss)."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0, t1 = (-bound - origins) * inv, (bound - origins) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp(min=0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far


def _normal_smoothness(field: NeRFField, points: Tensor, normals: Tensor, real: Tensor, request: RenderRequest, chunk: int) -> Tensor:
    """R_smooth over the evaluated samples: points [M, 3], their normals [M, 3], real [M] False on the static
    path's padding (a random share of them when the request asks)."""
    generator = device_generator(request.generator, points.device)
    if request.normal_smooth_share < 1:
        count = max(1, round(request.normal_smooth_share * len(points)))
        pick = torch.randperm(len(points), generator=generator, device=points.device)[:count]  # [K]
        points, normals, real = points[pick], normals[pick], real[pick]
    noise = torch.randn(points.shape, generator=generator, device=points.device, dtype=points.dtype)
    perturbed = (points + request.normal_smooth_step * noise).clamp(-field.config.bound, field.config.bound)  # [K, 3]
    moved = torch.cat([field(c, with_normals=True)[2] for c in perturbed.split(chunk)])  # [K, 3]
    per_sample = (normals - moved).abs().mean(-1)  # [K]
    weight = real.to(per_sample.dtype)
    return (per_sample * weight).sum() / weight.sum().clamp(min=1)


def render_volume(field: NeRFField, grid: OccupancyGrid | None, request: RenderRequest, config: VolumeConfig, compactor: SampleCompactor | None = None) -> Rendered:
    cams, res, S = request.cameras, request.resolution, config.samples_per_ray
    B = len(cams)
    origins, dirs = camera_rays(cams, res)  # [B, H, W, 3]
    forward = -cams.c2w[:, None, None, :3, 2]  # [B, 1, 1, 3] camera's viewing axis
    cos = (dirs * forward).sum(-1).reshape(-1)  # [R] camera depth per unit ray length
    o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)  # [R, 3]
    R = o.shape[0]
    near, far = ray_box(o, d, field.config.bound)
    hit = far > near  # [R]
    span = (far - near).clamp(min=0)
    u = (torch.arange(S, device=o.device, dtype=o.dtype) + torch.rand(R, S, generator=device_generator(request.generator, o.device), device=o.device)) / S  # [R, S]
    t = near[:, None] + span[:, None] * u  # [R, S]
    delta = (span / S)[:, None].expand(R, S)  # [R, S]
    x = o[:, None] + t[..., None] * d[:, None]  # [R, S, 3]
    valid = hit[:, None].expand(R, S).clone()
    if grid is not None:
        valid &= grid.lookup(x.reshape(-1, 3)).reshape(R, S)
    # [M] indices of the samples to evaluate; on the static path M is fixed and padded with R * S, a
    # dummy slot at the end of every scattered buffer (dropped), gathers reading a real sample instead.
    idx = (compactor or SampleCompactor(config.static_compaction))(valid.reshape(-1))
    at = idx.clamp(max=R * S - 1)  # [M] safe for gathers
    need_normals = request.mode != "albedo"
    sigma_m, albedo_m, normal_m = [], [], []
    for chunk in at.split(config.chunk):
        s, a, n = field(x.reshape(-1, 3)[chunk], with_normals=need_normals)
        sigma_m.append(s)
        albedo_m.append(a)
        normal_m.append(n)
    sigma = torch.zeros(R * S + 1, device=o.device, dtype=o.dtype)
    sigma = sigma.index_put((idx,), torch.cat(sigma_m) if sigma_m else sigma[:0])[: R * S].reshape(R, S)
    tau = sigma * delta  # [R, S] optical depth of each interval
    alpha = 1 - torch.exp(-tau)  # [R, S]
    # T_i = prod_{j<i} (1 - alpha_j) = exp(-sum_{j<i} tau_j): a cumulative sum, whose backward is far
    # cheaper than cumprod's.
    trans = torch.exp(-(torch.cumsum(tau, dim=1) - tau))  # [R, S]
    w = alpha * trans  # [R, S]
    acc = w.sum(1)  # [R]
    depth = (w * t).sum(1) * cos / (acc + 1e-6)  # [R]
    # Colour only where there are samples: shade the M evaluated samples, scatter, composite.
    colour = torch.zeros(R * S + 1, 3, device=o.device, dtype=o.dtype)
    regularisers = ShapeTerms()
    if sigma_m:
        albedo, normals = torch.cat(albedo_m), (torch.cat(normal_m) if need_normals else None)
        light = None
        if request.light is not None:
            ray_batch = torch.arange(B, device=o.device).repeat_interleave(res * res)  # [R]
            light = request.light.to(o.dtype)[ray_batch[at // S]]  # [M, 3]
        c = shade(albedo, normals, light, request.mode, request.shading)
        colour = colour.index_put((idx,), c)
        if normals is not None:
            facing_away = (normals * d.repeat_interleave(S, dim=0)[at]).sum(-1).clamp(min=0) ** 2  # [M]
            orient = torch.zeros(R * S + 1, device=o.device, dtype=o.dtype).index_put((idx,), facing_away)[: R * S]
            regularisers.orientation = (w.detach() * orient.reshape(R, S)).sum(1).mean()
            if request.normal_smooth_step > 0:
                regularisers.normal_smooth = _normal_smoothness(field, x.reshape(-1, 3)[at], normals, idx < R * S, request, config.chunk)
    premult = (w[..., None] * colour[: R * S].reshape(R, S, 3)).sum(1)  # [R, 3]

    def image(v: Tensor) -> Tensor:  # [R, C] -> [B, C, H, W]
        return v.reshape(B, res, res, -1).permute(0, 3, 1, 2)

    return Rendered(premult=image(premult), alpha=image(acc[:, None]), depth=image(depth[:, None]), regularisers=regularisers)
