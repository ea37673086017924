"""The distillation trainer every stage runs: stage one distils a NeRF or 3D Gaussians out of a 2D prior
(DreamFusion's loop, Magic3D's coarse stage); stage two runs the same loop on a DMTet mesh, first its
geometry, then its texture (core/pipeline.py), each with its own `StagePreset`.

Each step: sample a batch of cameras (stratified azimuths), pick a shading mode and lights, render,
composite over the background, and let the guidance method turn the renders into an update; add the
regularisers, step every optimiser, then the method steps its own trainables. Cancellation is checked
every step; progress (which reads values back from the device) only every `report_every` steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..background import Background, BackgroundConfig
from ..cameras import Cameras, OrbitRange, ViewPromptRule, camera_rays, cameras_from_matrices, orbit_cameras, sample_orbit
from ..cancel import Cancelled
from ..device import to_device
from ..guidance import Guidance, build_guidance
from ..guidance.timesteps import TimestepSchedule
from ..priors.base import DiffusionPrior
from ..representation import Rendered, RenderRequest, Representation, StepInfo
from ..request import AUTO_METHOD, RepresentationName, StartName
from ..shading import ShadingConfig, ShadingMode, light_directions
from ..shape_init import ShapEConfig
from .defaults import RegulariserWeights
from .presets import StagePreset, get_preset

DEFAULT_METHOD: dict[str, str] = AUTO_METHOD


@dataclass(frozen=True)
class DistillationConfig:
    representation: RepresentationName = "nerf"
    method: str | None = None  # None: DEFAULT_METHOD for the representation
    preset: str = "draft"
    steps: int | None = None  # None: the preset's
    seed: int = 0
    guidance_scale: float | None = None  # None: the prior's (prior.defaults; 10 for SDS, 30 for SSD on pixel priors)
    timesteps: TimestepSchedule | None = None  # None: the prior's for the method
    shading: ShadingConfig = field(default_factory=ShadingConfig)
    background: BackgroundConfig | None = None  # None: white for pixel priors, an MLP for latent priors
    orbit: OrbitRange | None = None  # None: the prior's
    # Explicit cameras from Blender replace the orbit: row-major 4x4 camera-to-world matrices and fovs.
    explicit_c2w: tuple[tuple[float, ...], ...] = ()
    explicit_fov_deg: tuple[float, ...] = ()
    view_prompts: ViewPromptRule | None = field(default_factory=ViewPromptRule)  # None: the bare prompt
    regularisers: RegulariserWeights | None = None  # None: the prior's
    supersample: int = 1  # s: render s x s rays a pixel and average them, a box filter (1: one ray a pixel)
    # Any other field of the method's config, e.g. {"negative_prompt": ...} (NFSD), {"depth_estimator": FOLDER} (SSD).
    guidance_options: dict = field(default_factory=dict)
    init: StartName = "ball"  # where `generate` starts stage one (core/shape_init.py)
    shap_e: ShapEConfig = field(default_factory=ShapEConfig)  # which Shap-E, when init is "shap-e"
    face_budget: int | None = None  # the exported mesh's most triangles (stage two's export); None: the preset's
    lods: int = 1  # levels of detail stage two exports (core/mesh/lod.py); 1: LOD0 alone, no normal map

    def __post_init__(self) -> None:
        if len(self.explicit_c2w) != len(self.explicit_fov_deg) or any(len(m) != 16 for m in self.explicit_c2w):
            raise ValueError("explicit cameras need one 16-number matrix and one field of view each")
        if self.representation not in DEFAULT_METHOD:
            raise ValueError(f"representation must be 'nerf' or 'gaussians', got '{self.representation}'")
        get_preset(self.preset)  # raises with the list of presets
        if self.init not in ("ball", "shap-e"):
            raise ValueError(f"init must be 'ball' or 'shap-e', got '{self.init}'")
        if not 1 <= self.supersample <= 4:
            raise ValueError(f"supersample must be 1 (off) to 4 rays a pixel per side, got {self.supersample}")

    @property
    def resolved_method(self) -> str:
        return self.method or DEFAULT_METHOD[self.representation]

    def resolved_preset(self) -> StagePreset:
        return get_preset(self.preset, self.steps)


@dataclass
class Progress:
    stage: str
    step: int  # steps done
    total: int
    losses: dict[str, float]
    eta_s: float
    preview: Tensor | None = None  # [3, H, W] turntable strip, on the report steps that carry one


@dataclass
class Callbacks:
    progress: Callable[[Progress], None] | None = None
    should_cancel: Callable[[], bool] | None = None


@dataclass
class DistillationResult:
    representation: Representation
    background: Background
    config: DistillationConfig
    steps: int
    seconds: float


def build_representation(config: DistillationConfig, preset: StagePreset, init_points: Tensor | None = None, init_colours: Tensor | None = None) -> Representation:
    generator = torch.Generator().manual_seed(config.seed)
    if config.representation == "nerf":
        if init_points is not None:
            raise ValueError("a NeRF cannot start from points; use representation 'gaussians' to seed stage one from a mesh")
        from ..nerf.model import NeRF

        return NeRF(preset.nerf)
    from ..gaussians.model import Gaussians

    return Gaussians(preset.gaussians, init_points, init_colours, generator)


def turntable_cameras(n: int, elevation_deg: float = 20.0, distance: float = 2.2, fov_deg: float = 40.0, device: torch.device | str = "cpu") -> Cameras:
    """`n` cameras evenly around the object, starting at the front."""
    az = torch.arange(n, dtype=torch.float32) * 360.0 / n
    full = lambda v: torch.full((n,), v, dtype=torch.float32)
    return orbit_cameras(full(elevation_deg), az, full(distance), full(fov_deg)).to(device)


@torch.no_grad()
def render_views(rep: Representation, background: Background, cameras: Cameras, resolution: int, shading: ShadingConfig, mode: ShadingMode = "diffuse") -> Tensor:
    """Deterministic renders [B, 3, H, W] lit from each camera (previews, turntables, the benchmark)."""
    was_training = rep.training
    rep.eval()
    light = F.normalize(cameras.c2w[:, :3, 3], dim=-1)
    out = rep.render(RenderRequest(cameras, resolution, mode, light, shading))
    _, dirs = camera_rays(cameras, resolution)
    images = background.composite(out.premult, out.alpha, dirs).clamp(0, 1)
    rep.train(was_training)
    return images


class DistillationTrainer:
    """One stage's distillation for one prompt (stage one by default; stage two passes its mesh, preset and
    `stage` name); `run()` trains, `save` / `load` checkpoint and resume."""

    def __init__(
        self,
        prior: DiffusionPrior,
        prompt: str,
        config: DistillationConfig = DistillationConfig(),
        init_points: Tensor | None = None,
        init_colours: Tensor | None = None,
        representation: Representation | None = None,
        preset: StagePreset | None = None,
        stage: str = "coarse",
    ) -> None:
        """Stage one by default; stage two passes its own mesh `representation`, `preset` and `stage` name."""
        if not prompt.strip():
            raise ValueError("the prompt is empty; describe the object, e.g. 'a red cube'")
        self.prior, self.prompt, self.config, self.stage = prior, prompt, config, stage
        self.preset = preset or config.resolved_preset()
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        device = prior.device
        self.rep = (representation or build_representation(config, self.preset, init_points, init_colours)).to(device)
        background = config.background or BackgroundConfig(kind="mlp" if prior.latent else "white")
        self.background = Background(background).to(device)
        method, defaults = config.resolved_method, prior.defaults
        scale = config.guidance_scale if config.guidance_scale is not None else defaults.guidance_scale(method)
        self.regularisers = config.regularisers or defaults.regularisers
        self.orbit = config.orbit or defaults.orbit
        options = {
            "timesteps": config.timesteps or defaults.timesteps_for(method),
            **({"guidance_scale": scale} if scale is not None else {}),
            **defaults.options_for(method),
            **config.guidance_options,
        }
        self.guidance: Guidance = build_guidance(method, prior, **options)
        # View-dependent prompts: the configured rule, naming elevation bands too when the prior was trained on them.
        self.view_rule = config.view_prompts
        trained = prior.view_rule
        if self.view_rule is not None and not self.view_rule.elevation_bands and trained is not None and trained.elevation_bands:
            self.view_rule = replace(self.view_rule, elevation_bands=trained.elevation_bands)
        self.optimisers = self.rep.optimisers()
        if self.background.mlp is not None:
            self.optimisers["background"] = torch.optim.Adam(self.background.parameters(), lr=1e-3)
        self.step = 0

    # -- one step ------------------------------------------------------------------------------
    def prompts_for(self, cameras: Cameras) -> list[str]:
        rule = self.view_rule
        return [self.prompt + s for s in rule.suffixes(cameras)] if rule is not None else [self.prompt] * len(cameras)

    def sample_cameras(self, n: int) -> Cameras:
        c = self.config
        if not c.explicit_c2w:
            return sample_orbit(n, self.orbit, self.generator)
        pick = torch.randint(0, len(c.explicit_c2w), (n,), generator=self.generator)
        c2w = torch.tensor(c.explicit_c2w, dtype=torch.float32).reshape(-1, 4, 4)[pick]
        return cameras_from_matrices(c2w, torch.tensor(c.explicit_fov_deg, dtype=torch.float32)[pick])

    def train_step(self) -> dict[str, Tensor]:
        c, preset, step = self.config, self.preset, self.step
        device = self.prior.device
        cameras = self.sample_cameras(preset.batch).to(device)
        resolution = preset.resolution(step, self.prior.image_size)
        s = c.supersample  # the builtin prior's training renders average 2 x 2 rays a pixel (builtin_prior/render.py)
        mode = c.shading.sample_mode(self.generator)
        light = to_device(light_directions(cameras, c.shading.light_jitter, self.generator), device)
        self.rep.before_step(StepInfo(step, preset.steps))
        w = self.regularisers
        smooth_step = w.normal_smooth_step if w.normal_smooth > 0 else 0.0
        out: Rendered = self.rep.render(RenderRequest(cameras, resolution * s, mode, light, c.shading, self.generator, smooth_step, w.normal_smooth_share))
        _, dirs = camera_rays(cameras, resolution * s)
        images = self.background.composite(out.premult, out.alpha, dirs, self.generator)  # [B, 3, sH, sW]
        box = lambda x: F.avg_pool2d(x, s) if x is not None and s > 1 else x  # [B, C, sH, sW] -> [B, C, H, W]
        images, alpha, depth = box(images), box(out.alpha), box(out.depth)
        g = self.guidance(
            images,
            self.prompts_for(cameras),
            step,
            preset.steps,
            cameras=cameras,
            alpha=alpha,
            depth=depth,
            generator=self.generator,
            plain_prompts=[self.prompt] * len(cameras),
            shading=mode,
        )
        r = out.regularisers
        a = out.alpha.clamp(1e-5, 1 - 1e-5)
        sparsity, opaque = out.alpha.mean(), -(a * a.log() + (1 - a) * (1 - a).log()).mean()
        weighted = [(w.sparsity, sparsity), (w.opaque, opaque), (w.orientation, r.orientation), (w.normal_smooth, r.normal_smooth)]
        weighted += [(w.normal_consistency, r.normal_consistency), (w.laplacian, r.laplacian)]
        loss = g.loss + sum(weight * term for weight, term in weighted if term is not None)
        terms = {"guidance": g.loss, "sparsity": sparsity, "opaque": opaque, **r.present()}
        for opt in self.optimisers.values():
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in self.optimisers.values():
            opt.step()
        self.rep.after_backward(StepInfo(step, preset.steps))
        self.step += 1
        return {**{k: v.detach() for k, v in terms.items()}, "update_norm": g.update_norm, "t": g.t.float().mean(), **g.losses}

    # -- the loop ------------------------------------------------------------------------------
    def run(self, callbacks: Callbacks = Callbacks()) -> DistillationResult:
        preset = self.preset
        start_step, t0 = self.step, time.time()
        while self.step < preset.steps:
            if callbacks.should_cancel is not None and callbacks.should_cancel():
                raise Cancelled(f"{self.stage} stage cancelled at step {self.step} of {preset.steps}")
            terms = self.train_step()
            done = self.step
            if callbacks.progress is not None and (done % preset.report_every == 0 or done == preset.steps):
                elapsed = time.time() - t0
                eta = elapsed / (done - start_step) * (preset.steps - done)
                preview = self.preview() if (done % preset.preview_every == 0 or done == preset.steps) else None
                callbacks.progress(Progress(self.stage, done, preset.steps, {k: float(v) for k, v in terms.items()}, eta, preview))
        return DistillationResult(self.rep, self.background, self.config, self.step, time.time() - t0)

    def preview(self, views: int = 4) -> Tensor:
        """[3, H, B*W]: a strip of `views` turntable renders."""
        cams = turntable_cameras(views, device=self.prior.device)
        images = render_views(self.rep, self.background, cams, self.preset.resolution(self.step, self.prior.image_size), self.config.shading)
        return torch.cat(list(images.cpu()), dim=-1)

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": "propdreamer-coarse-1",
            "prompt": self.prompt,
            "config": asdict(self.config),
            "step": self.step,
            "representation": self.rep.checkpoint_state(),
            "background": self.background.state_dict(),
            "optimisers": {k: o.state_dict() for k, o in self.optimisers.items()},
            "guidance": self.guidance.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path)
        return path

    def load(self, path: str | Path) -> None:
        state = torch.load(Path(path), map_location=self.prior.device, weights_only=False)
        if state.get("format") != "propdreamer-coarse-1":
            raise ValueError(f"{path} is not a PropDreamer stage-one checkpoint")
        if state["prompt"] != self.prompt or state["config"] != asdict(self.config):
            raise ValueError(f"{path} was saved for prompt '{state['prompt']}' with another config; resume with the same prompt and settings")
        self.rep.load_state(state["representation"])
        self.optimisers = self.rep.optimisers()
        if self.background.mlp is not None:
            self.optimisers["background"] = torch.optim.Adam(self.background.parameters(), lr=1e-3)
        for k, o in self.optimisers.items():
            o.load_state_dict(state["optimisers"][k])
        self.background.load_state_dict(state["background"])
        self.guidance.load_state_dict(state["guidance"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.step = state["step"]
