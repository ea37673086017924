"""Bringing results into the scene, and sending the artist's meshes out (bpy side)."""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass

import bmesh
import bpy
import numpy as np
from mathutils import Vector

from .glb import read_texture_result, write_mesh_glb


def import_glb(data: bytes, name: str) -> list[bpy.types.Object]:
    """Import a GLB; returns its mesh object (named `name`), or its levels of detail, LOD0 first (nodes
    named `..._LOD<k>`): those go into their own collection `name LODs`, named `name_LOD<k>`, LOD0 shown
    and the others hidden in the viewport and in renders."""
    before = set(bpy.data.objects)
    fd, path = tempfile.mkstemp(suffix=".glb", prefix="propdreamer_")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        bpy.ops.import_scene.gltf(filepath=path)
    finally:
        os.remove(path)
    new = [o for o in bpy.data.objects if o not in before]
    meshes = [o for o in new if o.type == "MESH"]
    if not meshes:
        raise ValueError("the server's result holds no mesh")
    levels = sorted((o for o in meshes if lod_level(o.name) is not None), key=lambda o: lod_level(o.name) or 0)
    kept = levels if len(levels) > 1 else meshes[:1]
    for other in new:  # keep only the meshes, with their world transforms
        if other not in kept and other.type != "MESH" and not other.children:
            bpy.data.objects.remove(other)
    if len(kept) == 1:
        kept[0].name = name
        return kept
    collection = bpy.data.collections.new(f"{name} LODs")
    bpy.context.collection.children.link(collection)
    for k, obj in enumerate(kept):
        for c in list(obj.users_collection):
            c.objects.unlink(obj)
        collection.objects.link(obj)
        obj.name = f"{name}_LOD{k}"
        obj.hide_render = k > 0
        obj.hide_set(k > 0)
    return kept


def lod_level(name: str) -> int | None:
    """k for an object named `..._LOD<k>` (Blender may add `.001`), else None."""
    match = re.search(r"_LOD(\d+)(\.\d+)?$", name)
    return int(match.group(1)) if match else None


def place(obj: bpy.types.Object, location: Vector, size: float) -> None:
    """Scale so the largest dimension is `size`, then put the object's centre at `location`."""
    bpy.context.view_layer.update()
    largest = max(obj.dimensions) or 1.0
    obj.scale = obj.scale * (size / largest)
    obj.location = location


NEW_UV_MAP = ""  # `uv_map` value: bake into a new UV map


@dataclass
class Upload:
    """An object's mesh as sent to the server, and what is needed to put the result back."""

    glb: bytes
    uv_map: str  # the existing UV map the texture is baked into, or NEW_UV_MAP
    geometry: str  # geometry_hash() when it was sent: the result is refused if the mesh changed since
    warnings: list[str]


def _array(collection, attribute: str, dtype, width: int) -> np.ndarray:
    out = np.empty(len(collection) * width, dtype=dtype)
    collection.foreach_get(attribute, out)
    return out.reshape(-1, width) if width > 1 else out


def geometry_hash(mesh: bpy.types.Mesh) -> str:
    """A fingerprint of the vertices, faces and their corners: equal exactly when the geometry is."""
    digest = hashlib.sha1()
    for part in (_array(mesh.vertices, "co", np.float32, 3), _array(mesh.loops, "vertex_index", np.int32, 1), _array(mesh.polygons, "loop_total", np.int32, 1)):
        digest.update(part.tobytes())
    return digest.hexdigest()[:20]


def _world_positions(obj: bpy.types.Object) -> np.ndarray:
    co = _array(obj.data.vertices, "co", np.float32, 3)  # [V, 3]
    m = np.array(obj.matrix_world, dtype=np.float64)
    return (co @ m[:3, :3].T + m[:3, 3]).astype(np.float32)


def world_bounds(obj: bpy.types.Object) -> tuple[tuple[float, float, float], float]:
    """The centre and the largest side of the object's vertices' bounding box in world space: the frame
    the server normalises an upload into, so a refined result placed there lines up with its source
    (obj.dimensions are local: a rotated box's world box is larger)."""
    p = _world_positions(obj)
    lo, hi = p.min(0), p.max(0)
    centre = (lo + hi) / 2
    return (float(centre[0]), float(centre[1]), float(centre[2])), float((hi - lo).max())


@contextmanager
def _editing_copy(obj: bpy.types.Object):
    """A temporary object with a copy of `obj`'s mesh, in edit mode with every face selected and visible,
    for Blender's UV operators; the artist's object, selection and mode are left as they were."""
    context = bpy.context
    view_layer = context.view_layer
    active, selected = view_layer.objects.active, [o for o in context.selected_objects]
    mode = active.mode if active is not None else "OBJECT"
    if mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    mesh = obj.data.copy()
    tmp = bpy.data.objects.new("PropDreamer UV work", mesh)
    tmp.matrix_world = obj.matrix_world  # texel density follows the object's own scale
    context.scene.collection.objects.link(tmp)
    try:
        for o in selected:
            o.select_set(False)
        tmp.select_set(True)
        view_layer.objects.active = tmp
        bpy.ops.object.mode_set(mode="EDIT")
        bpy.ops.mesh.reveal()
        bpy.ops.mesh.select_all(action="SELECT")
        yield tmp
    finally:
        if tmp.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        bpy.data.objects.remove(tmp)
        bpy.data.meshes.remove(mesh)
        for o in selected:
            if o.name in bpy.data.objects:
                o.select_set(True)
        view_layer.objects.active = active
        if active is not None and mode != "OBJECT":
            bpy.ops.object.mode_set(mode=mode)


def new_uv_map(obj: bpy.types.Object) -> np.ndarray:
    """A new UV map for `obj` from Blender's own unwrapper (Smart UV Project, on a copy): one UV per loop
    [L, 2]. It cuts only along polygon edges, never inside a face, and never mirrors an island."""
    with _editing_copy(obj) as tmp:
        tmp.data.uv_layers.new(name="PropDreamer", do_init=False)
        tmp.data.uv_layers.active = tmp.data.uv_layers["PropDreamer"]
        bpy.ops.uv.smart_project(angle_limit=math.radians(66.0), island_margin=0.003, area_weight=0.0, correct_aspect=True, scale_to_bounds=False)
        bpy.ops.object.mode_set(mode="OBJECT")
        return _array(tmp.data.uv_layers["PropDreamer"].data, "uv", np.float32, 2)


def overlapping_faces(obj: bpy.types.Object, uv_map: str) -> int:
    """How many faces of `uv_map` overlap another face in UV space (Blender's Select Overlap)."""
    with _editing_copy(obj) as tmp:
        tmp.data.uv_layers.active = tmp.data.uv_layers[uv_map]
        tool = bpy.context.scene.tool_settings
        sync, tool.use_uv_select_sync = tool.use_uv_select_sync, False  # per-face UV selection, as the UV editor's own
        try:
            bpy.ops.uv.select_all(action="DESELECT")
            bpy.ops.uv.select_overlap(extend=False)
            bm = bmesh.from_edit_mesh(tmp.data)
            if bpy.app.version >= (5, 0, 0):  # Blender 5.0 keeps the UV selection on the loop itself
                return sum(1 for f in bm.faces if f.loops and all(loop.uv_select_vert for loop in f.loops))
            layer = bm.loops.layers.uv[uv_map]  # 4.x: on each UV map's loop data
            return sum(1 for f in bm.faces if f.loops and all(loop[layer].select for loop in f.loops))
        finally:
            tool.use_uv_select_sync = sync


def uv_warnings(obj: bpy.types.Object, uv_map: str, uvs: np.ndarray) -> list[str]:
    """What baking into an existing UV map will do where the map is not a clean atlas."""
    warnings = []
    overlaps = overlapping_faces(obj, uv_map)
    if overlaps:
        warnings.append(
            f"'{obj.name}': {overlaps} of its {len(obj.data.polygons)} faces overlap others in UV map '{uv_map}' (mirrored or stacked islands): "
            "they share texels, so each copy shows the same texture. Choose Bake into: New UV map for a texture of their own"
        )
    starts = _array(obj.data.polygons, "loop_start", np.int64, 1)
    outside = np.add.reduceat(((uvs < 0.0) | (uvs > 1.0)).any(1).astype(np.int64), starts) > 0 if len(starts) else np.zeros(0, bool)
    if outside.any():
        warnings.append(
            f"'{obj.name}': {int(outside.sum())} faces of UV map '{uv_map}' reach outside [0, 1]: the texture repeats there, "
            "so each face is baked into the tile its centre lies in and shares texels with the faces already in that tile"
        )
    return warnings


def check_size(obj: bpy.types.Object, limits: dict, with_uvs: bool) -> None:
    """Refuse, before any work, a mesh the server would refuse: over its triangle limit, or an upload
    larger than its upload limit (one vertex per loop: 12 bytes of position and 8 of UV per loop)."""
    mesh = obj.data
    triangles = len(mesh.loops) - 2 * len(mesh.polygons)  # a polygon of n corners is n - 2 triangles
    most = limits.get("max_input_faces")
    if most and triangles > most:
        raise ValueError(
            f"'{obj.name}' has {triangles:,} triangles, over the server's limit of {most:,}: texture a decimated copy "
            f"(Decimate modifier, ratio {most / triangles:.2f} or less, applied to a duplicate) or ask for the server's --max-input-faces to be raised"
        )
    size = 20 * len(mesh.loops) + 12 * triangles if with_uvs else 12 * len(mesh.vertices) + 12 * triangles
    most_bytes = limits.get("max_upload_bytes") or limits.get("max_frame_bytes")  # a server without chunked uploads: one frame
    if most_bytes and size > most_bytes:
        raise ValueError(
            f"'{obj.name}' would be a {size / 2**20:.0f} MiB upload, over the server's {most_bytes / 2**20:.0f} MiB limit: "
            "texture a decimated copy (Decimate modifier on a duplicate)"
        )


def mesh_for_upload(obj: bpy.types.Object, uv_map: str | None = None) -> Upload:
    """The object's triangles in world space as a GLB. `uv_map` None (refine): one vertex per mesh vertex,
    no UVs. Otherwise (texture): one vertex per loop (face corner), in loop order, carrying the UVs to bake
    into: those of the existing map `uv_map`, or a new map from Blender's unwrapper (NEW_UV_MAP)."""
    if obj.type != "MESH":
        raise ValueError(f"'{obj.name}' is not a mesh; select mesh objects")
    mesh = obj.data
    mesh.calc_loop_triangles()
    if not mesh.loop_triangles:
        raise ValueError(f"'{obj.name}' has no faces to texture")
    positions = _world_positions(obj)  # [V, 3]
    if uv_map is None:
        return Upload(write_mesh_glb(positions, _array(mesh.loop_triangles, "vertices", np.int64, 3)), NEW_UV_MAP, geometry_hash(mesh), [])
    warnings: list[str] = []
    if uv_map == NEW_UV_MAP:
        uvs = new_uv_map(obj)
    else:
        if uv_map not in mesh.uv_layers:
            raise ValueError(f"'{obj.name}' has no UV map '{uv_map}' (it has {[l.name for l in mesh.uv_layers] or 'none'}); choose Bake into: New UV map")
        uvs = _array(mesh.uv_layers[uv_map].data, "uv", np.float32, 2)
        warnings = uv_warnings(obj, uv_map, uvs)
    corners = positions[_array(mesh.loops, "vertex_index", np.int64, 1)]  # [L, 3]
    return Upload(write_mesh_glb(corners, _array(mesh.loop_triangles, "loops", np.int64, 3), uvs), uv_map, geometry_hash(mesh), warnings)


def apply_texture(obj: bpy.types.Object, result: bytes, uv_map: str, name: str, geometry: str | None = None) -> tuple[str, str]:
    """Put a texture result on the object: its UVs go into a new UV map (uv_map NEW_UV_MAP) or the result
    uses the existing map it was baked into; a new material carries the image. Vertices, faces and
    existing UV maps are untouched."""
    mesh = obj.data
    if geometry is not None and geometry_hash(mesh) != geometry:
        raise ValueError(f"'{obj.name}' changed since it was sent (its vertices or faces differ), so the texture no longer fits; texture it again")
    uvs, _, png = read_texture_result(result)
    if len(uvs) != len(mesh.loops):
        raise ValueError(f"the texture result has {len(uvs)} face corners but '{obj.name}' has {len(mesh.loops)}; the mesh changed since it was sent")
    if uv_map == NEW_UV_MAP:
        layer = mesh.uv_layers.new(name=name, do_init=False)
        if layer is None:
            raise ValueError(f"'{obj.name}' already has the maximum number of UV maps; remove one, or choose Bake into: an existing UV map")
        layer.data.foreach_set("uv", uvs.reshape(-1))
    else:
        layer = mesh.uv_layers.get(uv_map)
        if layer is None:
            raise ValueError(f"'{obj.name}' no longer has the UV map '{uv_map}' the texture was baked into; texture it again")
    fd, path = tempfile.mkstemp(suffix=".png", prefix="propdreamer_")
    with os.fdopen(fd, "wb") as f:
        f.write(png)
    image = bpy.data.images.load(path)
    image.name = name
    image.pack()
    os.remove(path)
    material = bpy.data.materials.new(name)
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    uv_node = nodes.new("ShaderNodeUVMap")
    uv_node.uv_map = layer.name
    links.new(uv_node.outputs["UV"], tex.inputs["Vector"])
    links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    mesh.materials.append(material)
    slot = len(mesh.materials) - 1
    for polygon in mesh.polygons:
        polygon.material_index = slot
    return layer.name, material.name
