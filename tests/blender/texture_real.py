"""Run inside real Blender (bpy) against a server running the real pipeline (builtin prior): Texture
Selected on Suzanne (new UV map) and on a cylinder with n-gon caps (its own UV map), end to end.
Usage: python texture_real.py ENDPOINT ; prints one line 'RESULT {json}'."""

import json
import sys
from pathlib import Path

import bpy  # first: it puts Blender's own modules (addon_utils) on the path

# isort: split
import addon_utils
import numpy as np

sys.path.insert(0, str(Path(__file__).parents[2] / "blender_addon"))
bpy.ops.wm.read_homefile(use_empty=True)
addon_utils.enable("propdreamer_blender", default_set=True)
bpy.context.preferences.addons["propdreamer_blender"].preferences.server = sys.argv[1]
from propdreamer_blender import importer  # noqa: E402
from propdreamer_blender.importer import _array  # noqa: E402
from propdreamer_blender.uv_check import polygon_uv_stats  # noqa: E402

s = bpy.context.scene.propdreamer
bpy.ops.mesh.primitive_monkey_add(location=(3, 0, 0))
monkey = bpy.context.active_object
bpy.ops.mesh.primitive_cylinder_add(location=(-3, 0, 0), end_fill_type="NGON")
cylinder = bpy.context.active_object
r = {}
for obj, bake_into, prompt in ((monkey, "new", "a blue cube"), (cylinder, "active", "a yellow cylinder")):
    bpy.ops.object.select_all(action="DESELECT")
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    s.prompt, s.bake_into = prompt, bake_into
    status = list(bpy.ops.propdreamer.texture_selected(wait=True))
    m = obj.data
    material = m.materials[-1]
    uv_map = next(n.uv_map for n in material.node_tree.nodes if n.type == "UVMAP")
    image = next(n.image for n in material.node_tree.nodes if n.type == "TEX_IMAGE")
    pixels = np.empty(len(image.pixels), np.float32)
    image.pixels.foreach_get(pixels)
    uvs = _array(m.uv_layers[uv_map].data, "uv", np.float32, 2)
    w, h = image.size
    texels = pixels.reshape(h, w, 4)[(np.clip(uvs[:, 1] % 1.0, 0, 0.999) * h).astype(int), (np.clip(uvs[:, 0] % 1.0, 0, 0.999) * w).astype(int), :3]
    positions = importer._world_positions(obj)[_array(m.loops, "vertex_index", np.int64, 1)]
    st = polygon_uv_stats(uvs, positions, _array(m.polygons, "loop_start", np.int64, 1), _array(m.polygons, "loop_total", np.int64, 1))
    r[obj.name] = {
        "status": status,
        "uv_map": uv_map,
        "uv_maps": [l.name for l in m.uv_layers],
        "torn": st.torn,
        "flipped": st.flipped,
        "mean_rgb": texels.mean(0).tolist(),
        "made_by": [material.get("propdreamer_prompt"), material.get("propdreamer_prior"), len(material.get("propdreamer_weights_sha256", "")), "propdreamer_prompt" in obj.keys()],
    }
print("RESULT " + json.dumps(r))
