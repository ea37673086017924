"""Refine Selected keeps the object: through the artist's path. Real Blender (bpy) with the add-on
presses Refine Selected on primitives of several proportions, scales and rotations (some parented),
with a prompt naming their shape; a real `propdreamer serve` (builtin prior, CPU, draft) refines them;
the add-on places the result. In world space, against the source:

- volume IoU (generalised winding number on a 48^3 grid over both objects' bounding box, on copies
  decimated to 3,000 triangles),
- volume and surface area ratios (result / source),
- connected components of the result (flakes show up here), and whether it is closed.

    python benchmarks/refine_keeps.py [--cases box,cylinder,sphere,...] [--csv out.csv]

Targets (issue 23), for prompts that name the object's shape: IoU >= 0.8, volume and area within 10%,
one component. Suzanne, and a box prompted as a sphere, should move toward the prompt in one piece.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import bpy  # first: it puts Blender's own modules (addon_utils) on the path
import numpy as np
from in_blender import fresh_scene, serve

# name: (primitive, object scale, rotation in degrees, parented, prompt)
CASES = {
    "box": ("cube", (1.0, 0.5, 0.25), (20.0, 0.0, 35.0), True, "a red cube"),
    "cube": ("cube", (0.5, 0.5, 0.5), (0.0, 0.0, 0.0), False, "a green cube"),
    "cylinder": ("cylinder", (0.4, 0.4, 1.0), (0.0, 30.0, 0.0), False, "a blue cylinder"),
    "disc": ("cylinder", (1.0, 1.0, 0.3), (0.0, 0.0, 0.0), True, "a yellow cylinder"),
    "sphere": ("sphere", (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), False, "a red sphere"),
    "ellipsoid": ("sphere", (1.2, 0.8, 0.6), (0.0, 0.0, 60.0), False, "a white sphere"),
    # not the prompt's shape: it should move toward the prompt without tearing (one closed part)
    "suzanne": ("monkey", (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), False, "a red sphere"),
    "box as sphere": ("cube", (1.0, 0.5, 0.25), (0.0, 0.0, 0.0), False, "a purple sphere"),
}
SHAPE_CASES = "box,cube,cylinder,disc,sphere,ellipsoid"  # the target: IoU >= 0.8, volume and area within 10%, one part


def add_case(name: str) -> bpy.types.Object:
    primitive, scale, rotation, parented, _ = CASES[name]
    {
        "cube": bpy.ops.mesh.primitive_cube_add,
        "cylinder": bpy.ops.mesh.primitive_cylinder_add,
        "sphere": bpy.ops.mesh.primitive_uv_sphere_add,
        "monkey": bpy.ops.mesh.primitive_monkey_add,
    }[primitive]()
    obj = bpy.context.active_object
    obj.scale, obj.rotation_euler = scale, tuple(math.radians(a) for a in rotation)
    if parented:
        parent = bpy.data.objects.new("parent", None)
        bpy.context.scene.collection.objects.link(parent)
        parent.location, parent.rotation_euler = (1.0, -2.0, 0.5), (0.0, 0.0, math.radians(15.0))
        obj.parent = parent
    bpy.context.view_layer.update()
    return obj


def world_mesh(obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray]:
    """The object's triangles in world space: vertices [V, 3], faces [F, 3]."""
    from propdreamer_blender import importer
    from propdreamer_blender.importer import _array

    mesh = obj.data
    mesh.calc_loop_triangles()
    return importer._world_positions(obj).astype(np.float64), _array(mesh.loop_triangles, "vertices", np.int64, 3)


def _coarse(v: np.ndarray, f: np.ndarray, most: int = 3000):
    """At most `most` triangles for the occupancy grid (the winding number costs points x triangles;
    decimation moves the surface far less than a voxel of the 48^3 grid)."""
    import fast_simplification
    import torch

    if len(f) > most:
        v, f = fast_simplification.simplify(v.astype(np.float32), f.astype(np.int32), target_count=most)
    return torch.tensor(v, dtype=torch.float32), torch.tensor(np.asarray(f, dtype=np.int64))


def compare(source: tuple[np.ndarray, np.ndarray], result: tuple[np.ndarray, np.ndarray], n: int = 48) -> dict:
    import torch
    import trimesh

    from propdreamer.core.mesh.mesh_sdf import winding_number

    lo = np.minimum(source[0].min(0), result[0].min(0))
    hi = np.maximum(source[0].max(0), result[0].max(0))
    axes = [np.linspace(lo[i], hi[i], n) for i in range(3)]
    points = torch.tensor(np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3), dtype=torch.float32)
    inside = [(winding_number(*_coarse(v, f), points) > 0.5).numpy() for v, f in (source, result)]
    a = trimesh.Trimesh(*source, process=True)
    b = trimesh.Trimesh(*result, process=True)
    return {
        "iou": round(float((inside[0] & inside[1]).sum() / max((inside[0] | inside[1]).sum(), 1)), 3),
        "volume_ratio": round(float(b.volume / a.volume), 3),
        "area_ratio": round(float(b.area / a.area), 3),
        "components": len(b.split(only_watertight=False)),
        "closed": bool(b.is_watertight),
        "faces": len(b.faces),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--preset", default="draft")
    ap.add_argument("--csv", type=Path, default=None)
    args = ap.parse_args()

    rows = []
    with serve() as (endpoint, _):
        for name in args.cases.split(","):
            s = fresh_scene(endpoint)
            s.prompt, s.preset = CASES[name][4], args.preset
            source = add_case(name)
            before = set(bpy.data.objects)
            t0 = time.perf_counter()
            status = bpy.ops.propdreamer.refine_selected(wait=True)
            wall = time.perf_counter() - t0
            new = [o for o in bpy.data.objects if o not in before and o.type == "MESH"]
            row = {"case": name, "prompt": CASES[name][4], "status": sorted(status)[0], "wall_s": round(wall, 1)}
            if new:
                bpy.context.view_layer.update()
                row.update(compare(world_mesh(source), world_mesh(new[0])))
            rows.append(row)
            print(row, flush=True)
    print(f"\n{'case':>10} {'IoU':>6} {'volume':>7} {'area':>6} {'parts':>5} {'closed':>6} {'faces':>6} {'wall s':>7}")
    for r in rows:
        print(
            f"{r['case']:>10} {r.get('iou', '-'):>6} {r.get('volume_ratio', '-'):>7} {r.get('area_ratio', '-'):>6} {r.get('components', '-'):>5} "
            f"{str(r.get('closed', '-')):>6} {r.get('faces', '-'):>6} {r['wall_s']:>7}"
        )
    ok = [r for r in rows if "iou" in r and r["case"] in SHAPE_CASES.split(",")]
    if ok:
        print(
            f"mean IoU {np.mean([r['iou'] for r in ok]):.3f}; within target (IoU >= 0.8, volume and area within 10%, one part): "
            f"{sum(r['iou'] >= 0.8 and abs(r['volume_ratio'] - 1) <= 0.1 and abs(r['area_ratio'] - 1) <= 0.1 and r['components'] == 1 for r in ok)}/{len(ok)}"
        )
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
