"""Run inside real Blender (bpy): import an LOD GLB with Blender's glTF importer and write, for every
level, each face corner's position (world), UV, and the tangent frame Blender computes for normal maps
(MikkTSpace: tangent, bitangent sign, normal), to compare with the frame the maps were baked in.
Usage: python lod_tangents.py GLB OUT.npz"""

import sys

import bpy
import numpy as np

glb, out = sys.argv[1], sys.argv[2]
bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.import_scene.gltf(filepath=glb)
arrays = {}
for obj in bpy.data.objects:
    if obj.type != "MESH":
        continue
    mesh = obj.data
    loops = len(mesh.loops)

    def get(collection, attr: str, width: int, loops: int = loops) -> np.ndarray:
        out = np.empty(loops * width, dtype=np.float32)
        collection.foreach_get(attr, out)
        return out.reshape(-1, width)

    uv_name = mesh.uv_layers[0].name
    uvs = get(mesh.uv_layers[0].data, "uv", 2)  # read before calc_tangents, which leaves older references to the layer stale
    mesh.calc_tangents(uvmap=uv_name)
    corner_vertex = np.empty(loops, dtype=np.int64)
    mesh.loops.foreach_get("vertex_index", corner_vertex)
    positions = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", positions)
    world = np.array(obj.matrix_world)
    p = positions.reshape(-1, 3)[corner_vertex] @ world[:3, :3].T + world[:3, 3]
    key = obj.name.split(".")[0]
    arrays[f"{key}/position"] = p
    arrays[f"{key}/uv"] = uvs
    arrays[f"{key}/tangent"] = get(mesh.loops, "tangent", 3) @ world[:3, :3].T
    arrays[f"{key}/sign"] = get(mesh.loops, "bitangent_sign", 1)[:, 0]
    if hasattr(mesh, "corner_normals"):  # Blender 4.1 and later
        normals = np.empty(loops * 3, dtype=np.float32)
        mesh.corner_normals.foreach_get("vector", normals)
        arrays[f"{key}/normal"] = normals.reshape(-1, 3) @ world[:3, :3].T
    else:
        arrays[f"{key}/normal"] = get(mesh.loops, "normal", 3) @ world[:3, :3].T
np.savez(out, **arrays)
print("RESULT", sorted({k.split("/")[0] for k in arrays}))
