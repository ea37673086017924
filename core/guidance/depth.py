"""Frozen monocular depth estimators for SSD's baseline function, and the losses that compare depths.

Every estimator maps images [B, 3, H, W] in [0, 1] to relative inverse depth ("disparity": larger is
nearer) [B, 1, H, W], differentiably, as MiDaS / DPT do. Two kinds:
- `builtin`: a small U-Lite-like network trained on the builtin prior's renders, whose exact depth is
  known (`propdreamer prior train-depth`); it ships with the builtin prior and runs offline;
- a transformers DPT / MiDaS model by Hub id or local folder (default `Intel/dpt-hybrid-midas`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .ulite import ULite

BUILTIN_DEPTH_FOLDER = Path(__file__).resolve().parent.parent / "builtin_prior" / "depth"
DEFAULT_DPT_ID = "Intel/dpt-hybrid-midas"


@dataclass(frozen=True)
class BuiltinDepthConfig:
    channels: tuple[int, ...] = (16, 32, 64)
    resolution: int = 32


class BuiltinDepth(nn.Module):
    """images [B, 3, H, W] -> disparity [B, 1, H, W], trained on exact render depth."""

    def __init__(self, config: BuiltinDepthConfig = BuiltinDepthConfig()) -> None:
        super().__init__()
        self.config = config
        self.net = ULite(3, config.channels, out_channels=1)

    def forward(self, images: Tensor) -> Tensor:
        size = images.shape[-2:]
        x = F.interpolate(images, (self.config.resolution,) * 2, mode="bilinear", align_corners=False) if size != (self.config.resolution,) * 2 else images
        out = self.net(x * 2 - 1)
        return F.interpolate(out, size, mode="bilinear", align_corners=False) if out.shape[-2:] != size else out

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.state_dict(), folder / "model.safetensors")
        (folder / "config.json").write_text(json.dumps({"kind": "propdreamer-builtin-depth", **asdict(self.config)}, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> BuiltinDepth:
        from safetensors.torch import load_file

        config = json.loads((folder / "config.json").read_text())
        config.pop("kind")
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}  # JSON lists back to tuples
        model = cls(BuiltinDepthConfig(**fields))
        model.load_state_dict(load_file(folder / "model.safetensors"))
        return model


class DPTDepth(nn.Module):
    """A transformers DPT / MiDaS model with differentiable preprocessing (resize, normalise)."""

    mean: Tensor  # registered buffers (see __init__)
    std: Tensor

    def __init__(self, model, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model, self.size = model, size
        self.register_buffer("mean", torch.tensor(mean).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).reshape(1, 3, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        size = images.shape[-2:]
        x = F.interpolate(images, (self.size, self.size), mode="bicubic", align_corners=False)
        x = (x - self.mean) / self.std
        out = self.model(pixel_values=x.to(self.model.dtype)).predicted_depth[:, None].float()  # [B, 1, h, w]
        return F.interpolate(out, size, mode="bilinear", align_corners=False)


def load_depth_estimator(spec: str, device: torch.device, offline: bool | None = None, dtype: torch.dtype = torch.float32) -> nn.Module:
    """'builtin', a local DPT folder, or a Hub id -> a frozen estimator on `device`. A DPT runs in
    `dtype` (the prior's: float16 on CUDA); the small builtin estimator always in float32."""
    if spec == "builtin":
        if not (BUILTIN_DEPTH_FOLDER / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"The builtin depth estimator is missing from {BUILTIN_DEPTH_FOLDER}; restore it with "
                f"`git checkout -- core/builtin_prior/depth` or retrain it with `propdreamer prior train-depth`."
            )
        model = BuiltinDepth.load(BUILTIN_DEPTH_FOLDER)
        return model.to(device).eval().requires_grad_(False)
    dpt = _load_dpt(spec, offline)
    dpt.model.to(dtype)  # the normalisation buffers stay float32; forward casts the input
    return dpt.to(device).eval().requires_grad_(False)


def _load_dpt(spec: str, offline: bool | None) -> DPTDepth:
    from huggingface_hub import constants
    from transformers import DPTForDepthEstimation

    local_only = bool(constants.HF_HUB_OFFLINE) if offline is None else offline
    try:
        model = DPTForDepthEstimation.from_pretrained(spec, local_files_only=local_only)
    except OSError as err:
        raise FileNotFoundError(
            f"Could not load the depth estimator '{spec}' for SSD: {err}\n"
            f"  Hugging Face cache searched: {constants.HF_HUB_CACHE}\n"
            f"  Download it once while online (`huggingface-cli download {spec}`), pass a local DPT folder, "
            f"or use the builtin prior with its builtin depth estimator."
        ) from err
    folder = Path(spec) if Path(spec).is_dir() else None
    mean, std, size = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), int(model.config.image_size)
    processor = folder / "preprocessor_config.json" if folder else None
    if processor is not None and processor.is_file():
        cfg = json.loads(processor.read_text())
        mean, std = tuple(cfg.get("image_mean", mean)), tuple(cfg.get("image_std", std))
        size = int(cfg.get("size", {}).get("height", size)) if isinstance(cfg.get("size"), dict) else size
    return DPTDepth(model, size, mean, std)


def disparity(depth: Tensor) -> Tensor:
    """1 / depth where there is a surface, 0 elsewhere (what MiDaS-style estimators predict); [B, 1, H, W]."""
    return torch.where(depth > 0, 1 / depth.clamp(min=1e-6), torch.zeros_like(depth))


def masked_pearson_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """1 - Pearson correlation per image over the mask; pred, target, mask [B, 1, H, W] -> [B]."""
    m = mask.flatten(1)
    n = m.sum(1).clamp(min=1.0)
    p, q = pred.flatten(1), target.flatten(1)
    p = p - (p * m).sum(1, keepdim=True) / n[:, None]
    q = q - (q * m).sum(1, keepdim=True) / n[:, None]
    cov = (p * q * m).sum(1)
    var = (p * p * m).sum(1).clamp(min=1e-12) * (q * q * m).sum(1).clamp(min=1e-12)
    return 1 - cov / var.sqrt()


def normals_from_depth(depth: Tensor) -> Tensor:
    """Unit normals [B, 3, H, W] from a depth (or disparity) map [B, 1, H, W] by spatial derivatives."""
    dx = F.pad(depth[..., :, 1:] - depth[..., :, :-1], (0, 1, 0, 0))
    dy = F.pad(depth[..., 1:, :] - depth[..., :-1, :], (0, 0, 0, 1))
    return F.normalize(torch.cat([-dx, -dy, torch.ones_like(depth)], dim=1), dim=1)


def masked_normal_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """1 - mean cosine between normals of two depth maps over the mask; [B, 1, H, W] -> [B]."""
    cos = (normals_from_depth(pred) * normals_from_depth(target)).sum(1, keepdim=True)
    return 1 - (cos * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=1.0)
