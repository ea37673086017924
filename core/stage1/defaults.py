"""Stage one's defaults that depend on the prior: what an unset field of a job request becomes.

`core/resolve.py` reads these to turn a request into a fully explicit config; the trainer falls back
to them when a config built in code leaves a field unset. Each figure behind a choice is in
BENCHMARKS.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..cameras import OrbitRange
from ..guidance import pixel_prior_scale
from ..guidance.timesteps import TimestepSchedule

if TYPE_CHECKING:
    from ..priors.base import DiffusionPrior


@dataclass(frozen=True)
class RegulariserWeights:
    orientation: float = 1e-2  # DreamFusion's R_orient
    sparsity: float = 10.0  # mean coverage: pushes empty space empty
    opaque: float = 1e-3  # binary entropy of coverage: pushes pixels to fully covered or empty
    normal_consistency: float = 0.5  # meshes (stage two): 1 - n_f . n_g over adjacent faces
    laplacian: float = 100.0  # meshes: |v - mean(neighbours)|^2 (a tiny number: squared fractions of a cell)


# Measured on the builtin (pixel) prior with benchmarks/synthetic3d.py (BENCHMARKS.md): annealed
# timesteps stop carving the blob before thin or pointed shapes form (cones end as balls); the top
# of the range is where shape changes. On the first builtin prior (trained on elevations up to 80
# degrees) the top also rounded flat faces off (t_max 0.98: cubes and pyramids nearest a sphere or
# cube; 0.85 kept both, 0.7 left cones as balls). On the shipped prior, whose last run saw elevations
# -10 to 30 only, high-t predictions no longer average over views from above: t_max 0.95 makes both
# cones cones (0.35 / 0.42 IoU -> 0.78 / 0.80) and keeps the cubes. At the library weights the
# opacity-entropy term is about 1e-5 of the SDS gradient, leaving a speckled, half-transparent
# volume. Latent priors keep the literature's settings (not yet measured on a GPU).
PIXEL_PRIOR_TIMESTEPS = TimestepSchedule("uniform", t_max=0.95)
LATENT_PRIOR_TIMESTEPS = TimestepSchedule("sqrt", t_max=0.98)
PIXEL_PRIOR_REGULARISERS = RegulariserWeights(opaque=100.0)
# SDS on the builtin prior in 3D: CFG 10, not 2D's 30. At 30 the prior's denoised predictions of a
# render overshoot (saturated colours, magenta backgrounds, shapes scrambled from t = 0.5 up); at 10
# they stay a plausible object. Measured on the 12-prompt benchmark: same 7/12 nearest, mean IoU
# 0.566 -> 0.599, colour delta-E 15.1 -> 13.5, spheres 0.89 -> 0.98 (BENCHMARKS.md).
PIXEL_PRIOR_SDS_SCALE_3D = 10.0


def default_guidance_scale(method: str, prior: DiffusionPrior) -> float | None:
    """The CFG scale when the config names none; None: the method's paper default."""
    if method == "sds" and not prior.latent:
        return PIXEL_PRIOR_SDS_SCALE_3D
    return pixel_prior_scale(method, prior.latent)


# VSD's LoRA step on the builtin prior fits one of each step's four renders, drawn at random (the same
# loss in expectation): a draft stage one's step 0.289 -> 0.243 s on 2 CPU cores, which still leaves
# VSD on a NeRF up to 91.9 s a prompt against the 90 s target (BENCHMARKS.md). On Stable Diffusion it
# fits the whole batch.
PIXEL_PRIOR_VSD_LORA_BATCH = 1


def default_guidance_options(method: str, prior: DiffusionPrior) -> dict:
    return {"lora_batch": PIXEL_PRIOR_VSD_LORA_BATCH} if method == "vsd" and not prior.latent else {}


# VSD on a latent prior follows ProlificDreamer: t uniform in [0.02, 0.98] T, t_max annealed to 0.5 T
# once 20% of the run has passed (threestudio's configs/prolificdreamer.yaml: 0.98 -> 0.5 at step 5,000
# of 25,000). Not yet measured here (no GPU); on the pixel prior VSD keeps the measured pixel schedule.
VSD_LATENT_PRIOR_TIMESTEPS = TimestepSchedule("step", t_min=0.02, t_max=0.98, annealed_max=0.5, anneal_at=0.2)


def default_timesteps(prior: DiffusionPrior, method: str | None = None) -> TimestepSchedule:
    if not prior.latent:
        return PIXEL_PRIOR_TIMESTEPS
    return VSD_LATENT_PRIOR_TIMESTEPS if method == "vsd" else LATENT_PRIOR_TIMESTEPS


# Where stage one's cameras stand by default: elevations -10 to 60 degrees (DreamFusion's range, up to
# the view rule's overhead threshold). A prior that records the cameras it was trained on (the builtin
# one) gets those ranges instead, capped at the same 60 degrees: a view-blind prior's picture of an
# object at high noise is an average over its training elevations, and SDS pulls every render toward
# that average, so the cameras should not stray outside it. The builtin prior's last run rendered from
# -10 to 30 degrees (BENCHMARKS.md: its cylinders stopped being buckets).
DEFAULT_ORBIT = OrbitRange(elevation_deg=(-10.0, 60.0))


def default_orbit(prior: DiffusionPrior) -> OrbitRange:
    trained = prior.trained_orbit
    if trained is None:
        return DEFAULT_ORBIT
    low, high = trained.elevation_deg
    return replace(trained, elevation_deg=(low, min(high, DEFAULT_ORBIT.elevation_deg[1])))


def default_regularisers(prior: DiffusionPrior) -> RegulariserWeights:
    return RegulariserWeights() if prior.latent else PIXEL_PRIOR_REGULARISERS
