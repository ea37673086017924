"""Writing image batches to PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def to_uint8(images: Tensor) -> np.ndarray:
    """[N, 3, H, W] in [0, 1] -> [N, H, W, 3] uint8."""
    return (images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def grid(images: Tensor, columns: int, pad: int = 2) -> Tensor:
    """Tile [N, 3, H, W] into one image [3, rows*(H+pad)+pad, columns*(W+pad)+pad] on white."""
    N, C, H, W = images.shape
    rows = (N + columns - 1) // columns
    canvas = torch.ones(C, rows * (H + pad) + pad, columns * (W + pad) + pad)
    for k, image in enumerate(images.detach().float().cpu()):
        r, c = divmod(k, columns)
        canvas[:, pad + r * (H + pad) : pad + r * (H + pad) + H, pad + c * (W + pad) : pad + c * (W + pad) + W] = image
    return canvas


def save_png(image: Tensor, path: Path, scale: int = 1) -> Path:
    """Save one image [3, H, W] in [0, 1], enlarged `scale` times with nearest-neighbour pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(to_uint8(image[None])[0])
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    picture.save(path)
    return path
