"""Check what the builtin prior learned: diffusion-classifier accuracy on held-out views, and samples.

    propdreamer prior eval [--prior builtin] [--views 2] [--out DIR]

Held-out renders come from a seed the training never used, so every camera is new to the model. They
stand where the prior's last training run rendered from (its propdreamer_prior.json; stage one's
cameras stand there too), or at `--elevation LOW,HIGH`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..cameras import OrbitRange, ViewPromptRule, orbit_cameras
from ..images import grid, save_png
from ..priors.base import add_noise
from ..priors.diffusers_prior import DiffusersPrior
from ..priors.sampling import sample
from .classifier import ClassifierConfig, classify
from .dataset import PRIOR_ORBIT, DatasetConfig, render_dataset
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
    orbit: OrbitRange | None = None  # where the held-out cameras stand; None: where the prior was trained


@dataclass
class EvalResult:
    shape_accuracy: float
    colour_accuracy: float
    images: int
    seconds: float
    confusions: list[str]  # "true -> predicted" for every miss
    camera_errors: dict[str, float] | None = None  # camera-conditioned priors: see `camera_gain`
    elevation_word_errors: dict[str, float] | None = None  # priors trained on elevation words: see `elevation_word_gain`


def held_out_orbit(prior: DiffusersPrior, config: EvalConfig) -> OrbitRange:
    """Where the held-out cameras stand: the configured orbit, else where `prior` was last trained."""
    return config.orbit or prior.trained_orbit or PRIOR_ORBIT


def held_out(prior: DiffusersPrior, config: EvalConfig, seed: int):
    """Held-out renders captioned the way `prior` was trained (its view words, elevation bands included)."""
    return render_dataset(DatasetConfig(views_per_label=config.views_per_label, seed=seed, view_rule=prior.view_rule or ViewPromptRule(), orbit=held_out_orbit(prior, config)))


def evaluate_classifier(prior: DiffusersPrior, config: EvalConfig = EvalConfig()) -> EvalResult:
    t0 = time.time()
    predicted, truth = [], []
    for seed in config.seeds:
        data = held_out(prior, config, seed)
        predicted += classify(prior, data.images, data.view_suffixes, config.classifier, data.cameras)  # cameras: read by camera-conditioned priors only
        truth += [(list(COLOURS)[c], SHAPES[s]) for c, s in zip(data.colour_ids.tolist(), data.shape_ids.tolist())]
    shape_ok = sum(p[1] == t[1] for p, t in zip(predicted, truth))
    colour_ok = sum(p[0] == t[0] for p, t in zip(predicted, truth))
    misses = [f"{caption(*t)} -> {caption(*p)}" for p, t in zip(predicted, truth) if p != t]
    n = len(truth)
    return EvalResult(shape_ok / n, colour_ok / n, n, time.time() - t0, misses)


def noised(prior: DiffusersPrior, z: Tensor, timesteps: tuple[int, ...], seed: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """(t [N], eps, z_t) at each of `timesteps`: one seeded noise draw per step, shared by every variant compared."""
    generator = torch.Generator().manual_seed(seed)
    for step in timesteps:
        t = torch.full((z.shape[0],), step, device=prior.device)
        eps = torch.randn(z.shape, generator=generator).to(z.device)
        yield t, eps, add_noise(prior.alphas_cumprod, z, eps, t)


@torch.no_grad()
def camera_gain(prior: DiffusersPrior, config: EvalConfig = EvalConfig(), timesteps: tuple[int, ...] = (300, 600, 900)) -> dict[str, float]:
    """Does a camera-conditioned prior use its cameras? Mean denoising error ||eps_theta - eps||^2 on the
    held-out renders (true caption) with each render's own camera, with the camera unknown, and with a
    wrong one (elevation mirrored about 35 degrees, azimuth turned 180). Lower with the true camera: it helps."""
    data = held_out(prior, config, config.seeds[0])
    wrong = orbit_cameras(70.0 - data.cameras.elevation_deg, data.cameras.azimuth_deg + 180.0, data.cameras.distance, data.cameras.fov_deg)
    embeddings = prior.text_embeddings(data.captions())[None]  # [1, N, L, D]
    z = prior.encode(data.images)
    errors = {"true camera": 0.0, "unknown camera": 0.0, "wrong camera": 0.0}
    for t, eps, z_t in noised(prior, z, timesteps, config.classifier.seed):
        for name, cameras in (("true camera", data.cameras), ("unknown camera", None), ("wrong camera", wrong)):
            errors[name] += float((prior.predict_noise(z_t, t, embeddings, cameras)[0] - eps).pow(2).mean()) / len(timesteps)
    return errors


@torch.no_grad()
def elevation_word_gain(prior: DiffusersPrior, config: EvalConfig = EvalConfig(), timesteps: tuple[int, ...] = (600, 800, 900)) -> dict[str, float]:
    """Does a prior trained on elevation words read them? Mean error of x0-hat (the image SDS pulls a render
    toward) on the held-out renders, captioned with their own elevation band, with no view words, and with
    the band of the mirrored elevation (70 - e: low <-> high). Lower with the true words: it reads them."""
    rule = prior.view_rule
    if rule is None:
        raise ValueError(f"{prior.source} was trained without view words (its folder records no view rule): there is no elevation word to measure")
    data = held_out(prior, config, config.seeds[0])
    bare = [c.split(",")[0] for c in data.captions()]
    mirrored = rule.suffixes(orbit_cameras(70.0 - data.cameras.elevation_deg, data.cameras.azimuth_deg, data.cameras.distance, data.cameras.fov_deg))
    captions = {"true words": data.captions(), "no view words": bare, "wrong words": [b + v for b, v in zip(bare, mirrored)]}
    embeddings = {name: prior.text_embeddings(texts)[None] for name, texts in captions.items()}  # [1, N, L, D] each
    z = prior.encode(data.images)
    errors = dict.fromkeys(captions, 0.0)
    for t, _, z_t in noised(prior, z, timesteps, config.classifier.seed):
        abar = prior.alphas_cumprod[t][:, None, None, None]
        for name, e in embeddings.items():
            eps_hat = prior.predict_noise(z_t, t, e)[0]
            x0_hat = (z_t - (1 - abar).sqrt() * eps_hat) / abar.sqrt()  # z0-hat = (z_t - sigma_t eps-hat) / alpha_t
            errors[name] += float((x0_hat - z).pow(2).mean()) / len(timesteps)
    return errors


def write_samples(prior: DiffusersPrior, path: Path, config: EvalConfig = EvalConfig()) -> Path:
    """One sample per (colour, shape), front view from 20 degrees up: a row per shape, a column per colour."""
    prompts = [caption(c, s, (prior.view_rule or ViewPromptRule()).suffix(20.0, 0.0)) for s in SHAPES for c in COLOURS]
    n = len(prompts)
    front = orbit_cameras(torch.full((n,), 20.0), torch.zeros(n), torch.full((n,), 2.2), torch.full((n,), 40.0))  # for camera-conditioned priors
    images = sample(prior, prompts, steps=config.sample_steps, guidance_scale=config.sample_guidance, cameras=front)
    return save_png(grid(images, columns=len(COLOURS)), path, scale=3)


def run(prior: DiffusersPrior, out: Path, config: EvalConfig = EvalConfig(), log=lambda m: print(m, flush=True)) -> EvalResult:
    out.mkdir(parents=True, exist_ok=True)
    result = evaluate_classifier(prior, config)
    low, high = held_out_orbit(prior, config).elevation_deg
    log(
        f"held-out renders: {result.images} ({config.views_per_label} unseen view(s) per colour x shape from each of the seeds {list(config.seeds)}, "
        f"elevations {low:g} to {high:g} degrees)"
    )
    log(f"shape accuracy:  {result.shape_accuracy:.1%}")
    log(f"colour accuracy: {result.colour_accuracy:.1%}")
    log(f"classifier time: {result.seconds:.0f} s ({config.classifier.timesteps} timesteps x {len(SHAPES) * len(COLOURS)} captions per image)")
    for miss in result.confusions:
        log(f"  miss: {miss}")
    if prior.camera_conditioned:
        gain = camera_gain(prior, config)
        log("denoising error on held-out renders (t = 300, 600, 900): " + ", ".join(f"{k} {v:.5f}" for k, v in gain.items()))
        result.camera_errors = gain
    if prior.view_rule is not None and prior.view_rule.elevation_bands:
        gain = elevation_word_gain(prior, config)
        log("x0-hat error on held-out renders (t = 600, 800, 900): " + ", ".join(f"{k} {v:.5f}" for k, v in gain.items()))
        result.elevation_word_errors = gain
    samples = write_samples(prior, out / "prior_samples.png", config)
    log(f"samples: {samples}")
    (out / "prior_eval.json").write_text(json.dumps(result.__dict__, indent=2) + "\n")
    return result
