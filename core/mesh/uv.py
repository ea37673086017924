"""UV maps to bake into: a new unwrap for meshes that arrive without one, and the artist's own UVs
made ready for baking.

xatlas 0.0.11 crashes the process (SIGSEGV, not an exception) on single meshes of 81,920 triangles and
more (an ico sphere of 5 subdivisions unwraps, 6 crashes; BENCHMARKS.md "UVs"). So the mesh is cut into
spatially compact pieces of at most `UnwrapConfig.chunk_faces` triangles, each unwrapped on its own,
and xatlas packs all the pieces into one atlas. Each piece adds a seam along its border; a piece of a
few thousand triangles costs xatlas well under a second, so a million triangles unwrap in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class UnwrapConfig:
    chunk_faces: int = 16_000  # triangles per xatlas mesh: 20,480 works, 81,920 crashes

    def __post_init__(self) -> None:
        if not 1 <= self.chunk_faces <= 40_000:
            raise ValueError(f"UnwrapConfig.chunk_faces must be in 1..40000 (xatlas crashes on large single meshes); got {self.chunk_faces}")


def _pieces(centres: np.ndarray, index: np.ndarray, count: int) -> list[np.ndarray]:
    """Split faces (by their centres [F, 3]) into `count` compact groups: median cuts along the longest side."""
    if count <= 1 or len(index) <= 1:
        return [index]
    extent = centres[index].max(0) - centres[index].min(0)
    order = index[np.argsort(centres[index, int(extent.argmax())], kind="stable")]
    half = count // 2
    cut = len(order) * half // count
    return _pieces(centres, order[:cut], half) + _pieces(centres, order[cut:], count - half)


def unwrap(vertices: np.ndarray, faces: np.ndarray, config: UnwrapConfig = UnwrapConfig()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A new UV atlas for a triangle mesh.

    vertices [V, 3], faces [F, 3] -> vmapping [V'] (new vertex -> old vertex), faces [F, 3] over the new
    vertices (the input's face order and corner order), uvs [V', 2] in [0, 1]."""
    import xatlas

    vertices = np.ascontiguousarray(vertices, dtype=np.float32)
    faces = np.asarray(faces, dtype=np.int64)
    pieces = _pieces(vertices[faces].mean(1), np.arange(len(faces)), -(-len(faces) // config.chunk_faces))
    atlas, used_by_piece = xatlas.Atlas(), []
    for piece in pieces:
        used, local = np.unique(faces[piece], return_inverse=True)
        atlas.add_mesh(vertices[used], local.reshape(-1, 3).astype(np.uint32))
        used_by_piece.append(used)
    atlas.generate()
    vmapping, new_faces, uvs = [], np.empty_like(faces), []
    offset = 0
    for i, (piece, used) in enumerate(zip(pieces, used_by_piece)):
        vm, f, uv = atlas[i]
        vmapping.append(used[vm.astype(np.int64)])
        new_faces[piece] = f.astype(np.int64) + offset
        uvs.append(uv)
        offset += len(vm)
    return np.concatenate(vmapping), new_faces, np.concatenate(uvs).astype(np.float32)


def into_unit_tile(corner_uvs: np.ndarray) -> np.ndarray:
    """Each triangle's UVs [F, 3, 2] moved by whole tiles so its centre lies in [0, 1]^2.

    A renderer repeats the texture outside [0, 1] (glTF's and Blender's default wrap), so a triangle
    at u in [1.2, 1.4] shows the texels at [0.2, 0.4]: baking it there is what the artist will see."""
    shift = np.floor(corner_uvs.mean(1, keepdims=True))  # [F, 1, 2]
    return (corner_uvs - shift).astype(np.float32)


def weld(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices at exactly the same position merged (an upload splits them along its UV seams):
    unique vertices [W, 3] and faces [F, 3] over them, for rendering with smooth normals."""
    unique, inverse = np.unique(vertices, axis=0, return_inverse=True)
    return unique.astype(np.float32), inverse.reshape(-1)[faces]
