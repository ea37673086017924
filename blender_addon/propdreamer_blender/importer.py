"""Bringing results into the scene, and sending the artist's meshes out (bpy side)."""

from __future__ import annotations

import os
import tempfile

import bpy
from mathutils import Vector

from .glb import read_texture_result, write_mesh_glb


def import_glb(data: bytes, name: str) -> bpy.types.Object:
    """Import a GLB; returns its mesh object (named `name`)."""
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
    obj = meshes[0]
    for other in new:  # keep only the mesh, with its world transform
        if other is not obj and other.type != "MESH" and not other.children:
            bpy.data.objects.remove(other)
    obj.name = name
    return obj


def place(obj: bpy.types.Object, location: Vector, size: float) -> None:
    """Scale so the largest dimension is `size`, then put the object's centre at `location`."""
    bpy.context.view_layer.update()
    largest = max(obj.dimensions) or 1.0
    obj.scale = obj.scale * (size / largest)
    obj.location = location


def mesh_for_upload(obj: bpy.types.Object) -> tuple[bytes, list[tuple[int, int, int]]]:
    """The object's triangles in world space as a GLB, and each triangle's loop (face-corner) indices."""
    if obj.type != "MESH":
        raise ValueError(f"'{obj.name}' is not a mesh; select mesh objects")
    mesh = obj.data
    mesh.calc_loop_triangles()
    if not mesh.loop_triangles:
        raise ValueError(f"'{obj.name}' has no faces to texture")
    world = obj.matrix_world
    positions = [tuple(world @ v.co) for v in mesh.vertices]
    triangles = [tuple(t.vertices) for t in mesh.loop_triangles]
    loops = [tuple(t.loops) for t in mesh.loop_triangles]
    return write_mesh_glb(positions, triangles), loops


def apply_texture(obj: bpy.types.Object, result: bytes, loops: list[tuple[int, int, int]], name: str) -> tuple[str, str]:
    """Add a UV map and a material carrying the texture; vertices, faces and existing UV maps untouched."""
    uvs, indices, png = read_texture_result(result)
    if len(indices) != 3 * len(loops):
        raise ValueError(f"the texture result has {len(indices) // 3} triangles but '{obj.name}' has {len(loops)}; the mesh changed since it was sent")
    mesh = obj.data
    layer = mesh.uv_layers.new(name=name, do_init=False)
    if layer is None:
        raise ValueError(f"'{obj.name}' already has the maximum number of UV maps; remove one and try again")
    for t, corner_loops in enumerate(loops):
        for k, loop in enumerate(corner_loops):
            layer.data[loop].uv = uvs[indices[3 * t + k]]
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
