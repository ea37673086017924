"""From a refined mesh to an artist's asset: clean, decimate, unwrap (xatlas, uv.py), bake the colour field
into a UV texture, pad the charts; `gltf.to_glb` writes the result with a PBR material. UVs follow
trimesh / OpenGL (v up, image row 0 at v = 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .uv import unwrap


@dataclass(frozen=True)
class ExportConfig:
    face_budget: int = 20_000  # decimate above this (xatlas on millions of faces runs for hours)
    texture_size: int = 256  # 1024 on GPU presets
    min_component_fraction: float = 0.05  # drop pieces with fewer faces than this fraction of the largest
    padding: int = 4  # texels the charts are grown by, so seams do not bleed
    roughness: float = 0.8
    metallic: float = 0.0

    def __post_init__(self) -> None:
        if self.face_budget < 100 or self.texture_size < 16 or self.padding < 0:
            raise ValueError(f"ExportConfig needs face_budget >= 100, texture_size >= 16, padding >= 0; got {self}")


@dataclass
class UnwrappedMesh:
    vertices: np.ndarray  # [V, 3] float32, split along UV seams
    faces: np.ndarray  # [F, 3] int64
    uvs: np.ndarray  # [V, 2] float32 in [0, 1]
    texture: np.ndarray  # [T, T, 3] uint8


def clean(vertices: np.ndarray, faces: np.ndarray, config: ExportConfig) -> tuple[np.ndarray, np.ndarray]:
    """Merge duplicate vertices, drop tiny disconnected pieces, decimate to the face budget."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=True)
    parts = mesh.split(only_watertight=False)
    if len(parts) > 1:
        largest = max(len(p.faces) for p in parts)
        kept = trimesh.util.concatenate([p for p in parts if len(p.faces) >= config.min_component_fraction * largest])
        assert isinstance(kept, trimesh.Trimesh)  # pieces of one mesh concatenate into one mesh
        mesh = kept
    if len(mesh.faces) > config.face_budget:
        import fast_simplification

        v, f = fast_simplification.simplify(mesh.vertices.astype(np.float32), mesh.faces.astype(np.int32), target_count=config.face_budget)
        mesh = trimesh.Trimesh(v, f, process=True)
    return np.asarray(mesh.vertices, dtype=np.float32), np.asarray(mesh.faces, dtype=np.int64)


def uv_rasterize(uvs: Tensor, faces: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Which face covers each texel centre and where: face [T, T] (-1 none), barycentrics [T, T, 3]."""
    from .rasterize import barycentric, face_pixel_pairs

    s = torch.stack([uvs[:, 0] * size, (1 - uvs[:, 1]) * size], -1)[faces]  # [F, 3, 2] texel coords, row 0 at v = 1
    fid, p, pix = face_pixel_pairs(s, torch.arange(faces.shape[0]), 0.0, size)
    lam = barycentric(p, s[fid])
    inside = (lam >= -1e-6).all(-1)
    face = torch.full((size * size,), -1, dtype=torch.long)
    bary = torch.zeros(size * size, 3)
    pix = pix[inside]
    face[pix], bary[pix] = fid[inside], lam[inside]
    return face.reshape(size, size), bary.reshape(size, size, 3)


def pad_charts(texture: Tensor, filled: Tensor, iterations: int) -> Tensor:
    """Grow the charts outward: empty texels take the mean of their filled neighbours, `iterations` times."""
    img, mask = texture.permute(2, 0, 1)[None], filled[None, None].float()  # [1, 3, T, T], [1, 1, T, T]
    kernel = torch.ones(1, 1, 3, 3)
    for _ in range(iterations):
        total = F.conv2d(img * mask, kernel.expand(3, 1, 3, 3), padding=1, groups=3)
        count = F.conv2d(mask, kernel, padding=1)
        grow = (mask == 0) & (count > 0)
        img = torch.where(grow, total / count.clamp(min=1), img)
        mask = torch.maximum(mask, grow.float())
    return img[0].permute(1, 2, 0)


@torch.no_grad()
def bake(vertices: Tensor, faces: Tensor, uvs: Tensor, colour: Callable[[Tensor], Tensor], size: int, padding: int) -> np.ndarray:
    """The colour field sampled at the 3D point under every texel: [T, T, 3] uint8, charts padded."""
    face, bary = uv_rasterize(uvs, faces, size)
    filled = face >= 0
    points = (bary[filled][..., None] * vertices[faces[face[filled]]]).sum(1)  # [M, 3]
    texture = torch.zeros(size, size, 3)
    if points.shape[0]:
        texture[filled] = torch.cat([colour(c) for c in points.split(65536)]).float().cpu()
    texture = pad_charts(texture, filled, padding)
    return (texture.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)


def unit_box(vertices: np.ndarray) -> tuple[np.ndarray, float]:
    """The centre [3] of the vertices' bounding box and the scale that makes its largest side 1."""
    lo, hi = vertices.min(0), vertices.max(0)
    return (lo + hi) / 2, 1.0 / max(float((hi - lo).max()), 1e-9)


def normalise_to_unit_box(vertices: np.ndarray) -> np.ndarray:
    """Centred on its bounding box, scaled so the largest side is 1."""
    centre, scale = unit_box(vertices)
    return ((vertices - centre) * scale).astype(np.float32)


def export_mesh(vertices: np.ndarray, faces: np.ndarray, colour: Callable[[Tensor], Tensor], config: ExportConfig = ExportConfig()) -> UnwrappedMesh:
    """Clean, unwrap and bake; vertices stay in PropDreamer's frame (the colour field's)."""
    v, f = clean(vertices, faces, config)
    vmapping, f_uv, uvs = unwrap(v, f)
    v_uv = v[vmapping]
    texture = bake(torch.from_numpy(v_uv), torch.from_numpy(f_uv), torch.from_numpy(uvs), colour, config.texture_size, config.padding)
    return UnwrappedMesh(v_uv, f_uv, uvs, texture)
