"""Run inside real Blender (bpy): results survive a Blender crash between submit and result.
Usage: python crash_recovery.py ENDPOINT OUT_DIR PHASE ; prints one line 'RESULT {json}'.

- submit:  texture 'Crate' (new UV map) and 'Barrel' (its own UV map) and generate a prop, save the
           .blend, then die by SIGKILL (no preferences saved, nothing cleaned up).
- reopen:  a new Blender opens the .blend: it finds the finished jobs, refuses Barrel's texture
           (its mesh was edited since), imports the rest where they belong.
BLENDER_USER_CONFIG points at OUT_DIR, so the client id file lives there."""

import json
import os
import signal
import sys
from pathlib import Path

import bpy  # first: it puts Blender's own modules (addon_utils) on the path

# isort: split
import addon_utils

endpoint, out, phase = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
sys.path.insert(0, str(Path(__file__).parents[2] / "blender_addon"))
blend = out / "crash.blend"
r = {}

if phase == "submit":
    bpy.ops.wm.read_homefile(use_empty=True)
addon_utils.enable("propdreamer_blender", default_set=True)
prefs = bpy.context.preferences.addons["propdreamer_blender"].preferences
prefs.server = endpoint
from propdreamer_blender import prefs as prefs_module  # noqa: E402

if phase == "submit":
    s = bpy.context.scene.propdreamer
    bpy.ops.mesh.primitive_cube_add(location=(3, 0, 0))
    crate = bpy.context.active_object
    crate.name = "Crate"
    bpy.ops.mesh.primitive_cylinder_add(location=(-3, 0, 0))
    barrel = bpy.context.active_object
    barrel.name = "Barrel"
    s.prompt = "a blue cube"
    for obj, bake_into in ((crate, "new"), (barrel, "active")):
        bpy.ops.object.select_all(action="DESELECT")
        obj.select_set(True)
        bpy.context.view_layer.objects.active = obj
        s.bake_into = bake_into
        r[f"texture_{obj.name}"] = list(bpy.ops.propdreamer.texture_selected(detach=True))
    bpy.context.scene.cursor.location = (0.0, 5.0, 0.0)
    s.prompt, s.target_size = "a red cube", 1.5
    r["generate"] = list(bpy.ops.propdreamer.generate(detach=True))
    r["recorded"] = [[j.kind, j.target, j.state] for j in bpy.context.scene.propdreamer.jobs]
    r["client_id"] = prefs.client_id
    r["client_id_file"] = open(prefs_module.client_id_file()).read().strip()
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    print("RESULT " + json.dumps(r), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # a crash: no preferences saved, nothing closed

# reopen: a fresh Blender; preferences hold no client id until the add-on reads its file.
import time  # noqa: E402

time.sleep(1.0)  # the stand-in pipeline finishes the jobs while Blender is "down"
bpy.ops.wm.open_mainfile(filepath=str(blend))  # the load handler asks the server about the recorded jobs
s = bpy.context.scene.propdreamer
r["client_id"] = prefs.client_id
r["waiting"] = [s.waiting, s.waiting_note]
barrel = bpy.data.objects["Barrel"]
barrel.data.vertices[0].co.z += 0.25  # the artist edited Barrel after sending it
before = set(bpy.data.objects)
try:
    r["fetch"] = list(bpy.ops.propdreamer.fetch_again())
except RuntimeError as err:
    r["fetch"] = ["ERROR", str(err)]
crate = bpy.data.objects["Crate"]
r["crate"] = {"uv_maps": [l.name for l in crate.data.uv_layers], "materials": [m.name for m in crate.data.materials if m]}
r["barrel"] = {"uv_maps": [l.name for l in barrel.data.uv_layers], "materials": [m.name for m in barrel.data.materials if m]}
new = [o for o in bpy.data.objects if o not in before]
r["generated"] = [[o.name, list(o.location), max(o.dimensions)] for o in new]
r["records"] = {j.kind + ":" + j.target: [j.state, j.message] for j in s.jobs}
r["waiting_after"] = s.waiting
print("RESULT " + json.dumps(r), flush=True)
