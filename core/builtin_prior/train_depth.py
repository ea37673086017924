"""Train the builtin depth estimator (for SSD on the builtin prior) on renders whose exact depth is known.

    propdreamer prior train-depth --out core/builtin_prior/depth

Target: disparity 1 / depth on the object and 0 on the background, as MiDaS-style estimators predict.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..guidance.depth import BuiltinDepth, BuiltinDepthConfig, disparity, masked_pearson_loss
from .dataset import DatasetConfig, render_dataset


@dataclass(frozen=True)
class DepthTrainConfig:
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    data: DatasetConfig = field(default_factory=lambda: DatasetConfig(views_per_label=60, seed=2))
    model: BuiltinDepthConfig = field(default_factory=BuiltinDepthConfig)


def train_depth(config: DepthTrainConfig, out: Path, log=lambda m: print(m, flush=True)) -> dict:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    t0 = time.time()
    data = render_dataset(config.data)
    target = disparity(data.depth)  # [N, 1, H, W]
    model = BuiltinDepth(config.model)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, config.steps)
    for step in range(config.steps):
        idx = torch.randint(len(data), (config.batch_size,), generator=generator)
        loss = (model(data.images[idx]) - target[idx]).pow(2).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if (step + 1) % 250 == 0:
            log(f"step {step + 1}/{config.steps}  mse {loss.item():.5f}")
    held_out = render_dataset(DatasetConfig(views_per_label=4, seed=3))
    with torch.no_grad():
        pearson = 1 - masked_pearson_loss(model(held_out.images), disparity(held_out.depth), (held_out.alpha > 0.99).float()).mean().item()
    model.save(out)
    summary = {"minutes": round((time.time() - t0) / 60, 1), "held_out_pearson_on_object": round(pearson, 3), "config": asdict(config)}
    (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"held-out Pearson correlation with true disparity on the object: {pearson:.3f}; wrote {out}")
    return summary
