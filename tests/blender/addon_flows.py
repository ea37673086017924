"""Run inside real Blender (bpy): the add-on's flows against a server on loopback.
Usage: python addon_flows.py ENDPOINT OUT_DIR ; prints one line 'RESULT {json}'."""

import json
import sys
import time
from pathlib import Path

import bpy  # first: it puts Blender's own modules (addon_utils) on the path
import addon_utils  # noqa: E402

endpoint, out = sys.argv[1], Path(sys.argv[2])
sys.path.insert(0, str(Path(__file__).parents[2] / "blender_addon"))
r = {}

bpy.ops.wm.read_homefile(use_empty=True)
addon_utils.enable("propdreamer_blender", default_set=True)
r["registered"] = hasattr(bpy.types.Scene, "propdreamer") and hasattr(bpy.ops.propdreamer, "generate")
prefs = bpy.context.preferences.addons["propdreamer_blender"].preferences
prefs.server = endpoint
s = bpy.context.scene.propdreamer
r["settings"] = [s.prompt, s.method, s.representation, s.preset, s.cameras, s.seed]

r["check"] = list(bpy.ops.propdreamer.check_server())
r["check_text"] = prefs.last_check

# Generate: a textured mesh at the cursor, at the target size.
bpy.context.scene.cursor.location = (1.0, 2.0, 3.0)
s.prompt, s.target_size = "a red cube", 2.0
before = set(bpy.data.objects)
r["generate"] = list(bpy.ops.propdreamer.generate(wait=True))
new = [o for o in bpy.data.objects if o not in before]
obj = new[0]
nodes = obj.active_material.node_tree.nodes
r["generated"] = {"n": len(new), "uv": len(obj.data.uv_layers), "image": any(n.type == "TEX_IMAGE" and n.image for n in nodes),
                  "location": list(obj.location), "size": max(obj.dimensions)}

# History: re-run the generate job with its own settings.
from propdreamer_blender import operators  # noqa: E402
first = next(j for j in operators._TRACKER.jobs.values() if j.kind == "generate")
s.prompt = "something else"
before = set(bpy.data.objects)
r["rerun"] = list(bpy.ops.propdreamer.rerun(job=first.job, wait=True))
r["rerun_new"] = len([o for o in bpy.data.objects if o not in before])
r["rerun_prompt"] = s.prompt

# Texture selected: Suzanne and a cube keep their geometry and UV maps, and gain a UV map and a material.
bpy.ops.mesh.primitive_monkey_add(location=(4, 0, 0))
monkey = bpy.context.active_object
bpy.ops.mesh.primitive_cube_add(location=(-4, 0, 0))
cube = bpy.context.active_object
def snapshot(o):
    m = o.data
    return {"v": len(m.vertices), "f": len(m.polygons), "co": [tuple(v.co) for v in m.vertices],
            "uv": {l.name: [tuple(d.uv) for d in l.data] for l in m.uv_layers}, "materials": len(m.materials)}
snap = {o.name: snapshot(o) for o in (monkey, cube)}
bpy.ops.object.select_all(action="DESELECT")
monkey.select_set(True), cube.select_set(True)
bpy.context.view_layer.objects.active = cube
s.prompt = "a blue cube"
r["texture"] = list(bpy.ops.propdreamer.texture_selected(wait=True))
r["textured"] = {}
for o in (monkey, cube):
    after, was = snapshot(o), snap[o.name]
    kept_uv = all(after["uv"][name] == uv for name, uv in was["uv"].items())
    r["textured"][o.name] = {"same_geometry": after["v"] == was["v"] and after["f"] == was["f"] and after["co"] == was["co"],
                             "kept_uv": kept_uv, "new_uv": len(after["uv"]) == len(was["uv"]) + 1, "new_material": after["materials"] == was["materials"] + 1}

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
failed = [j for j in operators._TRACKER.jobs.values() if j.prompt == "error"][0]
r["failed_job"] = [failed.state, failed.message, failed.summary]

# Cancel a running job.
from propdreamer_blender import operators  # noqa: E402
# In background mode the operators wait for their jobs, so submit through the add-on's job tracker.
job = operators.tracker().submit("generate", {"prompt": "slow cube"})
deadline = time.time() + 20
while job.state == "queued" and time.time() < deadline:
    operators._TRACKER.poll(0.1)
r["cancel"] = list(bpy.ops.propdreamer.cancel(job=job.job))
while job.active and time.time() < deadline:
    operators._TRACKER.poll(0.1)
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
