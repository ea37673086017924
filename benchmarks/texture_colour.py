"""Texture colour on an artist's mesh, through the artist's path: real Blender (bpy) with the add-on
presses Texture Selected on Suzanne (500 polygons, Bake into: New UV map) for a few builtin-prior
prompts; a real `propdreamer serve` (builtin prior, CPU, draft) textures it. Reported per prompt: the
CIE76 delta-E between the texture's mean colour (the texel under each polygon's UV centre, weighted by
the polygon's 3D area) and the prompt's colour as the builtin prior renders it, and the new map's torn
and flipped polygons.

    python benchmarks/texture_colour.py [--colours red,green,blue,yellow,white] [--shape cube]
"""

from __future__ import annotations

import argparse
import sys
import time

import bpy  # first: it puts Blender's own modules (addon_utils) on the path
import numpy as np
from in_blender import fresh_scene, serve, uv_stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--colours", default="red,green,blue,yellow,white")
    ap.add_argument("--shape", default="cube")
    args = ap.parse_args()

    import torch

    from propdreamer.core.builtin_prior.vocabulary import COLOURS
    from propdreamer.core.geometry.voxels import delta_e
    from propdreamer_blender.importer import _array

    rows = []
    with serve() as (endpoint, _):
        for colour in args.colours.split(","):
            s = fresh_scene(endpoint)
            s.prompt, s.bake_into = f"a {colour} {args.shape}", "new"
            bpy.ops.mesh.primitive_monkey_add()
            obj = bpy.context.active_object
            t0 = time.perf_counter()
            status = bpy.ops.propdreamer.texture_selected(wait=True)
            wall = time.perf_counter() - t0
            m = obj.data
            material = m.materials[-1]
            image = next(n.image for n in material.node_tree.nodes if n.type == "TEX_IMAGE")
            uv_map = next(n.uv_map for n in material.node_tree.nodes if n.type == "UVMAP")
            pixels = np.empty(len(image.pixels), np.float32)
            image.pixels.foreach_get(pixels)
            w, h = image.size
            texels = pixels.reshape(h, w, 4)[..., :3]  # [H, W, 3], row 0 at v = 0; a PNG loads as sRGB values in [0, 1]
            uvs = _array(m.uv_layers[uv_map].data, "uv", np.float32, 2)
            starts, totals = _array(m.polygons, "loop_start", np.int64, 1), _array(m.polygons, "loop_total", np.int64, 1)
            centre = np.add.reduceat(uvs, starts) / totals[:, None]  # [P, 2]
            area = _array(m.polygons, "area", np.float32, 1)
            sample = texels[(centre[:, 1].clip(0, 0.999) * h).astype(int), (centre[:, 0].clip(0, 0.999) * w).astype(int)]
            mean = (sample * area[:, None]).sum(0) / area.sum()
            st = uv_stats(obj, uvs)
            rows.append(
                {
                    "prompt": s.prompt,
                    "status": sorted(status)[0],
                    "delta_e": round(delta_e(torch.tensor(mean), torch.tensor(COLOURS[colour])), 1),
                    "mean_rgb": [round(float(c), 3) for c in mean],
                    "torn": st.torn,
                    "flipped": st.flipped,
                    "wall_s": round(wall, 1),
                }
            )
            print(rows[-1], flush=True)
    print(f"\n{'prompt':>16} {'delta-E':>8} {'mean RGB':>22} {'torn':>5} {'flipped':>7} {'wall s':>7}")
    for r in rows:
        print(f"{r['prompt']:>16} {r['delta_e']:>8} {str(r['mean_rgb']):>22} {r['torn']:>5} {r['flipped']:>7} {r['wall_s']:>7}")
    print(f"mean delta-E {np.mean([r['delta_e'] for r in rows]):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
