"""A job request resolved against the prior that runs it: the one place where "the prior's default"
becomes a value.

Every front end (the add-on through the server, `propdreamer generate`, the benchmarks) sends a
`JobRequest`; `resolve` fills each unset field from the prior (`stage1/defaults.py`), builds the
stage-one config the pipeline runs, and reports what it chose, so the panel and the logs show what
actually ran.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from .builtin_prior import BUILTIN
from .guidance import METHODS as METHOD_CONFIGS
from .priors.base import DiffusionPrior
from .request import AUTO_METHOD, CameraSetup, JobRequest, StartName, prompt_warnings
from .shape_init import ShapEConfig, shap_e_available
from .stage1.defaults import LATENT_PRIOR_TIMESTEPS
from .stage1.presets import get_preset
from .stage1.trainer import DistillationConfig


@dataclass(frozen=True)
class ResolvedJob:
    request: JobRequest
    config: DistillationConfig  # stage one's config (stage two derives its own from it: pipeline.py)
    settings: dict[str, Any]  # what runs, msgpack-able: the `resolved` event and the CLI's report
    warnings: tuple[str, ...] = ()


def _schedule(s) -> dict[str, Any]:
    annealed = {"annealed_max": s.annealed_max, "anneal_at": s.anneal_at} if s.kind == "step" else {}
    return {"kind": s.kind, "t_min": s.t_min, "t_max": s.t_max, **annealed}


def _init(request: JobRequest, method: str, prior_name: str, shap_e: ShapEConfig, warnings: list[str]) -> StartName:
    """Where stage one starts: "shap-e" or "ball" (refine and texture jobs start from their mesh)."""
    if request.kind != "generate" or request.init == "ball":
        return "ball"
    if prior_name == BUILTIN:  # Shap-E pairs with Stable Diffusion; the builtin prior's primitives start well from the ball
        if request.init == "shap-e":
            warnings.append("init 'shap-e' needs a Stable Diffusion prior; the builtin prior starts from the ball")
        return "ball"
    if request.init == "shap-e":  # asked for: a missing model fails the job with what to download
        return "shap-e"
    # auto: DreamMapping's start for its method, when the weights are on this machine (never a download)
    return "shap-e" if method == "vdm" and request.representation == "gaussians" and shap_e_available(shap_e.source) else "ball"


def resolve(request: JobRequest, prior: DiffusionPrior, shap_e: ShapEConfig | None = None) -> ResolvedJob:
    """Raises RequestError when the prompt has no word the prior can read. `shap_e`: the Shap-E model the
    server or the command line was given (the default: openai/shap-e)."""
    shap_e = shap_e or ShapEConfig()
    name = prior.source
    warnings = prompt_warnings(request.prompt, prior.unknown_words(request.prompt), name)
    method = request.method or AUTO_METHOD[request.representation]
    init = _init(request, method, name, shap_e, warnings)
    paper = METHOD_CONFIGS[method][1]()  # the method's own defaults
    prior_defaults = prior.defaults
    scale = request.guidance_scale
    if scale is None:
        scale = prior_defaults.guidance_scale(method)
    if scale is None:  # the method's paper default
        scale = paper.guidance_scale
    steps = request.steps or get_preset(request.preset).steps
    timesteps = None if request.t_range is None else replace(prior_defaults.timesteps_for(method), t_min=request.t_range[0], t_max=request.t_range[1])
    options = prior_defaults.options_for(method)
    if request.negative_prompt:
        options["negative_prompt"] = request.negative_prompt
    cameras = request.cameras or CameraSetup(orbit=prior_defaults.orbit)  # none given: where the prior was trained to look from
    explicit = bool(cameras.matrices)
    orbit = None if explicit else cameras.orbit
    config = DistillationConfig(
        representation=request.representation,
        method=method,
        preset=request.preset,
        steps=steps,
        seed=request.seed,
        guidance_scale=float(scale),
        timesteps=timesteps,
        orbit=orbit,
        guidance_options=options,
        explicit_c2w=cameras.matrices if explicit else (),
        explicit_fov_deg=cameras.fovs_deg if explicit else (),
        init=init,
        shap_e=shap_e,
        face_budget=request.face_budget,
        lods=request.lods,
    )
    defaults = [
        f
        for f, unset in (
            ("method", request.method is None),
            ("guidance_scale", request.guidance_scale is None),
            ("steps", request.steps is None),
            ("t_range", request.t_range is None),
            ("cameras", request.cameras is None),
            ("init", request.kind == "generate" and request.init == "auto"),
            ("face_budget", request.kind != "texture" and request.face_budget is None),
        )
        if unset
    ]
    stage_one = timesteps or prior_defaults.timesteps_for(method)
    negative = request.negative_prompt or (paper.negative_prompt if method == "nfsd" else "")
    settings = {
        "kind": request.kind,
        "prompt": request.prompt,
        "negative_prompt": negative,
        "method": method,
        "representation": request.representation,
        "preset": request.preset,
        "seed": request.seed,
        "steps": steps,
        "guidance_scale": float(scale),
        "timesteps": _schedule(stage_one),
        "refine_timesteps": _schedule(timesteps or LATENT_PRIOR_TIMESTEPS),
        "cameras": {"explicit": len(cameras.matrices)} if explicit else {k: list(v) for k, v in asdict(cameras.orbit).items()},
        "prior": name,
        "defaults": defaults,
        "init": "mesh" if request.needs_mesh else init,
    }
    from .stage2.presets import get_refine_preset

    if request.kind == "texture":  # stage one does not run: the texture stage's steps are what the artist waits for
        settings["texture_steps"] = get_refine_preset(request.preset).texture.steps
    else:  # the exported mesh's most triangles: the artist's, or the preset's
        settings["face_budget"] = request.face_budget or get_refine_preset(request.preset).export.face_budget
        settings["lods"] = request.lods
    return ResolvedJob(request, config, settings, tuple(warnings))
