"""The server's pipeline entry point: one job request (already validated by server/schema.py) to the
bytes the client receives. Loaded in the server's worker process as
`propdreamer.core.jobs:run_job`; the prior is loaded once per worker and kept.

- generate / refine: the result is a GLB.
- texture: the result is a GLB of the artist's own mesh, untouched and in its vertex order, with the UV
  map the texture was baked into and the texture. The add-on uploads one vertex per face corner (loop)
  with the UVs to bake into, so the result's UVs go back to those loops one for one.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .priors.base import DiffusionPrior

_PRIORS: dict[tuple[str, str], Any] = {}


def _prior(settings: dict):
    from .priors.diffusers_prior import PriorConfig, load_prior

    key = (settings.get("prior", "builtin"), settings.get("device", "auto"))
    if key not in _PRIORS:
        _PRIORS[key] = load_prior(PriorConfig(source=key[0], device=key[1]))
    return _PRIORS[key]


def capabilities(settings: dict) -> dict[str, Any]:
    """What this machine gives the pipeline, checked when the server's worker starts (reported in
    `welcome`): which compositor renders Gaussians (gsplat's CUDA kernels, or the PyTorch fallback when
    they cannot be built)."""
    import torch

    from .gaussians.kernels import kernel_status

    device = settings.get("device", "auto")
    cuda = torch.cuda.is_available() if device == "auto" else str(device).startswith("cuda")
    return {"gaussians": kernel_status(cuda).to_body()}


def texture_uvs(request, uvs: np.ndarray | None) -> np.ndarray | None:
    """The UV map a texture job bakes into (request.uvs: auto / keep / new), or None for a new unwrap."""
    if request.uvs == "keep" and uvs is None:
        raise ValueError(
            "the request asks to bake into the mesh's UV map (uvs='keep') but the uploaded mesh has none: export it with its UVs (TEXCOORD_0), or ask for a new unwrap (uvs='new')"
        )
    return None if request.uvs == "new" else uvs


def run_request(prior: DiffusionPrior, resolved, input_mesh: bytes | None, callbacks) -> bytes:
    """Run a resolved request (core/resolve.py) to the bytes the client receives: the server's worker
    and `propdreamer generate` both come here."""
    from .gltf import read_mesh, textured_glb
    from .pipeline import generate, refine_mesh, texture_mesh

    request, config = resolved.request, resolved.config
    if request.kind == "generate":  # a cancel raises core.cancel.Cancelled, which the server's worker catches
        result = generate(prior, request.prompt, config, callbacks)
        glb = result.glb
    else:
        vertices, faces, uvs = read_mesh(input_mesh or b"")
        if request.kind == "refine":
            result = refine_mesh(prior, request.prompt, vertices, faces, config, callbacks)
            glb = result.glb
        else:
            textured = texture_mesh(prior, request.prompt, vertices, faces, config, callbacks, uvs=texture_uvs(request, uvs))
            glb = textured_glb(textured.vertices, textured.faces, textured.uvs, textured.texture_png)
            return with_provenance(glb, resolved, prior, textured.seconds)
    return with_provenance(glb, resolved, prior, result.seconds)


def with_provenance(glb: bytes, resolved, prior: DiffusionPrior, seconds: dict[str, float]) -> bytes:
    """The result with its manifest (core/provenance.py): the request, what ran, the prior and its
    weights' digest, the stages' times."""
    from . import provenance

    record = provenance.manifest(resolved.request.to_body(), resolved.settings, prior.source, prior.folder, seconds)
    return provenance.attach(glb, record)


def run_job(body: dict, input_mesh: bytes | None, job) -> bytes:
    """The server's pipeline: the request as the spool keeps it -> resolved against this worker's prior
    (reported as the job's first event, `resolved`) -> the result."""
    from .images import to_uint8
    from .request import JobRequest
    from .resolve import resolve
    from .shape_init import ShapEConfig
    from .stage1.trainer import Callbacks, Progress

    settings = getattr(job, "settings", {}) or {}
    prior = _prior(settings)
    resolved = resolve(
        JobRequest.from_body(body), prior, ShapEConfig(source=settings["shap_e"]) if settings.get("shap_e") else None
    )  # a prompt the prior cannot read fails here, before any step
    job.event("resolved", {"settings": resolved.settings, "warnings": list(resolved.warnings)})

    def progress(p: Progress) -> None:
        job.progress(p.stage, p.step, p.total, eta_s=p.eta_s, losses=p.losses)
        if p.preview is not None:
            from PIL import Image

            buffer = io.BytesIO()
            Image.fromarray(to_uint8(p.preview[None])[0]).save(buffer, format="PNG")
            job.preview(buffer.getvalue())

    return run_request(prior, resolved, input_mesh, Callbacks(progress=progress, should_cancel=job.cancelled))
