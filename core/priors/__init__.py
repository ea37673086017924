"""Frozen text-to-image diffusion priors behind one interface (`base.DiffusionPrior`)."""

from .base import DiffusionPrior, add_noise, alpha_sigma, v_to_eps
from .diffusers_prior import DiffusersPrior, PriorConfig, load_prior
from .loading import BUILTIN, DEFAULT_SD_ID, PriorNotFoundError, resolve_prior_folder

__all__ = [
    "BUILTIN",
    "DEFAULT_SD_ID",
    "DiffusersPrior",
    "DiffusionPrior",
    "PriorConfig",
    "PriorNotFoundError",
    "add_noise",
    "alpha_sigma",
    "load_prior",
    "resolve_prior_folder",
    "v_to_eps",
]
