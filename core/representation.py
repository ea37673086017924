"""The one base every stage-one representation (NeRF, 3D Gaussians) implements for the trainer.

Hooks take one context object each (gsplat's strategy shape): `before_step(StepInfo)` runs before the
render (NeRF updates its occupancy grid), `after_backward(StepInfo)` after the loss's backward (Gaussians
densify and prune). Renders return premultiplied colour and coverage; the trainer adds the background.
Geometry queries (`density`, `albedo`) let stage two and the benchmark read the result without knowing
which representation made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import Tensor, nn

from .cameras import Cameras
from .shading import ShadingConfig, ShadingMode


@dataclass
class RenderRequest:
    cameras: Cameras
    resolution: int
    mode: ShadingMode = "albedo"
    light: Tensor | None = None  # [B, 3] unit vectors toward the light (diffuse, textureless)
    shading: ShadingConfig = field(default_factory=ShadingConfig)
    generator: torch.Generator | None = None
    normal_smooth_step: float = 0.0  # > 0: also return R_smooth with normals perturbed by this much (NeRF)
    normal_smooth_share: float = 1.0  # R_smooth over this random share of the evaluated samples (1: all, as the reference)


@dataclass
class ShapeTerms:
    """A render's own regularisers, unweighted, each a scalar; None where the representation has none of
    the kind. Weighted by the same-named fields of `stage1.defaults.RegulariserWeights`."""

    orientation: Tensor | None = None  # NeRF: DreamFusion's R_orient, normals facing away from the camera
    normal_smooth: Tensor | None = None  # NeRF: mean |n(x) - n(x + eps)|, eps ~ N(0, step^2 I) (stable-dreamfusion's 3D normal smoothness)
    normal_consistency: Tensor | None = None  # meshes: 1 - n_f . n_g over adjacent faces
    laplacian: Tensor | None = None  # meshes: |v - mean(neighbours)|^2

    def present(self) -> dict[str, Tensor]:
        """The terms this render has, by name (for progress reports)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass
class Rendered:
    premult: Tensor  # [B, 3, H, W] colour times coverage
    alpha: Tensor  # [B, 1, H, W] coverage in [0, 1]
    depth: Tensor  # [B, 1, H, W] expected camera depth (along the camera's -Z); 0 where empty
    regularisers: ShapeTerms = field(default_factory=ShapeTerms)


@dataclass
class StepInfo:
    step: int
    steps: int


class Representation(nn.Module):
    kind: str = "base"

    def render(self, request: RenderRequest) -> Rendered:
        raise NotImplementedError

    def optimisers(self, lr_scale: float = 1.0) -> dict[str, torch.optim.Optimizer]:
        """Its own optimisers, one learning rate per parameter group."""
        raise NotImplementedError

    def before_step(self, info: StepInfo) -> None:
        return None

    def after_backward(self, info: StepInfo) -> None:
        return None

    def checkpoint_state(self) -> dict:
        return self.state_dict()

    def load_state(self, state: dict) -> None:
        """Restore `checkpoint_state()`; call `optimisers()` again afterwards."""
        self.load_state_dict(state)

    def density(self, x: Tensor) -> Tensor:
        """Density (NeRF) or opacity field (Gaussians) [N] at world points x [N, 3]."""
        raise NotImplementedError

    def albedo(self, x: Tensor) -> Tensor:
        """Albedo [N, 3] in [0, 1] at world points x [N, 3]."""
        raise NotImplementedError

    @property
    def bound(self) -> float:
        """Everything lies inside [-bound, bound]^3."""
        raise NotImplementedError
