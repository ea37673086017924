"""Differentiable marching tetrahedra (DMTet; Shen et al. 2021, as Magic3D uses it), pure PyTorch.

Inside is s < 0. On every tet edge (a, b) whose endpoints differ in sign the surface vertex is the
zero crossing of the linear interpolant,

    p = (v_a s_b - v_b s_a) / (s_b - s_a),

differentiable in the SDF values s and in the (offset) vertex positions v. Edges are shared between
neighbouring tets, so each crossing is created once and the surface is watertight. A tet with one
vertex on the other side gives one triangle, with two on each side a quad (two triangles). Triangles
are wound so their normals point from inside (s < 0) to outside.
"""

from __future__ import annotations

import torch
from torch import Tensor

# The 6 edges of a tetrahedron, as pairs of its local vertices 0..3.
_EDGES = torch.tensor([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])


def _edge_id(a: int, b: int) -> int:
    pairs = [tuple(e) for e in _EDGES.tolist()]
    return pairs.index((min(a, b), max(a, b)))


def _case_table() -> tuple[Tensor, Tensor]:
    """For each of the 16 inside/outside patterns: up to 2 triangles as local edge ids [16, 2, 3], count [16]."""
    table = torch.full((16, 2, 3), -1, dtype=torch.long)
    count = torch.zeros(16, dtype=torch.long)
    for case in range(16):
        inside = [v for v in range(4) if case >> v & 1]
        outside = [v for v in range(4) if not case >> v & 1]
        if len(inside) in (1, 3):
            lone, others = (inside[0], outside) if len(inside) == 1 else (outside[0], inside)
            table[case, 0] = torch.tensor([_edge_id(lone, o) for o in others])
            count[case] = 1
        elif len(inside) == 2:
            (a, b), (c, d) = inside, outside
            quad = [_edge_id(a, c), _edge_id(a, d), _edge_id(b, d), _edge_id(b, c)]  # a cycle around the quad
            table[case, 0] = torch.tensor([quad[0], quad[1], quad[2]])
            table[case, 1] = torch.tensor([quad[0], quad[2], quad[3]])
            count[case] = 2
    return table, count


_TABLE, _COUNT = _case_table()


def marching_tets(vertices: Tensor, tets: Tensor, sdf: Tensor, with_edges: bool = False) -> tuple[Tensor, ...]:
    """vertices [V, 3], tets [T, 4], sdf [V] -> mesh vertices [M, 3] (differentiable) and faces [F, 3];
    `with_edges`: also the grid edge each mesh vertex lies on, [M, 2] vertex indices."""
    device = vertices.device
    # An exact zero would put a crossing on a grid vertex and collapse triangles: treat it as just outside.
    sdf = torch.where(sdf == 0, torch.full_like(sdf, 1e-6), sdf)
    with torch.no_grad():
        inside = sdf < 0  # [V]
        occ = inside[tets]  # [T, 4]
        n_in = occ.sum(-1)
        active = (n_in > 0) & (n_in < 4)  # tets the surface crosses
        tets_a = tets[active]  # [A, 4]
        edges = tets_a[:, _EDGES.to(device)].reshape(-1, 2)  # [A*6, 2] global vertex pairs
        edges = torch.sort(edges, dim=1).values
        V = vertices.shape[0]
        keys, edge_index = torch.unique(edges[:, 0] * V + edges[:, 1], return_inverse=True)  # 1-D keys: far faster than unique(dim=0)
        unique = torch.stack([keys // V, keys % V], dim=-1)  # [U, 2]
        crossing = inside[unique[:, 0]] != inside[unique[:, 1]]  # [U]
        new_id = torch.full((unique.shape[0],), -1, dtype=torch.long, device=device)
        new_id[crossing] = torch.arange(int(crossing.sum()), device=device)
        tet_edges = new_id[edge_index].reshape(-1, 6)  # [A, 6] mesh vertex id per local edge, -1 if none
        case = (occ[active].long() * (2 ** torch.arange(4, device=device))).sum(-1)  # [A]
    ends = unique[crossing]  # [M, 2]
    s_a, s_b = sdf[ends[:, 0]][:, None], sdf[ends[:, 1]][:, None]
    v_a, v_b = vertices[ends[:, 0]], vertices[ends[:, 1]]
    denom = s_b - s_a
    mesh_vertices = (v_a * s_b - v_b * s_a) / torch.where(denom.abs() < 1e-12, torch.full_like(denom, 1e-12), denom)  # [M, 3]
    with torch.no_grad():
        table, count = _TABLE.to(device)[case], _COUNT.to(device)[case]  # [A, 2, 3], [A]
        faces = torch.cat([tet_edges.gather(1, table[:, 0]), tet_edges.gather(1, table[:, 1].clamp(min=0))[count == 2]])
        owner = torch.cat([torch.arange(len(case), device=device), torch.arange(len(case), device=device)[count == 2]])
        # Wind outward: the normal must point from the tet's inside vertices toward its outside ones.
        tv = vertices[tets_a]  # [A, 4, 3]
        occ_a = occ[active].float()[..., None]
        out_dir = (tv * (1 - occ_a)).sum(1) / (1 - occ_a).sum(1) - (tv * occ_a).sum(1) / occ_a.sum(1)  # [A, 3]
        p = mesh_vertices.detach()[faces]  # [F, 3, 3]
        normal = torch.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], dim=-1)
        flip = (normal * out_dir[owner]).sum(-1) < 0
        faces = torch.where(flip[:, None], faces[:, [0, 2, 1]], faces)
    return (mesh_vertices, faces, ends) if with_edges else (mesh_vertices, faces)
