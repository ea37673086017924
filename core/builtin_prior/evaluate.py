"""Check what the builtin prior learned: diffusion-classifier accuracy on held-out views, and samples.

    propdreamer prior eval [--prior builtin] [--views 2] [--out DIR]

Held-out renders come from a seed the training never used, so every camera is new to the model.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..images import grid, save_png
from ..priors.diffusers_prior import DiffusersPrior
from ..priors.sampling import sample
from .classifier import ClassifierConfig, classify
from .dataset import DatasetConfig, render_dataset
from .vocabulary import COLOURS, SHAPES, caption

HELD_OUT_SEED = 1  # training renders use seed 0
HELD_OUT_SEEDS = (1, 4)  # two independent sets of unseen cameras, 56 renders each


@dataclass(frozen=True)
class EvalConfig:
    views_per_label: int = 1  # per held-out seed
    seeds: tuple[int, ...] = HELD_OUT_SEEDS
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    sample_steps: int = 50
    sample_guidance: float = 3.0


@dataclass
class EvalResult:
    shape_accuracy: float
    colour_accuracy: float
    images: int
    seconds: float
    confusions: list[str]  # "true -> predicted" for every miss


def evaluate_classifier(prior: DiffusersPrior, config: EvalConfig = EvalConfig()) -> EvalResult:
    t0 = time.time()
    predicted, truth = [], []
    for seed in config.seeds:
        data = render_dataset(DatasetConfig(views_per_label=config.views_per_label, seed=seed))
        predicted += classify(prior, data.images, data.view_suffixes, config.classifier)
        truth += [(list(COLOURS)[c], SHAPES[s]) for c, s in zip(data.colour_ids.tolist(), data.shape_ids.tolist())]
    shape_ok = sum(p[1] == t[1] for p, t in zip(predicted, truth))
    colour_ok = sum(p[0] == t[0] for p, t in zip(predicted, truth))
    misses = [f"{caption(*t)} -> {caption(*p)}" for p, t in zip(predicted, truth) if p != t]
    n = len(truth)
    return EvalResult(shape_ok / n, colour_ok / n, n, time.time() - t0, misses)


def write_samples(prior: DiffusersPrior, path: Path, config: EvalConfig = EvalConfig()) -> Path:
    """One sample per (colour, shape), front view: a row per shape, a column per colour."""
    prompts = [caption(c, s, ", front view") for s in SHAPES for c in COLOURS]
    images = sample(prior, prompts, steps=config.sample_steps, guidance_scale=config.sample_guidance)
    return save_png(grid(images, columns=len(COLOURS)), path, scale=3)


def run(prior: DiffusersPrior, out: Path, config: EvalConfig = EvalConfig(), log=lambda m: print(m, flush=True)) -> EvalResult:
    out.mkdir(parents=True, exist_ok=True)
    result = evaluate_classifier(prior, config)
    log(f"held-out renders: {result.images} ({config.views_per_label} unseen view(s) per colour x shape from each of the seeds {list(config.seeds)})")
    log(f"shape accuracy:  {result.shape_accuracy:.1%}")
    log(f"colour accuracy: {result.colour_accuracy:.1%}")
    log(f"classifier time: {result.seconds:.0f} s ({config.classifier.timesteps} timesteps x {len(SHAPES) * len(COLOURS)} captions per image)")
    for miss in result.confusions:
        log(f"  miss: {miss}")
    samples = write_samples(prior, out / "prior_samples.png", config)
    log(f"samples: {samples}")
    (out / "prior_eval.json").write_text(json.dumps(result.__dict__, indent=2) + "\n")
    return result
