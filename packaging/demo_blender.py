"""The Blender half of the demo, run by packaging/demo.py with bpy (Blender 5.0 as a Python module):
install the built extension zip the way an artist does, point it at the server, run the add-on's own
Generate operator, then save demo.blend, a Cycles render demo.png and demo.glb.

    python packaging/demo_blender.py --zip dist/propdreamer-0.1.0.zip --server tcp://127.0.0.1:5757 --out out/demo

Set BLENDER_USER_RESOURCES to a scratch folder first (demo.py does) so that the artist's own
Blender preferences and extensions are never touched. Prints one line 'RESULT {json}' at the end."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from propdreamer.core.request import METHODS, PRESETS, REPRESENTATIONS

# isort: split
import bpy  # first: it puts Blender's own modules (addon_utils, mathutils) on the path

# isort: split
from mathutils import Vector

EXTENSION = "bl_ext.user_default.propdreamer"  # the add-on's module once installed into the user repository


def install(zip_path: Path) -> None:
    result = bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default", enable_on_install=True)
    if result != {"FINISHED"} or EXTENSION not in bpy.context.preferences.addons:
        raise SystemExit(f"installing {zip_path} into Blender failed ({result}); rebuild it with `python packaging/build_extension.py`")


def wait_for_server(timeout_s: float) -> str:
    """The add-on's own Check Server, until the server has loaded its prior and answers."""
    prefs = bpy.context.preferences.addons[EXTENSION].preferences
    deadline = time.monotonic() + timeout_s
    while True:
        if bpy.ops.propdreamer.check_server() == {"FINISHED"} and "protocol" in prefs.last_check:
            return prefs.last_check
        if time.monotonic() > deadline:
            raise SystemExit(f"the server at {prefs.server} did not answer within {timeout_s:.0f} s: {prefs.last_check}")
        time.sleep(1.0)


def stage_scene(obj: bpy.types.Object, samples: int, resolution: int) -> None:
    """A ground plane, a key light, a sky and a camera framing the object, rendered by Cycles on the CPU."""
    scene = bpy.context.scene
    bpy.context.view_layer.update()
    bottom = min((obj.matrix_world @ Vector(c)).z for c in obj.bound_box)
    obj.location.z -= bottom  # stand it on the ground
    bpy.ops.mesh.primitive_plane_add(size=20.0, location=(0.0, 0.0, 0.0))
    ground = bpy.context.active_object
    ground.name = "Ground"
    ground_mat = bpy.data.materials.new("Ground")
    ground_mat.use_nodes = True
    ground_mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.55, 0.55, 0.55, 1.0)
    ground.data.materials.append(ground_mat)

    size = max(obj.dimensions)
    centre = obj.location.copy()
    centre.z = size / 2
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    cam.location = centre + Vector((1.25, -2.0, 1.1)) * size
    track = cam.constraints.new("TRACK_TO")
    track.target, track.track_axis, track.up_axis = obj, "TRACK_NEGATIVE_Z", "UP_Y"
    cam.data.lens = 50.0
    scene.camera = cam

    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy, sun.data.angle = 3.0, 0.2
    sun.rotation_euler = (0.8, 0.2, 0.6)
    scene.collection.objects.link(sun)
    world = bpy.data.worlds.new("Sky")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.55, 0.62, 0.75, 1.0)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.8
    scene.world = world

    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = True
    scene.render.resolution_x = scene.render.resolution_y = resolution
    scene.render.resolution_percentage = 100


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zip", required=True, type=Path, help="the extension zip from packaging/build_extension.py")
    ap.add_argument("--server", required=True, help="the server's ZeroMQ address")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--prompt", default="a red cube")
    ap.add_argument("--preset", default="draft", choices=PRESETS)
    ap.add_argument("--method", default="auto", choices=["auto", *METHODS], help="auto (default): the panel's Auto, the prior's method")
    ap.add_argument("--representation", default="nerf", choices=REPRESENTATIONS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=32, help="Cycles samples of demo.png")
    ap.add_argument("--resolution", type=int, default=512, help="demo.png is this many pixels square")
    ap.add_argument("--server-wait", type=float, default=300.0, help="seconds to wait for the server to come up")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    times = {}

    bpy.ops.wm.read_homefile(use_empty=True)
    start = time.perf_counter()
    install(args.zip)
    prefs = bpy.context.preferences.addons[EXTENSION].preferences
    prefs.server, prefs.timeout_s = args.server, 30.0
    times["install_s"] = time.perf_counter() - start
    print(f"Installed {args.zip.name} into Blender {bpy.app.version_string}; {wait_for_server(args.server_wait)}", flush=True)

    s = bpy.context.scene.propdreamer
    s.prompt, s.preset, s.method, s.representation = args.prompt, args.preset, args.method, args.representation
    s.random_seed, s.seed, s.target_size = False, args.seed, 1.0
    bpy.context.scene.cursor.location = (0.0, 0.0, 0.0)
    before = set(bpy.data.objects)
    start = time.perf_counter()
    result = bpy.ops.propdreamer.generate(wait=True)  # the panel's Generate button
    times["generate_s"] = time.perf_counter() - start
    new = [o for o in bpy.data.objects if o not in before and o.type == "MESH"]
    if result != {"FINISHED"} or not new:
        raise SystemExit(f"the add-on's Generate did not bring an object into the scene ({result}); see the server log")
    obj = new[0]

    start = time.perf_counter()
    stage_scene(obj, args.samples, args.resolution)
    png, blend, glb = args.out / "demo.png", args.out / "demo.blend", args.out / "demo.glb"
    bpy.context.scene.render.filepath = str(png)
    bpy.ops.render.render(write_still=True)
    times["render_s"] = time.perf_counter() - start
    bpy.ops.object.select_all(action="DESELECT")
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.export_scene.gltf(filepath=str(glb), export_format="GLB", use_selection=True)
    bpy.ops.file.pack_all()  # the .blend carries its texture
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))

    nodes = obj.active_material.node_tree.nodes if obj.active_material else []
    print(
        "RESULT "
        + json.dumps(
            {
                "object": obj.name,
                "faces": len(obj.data.polygons),
                "uv_layers": len(obj.data.uv_layers),
                "textured": any(n.type == "TEX_IMAGE" and n.image is not None for n in nodes),
                "dimensions": list(obj.dimensions),
                "files": {"blend": str(blend), "png": str(png), "glb": str(glb)},
                "times": times,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
