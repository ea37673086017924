"""Stage two's representation: a mesh (from DMTet, or an artist's fixed mesh) with a colour field,
rendered by the PyTorch rasteriser behind the same `Representation` interface as stage one, so the
same trainer loop drives geometry refinement and texture refinement.

Regularisers (Magic3D): normal consistency  sum over adjacent faces (1 - n_f . n_g), and the uniform
Laplacian  |v - mean(neighbours of v)|^2 , both averaged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..representation import Rendered, RenderRequest, Representation, ShapeTerms
from ..shading import shade
from .colour_field import ColourField
from .dmtet import DMTet
from .mesh_sdf import winding_number
from .rasterize import edge_faces, interpolate, rasterize, vertex_normals


def face_normals(vertices: Tensor, faces: Tensor) -> Tensor:  # [F, 3]
    v = vertices[faces]
    return F.normalize(torch.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=-1), dim=-1, eps=1e-12)


def normal_consistency(vertices: Tensor, faces: Tensor, adjacency: Tensor) -> Tensor:
    n = face_normals(vertices, faces)
    has = adjacency >= 0
    owner = torch.arange(faces.shape[0], device=faces.device)[:, None].expand_as(adjacency)
    return (1 - (n[owner[has]] * n[adjacency[has]]).sum(-1)).mean()


def laplacian(vertices: Tensor, faces: Tensor) -> Tensor:
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = torch.cat([edges, edges.flip(1)])  # both directions
    total = torch.zeros_like(vertices).index_add(0, edges[:, 0], vertices[edges[:, 1]])
    degree = torch.zeros(vertices.shape[0], device=vertices.device).index_add(0, edges[:, 0], torch.ones(edges.shape[0], device=vertices.device))
    return ((vertices - total / degree.clamp(min=1)[:, None]) ** 2).sum(-1).mean()


class MeshModel(Representation):
    kind = "mesh"

    fixed_vertices: Tensor  # registered buffers of a fixed mesh (see __init__)
    fixed_faces: Tensor

    def __init__(
        self,
        colour: ColourField,
        dmtet: DMTet | None = None,
        fixed: tuple[Tensor, Tensor] | None = None,
        train_geometry: bool = True,
        lr_sdf: float = 1e-2,
        lr_deform: float = 1e-2,
        bound: float = 1.0,
    ) -> None:
        super().__init__()
        if (dmtet is None) == (fixed is None):
            raise ValueError("MeshModel needs either a DMTet or a fixed (vertices, faces) mesh")
        self.colour, self.dmtet = colour, dmtet
        self.train_geometry = train_geometry and dmtet is not None
        self.lr_sdf, self.lr_deform, self._bound = lr_sdf, lr_deform, bound
        if fixed is not None:
            self.register_buffer("fixed_vertices", fixed[0].float())
            self.register_buffer("fixed_faces", fixed[1].long())
        self._adjacency: tuple[Tensor, Tensor] | None = None

    @property
    def bound(self) -> float:
        return self._bound

    def mesh(self) -> tuple[Tensor, Tensor]:
        """Vertices [V, 3] (differentiable while geometry trains) and faces [F, 3]."""
        if self.dmtet is None:
            return self.fixed_vertices, self.fixed_faces
        v, f = self.dmtet.extract()
        return (v, f) if self.train_geometry else (v.detach(), f)

    def adjacency(self, faces: Tensor) -> Tensor:
        if self._adjacency is None or self._adjacency[0] is not faces:
            self._adjacency = (faces, edge_faces(faces)[0])
        return self._adjacency[1]

    def render(self, request: RenderRequest) -> Rendered:
        v, f = self.mesh()
        adjacency = self.adjacency(f)
        frags = rasterize(v, f, request.cameras, request.resolution, adjacency=adjacency)
        mask = frags.face >= 0  # [B, H, W]
        points = interpolate(v, f, frags)[mask]  # [M, 3]
        albedo = self.colour(points)
        normals = F.normalize(interpolate(vertex_normals(v, f), f, frags)[mask], dim=-1, eps=1e-12) if request.mode != "albedo" else None
        light = None
        if request.light is not None:
            light = request.light[:, None, None, :].expand(*mask.shape, 3)[mask]
        colour = shade(albedo, normals, light, request.mode, request.shading)
        image = torch.zeros(*mask.shape, 3, device=v.device, dtype=colour.dtype).index_put(tuple(mask.nonzero().unbind(-1)), colour)
        premult = image.permute(0, 3, 1, 2) * frags.alpha
        regs = ShapeTerms()
        if self.train_geometry:
            regs = ShapeTerms(normal_consistency=normal_consistency(v, f, adjacency), laplacian=laplacian(v, f))
        return Rendered(premult=premult, alpha=frags.alpha, depth=frags.depth, regularisers=regs)

    def optimisers(self, lr_scale: float = 1.0) -> dict[str, torch.optim.Optimizer]:
        out = {"colour": self.colour.optimiser()}
        if self.train_geometry and self.dmtet is not None:  # (train_geometry implies a DMTet)
            out["geometry"] = torch.optim.Adam(
                [
                    {"params": [self.dmtet.sdf], "lr": self.lr_sdf * lr_scale},
                    {"params": [self.dmtet.deform], "lr": self.lr_deform * lr_scale},
                ]
            )
        return out

    @torch.no_grad()
    def density(self, x: Tensor) -> Tensor:
        """1 inside the mesh, 0 outside (generalised winding number)."""
        v, f = self.mesh()
        return (winding_number(v.detach(), f, x) > 0.5).float()

    @torch.no_grad()
    def albedo(self, x: Tensor) -> Tensor:
        return torch.cat([self.colour(c) for c in x.split(65536)])
