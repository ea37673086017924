"""The three job kinds, prompt to asset, as functions the server (and the CLI) call.

- generate: prompt -> coarse (NeRF / Gaussians) -> DMTet geometry -> texture -> GLB
- refine:   prompt + a mesh -> the mesh seeds the optimisation (DMTet from its signed distance, or
            Gaussians sampled on its surface) -> geometry -> texture -> GLB
- texture:  prompt + a mesh whose geometry is kept -> a texture image and UVs for every face corner

Every stage reports progress and checks for cancellation each step (`stage1.trainer.Callbacks`).
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from .gltf import lods_glb, to_glb
from .mesh.colour_field import ColourField
from .mesh.dmtet import DMTet, DMTetConfig
from .mesh.export import bake, export_mesh
from .mesh.lod import LodConfig, export_lods
from .mesh.model import MeshModel
from .mesh.uv import into_unit_tile, unwrap, weld
from .priors.base import DiffusionPrior
from .shading import ShadingConfig
from .stage1.defaults import LATENT_PRIOR_TIMESTEPS
from .stage1.trainer import Callbacks, DistillationConfig, DistillationTrainer, RegulariserWeights, render_views, turntable_cameras
from .stage2.presets import RefinePreset, get_refine_preset

log = logging.getLogger(__name__)

GEOMETRY_SHADING = ShadingConfig(probabilities=(0.0, 0.5, 0.5))  # shaded and textureless renders
TEXTURE_SHADING = ShadingConfig(probabilities=(0.2, 0.8, 0.0))


@dataclass
class MeshResult:
    glb: bytes
    preview: Tensor  # [3, H, W] turntable strip of the final mesh
    seconds: dict[str, float] = field(default_factory=dict)
    vertices: np.ndarray | None = None  # the exported mesh in PropDreamer's frame, before unit-box scaling
    faces: np.ndarray | None = None
    uvs: np.ndarray | None = None  # [V, 2]
    texture: np.ndarray | None = None  # [T, T, 3] uint8, the baked base colour


@dataclass
class TextureResult:
    texture_png: bytes
    vertices: np.ndarray  # [V, 3] the input's vertices; a new unwrap splits them along its seams (same positions)
    faces: np.ndarray  # [F, 3] the input's triangles, in its order, over `vertices`
    uvs: np.ndarray  # [V, 2] the UV map the texture is baked into (v up); the input's own when it came with one
    preview: Tensor
    seconds: dict[str, float] = field(default_factory=dict)
    proxy_faces: int = 0  # triangles the texture was optimised on (the input's, or its decimated proxy's)


def _surface_points(vertices: Tensor, faces: Tensor, count: int = 20000) -> Tensor:
    from .geometry.sampling import points_on_mesh

    return points_on_mesh(vertices.detach().cpu().numpy(), faces.cpu().numpy(), count)


def _refine_and_export(prior: DiffusionPrior, prompt: str, config: DistillationConfig, refine: RefinePreset, model: MeshModel, callbacks: Callbacks, seconds: dict) -> MeshResult:
    # Stage two refines a surface: annealed timesteps and the library's regulariser weights, whatever
    # stage one used (its pixel-prior settings are about carving a volume).
    config = replace(config, timesteps=config.timesteps or LATENT_PRIOR_TIMESTEPS, regularisers=config.regularisers or RegulariserWeights())
    t0 = time.time()
    if model.train_geometry:
        DistillationTrainer(prior, prompt, replace(config, shading=GEOMETRY_SHADING), representation=model, preset=refine.geometry, stage="geometry").run(callbacks)
        seconds["geometry"] = time.time() - t0
    model.train_geometry = False
    t0 = time.time()
    trainer = DistillationTrainer(prior, prompt, replace(config, shading=TEXTURE_SHADING), representation=model, preset=refine.texture, stage="texture")
    trainer.run(callbacks)
    seconds["texture"] = time.time() - t0
    t0 = time.time()
    with torch.no_grad():
        v, f = model.mesh()
    colour = lambda x: model.colour(x.to(v.device)).cpu()
    export = replace(refine.export, face_budget=config.face_budget) if config.face_budget is not None else refine.export  # the artist's budget
    if config.lods > 1:  # LOD0..: each level unwrapped and baked, with a normal map of the refined surface
        lods = export_lods(v.detach().cpu().numpy(), f.cpu().numpy(), colour, export, LodConfig(levels=config.lods))
        unwrapped, glb = lods[0].mesh, lods_glb(lods, export)
    else:
        unwrapped = export_mesh(v.detach().cpu().numpy(), f.cpu().numpy(), colour, export)
        glb = to_glb(unwrapped, export)
    seconds["export"] = time.time() - t0
    preview = torch.cat(list(render_views(model, trainer.background, turntable_cameras(4, device=v.device), 64, TEXTURE_SHADING).cpu()), dim=-1)
    return MeshResult(glb, preview, seconds, unwrapped.vertices, unwrapped.faces, unwrapped.uvs, unwrapped.texture)


def starting_point(prior: DiffusionPrior, prompt: str, config: DistillationConfig) -> dict:
    """What stage one starts from, as DistillationTrainer arguments: nothing (the ball), or Shap-E's shape of the
    prompt (config.init "shap-e"): coloured points on it for Gaussians (DreamMapping: about 50k, never
    above the preset's cap), or a NeRF whose density was fitted to it."""
    if config.init != "shap-e":
        return {}
    from .shape_init import EmptyShapeError, fit_nerf_density, load_shap_e, shap_e_shape
    from .stage1.trainer import build_representation

    pipe = load_shap_e(config.shap_e.source, prior.device)  # a missing model raises with what to download, or --init ball
    try:
        shape = shap_e_shape(pipe, prompt, config.seed, config.shap_e)
    except EmptyShapeError as err:
        log.warning("%s; stage one starts from the ball", err)
        return {}
    preset = config.resolved_preset()
    if config.representation == "gaussians":
        count = min(config.shap_e.max_points, preset.gaussians.densify.max_gaussians)
        points, colours = shape.sample(count, config.seed)
        return {"init_points": points, "init_colours": colours}
    nerf = build_representation(config, preset).to(prior.device)
    fit_nerf_density(nerf, shape, config.shap_e, config.seed)
    return {"representation": nerf}


def generate(
    prior: DiffusionPrior, prompt: str, config: DistillationConfig = DistillationConfig(), callbacks: Callbacks = Callbacks(), refine: RefinePreset | None = None
) -> MeshResult:
    """`refine` overrides the stage-two preset named by `config.preset` (tests use tiny ones)."""
    refine = refine or get_refine_preset(config.preset)
    seconds: dict[str, float] = {}
    t0 = time.time()
    start = starting_point(prior, prompt, config)
    if start:
        seconds["init"] = time.time() - t0
        t0 = time.time()
    coarse = DistillationTrainer(prior, prompt, config, **start).run(callbacks)
    seconds["coarse"] = time.time() - t0
    return from_stage_one(prior, prompt, config, refine, coarse.representation, callbacks, seconds)


def from_stage_one(
    prior: DiffusionPrior, prompt: str, config: DistillationConfig, refine: RefinePreset, rep, callbacks: Callbacks = Callbacks(), seconds: dict | None = None
) -> MeshResult:
    """Stage two from a finished stage-one representation (what `generate` does after stage one); `seconds`
    collects each stage's time."""
    seconds = {} if seconds is None else seconds
    device = prior.device
    dmtet = DMTet.from_field(lambda x: rep.density(x.to(device)).cpu(), rep.bound, DMTetConfig(resolution=refine.dmtet_resolution))
    colour = ColourField()
    v, f = dmtet.extract()
    colour.fit(lambda x: rep.albedo(x.to(device)).cpu(), _surface_points(v, f), refine.colour_fit_steps, torch.Generator().manual_seed(config.seed))
    lr = prior.defaults.surface_lr
    return _refine_and_export(prior, prompt, config, refine, MeshModel(colour, dmtet.to(device), lr_sdf=lr, lr_deform=lr).to(device), callbacks, seconds)


def _unit_frame(vertices: Tensor) -> tuple[Tensor, Tensor, float]:
    """The input mesh moved into the frame stage one works in: centred, largest side 1 (a copy)."""
    lo, hi = vertices.min(0).values, vertices.max(0).values
    centre, scale = (lo + hi) / 2, float((hi - lo).max())
    if scale <= 0:
        raise ValueError("the input mesh has no extent (all vertices coincide); select an object with real geometry")
    return (vertices - centre) / scale, centre, scale


def refine_mesh(
    prior: DiffusionPrior,
    prompt: str,
    vertices: np.ndarray,
    faces: np.ndarray,
    config: DistillationConfig = DistillationConfig(),
    callbacks: Callbacks = Callbacks(),
    refine: RefinePreset | None = None,
) -> MeshResult:
    """The input seeds the optimisation; the result stays recognisably the same object."""
    refine = refine or get_refine_preset(config.preset)
    v, _, _ = _unit_frame(torch.as_tensor(vertices, dtype=torch.float32))
    f = torch.as_tensor(faces, dtype=torch.long)
    seconds: dict[str, float] = {}
    if config.representation == "gaussians":
        t0 = time.time()
        points = _surface_points(v, f, config.resolved_preset().gaussians.init.count)
        coarse = DistillationTrainer(prior, prompt, config, init_points=points).run(callbacks)
        seconds["coarse"] = time.time() - t0
        return from_stage_one(prior, prompt, config, refine, coarse.representation, callbacks, seconds)
    dmtet = DMTet.from_mesh(v, f, DMTetConfig(resolution=refine.dmtet_resolution))
    model = MeshModel(ColourField(), dmtet, lr_sdf=refine.input_mesh_lr, lr_deform=refine.input_mesh_lr)
    return _refine_and_export(prior, prompt, config, refine, model.to(prior.device), callbacks, seconds)


def texture_proxy(vertices: np.ndarray, faces: np.ndarray, max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """What texture optimisation renders: the mesh welded (uploads split vertices along UV seams), and
    above `max_faces` triangles a decimated copy. The colour field is a function of 3D position, so what
    it learns on the proxy's surface is baked onto the full mesh's, which lies within the decimation
    error of it."""
    v, f = weld(vertices, faces)
    if len(f) > max_faces:
        import fast_simplification

        v, f = fast_simplification.simplify(v, f.astype(np.int32), target_count=max_faces)
    return np.asarray(v, dtype=np.float32), np.asarray(f, dtype=np.int64)


def texture_mesh(
    prior: DiffusionPrior,
    prompt: str,
    vertices: np.ndarray,
    faces: np.ndarray,
    config: DistillationConfig = DistillationConfig(),
    callbacks: Callbacks = Callbacks(),
    refine: RefinePreset | None = None,
    uvs: np.ndarray | None = None,
) -> TextureResult:
    """Texture an artist's mesh without touching its geometry. `uvs` [V, 2]: bake into this UV map (the
    artist's, or one Blender's unwrapper made); None: unwrap anew. Returns the image and the UV map."""
    refine = refine or get_refine_preset(config.preset)
    vertices = np.asarray(vertices, dtype=np.float32)
    faces = np.asarray(faces, dtype=np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise ValueError(f"texturing needs a triangle mesh ([F, 3] faces), got faces of shape {faces.shape}; triangulate the object first")
    if uvs is not None and (uvs.shape != (len(vertices), 2) or not np.isfinite(uvs).all()):
        raise ValueError(f"the mesh's UV map must hold one finite (u, v) per vertex, got shape {uvs.shape}; re-export the mesh with its UVs")
    _, centre, scale = _unit_frame(torch.as_tensor(vertices))
    t0 = time.time()
    proxy_v, proxy_f = texture_proxy(vertices, faces, refine.texture_proxy_faces)
    proxy = torch.from_numpy((proxy_v - centre.numpy()) / scale)  # a transformed copy for rendering
    model = MeshModel(ColourField(), fixed=(proxy, torch.from_numpy(proxy_f)), train_geometry=False).to(prior.device)
    seconds = {"proxy": time.time() - t0}
    t0 = time.time()
    trainer = DistillationTrainer(prior, prompt, replace(config, shading=TEXTURE_SHADING), representation=model, preset=refine.texture, stage="texture")
    trainer.run(callbacks)
    seconds["texture"] = time.time() - t0
    t0 = time.time()
    if uvs is None:
        vmapping, faces, uvs = unwrap(vertices, faces)
        vertices = vertices[vmapping]
        seconds["unwrap"] = time.time() - t0
        t0 = time.time()
    corner_uvs = into_unit_tile(uvs[faces])  # [F, 3, 2]
    corners = torch.from_numpy((vertices[faces].reshape(-1, 3) - centre.numpy()) / scale)  # [3F, 3]
    image = bake(
        corners,
        torch.arange(corners.shape[0]).reshape(-1, 3),
        torch.from_numpy(corner_uvs.reshape(-1, 2)),
        lambda x: model.colour(x.to(prior.device)).cpu(),
        refine.export.texture_size,
        refine.export.padding,
    )
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    seconds["bake"] = time.time() - t0
    preview = torch.cat(list(render_views(model, trainer.background, turntable_cameras(4, device=prior.device), 64, TEXTURE_SHADING).cpu()), dim=-1)
    return TextureResult(buffer.getvalue(), vertices, faces, uvs.astype(np.float32), preview, seconds, len(proxy_f))
