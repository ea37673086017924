"""How stage one lights what it renders (DreamFusion's shading modes), shared by every representation.

- albedo:       c = a
- diffuse:      c = a * (k_a + (1 - k_a) * max(0, n . l))     a random point light near the camera
- textureless:  c = a_w * (k_a + (1 - k_a) * max(0, n . l))   a_w a constant grey: geometry only

The ambient k_a and light jitter default to the builtin prior's training renders, so diffuse renders
look like what that prior learned from. Textureless renders stop the guidance from painting shape into
colour (FINDINGS.md: a torus's hole painted, not carved).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .cameras import Cameras
from .device import to_device

ShadingMode = Literal["albedo", "diffuse", "textureless"]
MODES: tuple[ShadingMode, ...] = ("albedo", "diffuse", "textureless")


@dataclass(frozen=True)
class ShadingConfig:
    ambient: float = 0.35  # k_a
    light_jitter: float = 0.6  # how far the light strays from the camera's direction
    probabilities: tuple[float, float, float] = (0.0, 0.75, 0.25)  # of albedo, diffuse, textureless
    textureless_albedo: float = 0.78  # a_w

    def __post_init__(self) -> None:
        if len(self.probabilities) != 3 or min(self.probabilities) < 0 or sum(self.probabilities) <= 0:
            raise ValueError(f"ShadingConfig.probabilities must be three non-negative weights (albedo, diffuse, textureless), got {self.probabilities}")
        if not 0 <= self.ambient <= 1:
            raise ValueError(f"ShadingConfig.ambient must lie in [0, 1], got {self.ambient}")

    def sample_mode(self, generator: torch.Generator | None = None) -> ShadingMode:
        p = torch.tensor(self.probabilities, dtype=torch.float64)
        return MODES[int(torch.multinomial(p / p.sum(), 1, generator=generator))]


def light_directions(cameras: Cameras, jitter: float, generator: torch.Generator | None = None) -> Tensor:
    """[B, 3] unit vectors from the object toward a light near each camera."""
    to_camera = F.normalize(cameras.c2w[:, :3, 3], dim=-1)
    noise = to_device(torch.randn(to_camera.shape, generator=generator, dtype=to_camera.dtype), to_camera.device)
    return F.normalize(to_camera + jitter * noise, dim=-1)


def shade(albedo: Tensor, normals: Tensor | None, light: Tensor | None, mode: ShadingMode, config: ShadingConfig) -> Tensor:
    """Colour [..., 3] from albedo [..., 3], normals [..., 3] and light directions broadcastable to them."""
    if mode == "albedo":
        return albedo
    if normals is None or light is None:
        raise ValueError(f"shading mode '{mode}' needs normals and a light direction")
    lambert = (normals * light).sum(-1, keepdim=True).clamp(min=0)
    k = config.ambient + (1 - config.ambient) * lambert
    base = albedo if mode == "diffuse" else torch.full_like(albedo, config.textureless_albedo)
    return base * k
