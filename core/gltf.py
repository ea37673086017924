"""Meshes in and out of glTF binary (GLB): the one place PropDreamer's frame meets glTF's.

PropDreamer's world is Blender's (Z up, front on -Y); glTF is Y up. Positions are written as
(x, z, -y) and read back as (x, -z, y); Blender's glTF importer makes the same turn, so an object
round-trips unmoved. UVs follow trimesh / OpenGL (v up, image row 0 at v = 1); trimesh flips them into
glTF's convention when it writes the file and back when it reads one.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .mesh.export import ExportConfig, UnwrappedMesh
    from .mesh.lod import Lod


def z_up_to_y_up(v: np.ndarray) -> np.ndarray:
    """[V, 3] PropDreamer (Z up) -> glTF (Y up): (x, y, z) -> (x, z, -y)."""
    return np.stack([v[:, 0], v[:, 2], -v[:, 1]], axis=-1)


def y_up_to_z_up(v: np.ndarray) -> np.ndarray:
    """[V, 3] glTF (Y up) -> PropDreamer (Z up): (x, y, z) -> (x, -z, y); the inverse of `z_up_to_y_up`."""
    return np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=-1)


def read_mesh(glb: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The triangles of a GLB in PropDreamer's Z-up world (glTF is Y up), in the file's vertex order:
    vertices [V, 3], faces [F, 3], and its first UV map [V, 2] (v up) or None when it has none."""
    import trimesh

    try:
        scene = trimesh.load(io.BytesIO(glb), file_type="glb", force="scene", process=False)
    except Exception as err:  # a corrupt upload is the client's error, not a crash
        raise ValueError(f"the input mesh is not a readable GLB ({type(err).__name__}: {err}); export the object as glTF binary (.glb)") from err
    meshes = [g for g in scene.dump() if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    if not meshes:
        raise ValueError("the input GLB holds no triangles; select a mesh object with faces")
    uv = [getattr(m.visual, "uv", None) for m in meshes]
    every = all(u is not None and len(u) == len(m.vertices) for u, m in zip(uv, meshes))
    uvs = np.concatenate([u for u in uv if u is not None]).astype(np.float32) if every else None
    mesh = trimesh.util.concatenate(meshes) if len(meshes) > 1 else meshes[0]
    return y_up_to_z_up(np.asarray(mesh.vertices, dtype=np.float32)), np.asarray(mesh.faces, dtype=np.int64), uvs


def textured_glb(vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, texture_png: bytes) -> bytes:
    """The artist's mesh exactly as given (Z up -> Y up only) in its vertex order, its UV map [V, 2], the texture."""
    import trimesh
    from PIL import Image

    material = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.open(io.BytesIO(texture_png)), metallicFactor=0.0, roughnessFactor=0.8)
    mesh = trimesh.Trimesh(z_up_to_y_up(vertices), faces, visual=trimesh.visual.TextureVisuals(uv=uvs, material=material), process=False)
    return trimesh.Scene(mesh).export(file_type="glb")


def to_glb(mesh: UnwrappedMesh, config: ExportConfig | None = None, name: str = "propdreamer") -> bytes:
    """A GLB: the mesh centred in a unit box, Y up (glTF), with a base-colour texture and PBR factors."""
    import trimesh
    from PIL import Image

    from .mesh.export import ExportConfig, normalise_to_unit_box

    config = config or ExportConfig()

    material = trimesh.visual.material.PBRMaterial(
        name=f"{name}_material",
        baseColorTexture=Image.fromarray(mesh.texture),
        metallicFactor=config.metallic,
        roughnessFactor=config.roughness,
    )
    visual = trimesh.visual.TextureVisuals(uv=mesh.uvs, material=material)
    tm = trimesh.Trimesh(z_up_to_y_up(normalise_to_unit_box(mesh.vertices)), mesh.faces, visual=visual, process=False)
    scene = trimesh.Scene()
    scene.add_geometry(tm, node_name=name, geom_name=name)
    return scene.export(file_type="glb")


def lods_glb(lods: list[Lod], config: ExportConfig | None = None, name: str = "propdreamer") -> bytes:
    """A GLB of an LOD chain: one root node per level, `{name}_LOD0`.. (extras `{"lod": k}`), each with its
    own mesh, UVs, base-colour texture and tangent-space normal map (NORMAL and TANGENT written, so a
    viewer's tangent frame is the one the map was baked in; a level without a map has no TANGENT). All levels share LOD0's centring and scale
    into the unit box, Y up."""
    import json
    import struct

    from PIL import Image

    from .mesh.export import ExportConfig, unit_box

    config = config or ExportConfig()
    centre, scale = unit_box(lods[0].mesh.vertices)
    binary = bytearray()
    doc: dict = {"asset": {"version": "2.0", "generator": "PropDreamer"}, "scene": 0, "scenes": [{"nodes": []}], "nodes": [], "meshes": [], "materials": []}
    doc.update(accessors=[], bufferViews=[], images=[], textures=[], samplers=[{"magFilter": 9729, "minFilter": 9987, "wrapS": 10497, "wrapT": 10497}])

    def view(data: bytes, target: int | None = None) -> int:
        binary.extend(b"\0" * (-len(binary) % 4))
        doc["bufferViews"].append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(data), **({"target": target} if target else {})})
        binary.extend(data)
        return len(doc["bufferViews"]) - 1

    def accessor(values: np.ndarray, kind: str, bounds: bool = False) -> int:
        component = 5125 if values.dtype == np.uint32 else 5126
        entry = {"bufferView": view(values.tobytes(), 34963 if component == 5125 else 34962), "componentType": component, "count": len(values), "type": kind}
        if bounds:
            entry.update(min=values.min(0).tolist(), max=values.max(0).tolist())
        doc["accessors"].append(entry)
        return len(doc["accessors"]) - 1

    def texture(pixels: np.ndarray) -> int:
        png = io.BytesIO()
        Image.fromarray(pixels).save(png, format="PNG")
        doc["images"].append({"bufferView": view(png.getvalue()), "mimeType": "image/png"})
        doc["textures"].append({"sampler": 0, "source": len(doc["images"]) - 1})
        return len(doc["textures"]) - 1

    for k, lod in enumerate(lods):
        m = lod.mesh
        positions = z_up_to_y_up((m.vertices - centre) * scale).astype(np.float32)
        attributes = {
            "POSITION": accessor(positions, "VEC3", bounds=True),
            "NORMAL": accessor(z_up_to_y_up(lod.normals).astype(np.float32), "VEC3"),
            "TEXCOORD_0": accessor(np.stack([m.uvs[:, 0], 1.0 - m.uvs[:, 1]], 1).astype(np.float32), "VEC2"),  # glTF's v points down the image
        }
        if lod.normal_map is not None:  # the frame the map was baked in (a level without a map needs none)
            attributes["TANGENT"] = accessor(np.concatenate([z_up_to_y_up(lod.tangents[:, :3]), lod.tangents[:, 3:]], 1).astype(np.float32), "VEC4")
        doc["materials"].append(
            {
                "name": f"{name}_LOD{k}_material",
                "pbrMetallicRoughness": {"baseColorTexture": {"index": texture(m.texture)}, "metallicFactor": config.metallic, "roughnessFactor": config.roughness},
                **({"normalTexture": {"index": texture(lod.normal_map)}} if lod.normal_map is not None else {}),
            }
        )
        indices = accessor(m.faces.astype(np.uint32).reshape(-1), "SCALAR")
        doc["meshes"].append({"name": f"{name}_LOD{k}", "primitives": [{"attributes": attributes, "indices": indices, "material": k}]})
        doc["nodes"].append({"name": f"{name}_LOD{k}", "mesh": k, "extras": {"lod": k}})
        doc["scenes"][0]["nodes"].append(k)
    binary.extend(b"\0" * (-len(binary) % 4))
    doc["buffers"] = [{"byteLength": len(binary)}]
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<I4s", len(text), b"JSON") + text + struct.pack("<I4s", len(binary), b"BIN\0") + bytes(binary)
