"""What an unset field of a job request becomes on a given prior: one typed object per kind of prior,
`PriorDefaults`, which a prior carries as `prior.defaults` (`defaults_for(prior)` builds it).

`core/resolve.py` reads it to turn a request into a fully explicit config; the trainer falls back to it
when a config built in code leaves a field unset; the 2D distiller reads its 2D guidance scales. The
measurements that chose each value are in BENCHMARKS.md, "Defaults of the builtin prior".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..cameras import OrbitRange
from ..guidance.timesteps import TimestepSchedule
from ..priors.base import DiffusionPrior


@dataclass(frozen=True)
class RegulariserWeights:
    orientation: float = 1e-2  # DreamFusion's R_orient
    normal_smooth: float = 0.0  # NeRF: R_smooth, stable-dreamfusion's 3D normal smoothness (0: off, its default)
    normal_smooth_step: float = 1e-2  # the perturbation's standard deviation, world units (stable-dreamfusion's)
    normal_smooth_share: float = 1.0  # R_smooth over this random share of the samples (1: all, stable-dreamfusion's)
    sparsity: float = 10.0  # mean coverage: pushes empty space empty
    opaque: float = 1e-3  # binary entropy of coverage: pushes pixels to fully covered or empty
    normal_consistency: float = 0.5  # meshes (stage two): 1 - n_f . n_g over adjacent faces
    laplacian: float = 100.0  # meshes: |v - mean(neighbours)|^2 (a tiny number: squared fractions of a cell)


@dataclass(frozen=True)
class PriorDefaults:
    """Stage one's (and the 2D distiller's) settings on one kind of prior. A method missing from a table
    keeps its paper's value (its config class's default)."""

    timesteps: TimestepSchedule  # t ~ this schedule, for every method without its own
    regularisers: RegulariserWeights
    orbit: OrbitRange  # where stage one's cameras stand
    guidance_scales: Mapping[str, float] = field(default_factory=dict)  # method -> CFG scale in 3D
    guidance_scales_2d: Mapping[str, float] = field(default_factory=dict)  # method -> CFG scale in 2D (distill2d)
    method_timesteps: Mapping[str, TimestepSchedule] = field(default_factory=dict)  # method -> its own schedule
    guidance_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # method -> its config's other fields
    surface_lr: float = 1e-2  # stage two's geometry learning rate (DMTet SDF and offsets) refining stage one's surface

    def guidance_scale(self, method: str, dims: int = 3) -> float | None:
        """The CFG scale for `method` (3D, or 2D with dims=2); None: the paper's."""
        return (self.guidance_scales if dims == 3 else self.guidance_scales_2d).get(method)

    def timesteps_for(self, method: str | None) -> TimestepSchedule:
        return self.method_timesteps.get(method or "", self.timesteps)

    def options_for(self, method: str) -> dict[str, Any]:
        return dict(self.guidance_options.get(method, {}))


# Where stage one's cameras stand when the prior records none: DreamFusion's elevations, -10 to 60
# degrees (up to the view rule's overhead threshold).
DEFAULT_ORBIT = OrbitRange(elevation_deg=(-10.0, 60.0))

# The builtin prior and any other pixel-space prior (BENCHMARKS.md, "Defaults of the builtin prior").
PIXEL_PRIOR = PriorDefaults(
    timesteps=TimestepSchedule("uniform", t_max=0.95),
    regularisers=RegulariserWeights(opaque=100.0, normal_smooth=100.0, normal_smooth_step=0.05, normal_smooth_share=0.25),
    orbit=DEFAULT_ORBIT,
    guidance_scales={"sds": 10.0, "ssd": 30.0},
    guidance_scales_2d={"sds": 30.0, "ssd": 30.0},
    guidance_options={"vsd": {"lora_batch": 1}},  # VSD's LoRA fits one of each step's renders
    surface_lr=3e-3,  # 1e-2 roughened stage one's surface through 32 px renders (torus 21.7 -> 29.3 degrees)
)

# Stable Diffusion and other latent priors: the papers' settings (not yet measured here: no GPU).
# VSD follows ProlificDreamer: t uniform in [0.02, 0.98] T, t_max annealed to 0.5 T once 20% of the run
# has passed (threestudio's configs/prolificdreamer.yaml: 0.98 -> 0.5 at step 5,000 of 25,000).
LATENT_PRIOR = PriorDefaults(
    timesteps=TimestepSchedule("sqrt", t_max=0.98),
    regularisers=RegulariserWeights(),
    orbit=DEFAULT_ORBIT,
    method_timesteps={"vsd": TimestepSchedule("step", t_min=0.02, t_max=0.98, annealed_max=0.5, anneal_at=0.2)},
)
LATENT_PRIOR_TIMESTEPS = LATENT_PRIOR.timesteps  # stage two's, on every prior
VSD_LATENT_PRIOR_TIMESTEPS = LATENT_PRIOR.method_timesteps["vsd"]


def defaults_for(prior: DiffusionPrior) -> PriorDefaults:
    """The defaults of this prior's kind, with its own orbit when it records the cameras it was trained on
    (capped at DEFAULT_ORBIT's 60 degrees: a view-blind prior's picture at high noise averages over its
    training elevations, so stage one's cameras stay inside them)."""
    kind = LATENT_PRIOR if prior.latent else PIXEL_PRIOR
    trained = prior.trained_orbit
    if trained is None:
        return kind
    low, high = trained.elevation_deg
    return replace(kind, orbit=replace(trained, elevation_deg=(low, min(high, DEFAULT_ORBIT.elevation_deg[1]))))
