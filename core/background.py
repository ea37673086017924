"""What lies behind the object: a fixed colour, a random solid colour per view, or a small MLP of the
view direction (DreamFusion). Renderers return premultiplied colour and coverage; this fills the rest:
rgb = c_premult + (1 - alpha) * background.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from .device import to_device

BackgroundKind = Literal["white", "random", "mlp"]


@dataclass(frozen=True)
class BackgroundConfig:
    # The builtin prior only ever saw white backgrounds; Stable Diffusion presets use "mlp".
    kind: BackgroundKind = "white"
    hidden: int = 32

    def __post_init__(self) -> None:
        if self.kind not in ("white", "random", "mlp"):
            raise ValueError(f"BackgroundConfig.kind must be white, random or mlp, got '{self.kind}'")


class Background(nn.Module):
    def __init__(self, config: BackgroundConfig = BackgroundConfig()) -> None:
        super().__init__()
        self.config = config
        self.mlp = nn.Sequential(nn.Linear(3, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 3)) if config.kind == "mlp" else None

    def forward(self, dirs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """dirs [B, H, W, 3] world-space view directions -> colour [B, 3, H, W]."""
        B = dirs.shape[0]
        if self.config.kind == "white":
            return torch.ones(B, 3, *dirs.shape[1:3], device=dirs.device, dtype=dirs.dtype)
        if self.config.kind == "random":
            colour = to_device(torch.rand(B, 3, 1, 1, generator=generator, dtype=dirs.dtype), dirs.device)
            return colour.expand(B, 3, *dirs.shape[1:3])
        assert self.mlp is not None  # kind "mlp"
        return torch.sigmoid(self.mlp(dirs)).permute(0, 3, 1, 2)

    def composite(self, premult: Tensor, alpha: Tensor, dirs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """premult [B, 3, H, W], alpha [B, 1, H, W] -> rgb [B, 3, H, W]."""
        return premult + (1 - alpha) * self(dirs, generator)
