"""The builtin prior's training and held-out images, rendered deterministically from a seed."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..cameras import Cameras, OrbitRange, ViewPromptRule, sample_orbit
from .render import ShadingConfig, jittered_lights, render_sdf
from .shapes import SDFS
from .vocabulary import COLOURS, SHAPES, caption

# The prior sees the same camera distribution that distillation samples from, a little wider in
# elevation so that the "overhead view" suffix has examples.
PRIOR_ORBIT = OrbitRange(elevation_deg=(-10.0, 80.0), distance=(2.0, 2.4), fov_deg=(40.0, 40.0))


@dataclass(frozen=True)
class DatasetConfig:
    resolution: int = 32
    views_per_label: int = 200  # per (colour, shape) pair
    seed: int = 0
    orbit: OrbitRange = PRIOR_ORBIT
    shading: ShadingConfig = field(default_factory=ShadingConfig)
    view_rule: ViewPromptRule = field(default_factory=ViewPromptRule)


@dataclass
class Dataset:
    images: Tensor  # [N, 3, H, W] float in [0, 1]
    depth: Tensor  # [N, 1, H, W] camera depth, 0 on the background
    alpha: Tensor  # [N, 1, H, W]
    colour_ids: Tensor  # [N]
    shape_ids: Tensor  # [N]
    view_suffixes: list[str]
    cameras: Cameras  # [N] where each image was rendered from (camera-conditioned priors train on them)

    def captions(self) -> list[str]:
        colours = list(COLOURS)
        return [caption(colours[c], SHAPES[s], v) for c, s, v in zip(self.colour_ids.tolist(), self.shape_ids.tolist(), self.view_suffixes)]

    def __len__(self) -> int:
        return self.images.shape[0]


def render_dataset(config: DatasetConfig) -> Dataset:
    """Every (colour, shape) label from `views_per_label` random cameras; the seed fixes everything."""
    generator = torch.Generator().manual_seed(config.seed)
    colour_names = list(COLOURS)
    parts: dict[str, list] = {k: [] for k in ("images", "depth", "alpha", "colour_ids", "shape_ids", "views", "cameras")}
    for shape_id, shape in enumerate(SHAPES):
        n = config.views_per_label * len(colour_names)
        cameras = sample_orbit(n, config.orbit, generator=generator, stratified=False)
        colour_ids = torch.arange(n) % len(colour_names)
        albedo = torch.tensor([COLOURS[colour_names[i]] for i in colour_ids.tolist()])
        lights = jittered_lights(cameras, config.shading.light_jitter, generator=generator)
        for chunk in torch.arange(n).split(256):
            r = render_sdf(SDFS[shape], cameras[chunk], albedo[chunk], lights[chunk], config.resolution, config.shading)
            parts["images"].append(r.rgb)
            parts["depth"].append(r.depth)
            parts["alpha"].append(r.alpha)
        parts["colour_ids"].append(colour_ids)
        parts["shape_ids"].append(torch.full((n,), shape_id))
        parts["views"].extend(config.view_rule.suffixes(cameras))
        parts["cameras"].append(cameras)
    return Dataset(
        images=torch.cat(parts["images"]),
        depth=torch.cat(parts["depth"]),
        alpha=torch.cat(parts["alpha"]),
        colour_ids=torch.cat(parts["colour_ids"]),
        shape_ids=torch.cat(parts["shape_ids"]),
        view_suffixes=parts["views"],
        cameras=Cameras(*(torch.cat([getattr(c, name) for c in parts["cameras"]]) for name in ("c2w", "fov_deg", "elevation_deg", "azimuth_deg", "distance"))),
    )
