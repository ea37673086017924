"""A diffusion classifier (Li et al., "Your Diffusion Model is Secretly a Zero-Shot Classifier").

The predicted caption of an image is the one with the lowest expected denoising error

    E_{t, eps} || eps_theta(z_t, t, caption) - eps ||^2,

estimated with the same (t, eps) pairs for every caption, which cancels most of the Monte-Carlo noise.
As in Li et al.'s adaptive variant, a cheap first pass over all captions keeps the `keep` best, and a
second pass with more timesteps picks among them (about half the UNet calls of one full pass, and more
samples where they matter).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ..cameras import Cameras
from ..priors.base import DiffusionPrior, add_noise
from .vocabulary import COLOURS, SHAPES, caption


@dataclass(frozen=True)
class ClassifierConfig:
    timesteps: int = 12  # second pass: evenly spaced in [t_low, t_high] * T
    coarse_timesteps: int = 4  # first pass, over every caption
    keep: int = 6  # captions that reach the second pass
    # Shape lives in the mid-to-high noise levels; at low t the caption barely changes the prediction.
    t_low: float = 0.3
    t_high: float = 0.9
    seed: int = 0


@torch.no_grad()
def denoising_errors(prior: DiffusionPrior, images: Tensor, captions: list[str], config: ClassifierConfig = ClassifierConfig(), cameras: Cameras | None = None) -> Tensor:
    """Mean denoising error [N, K] of each image [N, 3, H, W] (in [0, 1]) under each of K captions
    (seen from `cameras`, one per image, for a camera-conditioned prior; None: unknown)."""
    T = prior.num_train_timesteps
    t = torch.linspace(config.t_low * T, config.t_high * T, config.timesteps).round().long().to(prior.device)  # [S]
    embeddings = prior.text_embeddings(captions)  # [K, L, D]
    generator = torch.Generator().manual_seed(config.seed)
    rows = []
    for i, x in enumerate(images):
        z = prior.encode(x[None])  # [1, C, h, w]
        eps = torch.randn((config.timesteps, *z.shape[1:]), generator=generator).to(z.device)  # [S, C, h, w]
        z_t = add_noise(prior.alphas_cumprod, z.expand_as(eps), eps, t)  # [S, C, h, w]
        views = cameras[torch.full((config.timesteps,), i)] if cameras is not None else None  # the image's camera, once per (t, eps)
        eps_pred = prior.predict_noise(z_t, t, embeddings, views)  # [K, S, C, h, w]
        rows.append((eps_pred - eps).pow(2).mean(dim=(1, 2, 3, 4)))  # [K]
    return torch.stack(rows)


def classify(
    prior: DiffusionPrior, images: Tensor, view_suffixes: list[str], config: ClassifierConfig = ClassifierConfig(), cameras: Cameras | None = None
) -> list[tuple[str, str]]:
    """The (colour, shape) label of each image, among all colour x shape captions with that image's view suffix."""
    labels = [(c, s) for s in SHAPES for c in COLOURS]
    coarse = replace(config, timesteps=config.coarse_timesteps, seed=config.seed + 1)
    predictions = []
    for i, (image, suffix) in enumerate(zip(images, view_suffixes)):
        captions = [caption(c, s, suffix) for c, s in labels]
        view = cameras[torch.tensor([i])] if cameras is not None else None
        first = denoising_errors(prior, image[None], captions, coarse, view)[0]  # [56]
        finalists = first.argsort()[: config.keep].tolist()
        second = denoising_errors(prior, image[None], [captions[k] for k in finalists], config, view)[0]
        predictions.append(labels[finalists[int(second.argmin())]])
    return predictions
