"""Run inside real Blender (bpy): the add-on's flows against a server on loopback.
Usage: python addon_flows.py ENDPOINT OUT_DIR ; prints one line 'RESULT {json}'."""

import json
import sys
import time
from pathlib import Path

import bpy  # first: it puts Blender's own modules (addon_utils) on the path

# isort: split
import addon_utils

endpoint, out = sys.argv[1], Path(sys.argv[2])
sys.path.insert(0, str(Path(__file__).parents[2] / "blender_addon"))
r = {}

bpy.ops.wm.read_homefile(use_empty=True)
addon_utils.enable("propdreamer_blender", default_set=True)
r["blender"] = bpy.app.version_string
r["registered"] = hasattr(bpy.types.Scene, "propdreamer") and hasattr(bpy.ops.propdreamer, "generate")
prefs = bpy.context.preferences.addons["propdreamer_blender"].preferences
prefs.server = endpoint
s = bpy.context.scene.propdreamer
r["settings"] = [s.prompt, s.method, s.representation, s.preset, s.cameras, s.seed, s.init]

r["check"] = list(bpy.ops.propdreamer.check_server())
r["check_text"] = prefs.last_check

# Generate: a textured mesh at the cursor, at the target size.
bpy.context.scene.cursor.location = (1.0, 2.0, 3.0)
s.prompt, s.target_size, s.init, s.seed, s.face_budget, s.mark_asset = "a red cube", 2.0, "ball", 7, 5000, True
before = set(bpy.data.objects)
r["generate"] = list(bpy.ops.propdreamer.generate(wait=True))
new = [o for o in bpy.data.objects if o not in before]
obj = new[0]
nodes = obj.active_material.node_tree.nodes
r["generated"] = {
    "n": len(new),
    "uv": len(obj.data.uv_layers),
    "image": any(n.type == "TEX_IMAGE" and n.image for n in nodes),
    "location": list(obj.location),
    "size": max(obj.dimensions),
    "asset": None if obj.asset_data is None else [obj.asset_data.description, sorted(t.name for t in obj.asset_data.tags)],
}
s.mark_asset = False

# History: re-run the generate job with its own settings.
from propdreamer_blender import tracking  # noqa: E402

first = next(j for j in tracking.current().jobs.values() if j.kind == "generate")
r["sent_init"] = first.body.get("init")
r["sent_face_budget"] = first.body.get("face_budget")
s.prompt = "something else"
before = set(bpy.data.objects)
r["rerun"] = list(bpy.ops.propdreamer.rerun(job=first.job, wait=True))
r["rerun_new"] = len([o for o in bpy.data.objects if o not in before])
r["rerun_prompt"] = s.prompt

# Provenance: the result's manifest as custom properties (the glTF importer's nested copy replaced);
# Re-run with These Settings makes it again, beside it, with its own settings whatever the panel holds.
r["provenance"] = {k: obj.get("propdreamer_" + k) for k in ("prompt", "seed", "settings", "prior", "generator")}
r["manifest_request"] = json.loads(obj["propdreamer_manifest"])["request"]
r["importer_group_removed"] = "propdreamer" not in obj.keys()
s.prompt, s.seed = "something else", 5
bpy.ops.object.select_all(action="DESELECT")
obj.select_set(True)
bpy.context.view_layer.objects.active = obj
before = set(bpy.data.objects)
r["rerun_selected"] = list(bpy.ops.propdreamer.rerun_selected(wait=True))
again = [o for o in bpy.data.objects if o not in before]
r["rerun_selected_new"] = (
    {
        "n": len(again),
        "prompt": again[0].get("propdreamer_prompt"),
        "seed": again[0].get("propdreamer_seed"),
        "offset": list(again[0].location - obj.location),
        "panel": [s.prompt, s.seed],
    }
    if again
    else {"n": 0}
)

# Variations: Generate 3 sends seeds s .. s+2 and lays the results out in a row from the 3D cursor.
s.prompt, s.variations, s.seed = "a red cube", 3, 40
bpy.context.scene.cursor.location = (0.0, -5.0, 0.0)
before = set(bpy.data.objects)
r["variations"] = list(bpy.ops.propdreamer.generate(wait=True))
row_of = sorted((o for o in bpy.data.objects if o not in before), key=lambda o: o.location.x)
r["variation_objects"] = [[o.get("propdreamer_seed"), list(o.location)] for o in row_of]
s.variations = 1

# Levels of detail: Generate with LODs 3 -> a collection LOD0..LOD2, LOD0 shown and the others hidden
# (viewport and render), all where LOD0 is, each material with its normal map.
s.prompt, s.lods, s.seed = "a red cube", 3, 9
bpy.context.scene.cursor.location = (0.0, 10.0, 0.0)
before = set(bpy.data.objects)
r["lods"] = list(bpy.ops.propdreamer.generate(wait=True))
levels = sorted((o for o in bpy.data.objects if o not in before), key=lambda o: o.name)


def normal_map_linked(o):
    tree = o.active_material.node_tree
    return any(l.from_node.type == "NORMAL_MAP" and l.to_socket.name == "Normal" for l in tree.links) and any(
        n.type == "TEX_IMAGE" and n.image and n.image.colorspace_settings.name == "Non-Color" for n in tree.nodes
    )


r["lod_objects"] = [
    {
        "name": o.name,
        "hidden": o.hide_get(),
        "hide_render": o.hide_render,
        "faces": len(o.data.polygons),
        "normal_map": normal_map_linked(o),
        "collections": [c.name for c in o.users_collection],
        "location": list(o.location),
        "size": max(o.dimensions),
        "seed": o.get("propdreamer_seed"),
    }
    for o in levels
]
r["sent_lods"] = next(j for j in tracking.current().jobs.values() if j.body.get("seed") == 9).body.get("lods")
s.lods = 1

# Texture selected: Suzanne, Suzanne subdivided twice (7,872 quads) and a cylinder with n-gon caps, its
# own UV map and a material keep their geometry, UV maps and materials, and gain a UV map (Blender's own
# unwrapper: no polygon torn or flipped) and a material.
import numpy as np  # noqa: E402

from propdreamer_blender import importer  # noqa: E402
from propdreamer_blender.importer import _array  # noqa: E402
from propdreamer_blender.uv_check import polygon_uv_stats  # noqa: E402

bpy.ops.mesh.primitive_monkey_add(location=(4, 0, 0))
monkey = bpy.context.active_object
bpy.ops.mesh.primitive_monkey_add(location=(8, 0, 0))
dense = bpy.context.active_object
dense.name = "Suzanne subdivided"
subsurf = dense.modifiers.new("subdivide", "SUBSURF")
subsurf.levels = 2
bpy.ops.object.modifier_apply(modifier=subsurf.name)
bpy.ops.mesh.primitive_cylinder_add(location=(-4, 0, 0), end_fill_type="NGON")
cube = bpy.context.active_object  # (the refine step below starts from it)
cube.data.materials.append(bpy.data.materials.new("artist's own"))


def snapshot(o):
    m = o.data
    return {
        "v": len(m.vertices),
        "f": len(m.polygons),
        "co": [tuple(v.co) for v in m.vertices],
        "loops": [l.vertex_index for l in m.loops],
        "uv": {l.name: [tuple(d.uv) for d in l.data] for l in m.uv_layers},
        "materials": [m_.name for m_ in m.materials],
    }


def uv_stats(o, layer):
    m = o.data
    positions = importer._world_positions(o)[_array(m.loops, "vertex_index", np.int64, 1)]
    st = polygon_uv_stats(
        _array(m.uv_layers[layer].data, "uv", np.float32, 2), positions, _array(m.polygons, "loop_start", np.int64, 1), _array(m.polygons, "loop_total", np.int64, 1)
    )
    return [st.polygons, st.torn, st.flipped]


textured = (monkey, dense, cube)
snap = {o.name: snapshot(o) for o in textured}
bpy.ops.object.select_all(action="DESELECT")
for o in textured:
    o.select_set(True)
bpy.context.view_layer.objects.active = cube
s.prompt, s.bake_into = "a blue cube", "new"
r["texture"] = list(bpy.ops.propdreamer.texture_selected(wait=True))
r["textured"], r["uv_stats"] = {}, {}
for o in textured:
    after, was = snapshot(o), snap[o.name]
    kept_uv = all(after["uv"][name] == uv for name, uv in was["uv"].items())
    new_layers = [name for name in after["uv"] if name not in was["uv"]]
    r["textured"][o.name] = {
        "same_geometry": all(after[k] == was[k] for k in ("v", "f", "co", "loops")),
        "kept_uv": kept_uv,
        "new_uv": len(new_layers) == 1,
        "new_material": after["materials"][:-1] == was["materials"] and len(after["materials"]) == len(was["materials"]) + 1,
    }
    r["uv_stats"][o.name] = uv_stats(o, new_layers[0]) if new_layers else None
r["selection_kept"] = sorted(o.name for o in bpy.context.selected_objects) == sorted(o.name for o in textured) and bpy.context.view_layer.objects.active == cube

# Bake into the cylinder's own UV map: no new map; the new material reads the artist's map.
bpy.ops.object.select_all(action="DESELECT")
cube.select_set(True)
bpy.context.view_layer.objects.active = cube
was = snapshot(cube)
s.bake_into = "active"
r["texture_existing"] = list(bpy.ops.propdreamer.texture_selected(wait=True))
after = snapshot(cube)
material = bpy.data.materials[after["materials"][-1]]
uv_nodes = [n.uv_map for n in material.node_tree.nodes if n.type == "UVMAP"]
r["existing"] = {
    "same_uv": after["uv"] == was["uv"],
    "same_geometry": all(after[k] == was[k] for k in ("v", "f", "co", "loops")),
    "material_reads": uv_nodes,
    "active_map": cube.data.uv_layers.active.name,
}

# A mirrored UV map (both halves of Suzanne on one island): the artist is told before the job runs.
mirror = monkey.data.uv_layers.new(name="mirrored")
for polygon in monkey.data.polygons:
    for li in polygon.loop_indices:
        co = monkey.data.vertices[monkey.data.loops[li].vertex_index].co
        mirror.data[li].uv = (abs(co.x) / 1.5 + 0.1, co.z / 2 + 1.5)  # and a tile up, outside [0, 1]
r["mirror_warnings"] = importer.mesh_for_upload(monkey, "mirrored").warnings
s.bake_into = "new"

# Refine selected: a new object; the original is kept (hidden).
bpy.ops.object.select_all(action="DESELECT")
cube.select_set(True)
bpy.context.view_layer.objects.active = cube
before = set(bpy.data.objects)
r["refine"] = list(bpy.ops.propdreamer.refine_selected(wait=True))
r["refined"] = {"new": len([o for o in bpy.data.objects if o not in before]), "original_kept": cube.name in bpy.data.objects, "original_hidden": cube.hide_get()}

# A job that fails: the operator reports the reason, the job list keeps it with its resolved settings.
s.prompt = "error"
try:
    r["failed"] = list(bpy.ops.propdreamer.generate(wait=True))
except RuntimeError as err:  # bpy.ops raises what an operator reports as an error
    r["failed"] = ["CANCELLED", str(err)]
failed = [j for j in tracking.current().jobs.values() if j.prompt == "error"][0]
r["failed_job"] = [failed.state, failed.message, failed.summary]

# Cancel a running job.
from propdreamer_blender import tracking  # noqa: E402

# In background mode the operators wait for their jobs, so submit through the add-on's job tracker.
job = tracking.tracker().submit("generate", {"prompt": "slow cube"})
deadline = time.time() + 20
while job.state == "queued" and time.time() < deadline:
    tracking.current().poll(0.1)
r["cancel"] = list(bpy.ops.propdreamer.cancel(job=job.job))
while job.active and time.time() < deadline:
    tracking.current().poll(0.1)
r["cancelled_state"] = job.state


# The panel draws (with jobs in the list): headless Blender has no window, so draw into a recorder.
class Recorder:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append(name)
            return self

        return call


from propdreamer_blender import ui  # noqa: E402

panel = type("P", (), {"layout": Recorder()})()
ui.PROPDREAMER_PT_panel.draw(panel, bpy.context)
r["panel_calls"] = sorted(set(panel.layout.calls))

# A Cycles CPU render of the generated object, for people to look at: the demo's own staging.
sys.path.insert(0, str(Path(__file__).parents[2] / "packaging"))
from demo_blender import stage_scene  # noqa: E402

for o in bpy.context.scene.objects:
    if o.type == "MESH" and o is not obj:
        o.hide_render = True
stage_scene(obj, samples=8, resolution=128)
scene = bpy.context.scene
scene.render.filepath = str(out / "generated_cycles.png")
bpy.ops.render.render(write_still=True)
r["render"] = scene.render.filepath

addon_utils.disable("propdreamer_blender")
r["unregistered"] = not hasattr(bpy.types.Scene, "propdreamer")
print("RESULT " + json.dumps(r))
