"""What stage one leaves on disk for the artist: turntable previews (one PNG per view and a strip)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..images import grid, save_png
from .trainer import DistillationResult, render_views, turntable_cameras


def write_turntable(result: DistillationResult, out_dir: Path, views: int = 8, resolution: int = 64, scale: int = 2) -> list[Path]:
    """`views` renders around the object (diffuse, lit from the camera) and a strip of all of them."""
    device = next(iter(result.representation.parameters())).device
    cams = turntable_cameras(views, device=device)
    images = render_views(result.representation, result.background, cams, resolution, result.config.shading).cpu()
    paths = [save_png(img, out_dir / f"turntable_{i:02d}.png", scale=scale) for i, img in enumerate(images)]
    paths.append(save_png(grid(images, columns=views), out_dir / "turntable.png", scale=scale))
    albedo = render_views(result.representation, result.background, cams, resolution, result.config.shading, mode="albedo").cpu()
    paths.append(save_png(grid(torch.cat([images, albedo]), columns=views), out_dir / "turntable_shaded_and_albedo.png", scale=scale))
    return paths
