"""A least-squares linear map from a latent prior's latents to (8x downsampled) RGB.

Fitted once per VAE at load: encode a few random smooth images, then solve

    min_{W, b} || W z + b - avgpool_8(x) ||^2        z [4] per latent pixel, x [3] per image pixel,

so `decode_linear(z)` is a nearly free, differentiable stand-in for the VAE decoder wherever a
rough image is enough: SSD's depth baseline (any phi keeps Stein's control variate zero-mean, so a
cheaper decode changes only how much variance is removed) and quick previews.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class LinearDecoder:
    weight: Tensor  # [3, C]
    bias: Tensor  # [3]
    scale: int  # the VAE's downsampling factor (8 for SD)

    def __call__(self, z: Tensor) -> Tensor:
        """z [B, C, h, w] -> x [B, 3, h * scale, w * scale], roughly in [0, 1] (not clamped: keeps gradients)."""
        x = torch.einsum("oc,bchw->bohw", self.weight.to(z), z) + self.bias.to(z).reshape(1, 3, 1, 1)
        return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)


def smooth_images(n: int, size: int, generator: torch.Generator) -> Tensor:
    """[n, 3, size, size] random images with structure at several scales (a fitting set for any VAE)."""
    images = torch.zeros(n, 3, size, size)
    for cells in (2, 4, 8, 16):
        coarse = torch.rand(n, 3, cells, cells, generator=generator)
        images += F.interpolate(coarse, (size, size), mode="bicubic", align_corners=False) / 4
    return images.clamp(0, 1)


@torch.no_grad()
def fit_linear_decoder(encode, scale: int, size: int, n: int = 16, seed: int = 0) -> LinearDecoder:
    """Fit W, b against `encode` (images [B, 3, H, W] in [0, 1] -> latents [B, C, H/scale, W/scale])."""
    x = smooth_images(n, size, torch.Generator().manual_seed(seed))
    z = torch.cat([encode(x[i : i + 4]).float().cpu() for i in range(0, n, 4)])  # [n, C, h, w]
    target = F.adaptive_avg_pool2d(x, (z.shape[-2], z.shape[-1]))  # [n, 3, h, w]: the image at latent resolution
    C = z.shape[1]
    A = torch.cat([z.permute(0, 2, 3, 1).reshape(-1, C), torch.ones(z.numel() // C, 1)], dim=1)  # [N, C + 1]
    Y = target.permute(0, 2, 3, 1).reshape(-1, 3)  # [N, 3]
    solution = torch.linalg.lstsq(A.double(), Y.double()).solution.float()  # [C + 1, 3]
    return LinearDecoder(solution[:C].T.contiguous(), solution[C].contiguous(), scale)
