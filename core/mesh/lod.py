"""Levels of detail with tangent-space normal maps: LOD0 at the face budget, each next level about a
quarter of the one before, every level decimated from the refined high-detail surface, unwrapped and
baked on its own (base colour and a normal map of the high-detail surface's normals; a level the
budget leaves (nearly) undecimated is (nearly) the surface itself and gets no map).

Tangent space follows glTF (and Blender, which computes MikkTSpace tangents on import): per vertex a
normal N (smooth, area-weighted, shared across UV seams), a tangent T along increasing u and a sign w so
that the bitangent B = w (N x T) points along increasing v (v up, the UV convention of export.py); a
normal map texel stores (n.T, n.B, n.N) * 0.5 + 0.5 for the high-detail normal n under it. The
tangents are written into the GLB (`TANGENT`), so a glTF viewer uses exactly this frame; Blender's
MikkTSpace differs from it only in how it averages across faces.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from .export import ExportConfig, UnwrappedMesh, bake, clean, pad_charts, uv_rasterize
from .uv import unwrap

MAP_BELOW = 0.9  # a level gets a normal map when it has fewer than this fraction of the high-detail surface's triangles
FLAT = np.array([0.5, 0.5, 1.0])  # a texel that leaves the normal as it is (0, 0, 1) in tangent space


@dataclass(frozen=True)
class LodConfig:
    levels: int = 1  # LOD0 only (no normal map); 2..4: a chain LOD0..LOD{levels-1}, each with a normal map
    ratio: float = 0.25  # each level's face budget against the one before
    min_faces: int = 100
    samples: int = 400_000  # points on the high-detail surface the normal maps read (about 3 mm apart on a unit prop)

    def __post_init__(self) -> None:
        if not 1 <= self.levels <= 4 or not 0.05 <= self.ratio < 1 or self.min_faces < 4:
            raise ValueError(f"LodConfig needs levels 1..4, ratio in [0.05, 1), min_faces >= 4; got {self}")

    def budgets(self, face_budget: int) -> list[int]:
        return [max(self.min_faces, round(face_budget * self.ratio**k)) for k in range(self.levels)]


@dataclass
class Lod:
    mesh: UnwrappedMesh  # positions, faces, UVs and the base colour, as a single export gives
    normals: np.ndarray  # [V, 3] float32, unit
    tangents: np.ndarray  # [V, 4] float32: xyz unit and orthogonal to the normal, w = +-1
    normal_map: np.ndarray | None  # [T, T, 3] uint8, tangent space; None for a level that is the high-detail surface itself
    seconds: float = 0.0  # decimating, unwrapping and baking this level


def _unit(x: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Rows of x [N, 3] made unit; rows too short to have a direction take `fallback`'s [N, 3] (unit)."""
    length = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(length > 1e-9, x / np.maximum(length, 1e-30), fallback)


def smooth_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[V, 3] area-weighted unit vertex normals, equal for vertices at the same position (UV seams do not
    show). A vertex whose faces have no area (slivers a decimator leaves) or cancel out takes the mean
    of its faces' directions, else +Z: every normal is unit, as glTF requires."""
    _, welded = np.unique(vertices, axis=0, return_inverse=True)
    welded = welded.reshape(-1)
    tri = vertices[faces].astype(np.float64)  # [F, 3, 3]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # [F, 3], length = 2 x area
    face_u = _unit(face_n, np.zeros_like(face_n))
    weighted, directions = np.zeros((welded.max() + 1, 3)), np.zeros((welded.max() + 1, 3))
    for corner in range(3):
        np.add.at(weighted, welded[faces[:, corner]], face_n)
        np.add.at(directions, welded[faces[:, corner]], face_u)
    up = np.broadcast_to([0.0, 0.0, 1.0], weighted.shape)
    scale = max(float(np.abs(face_n).max(initial=0.0)), 1e-30)
    n = np.where(np.linalg.norm(weighted, axis=1, keepdims=True) > 1e-6 * scale, weighted, directions)
    return _unit(n, up)[welded].astype(np.float32)


def split_by_handedness(faces: np.ndarray, uvs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices shared by faces whose UVs wind opposite ways (a fold the decimator or the unwrap left)
    split in two, one per winding, as MikkTSpace splits them when it computes Blender's tangents: every
    vertex's bitangent sign is then its faces' own. Returns vmapping [V'] (new -> old) and faces [F, 3]."""
    t = uvs[faces].astype(np.float64)  # [F, 3, 2]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    positive = (d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]) >= 0  # [F]
    key = faces * 2 + positive[:, None]  # (vertex, winding) of every corner
    unique, inverse = np.unique(key.reshape(-1), return_inverse=True)
    return unique // 2, inverse.reshape(-1, 3)


def tangent_frames(vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """[V, 4] tangents: T along +u from each face's UV gradients (angle-weighted), made orthogonal to the
    normal; w = +1 when N x T points along +v, else -1."""
    p, t = vertices[faces].astype(np.float64), uvs[faces].astype(np.float64)  # [F, 3, 3], [F, 3, 2]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]  # [F]: twice the signed UV area
    ok = np.abs(det) > 1e-12
    r = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)[:, None]
    dp_du = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r  # [F, 3]
    dp_dv = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-20)
    acc_t, acc_b = np.zeros((len(vertices), 3)), np.zeros((len(vertices), 3))
    dir_u, dir_v = unit(dp_du), unit(dp_dv)  # [F, 3]
    for corner in range(3):  # each face's direction weighted by its angle at the corner, as MikkTSpace weights them
        a, b = unit(p[:, (corner + 1) % 3] - p[:, corner]), unit(p[:, (corner + 2) % 3] - p[:, corner])
        angle = np.arccos(np.clip((a * b).sum(1), -1.0, 1.0))[:, None]
        np.add.at(acc_t, faces[:, corner], dir_u * angle)
        np.add.at(acc_b, faces[:, corner], dir_v * angle)
    n = normals.astype(np.float64)
    tangent = acc_t - n * (acc_t * n).sum(1, keepdims=True)  # Gram-Schmidt against the normal
    fallback = _unit(np.cross(n, np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])), np.broadcast_to([1.0, 0, 0], n.shape))  # no UV gradient: any T orthogonal to N
    tangent = _unit(tangent, fallback)
    w = np.where((np.cross(n, tangent) * acc_b).sum(1) < 0, -1.0, 1.0)
    return np.concatenate([tangent, w[:, None]], 1).astype(np.float32)


class HighDetail:
    """The refined surface the normal maps read: dense points on it with its smooth normals, and the
    nearest of them to any point (scipy's k-d tree)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, samples: int, seed: int = 0) -> None:
        import trimesh
        from scipy.spatial import cKDTree

        mesh = trimesh.Trimesh(vertices, faces, process=False)
        points, face = trimesh.sample.sample_surface(mesh, samples, seed=seed)
        bary = trimesh.triangles.points_to_barycentric(mesh.triangles[face], points)  # [S, 3]
        normals = smooth_normals(np.asarray(vertices, dtype=np.float32), np.asarray(faces))
        n = (bary[:, :, None] * normals[faces[face]]).sum(1)
        self.normals = (n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        self.tree = cKDTree(points)

    def normal_at(self, points: np.ndarray) -> np.ndarray:
        """[N, 3] the high-detail surface's normal nearest each point [N, 3]."""
        _, index = self.tree.query(points, workers=-1)
        return self.normals[index]


@torch.no_grad()
def bake_normal_map(lod: UnwrappedMesh, normals: np.ndarray, tangents: np.ndarray, high: HighDetail, size: int, padding: int) -> np.ndarray:
    """[T, T, 3] uint8: the high-detail normal under every texel of the level, in the level's tangent space."""
    faces = torch.from_numpy(lod.faces)
    face, bary = uv_rasterize(torch.from_numpy(lod.uvs), faces, size)
    filled = face >= 0
    corners = faces[face[filled]]  # [M, 3]
    lam = bary[filled][..., None].double()  # [M, 3, 1]
    at = lambda values: (lam * torch.from_numpy(values).double()[corners]).sum(1).numpy()  # [M, C] interpolated
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n = unit(at(normals))
    t = at(tangents[:, :3])
    t = unit(t - n * (t * n).sum(1, keepdims=True))
    b = np.sign(tangents[corners[:, 0].numpy(), 3])[:, None] * np.cross(n, t)
    target = high.normal_at(at(lod.vertices))
    target = np.where((target * n).sum(1, keepdims=True) > 0, target, n)  # a sample from the far side of a thin part: no detail
    encoded = np.stack([(target * t).sum(1), (target * b).sum(1), (target * n).sum(1)], 1) * 0.5 + 0.5
    image = torch.from_numpy(np.broadcast_to(FLAT, (size, size, 3)).copy()).float()
    image[filled] = torch.from_numpy(encoded).float()
    image = pad_charts(image, filled, padding)
    return (image.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)


def export_lods(vertices: np.ndarray, faces: np.ndarray, colour: Callable[[Tensor], Tensor], config: ExportConfig, lods: LodConfig) -> list[Lod]:
    """LOD0..LOD{levels-1}, each decimated from the cleaned high-detail surface (not from the level before:
    errors do not add up), unwrapped, its colour and normal map baked; level k's textures are
    `texture_size / 2^k` (at least 64)."""
    v_hi, f_hi = clean(vertices, faces, replace(config, face_budget=max(len(faces), config.face_budget)))
    high = HighDetail(v_hi, f_hi, lods.samples)
    out = []
    for k, budget in enumerate(lods.budgets(config.face_budget)):
        t0 = time.time()
        v, f = clean(v_hi, f_hi, replace(config, face_budget=max(100, budget), min_component_fraction=0.0)) if budget < len(f_hi) else (v_hi, f_hi)
        if len(f) < len(f_hi):  # the decimator leaves slivers without area (15% of a 364-triangle level): they show nothing
            tri = v[f].astype(np.float64)
            area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
            f = f[area > 1e-6 * max(float(area.max(initial=0.0)), 1e-30)]
        vmapping, f_uv, uvs = unwrap(v, f)
        split, f_uv = split_by_handedness(f_uv, uvs)  # Blender's tangents split these too
        vmapping, uvs = vmapping[split], uvs[split]
        v_uv = v[vmapping]
        size = max(64, config.texture_size >> k)
        texture = bake(torch.from_numpy(v_uv), torch.from_numpy(f_uv), torch.from_numpy(uvs), colour, size, config.padding)
        mesh = UnwrappedMesh(v_uv, f_uv, uvs, texture)
        normals = smooth_normals(v_uv, f_uv)
        tangents = tangent_frames(v_uv, f_uv, uvs, normals)
        # A level with 90% or more of the high-detail surface's triangles has next to no detail to add, and
        # a map's 8 bits and texel filtering cost more than it gives (BENCHMARKS.md, "Levels of detail").
        decimated = len(f) < MAP_BELOW * len(f_hi)
        normal_map = bake_normal_map(mesh, normals, tangents, high, size, config.padding) if decimated else None
        out.append(Lod(mesh, normals, tangents, normal_map, time.time() - t0))
    return out
