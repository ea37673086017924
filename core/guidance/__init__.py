"""Score-distillation methods behind one interface (`base.Guidance`); one file per method."""

from __future__ import annotations

import dataclasses

from ..priors.base import DiffusionPrior
from .base import Guidance, GuidanceConfig, GuidanceContext, GuidanceOutput
from .nfsd import NFSD, NFSDConfig
from .sds import SDS, SDSConfig
from .ssd import SSD, SSDConfig
from .vdm import VDM, VDMConfig
from .vsd import VSD, VSDConfig

METHODS: dict[str, tuple[type[Guidance], type[GuidanceConfig]]] = {
    "sds": (SDS, SDSConfig),
    "nfsd": (NFSD, NFSDConfig),
    "vsd": (VSD, VSDConfig),
    "ssd": (SSD, SSDConfig),
    "vdm": (VDM, VDMConfig),
}


def build_guidance(method: str, prior: DiffusionPrior, **overrides) -> Guidance:
    """The named method with its papers' defaults, any config field overridden by keyword."""
    if method not in METHODS:
        raise ValueError(f"unknown guidance method '{method}'; choose one of {sorted(METHODS)}")
    cls, config_cls = METHODS[method]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"{config_cls.__name__} has no field(s) {unknown}; its fields are {sorted(fields)}")
    return cls(prior, config_cls(**overrides))


__all__ = ["METHODS", "Guidance", "GuidanceConfig", "GuidanceContext", "GuidanceOutput", "build_guidance"]
