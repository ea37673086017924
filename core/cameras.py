"""Cameras around an object, in one convention used everywhere in PropDreamer.

World: Blender's. Z is up, units are metres, the object sits at the origin and its *front* faces the
-Y axis, so the front camera stands on -Y looking toward +Y (Blender's own Front view).

Angles: azimuth 0 is the front; azimuth +90 deg puts the camera on +X (Blender's Right view);
elevation is measured up from the XY plane.

Camera matrices are camera-to-world, 4x4, with the camera looking down its own -Z axis, +Y up and
+X right in the image (OpenGL / Blender camera convention). Focal lengths are in pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .device import to_device
from .request import OrbitRange  # defined with the job request, torch-free; sampled here


@dataclass
class Cameras:
    """A batch of pinhole cameras."""

    c2w: Tensor  # [B, 4, 4] camera-to-world, camera looks down its -Z
    fov_deg: Tensor  # [B] vertical = horizontal field of view (square images)
    elevation_deg: Tensor  # [B]
    azimuth_deg: Tensor  # [B] in (-180, 180], 0 = front (-Y)
    distance: Tensor  # [B]

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def focal_px(self, resolution: int) -> Tensor:  # [B]
        return 0.5 * resolution / torch.tan(torch.deg2rad(self.fov_deg) / 2)

    def _fields(self) -> tuple[Tensor, ...]:
        return (self.c2w, self.fov_deg, self.elevation_deg, self.azimuth_deg, self.distance)

    def to(self, target: torch.device | str | torch.dtype) -> Cameras:
        if isinstance(target, torch.dtype):
            return Cameras(*(f.to(target) for f in self._fields()))
        return Cameras(*(to_device(f, target) for f in self._fields()))  # no host sync per field on CUDA

    def __getitem__(self, index: Tensor | slice) -> Cameras:
        return Cameras(*(f[index] for f in self._fields()))


def wrap_azimuth(azimuth_deg: Tensor) -> Tensor:
    """Map angles to (-180, 180]."""
    return 180.0 - torch.remainder(180.0 - azimuth_deg, 360.0)


def orbit_position(elevation_deg: Tensor, azimuth_deg: Tensor, distance: Tensor) -> Tensor:  # [B, 3]
    el, az = torch.deg2rad(elevation_deg), torch.deg2rad(azimuth_deg)
    return torch.stack(
        [distance * torch.cos(el) * torch.sin(az), -distance * torch.cos(el) * torch.cos(az), distance * torch.sin(el)],
        dim=-1,
    )


def look_at(eye: Tensor, target: Tensor | None = None) -> Tensor:
    """Camera-to-world matrices for cameras at `eye` [B, 3] looking at `target` [B, 3] (origin), Z up."""
    target = torch.zeros_like(eye) if target is None else target
    forward = torch.nn.functional.normalize(target - eye, dim=-1)  # [B, 3], the camera's -Z
    world_up = torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype, device=eye.device).expand_as(eye)
    right = torch.cross(forward, world_up, dim=-1)
    # Straight above or below the target the up vector is undefined: fall back to +Y as "up".
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6
    alt_up = torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype, device=eye.device).expand_as(eye)
    right = torch.where(degenerate, torch.cross(forward, alt_up, dim=-1), right)
    right = torch.nn.functional.normalize(right, dim=-1)
    up = torch.cross(right, forward, dim=-1)
    c2w = torch.eye(4, dtype=eye.dtype, device=eye.device).repeat(eye.shape[0], 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, up, -forward, eye
    return c2w


def orbit_cameras(elevation_deg: Tensor, azimuth_deg: Tensor, distance: Tensor, fov_deg: Tensor) -> Cameras:
    """Cameras on a sphere around the origin, all looking at it; every argument is [B]."""
    azimuth_deg = wrap_azimuth(azimuth_deg)
    c2w = look_at(orbit_position(elevation_deg, azimuth_deg, distance))
    return Cameras(c2w, fov_deg, elevation_deg, azimuth_deg, distance)


def sample_orbit(n: int, orbit: OrbitRange, generator: torch.Generator | None = None, stratified: bool = True) -> Cameras:
    """`n` random cameras; with `stratified`, azimuths are spread evenly (one per sector) so a batch sees all sides."""

    def uniform(lo_hi: tuple[float, float]) -> Tensor:
        lo, hi = lo_hi
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    # Elevation uniform on the sphere's surface between the two limits (not uniform in angle), so
    # views near the pole are not over-represented.
    s_lo, s_hi = (math.sin(math.radians(e)) for e in orbit.elevation_deg)
    elevation = torch.rad2deg(torch.asin(s_lo + (s_hi - s_lo) * torch.rand(n, generator=generator)))
    a_lo, a_hi = orbit.azimuth_deg
    if stratified:
        u = (torch.arange(n) + torch.rand(n, generator=generator)) / n
        u = torch.remainder(u + torch.rand(1, generator=generator), 1.0)  # random phase
    else:
        u = torch.rand(n, generator=generator)
    azimuth = a_lo + (a_hi - a_lo) * u
    return orbit_cameras(elevation, azimuth, uniform(orbit.distance), uniform(orbit.fov_deg))


def camera_rays(cameras: Cameras, resolution: int) -> tuple[Tensor, Tensor]:
    """World-space rays through pixel centres: origins [B, H, W, 3] and unit directions [B, H, W, 3]."""
    H = W = resolution
    device, dtype = cameras.c2w.device, cameras.c2w.dtype
    focal = cameras.focal_px(resolution).to(dtype)  # [B]
    j = torch.arange(W, device=device, dtype=dtype) + 0.5
    i = torch.arange(H, device=device, dtype=dtype) + 0.5
    ii, jj = torch.meshgrid(i, j, indexing="ij")  # [H, W]
    x = (jj - W / 2)[None] / focal[:, None, None]  # [B, H, W]
    y = -(ii - H / 2)[None] / focal[:, None, None]
    d_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)  # [B, H, W, 3]
    d_world = torch.einsum("bij,bhwj->bhwi", cameras.c2w[:, :3, :3], d_cam)
    d_world = torch.nn.functional.normalize(d_world, dim=-1)
    origins = cameras.c2w[:, None, None, :3, 3].expand_as(d_world)
    return origins, d_world


# Elevation words a prior may be trained to read (the builtin prior's `prior train --elevation-words`):
# (upper bound in degrees, words), in rising order, for views below the overhead threshold. METHODS.md's
# rule says front / side / back, which a shape that looks the same from every azimuth cannot use; how
# high the camera stands changes its picture a great deal (a cylinder seen level is a rectangle, from
# 50 degrees up a rounded cup), and a prior that is not told averages those pictures. Measured: 2000
# fine-tuning steps on them move the builtin prior's predictions by under 1%, so it is not shipped (BENCHMARKS.md).
ELEVATION_BANDS: tuple[tuple[float, str], ...] = ((10.0, "low angle"), (35.0, "mid angle"), (60.0, "high angle"))


@dataclass(frozen=True)
class ViewPromptRule:
    """METHODS.md's view-dependent prompt rule; thresholds in degrees. With `elevation_bands` (for a prior
    trained on them) a view below the overhead threshold also names its band: ", side view, low angle"."""

    overhead_above_deg: float = 60.0
    front_within_deg: float = 45.0
    back_beyond_deg: float = 135.0
    elevation_bands: tuple[tuple[float, str], ...] = ()

    def __post_init__(self) -> None:
        bounds = [b for b, _ in self.elevation_bands]
        if bounds != sorted(bounds) or any(not words.strip() or "," in words for _, words in self.elevation_bands):
            raise ValueError(f"elevation_bands must be (upper bound, words) pairs in rising order, words without commas; got {self.elevation_bands}")

    def suffix(self, elevation_deg: float, azimuth_deg: float) -> str:
        azimuth = abs(float(wrap_azimuth(torch.tensor(azimuth_deg))))
        if elevation_deg > self.overhead_above_deg:
            return ", overhead view"
        if azimuth < self.front_within_deg:
            view = ", front view"
        elif azimuth > self.back_beyond_deg:
            view = ", back view"
        else:
            view = ", side view"
        band = next((words for bound, words in self.elevation_bands if elevation_deg < bound), None)
        if band is None and self.elevation_bands:
            band = self.elevation_bands[-1][1]  # up to the overhead threshold
        return view + (f", {band}" if band else "")

    def suffixes(self, cameras: Cameras) -> list[str]:
        return [self.suffix(float(e), float(a)) for e, a in zip(cameras.elevation_deg, cameras.azimuth_deg)]


VIEW_SUFFIXES = (", front view", ", side view", ", back view", ", overhead view")


def cameras_from_matrices(c2w: Tensor, fov_deg: Tensor) -> Cameras:
    """Explicit cameras (e.g. a Blender scene's): c2w [B, 4, 4] looking down -Z, fov [B] degrees.
    Elevation, azimuth and distance are read off each camera's position (for view-dependent prompts)."""
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or fov_deg.shape != (c2w.shape[0],):
        raise ValueError(f"explicit cameras need c2w [B, 4, 4] and fov [B], got {tuple(c2w.shape)} and {tuple(fov_deg.shape)}")
    pos = c2w[:, :3, 3]
    distance = pos.norm(dim=-1)
    elevation = torch.rad2deg(torch.asin((pos[:, 2] / distance.clamp(min=1e-9)).clamp(-1, 1)))
    azimuth = torch.rad2deg(torch.atan2(pos[:, 0], -pos[:, 1]))  # 0 on -Y, +90 on +X
    return Cameras(c2w.float(), fov_deg.float(), elevation, wrap_azimuth(azimuth), distance)


def opencv_cameras(cameras: Cameras, resolution: int) -> tuple[Tensor, Tensor]:
    """viewmats [C, 4, 4] (world -> OpenCV camera: +Z forward, +Y down) and Ks [C, 3, 3]."""
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=cameras.c2w.dtype, device=cameras.c2w.device))
    viewmats = torch.linalg.inv(cameras.c2w @ flip)
    f = cameras.focal_px(resolution).to(cameras.c2w.dtype)
    Ks = torch.zeros(len(cameras), 3, 3, dtype=cameras.c2w.dtype, device=cameras.c2w.device)
    Ks[:, 0, 0], Ks[:, 1, 1], Ks[:, 0, 2], Ks[:, 1, 2], Ks[:, 2, 2] = f, f, resolution / 2, resolution / 2, 1.0
    return viewmats, Ks
