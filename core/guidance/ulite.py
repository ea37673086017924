"""A small U-Lite-like U-Net (Dinh et al., 2023): depthwise-separable convolutions throughout.

It maps a z-shaped tensor to a z-shaped tensor; VDM uses it as the degradation model M_psi.
Parameter counts (`count_parameters`): channels (40, 80, 160, 320) on 4-channel SD latents 1.08 M
(DreamMapping's "about 1M"); (16, 32, 64) on the builtin prior's 3-channel 32 px images 49 k.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class SeparableBlock(nn.Module):
    """Depthwise k x k convolution, then a pointwise (1 x 1) mix, with GroupNorm and GELU; residual."""

    def __init__(self, channels: int, kernel: int = 7) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.norm = nn.GroupNorm(min(8, channels), channels)
        self.pointwise = nn.Sequential(nn.Conv2d(channels, 2 * channels, 1), nn.GELU(), nn.Conv2d(2 * channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W]
        return x + self.pointwise(self.norm(self.depthwise(x)))


class ULite(nn.Module):
    def __init__(self, in_channels: int, channels: tuple[int, ...] = (32, 64, 128), kernel: int = 7, out_channels: int | None = None) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.encoders = nn.ModuleList([SeparableBlock(channels[0], kernel)])
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            self.down.append(nn.Conv2d(c_in, c_out, 2, stride=2))
            self.encoders.append(SeparableBlock(c_out, kernel))
        self.up = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for c_in, c_out in zip(channels[::-1][:-1], channels[::-1][1:]):
            self.up.append(nn.Conv2d(c_in, c_out, 1))
            self.decoders.append(SeparableBlock(c_out, kernel))
        self.head = nn.Conv2d(channels[0], out_channels or in_channels, 3, padding=1)
        # Start as the zero map (for VDM: the first updates are plain eps_cfg, no learned correction yet).
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)  # type: ignore[arg-type]  # the conv has a bias (bias=True above)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, C, H, W]
        size = x.shape[-2:]
        levels = len(self.encoders)
        pad = (-size[0]) % (2 ** (levels - 1)), (-size[1]) % (2 ** (levels - 1))
        h = F.pad(x, (0, pad[1], 0, pad[0]))
        h = self.encoders[0](self.stem(h))
        skips = [h]
        for down, enc in zip(self.down, self.encoders[1:]):
            h = enc(down(h))
            skips.append(h)
        for up, dec, skip in zip(self.up, self.decoders, reversed(skips[:-1])):
            h = dec(up(F.interpolate(h, size=skip.shape[-2:], mode="nearest")) + skip)
        return self.head(h)[..., : size[0], : size[1]]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
