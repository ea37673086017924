"""Texture Selected against face count, through the artist's path: real Blender (bpy) with the add-on
presses Texture Selected on a UV sphere of N triangles (quads, triangle fans at the poles); a real
`propdreamer serve` (builtin prior, CPU, draft) textures it; the add-on applies the result. Per size:

- wall time from the button to the textured object, and the add-on's share (Smart UV Project on a copy,
  the upload GLB) measured on its own;
- the server's and its worker's peak resident memory (VmHWM; a fresh server per size);
- the new UV map's torn and flipped polygons (uv_check.py).

    python benchmarks/texture_scaling.py [--triangles 1000,10000,100000,500000,2000000] [--csv out.csv]

Sizes over the server's --max-input-faces (500,000) or the 64 MiB frame are refused, and the refusal is
what the row reports. Linux only (/proc).
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
from in_blender import fresh_scene, serve, uv_stats


def peak_mib(pid: int) -> float:
    """Peak resident set size (VmHWM) of a process, in MiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def sphere(triangles: int) -> bpy.types.Object:
    """A UV sphere of about `triangles` triangles: `rings` rings of 2 * rings quads, triangle fans at the
    poles. Built from numpy arrays (Blender's sphere operators take minutes at two million faces)."""
    rings = max(3, round(math.sqrt(triangles / 4)))
    segments = 2 * rings
    theta = np.pi * np.arange(1, rings) / rings  # [R - 1] polar angle of each inner ring
    phi = 2 * np.pi * np.arange(segments) / segments
    ring_co = np.stack([np.sin(theta)[:, None] * np.cos(phi), np.sin(theta)[:, None] * np.sin(phi), np.cos(theta)[:, None].repeat(segments, 1)], -1)
    co = np.concatenate([[[0, 0, 1]], ring_co.reshape(-1, 3), [[0, 0, -1]]]).astype(np.float32)  # [V, 3]: north pole, rings, south pole
    south = len(co) - 1
    idx = 1 + np.arange((rings - 1) * segments).reshape(rings - 1, segments)
    nxt = np.roll(idx, -1, axis=1)
    top = np.stack([np.zeros(segments, np.int64), idx[0], nxt[0]], -1)  # fans wind counter-clockwise seen from outside
    quads = np.stack([idx[:-1], idx[1:], nxt[1:], nxt[:-1]], -1).reshape(-1, 4)
    bottom = np.stack([idx[-1], np.full(segments, south), nxt[-1]], -1)
    loops = np.concatenate([top.reshape(-1), quads.reshape(-1), bottom.reshape(-1)])
    sizes = np.concatenate([np.full(segments, 3), np.full(len(quads), 4), np.full(segments, 3)])
    mesh = bpy.data.meshes.new("Sphere")
    mesh.vertices.add(len(co))
    mesh.vertices.foreach_set("co", co.reshape(-1))
    mesh.loops.add(len(loops))
    mesh.loops.foreach_set("vertex_index", loops.astype(np.int32))
    mesh.polygons.add(len(sizes))
    mesh.polygons.foreach_set("loop_start", (np.cumsum(sizes) - sizes).astype(np.int32))
    mesh.update()
    mesh.validate()
    obj = bpy.data.objects.new("Sphere", mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    return obj


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--triangles", default="1000,10000,100000,500000,2000000")
    ap.add_argument("--preset", default="draft")
    ap.add_argument("--csv", type=Path, default=None)
    args = ap.parse_args()

    from propdreamer_blender import importer, tracking
    from propdreamer_blender.importer import _array

    rows = []
    for target in [int(x) for x in args.triangles.split(",")]:
        with serve() as (endpoint, server):
            s = fresh_scene(endpoint)
            s.prompt, s.preset, s.bake_into = "a blue sphere", args.preset, "new"
            obj = sphere(target)
            mesh = obj.data
            mesh.calc_loop_triangles()
            triangles = len(mesh.loop_triangles)
            t0 = time.perf_counter()
            upload = importer.mesh_for_upload(obj, importer.NEW_UV_MAP)
            addon_s = time.perf_counter() - t0
            tracking.tracker().hello()  # the server is up (and its worker started) before the clock starts
            worker_peak, error = 0.0, ""
            t0 = time.perf_counter()
            try:
                status = bpy.ops.propdreamer.texture_selected(wait=True)
            except RuntimeError as err:  # the operator reports a refusal as an error
                status, error = {"CANCELLED"}, str(err).strip().splitlines()[-1]
            wall = time.perf_counter() - t0
            for pid in children(server.pid):
                worker_peak = max(worker_peak, peak_mib(pid))
            server_peak = peak_mib(server.pid)
            torn = flipped = -1
            if status == {"FINISHED"}:
                layer = next(l.name for l in mesh.uv_layers if l.name.startswith("PropDreamer"))
                st = uv_stats(obj, _array(mesh.uv_layers[layer].data, "uv", np.float32, 2))
                torn, flipped = st.torn, st.flipped
            else:  # refused: the add-on's own check (it reports and skips the object), or the job's failure
                try:
                    importer.check_size(obj, tracking.tracker().limits(), with_uvs=True)
                except ValueError as err:
                    error = error or str(err)
                job = next(iter(tracking.current().jobs.values()), None) if tracking.current() else None
                error = error or (job.message if job else "") or "refused"
        row = {
            "triangles": triangles,
            "polygons": len(mesh.polygons),
            "upload_mib": round(len(upload.glb) / 2**20, 1),
            "status": "textured" if not error else "refused",
            "wall_s": round(wall, 1),
            "addon_s": round(addon_s, 2),
            "server_peak_mib": round(server_peak),
            "worker_peak_mib": round(worker_peak),
            "torn": torn,
            "flipped": flipped,
            "error": error[:200],
        }
        rows.append(row)
        print(row, flush=True)
    base = next((r for r in rows if r["triangles"] < 20_000 and r["status"] == "textured" and r["triangles"] > 5_000), None)
    print(f"\n{'triangles':>10} {'upload MiB':>10} {'status':>9} {'wall s':>7} {'x 10k':>6} {'add-on s':>8} {'server MiB':>10} {'worker MiB':>10} {'torn':>5} {'flipped':>7}")
    for r in rows:
        ratio = f"{r['wall_s'] / base['wall_s']:.2f}" if base and r["status"] == "textured" else "-"
        print(
            f"{r['triangles']:>10,} {r['upload_mib']:>10} {r['status']:>9} {r['wall_s']:>7} {ratio:>6} {r['addon_s']:>8} "
            f"{r['server_peak_mib']:>10} {r['worker_peak_mib']:>10} {r['torn']:>5} {r['flipped']:>7}"
        )
        if r["error"]:
            print(f"{'':>10} refusal: {r['error']}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
