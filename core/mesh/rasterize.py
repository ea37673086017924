"""A differentiable triangle rasteriser in pure PyTorch (CPU and CUDA).

Per camera: project the vertices (pinhole, OpenCV convention as `cameras.opencv_cameras`),
bin every face into the pixels of its screen bounding box (plus a one-pixel margin), test pixel centres
with barycentric coordinates, and keep the nearest face per pixel (depth test). Barycentrics are then
recomputed, perspective-correct, with gradients for the winning (pixel, face) pairs only.

Silhouettes are antialiased so the geometry also receives silhouette gradients: coverage is a sigmoid
of the signed screen distance to the nearest *silhouette* edge (an edge between a front- and a
back-facing face, or a boundary edge), alpha = sigmoid(d / tau): 1 deep inside, 1/2 on the silhouette,
falling to 0 a pixel or so outside, where the colour comes from the nearest face. Interior edges are
not softened, so a closed mesh renders fully opaque inside its outline.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cameras import Cameras, opencv_cameras


@dataclass
class Fragments:
    face: Tensor  # [B, H, W] long, -1 where no face contributes
    bary: Tensor  # [B, H, W, 3] perspective-correct barycentrics of `face` (differentiable)
    alpha: Tensor  # [B, 1, H, W] antialiased coverage (differentiable)
    depth: Tensor  # [B, 1, H, W] camera depth of the nearest surface, 0 where empty


def edge_faces(faces: Tensor) -> tuple[Tensor, Tensor]:
    """For each face's edges (v0v1, v1v2, v2v0): the id of the face across it, -1 on a boundary. -> [F, 3]."""
    F_ = faces.shape[0]
    e = torch.stack([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], dim=1).reshape(-1, 2)  # [3F, 2]
    key = torch.sort(e, dim=1).values
    n = int(faces.max()) + 1 if faces.numel() else 1
    _, inverse, counts = torch.unique(key[:, 0] * n + key[:, 1], return_inverse=True, return_counts=True)
    owner = torch.arange(F_, device=faces.device).repeat_interleave(3)
    order = torch.argsort(inverse, stable=True)
    sorted_inv = inverse[order]
    other = torch.full((3 * F_,), -1, dtype=torch.long, device=faces.device)
    same_next = torch.zeros_like(sorted_inv, dtype=torch.bool)
    same_next[:-1] = sorted_inv[1:] == sorted_inv[:-1]
    first, second = order[:-1][same_next[:-1]], order[1:][same_next[:-1]]
    other[first], other[second] = owner[second], owner[first]
    return other.reshape(F_, 3), counts


def _segment_distance(p: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Distance [K] from points p [K, 2] to segments a-b [K, 2]."""
    ab = b - a
    t = ((p - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp(min=1e-12)
    return (p - (a + t.clamp(0, 1)[:, None] * ab)).norm(dim=-1)


def barycentric(p: Tensor, s: Tensor) -> Tensor:
    """Screen barycentrics [K, 3] of points p [K, 2] in triangles s [K, 3, 2] (unclamped)."""
    v0, v1, v2 = s[:, 0], s[:, 1], s[:, 2]
    cross = lambda a, b: a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    area = cross(v1 - v0, v2 - v0)
    area = torch.where(area.abs() < 1e-12, torch.full_like(area, 1e-12), area)
    l1 = cross(p - v0, v2 - v0) / area
    l2 = cross(v1 - v0, p - v0) / area
    return torch.stack([1 - l1 - l2, l1, l2], dim=-1)


def face_pixel_pairs(s: Tensor, face_ids: Tensor, margin: float, W: int) -> tuple[Tensor, Tensor, Tensor]:
    """Every (face, pixel) pair whose pixel centre lies in the face's screen box grown by `margin` pixels:
    face ids [K], pixel centres [K, 2], flat pixel indices [K]."""
    box = s[face_ids]  # [n, 3, 2]
    lo = (box.amin(1) - 0.5 - margin).ceil().clamp(0, W - 1).long()  # centre i + 0.5 >= min - margin
    hi = (box.amax(1) - 0.5 + margin).floor().clamp(0, W - 1).long()
    size = (hi - lo + 1).clamp(min=0)  # [n, 2]
    count = size[:, 0] * size[:, 1]
    local_face = torch.repeat_interleave(torch.arange(face_ids.shape[0], device=s.device), count)
    start = torch.cumsum(count, 0) - count
    local = torch.arange(local_face.shape[0], device=s.device) - start[local_face]
    px = lo[local_face, 0] + local % size[local_face, 0]
    py = lo[local_face, 1] + local // size[local_face, 0]
    return face_ids[local_face], torch.stack([px, py], -1).to(s.dtype) + 0.5, py * W + px


def rasterize(vertices: Tensor, faces: Tensor, cameras: Cameras, resolution: int, tau: float = 0.5, near: float = 0.01, adjacency: Tensor | None = None) -> Fragments:
    """vertices [V, 3] world, faces [F, 3] -> Fragments for every camera; tau is the edge softness in pixels."""
    H = W = resolution
    adjacency = edge_faces(faces)[0] if adjacency is None else adjacency
    viewmats, Ks = opencv_cameras(cameras.to(vertices.device), resolution)
    out_face, out_bary, out_alpha, out_depth = [], [], [], []
    world_normals = torch.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]], dim=-1)
    for c in range(len(cameras)):
        cam = vertices @ viewmats[c, :3, :3].T + viewmats[c, :3, 3]  # [V, 3]
        z = cam[:, 2]
        screen = torch.stack([Ks[c, 0, 0] * cam[:, 0] / z.clamp(min=near) + Ks[c, 0, 2], Ks[c, 1, 1] * cam[:, 1] / z.clamp(min=near) + Ks[c, 1, 2]], -1)  # [V, 2]
        with torch.no_grad():
            centre = cameras.c2w[c, :3, 3].to(vertices)
            front = (world_normals.detach() * (centre - vertices[faces[:, 0]].detach())).sum(-1) > 0  # [F]
            # An edge is a silhouette edge when the face across it faces the other way (or is missing).
            across = adjacency.clamp(min=0)
            silhouette = (adjacency < 0) | (front[across] != front[:, None])  # [F, 3]
            visible = (z[faces] > near).all(-1)
            s = screen.detach()[faces]  # [F, 3, 2]
            onscreen = visible & (s.amax(1) > -2).all(-1) & (s.amin(1) < W + 2).all(-1)
            # Coverage: pixel centres inside a face's tight bounding box.
            fid, p, pix = face_pixel_pairs(s, onscreen.nonzero().squeeze(-1), 0.0, W)
            lam = barycentric(p, s[fid])
            inside = (lam >= -1e-5).all(-1)  # a little slack so pixel centres on shared edges never fall through
            depth = 1 / (lam / z.detach()[faces[fid]]).sum(-1).clamp(min=1e-12)
            big = torch.full((H * W,), float("inf"), device=vertices.device, dtype=vertices.dtype)
            zmin = big.scatter_reduce(0, pix[inside], depth[inside], "amin")
            is_min = inside & (depth <= zmin[pix])
            k_idx = torch.arange(fid.shape[0], device=vertices.device)
            win_k = torch.full((H * W,), -1, dtype=torch.long, device=vertices.device).scatter_reduce(0, pix[is_min], k_idx[is_min], "amax")
            # Pixels within 1.5 px of a front-facing silhouette edge: the nearest such edge gives alpha
            # (inside or outside), and the colour of uncovered ones.
            rim = onscreen & front & silhouette.any(-1)
            rfid, rp, rpix = face_pixel_pairs(s, rim.nonzero().squeeze(-1), 1.5, W)
            d_sil = torch.stack([_segment_distance(rp, s[rfid, e], s[rfid, (e + 1) % 3]) for e in range(3)], -1)
            d_sil = torch.where(silhouette[rfid], d_sil, torch.full_like(d_sil, float("inf"))).amin(-1)
            near_k = d_sil < 1.5
            dmin = big.scatter_reduce(0, rpix[near_k], d_sil[near_k], "amin")
            best = near_k & (d_sil <= dmin[rpix])
            r_idx = torch.arange(rfid.shape[0], device=vertices.device)
            soft_k = torch.full((H * W,), -1, dtype=torch.long, device=vertices.device).scatter_reduce(0, rpix[best], r_idx[best], "amax")
            none = torch.full((H * W,), -1, dtype=torch.long, device=vertices.device)
            covered = win_k >= 0
            soft_face = rfid[soft_k.clamp(min=0)] if rfid.shape[0] else none
            win = torch.where(covered, fid[win_k.clamp(min=0)] if fid.shape[0] else none, torch.where(soft_k >= 0, soft_face, -1))
            pick = lambda points, k: points[k.clamp(min=0)] if points.shape[0] else torch.zeros(H * W, 2, device=vertices.device, dtype=vertices.dtype)
            centres = torch.where(covered[:, None], pick(p, win_k), pick(rp, soft_k))
            has = win >= 0
            f_sel, p_sel, covered_sel = win[has], centres[has], covered[has]
            soft_sel = (soft_k >= 0)[has]  # has a silhouette edge within reach
            edge_face = torch.where(soft_sel, soft_face[has], f_sel)
        # Differentiable quantities for the selected (pixel, face) pairs.
        s_sel = screen[faces[f_sel]]  # [M, 3, 2] with gradients
        lam = barycentric(p_sel, s_sel)
        lam = torch.where(covered_sel[:, None], lam, lam.clamp(min=0) / lam.clamp(min=0).sum(-1, keepdim=True).clamp(min=1e-12))
        zf = z[faces[f_sel]]  # [M, 3]
        w = lam / zf
        bary = w / w.sum(-1, keepdim=True)  # perspective-correct
        s_edge = screen[faces[edge_face]]
        dist = torch.stack([_segment_distance(p_sel, s_edge[:, e], s_edge[:, (e + 1) % 3]) for e in range(3)], -1)
        dist = torch.where(silhouette[edge_face], dist, torch.full_like(dist, 1e6)).amin(-1)
        signed = torch.where(covered_sel, dist, -dist)
        alpha_sel = torch.where(covered_sel & ~soft_sel, torch.ones_like(dist), torch.sigmoid(signed / tau))
        face_img = torch.full((H * W,), -1, dtype=torch.long, device=vertices.device)
        face_img[has] = f_sel
        bary_img = torch.zeros(H * W, 3, device=vertices.device, dtype=vertices.dtype).index_put((has.nonzero().squeeze(-1),), bary)
        alpha_img = torch.zeros(H * W, device=vertices.device, dtype=vertices.dtype).index_put((has.nonzero().squeeze(-1),), alpha_sel)
        depth_img = torch.zeros(H * W, device=vertices.device, dtype=vertices.dtype).index_put((has.nonzero().squeeze(-1),), 1 / (lam / zf).sum(-1))
        out_face.append(face_img.reshape(H, W))
        out_bary.append(bary_img.reshape(H, W, 3))
        out_alpha.append(alpha_img.reshape(1, H, W))
        out_depth.append(depth_img.reshape(1, H, W))
    return Fragments(torch.stack(out_face), torch.stack(out_bary), torch.stack(out_alpha), torch.stack(out_depth))


def interpolate(attributes: Tensor, faces: Tensor, fragments: Fragments) -> Tensor:
    """Per-vertex attributes [V, C] -> per-pixel [B, H, W, C] (zero where no face)."""
    f = fragments.face.clamp(min=0)
    corner = attributes[faces[f]]  # [B, H, W, 3, C]
    out = (fragments.bary[..., None] * corner).sum(-2)
    return out * (fragments.face >= 0)[..., None]


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted unit vertex normals [V, 3] (differentiable)."""
    n = torch.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]], dim=-1)
    acc = torch.zeros_like(vertices).index_add(0, faces.reshape(-1), n.repeat_interleave(3, dim=0))
    return F.normalize(acc, dim=-1, eps=1e-12)
