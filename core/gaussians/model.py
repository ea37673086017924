"""3D Gaussians for stage one (DreamGaussian / DreamMapping): splats with an albedo each, shaded per
view, rasterised by gsplat on CUDA or the PyTorch reference elsewhere, densified and pruned by gsplat's
DefaultStrategy (pure PyTorch, so the same strategy runs on the CPU).

Shading needs a normal per splat: the axis of its smallest scale, flipped to face the camera (a flat
splat's normal). Parameters, as gsplat's strategy expects them: means, log scales, quaternions (wxyz),
opacity logits, and albedo logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..cameras import opencv_cameras
from ..representation import Rendered, RenderRequest, Representation, StepInfo
from ..shading import shade
from .field import filtered_covariances, sample_grid, solid_grid
from .init import GaussianInit
from .projection import EPS2D, Splats, quat_to_rotmat
from .rasterize import rasterize


@dataclass(frozen=True)
class DensifyConfig:
    """gsplat DefaultStrategy settings, in steps of this run (the paper values assume 5000+ steps)."""

    start: int = 100
    stop: int = 1000
    every: int = 50
    reset_every: int = 10_000
    grow_grad2d: float = 0.0002
    prune_opacity: float = 0.01
    max_gaussians: int = 4096  # a cap: beyond it the least opaque are removed (CPU renders scale with N)


@dataclass(frozen=True)
class GaussiansConfig:
    init: GaussianInit = field(default_factory=GaussianInit)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    bound: float = 1.0  # splat centres are clamped to [-bound, bound]^3
    field_resolution: int = 64  # voxels per axis of the solid that density() reads (field.py)
    seal_pixels: float = 2.0  # field.py: gaps in the shell up to this many training-render pixels wide are closed
    # Learning rates (DreamGaussian's): position, log scale, rotation, opacity logit, albedo logit.
    lr_means: float = 1e-3
    lr_scales: float = 5e-3
    lr_quats: float = 5e-3
    lr_opacities: float = 5e-2
    lr_albedo: float = 1e-2


class Gaussians(Representation):
    kind = "gaussians"

    footprint: Tensor  # a registered buffer (see __init__)

    def __init__(self, config: GaussiansConfig = GaussiansConfig(), points: Tensor | None = None, colours: Tensor | None = None, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        params = config.init.make(points, colours, generator)
        self.params = nn.ParameterDict({k: nn.Parameter(v) for k, v in params.items()})
        from gsplat.strategy import DefaultStrategy

        d = config.densify
        self.strategy = DefaultStrategy(
            prune_opa=d.prune_opacity,
            grow_grad2d=d.grow_grad2d,
            refine_start_iter=d.start,
            refine_stop_iter=d.stop,
            refine_every=d.every,
            reset_every=d.reset_every,
            prune_scale3d=0.5,
            grow_scale3d=0.01,
        )
        self.strategy_state = self.strategy.initialize_state(scene_scale=1.0)
        self._optimisers: dict[str, torch.optim.Optimizer] | None = None
        self._info: dict | None = None
        # The finest sampling of any training render: world size of sqrt(eps2d) pixels at the object's
        # centre (field.py's 3D filter). A tensor, so that recording it costs no host sync.
        self.register_buffer("footprint", torch.tensor(float("inf")))

    @property
    def bound(self) -> float:
        return self.config.bound

    def __len__(self) -> int:
        return self.params["means"].shape[0]

    def splats(self) -> Splats:
        p = self.params
        return Splats(means=p["means"], quats=p["quats"], scales=torch.exp(p["scales"]), opacities=torch.sigmoid(p["opacities"]))

    def normals(self, camera_centres: Tensor) -> Tensor:
        """[C, N, 3]: each splat's shortest axis, facing the camera."""
        p = self.params
        axes = quat_to_rotmat(p["quats"])  # [N, 3, 3], columns are the splat's axes
        shortest = p["scales"].argmin(-1)  # [N]
        n = axes.gather(2, shortest[:, None, None].expand(-1, 3, 1)).squeeze(-1)  # [N, 3]
        to_camera = camera_centres[:, None] - p["means"][None]  # [C, N, 3]
        sign = torch.where((n[None] * to_camera).sum(-1, keepdim=True) < 0, -1.0, 1.0)
        return n[None] * sign

    def render(self, request: RenderRequest) -> Rendered:
        cams, res = request.cameras, request.resolution
        albedo = torch.sigmoid(self.params["albedo"])[None].expand(len(cams), -1, -1)  # [C, N, 3]
        normals = self.normals(cams.c2w[:, :3, 3]) if request.mode != "albedo" else None
        light = request.light[:, None, :] if request.light is not None else None
        colours = shade(albedo, normals, light, request.mode, request.shading)
        viewmats, Ks = opencv_cameras(cams, res)
        if self.training:
            with torch.no_grad():
                self.footprint = torch.minimum(self.footprint, (cams.distance / cams.focal_px(res)).min() * EPS2D**0.5)
        rgb, alpha, depth, info = rasterize(self.splats(), colours, viewmats, Ks, res, res)
        self._info = info
        if self.training and torch.is_grad_enabled():
            self.strategy.step_pre_backward(self.params, self._optimisers or {}, self.strategy_state, 0, info)
        to_image = lambda v: v.permute(0, 3, 1, 2)  # [C, H, W, k] -> [C, k, H, W]
        return Rendered(premult=to_image(rgb), alpha=to_image(alpha), depth=to_image(depth) * (to_image(alpha) > 1e-4))

    def optimisers(self, lr_scale: float = 1.0) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        lrs = {"means": c.lr_means, "scales": c.lr_scales, "quats": c.lr_quats, "opacities": c.lr_opacities, "albedo": c.lr_albedo}
        self._optimisers = {k: torch.optim.Adam([{"params": [self.params[k]], "lr": lr * lr_scale, "name": k}], eps=1e-15) for k, lr in lrs.items()}
        return self._optimisers

    def checkpoint_state(self) -> dict:
        # The splat count changes as the strategy densifies, so parameters are saved as plain tensors.
        return {"params": {k: v.detach().clone() for k, v in self.params.items()}, "strategy": dict(self.strategy_state), "footprint": self.footprint.clone()}

    def load_state(self, state: dict) -> None:
        device = self.params["means"].device
        self.params = nn.ParameterDict({k: nn.Parameter(v.to(device)) for k, v in state["params"].items()})
        self.strategy_state = dict(state["strategy"])
        if "footprint" in state:
            self.footprint = state["footprint"].to(device)

    def after_backward(self, info: StepInfo) -> None:
        if self._info is None or self._optimisers is None:
            return
        self.strategy.step_post_backward(self.params, self._optimisers, self.strategy_state, info.step, self._info)
        self._info = None
        excess = len(self) - self.config.densify.max_gaussians
        if excess > 0:
            from gsplat.strategy.ops import remove

            least = torch.zeros(len(self), dtype=torch.bool, device=self.params["means"].device)
            least[self.params["opacities"].detach().argsort()[:excess]] = True
            remove(self.params, self._optimisers, self.strategy_state, least)
        with torch.no_grad():
            self.params["means"].clamp_(-self.bound, self.bound)

    def filter_std(self) -> float:
        """field.py's 3D filter: 0 until a training render has recorded its footprint."""
        f = float(self.footprint)
        return f if f != float("inf") else 0.0

    @torch.no_grad()
    def density(self, x: Tensor) -> Tensor:
        """The solid the splats describe [P] in [0, 1] (field.py): filtered opacity, enclosed space filled."""
        s = self.splats()
        cpu = Splats(*(t.detach().float().cpu() for t in (s.means, s.quats, s.scales, s.opacities)))
        std = self.filter_std()
        pixel = std / EPS2D**0.5  # world size of a pixel of the finest training render
        grid = solid_grid(cpu, self.bound, self.config.field_resolution, std, self.config.seal_pixels * pixel)
        return sample_grid(grid, self.bound, x.detach().float().cpu()).to(x.device)

    @torch.no_grad()
    def albedo(self, x: Tensor) -> Tensor:
        """[P, 3]: the albedo of the splats near each point, weighted by their filtered opacity there
        (normalised in log space, so a point inside the solid, far from every splat, takes its nearest)."""
        s = self.splats()
        a = torch.sigmoid(self.params["albedo"])
        precision = torch.linalg.inv(filtered_covariances(s, self.filter_std()))  # [N, 3, 3]
        log_o = s.opacities.clamp(min=1e-8).log()
        out = []
        for c in x.split(1024):
            d = c[:, None, :] - s.means[None]  # [P, N, 3]
            log_w = log_o[None] - 0.5 * torch.einsum("pni,nij,pnj->pn", d, precision, d)
            out.append(torch.softmax(log_w, dim=1) @ a)
        return torch.cat(out)
