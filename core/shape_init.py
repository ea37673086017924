"""A starting shape for stage one from a text-to-3D model: Shap-E's mesh of the prompt.

DreamMapping (and GaussianDreamer before it) start their 3D Gaussians from a Shap-E shape of the prompt
rather than a ball: about 50,000 coloured points on its surface. The same shape can seed a NeRF's
density, as threestudio's `shape_init` fits an implicit surface to a mesh before distillation.

- `load_shap_e`: diffusers' `ShapEPipeline` from a Hub id (`openai/shap-e`, through the Hugging Face
  cache, offline mode respected) or a local folder; a missing model raises the same teaching error as a
  missing prior.
- `shap_e_shape`: prompt -> `StartingShape` (a mesh in PropDreamer's frame, with sRGB vertex colours).
- `StartingShape.sample`: coloured points on its surface (the Gaussians' means and colours).
- `fit_nerf_density`: a NeRF whose density starts as the shape (and albedo as its colours).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .priors.loading import DEFAULT_SHAP_E_ID, ModelKind, PriorNotFoundError, resolve_model_folder

log = logging.getLogger(__name__)

SHAP_E = ModelKind(
    "the Shap-E model (the starting shape of --init shap-e)",
    ("prior", "text_encoder", "tokenizer", "scheduler", "shap_e_renderer"),
    (),
    "model_index.json, prior/, text_encoder/, tokenizer/, scheduler/ and shap_e_renderer/",
    "start from a ball instead: --init ball (the panel: Start from > Ball)",
)


@dataclass(frozen=True)
class ShapEConfig:
    source: str = DEFAULT_SHAP_E_ID  # a Hub id or a local diffusers folder
    steps: int = 64  # Karras sampling steps (Shap-E's text-to-3D example and GaussianDreamer: 64)
    guidance_scale: float = 15.0  # as both
    grid_size: int = 128  # the decoder's marching-cubes grid (diffusers' default)
    max_points: int = 50_000  # DreamMapping upsamples Shap-E's shape to about 50k points; never above the preset's Gaussian cap
    nerf_fit_steps: int = 300  # Adam steps fitting a NeRF's density to the shape
    nerf_fit_batch: int = 4096  # points per fitting step
    shell: float = 0.05  # the density's pre-activation goes from +lambda_blob to -lambda_blob across this distance from the surface

    def __post_init__(self) -> None:
        if self.steps < 1 or self.max_points < 1 or self.nerf_fit_steps < 0 or self.nerf_fit_batch < 1 or not self.shell > 0:
            raise ValueError(f"ShapEConfig needs steps >= 1, max_points >= 1, nerf_fit_steps >= 0, nerf_fit_batch >= 1, shell > 0; got {self}")


class EmptyShapeError(RuntimeError):
    """The model decoded no surface for the prompt (stage one then starts from the ball)."""


def shap_e_available(source: str) -> bool:
    """Whether the Shap-E weights are on this machine (a local folder or the Hugging Face cache; never a download)."""
    try:
        resolve_model_folder(source, SHAP_E, offline=True)
    except (PriorNotFoundError, OSError, ValueError):
        return False
    return True


_PIPELINES: dict[tuple[str, str], object] = {}  # one per worker process, kept like the prior (`unload` restarts the process)


def load_shap_e(source: str, device: torch.device | str, offline: bool | None = None):
    """diffusers' ShapEPipeline on `device` (float16 on CUDA, as Shap-E's own sampling), loaded once."""
    device = torch.device(device)
    key = (source, str(device))
    if key not in _PIPELINES:
        from diffusers import ShapEPipeline

        folder = resolve_model_folder(source, SHAP_E, offline=offline)
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        pipe = ShapEPipeline.from_pretrained(folder, dtype=dtype).to(device)
        pipe.set_progress_bar_config(disable=True)
        _PIPELINES[key] = pipe
        log.info("loaded Shap-E %s from %s on %s", source, folder, device)
    return _PIPELINES[key]


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1 / 2.4) - 0.055)


@dataclass
class StartingShape:
    vertices: np.ndarray  # [V, 3] PropDreamer's frame (Z up, front towards -Y), centred, largest side 1
    faces: np.ndarray  # [F, 3]
    colours: np.ndarray  # [V, 3] sRGB in [0, 1]

    def sample(self, count: int, seed: int = 0) -> tuple[Tensor, Tensor]:
        """`count` points [count, 3] uniformly on the surface (area-weighted) and their colours [count, 3],
        interpolated from the vertices' (barycentric)."""
        import trimesh

        mesh = trimesh.Trimesh(self.vertices.astype(np.float64), self.faces, process=False)
        points, face_index = trimesh.sample.sample_surface(mesh, count, seed=seed)
        corners = self.faces[face_index]  # [count, 3]
        bary = trimesh.triangles.points_to_barycentric(mesh.vertices[corners], points)  # [count, 3]
        colours = (bary[:, :, None] * self.colours[corners]).sum(1)
        return torch.from_numpy(points.astype(np.float32)), torch.from_numpy(np.clip(colours, 0, 1).astype(np.float32))


def from_shap_e_frame(vertices: np.ndarray) -> np.ndarray:
    """Shap-E's frame -> PropDreamer's. Both are Z up; Shap-E's objects face +X (GaussianDreamer feeds its
    points unchanged to threestudio, whose front camera sits on +X), ours face -Y (Blender's front view).
    A turn of -90 degrees about Z: (x, y, z) -> (y, -x, z); then centred with its largest side 1, the
    frame stage one's ball and the refine flow's input live in."""
    v = np.stack([vertices[:, 1], -vertices[:, 0], vertices[:, 2]], axis=-1)
    lo, hi = v.min(0), v.max(0)
    return ((v - (lo + hi) / 2) / max(float((hi - lo).max()), 1e-8)).astype(np.float32)


@torch.no_grad()
def shap_e_shape(pipe, prompt: str, seed: int = 0, config: ShapEConfig = ShapEConfig()) -> StartingShape:
    """Shap-E's mesh of `prompt`. Raises EmptyShapeError when its decoder finds no surface."""
    latents = pipe(
        prompt, num_inference_steps=config.steps, guidance_scale=config.guidance_scale, generator=torch.Generator().manual_seed(seed), output_type="latent"
    ).images  # [1, n_embeddings, d_latent]
    try:
        mesh = pipe.shap_e_renderer.decode_to_mesh(latents[:1], pipe._execution_device, grid_size=config.grid_size)
    except (RuntimeError, ValueError, IndexError) as err:  # diffusers' decoder fails on an empty surface (torch.cat of nothing)
        raise EmptyShapeError(f"Shap-E decoded no surface for '{prompt}' ({type(err).__name__}: {err})") from err
    vertices = mesh.verts.detach().float().cpu().numpy()
    faces = mesh.faces.detach().long().cpu().numpy()
    if len(faces) == 0 or len(vertices) < 3:
        raise EmptyShapeError(f"Shap-E decoded no surface for '{prompt}'")
    linear = np.stack([mesh.vertex_channels[c].detach().float().cpu().numpy() for c in ("R", "G", "B")], axis=-1)  # diffusers returns linear RGB
    return StartingShape(from_shap_e_frame(vertices), faces, _linear_to_srgb(linear).astype(np.float32))


def _decimated(shape: StartingShape, max_faces: int = 4000) -> tuple[Tensor, Tensor]:
    """The shape with at most `max_faces` triangles, for the inside test (a winding number costs points x faces)."""
    v, f = shape.vertices, shape.faces.astype(np.int64)
    if len(f) > max_faces:
        import fast_simplification

        v, f = fast_simplification.simplify(v, f.astype(np.int32), target_count=max_faces)
    return torch.as_tensor(np.asarray(v, dtype=np.float32)), torch.as_tensor(np.asarray(f, dtype=np.int64))


def fit_nerf_density(nerf, shape: StartingShape, config: ShapEConfig = ShapEConfig(), seed: int = 0) -> dict[str, float]:
    """Fit the NeRF's density to the shape before distillation (threestudio fits an implicit SDF to a mesh
    the same way). The target is the field's pre-activation: sigma = softplus(f(x) + blob(x)) with
    f(x) + blob(x) = lambda_blob * clamp(-d(x) / shell, -1, 1), d the signed distance (inside negative),
    so the shape replaces the blob at the blob's own density range. Albedo is fitted to the shape's colours
    on its surface. Returns the final losses."""
    from .mesh.mesh_sdf import signed_distance

    field = nerf.field
    device = next(field.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    bound, lam = field.config.bound, field.config.blob_density
    # A fixed pool of training points: half uniform in the box, half within a few shells of the surface.
    n = max(config.nerf_fit_batch * 4, 8192)
    surface, colours = shape.sample(n, seed)
    near = surface + config.shell * torch.randn(n, 3, generator=generator)
    uniform = (torch.rand(n, 3, generator=generator) * 2 - 1) * bound
    pool = torch.cat([uniform, near]).clamp(-bound, bound)  # [2n, 3]
    v, f = _decimated(shape)
    target = lam * (-signed_distance(v, f, pool) / config.shell).clamp(-1, 1)  # [2n]
    pool, target, surface, colours = (t.to(device) for t in (pool, target, surface, colours))
    optimiser = torch.optim.Adam(field.parameters(), lr=1e-2)
    density_loss = albedo_loss = torch.tensor(float("nan"))
    for _ in range(config.nerf_fit_steps):
        pick = torch.randint(0, len(pool), (config.nerf_fit_batch,), generator=generator).to(device)
        x = pool[pick]
        pre = field.density_net(field.encoding(field._u(x)))[:, 0] + field.blob(x)
        on = torch.randint(0, len(surface), (config.nerf_fit_batch // 4,), generator=generator).to(device)
        albedo = torch.sigmoid(field.albedo_net(field.encoding(field._u(surface[on]))))
        density_loss = F.mse_loss(pre, target[pick]) / lam**2
        albedo_loss = F.mse_loss(albedo, colours[on])
        optimiser.zero_grad(set_to_none=True)
        (density_loss + albedo_loss).backward()
        optimiser.step()
    return {"density": density_loss.item(), "albedo": albedo_loss.item()}
