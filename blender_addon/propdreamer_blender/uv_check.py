"""How well a UV map respects the artist's polygons, bpy-free (numpy): the tests and benchmarks measure
every UV map PropDreamer writes with it.

- torn: a polygon whose UV image is not a scaled copy of its 3D shape because a chart boundary runs
  through it: one of its corners sits in another chart, so one of its UV edges is far longer than the
  map's texel density gives its 3D edge (more than `TEAR_RATIO` times the map's median ratio).
- flipped: a polygon whose UV image winds clockwise (negative signed area): a mirrored island, which
  turns a normal map's or a hand-painted detail's handedness around.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEAR_RATIO = 8.0


@dataclass(frozen=True)
class PolygonUVStats:
    polygons: int
    torn: int
    flipped: int
    max_jump: float  # the longest UV edge of a torn polygon (0 when none is torn), in UV units


def polygon_uv_stats(uvs: np.ndarray, positions: np.ndarray, loop_start: np.ndarray, loop_total: np.ndarray) -> PolygonUVStats:
    """uvs [L, 2] and positions [L, 3] per loop (face corner); each polygon's loops are
    loop_start[p] .. loop_start[p] + loop_total[p] - 1, in winding order."""
    loop_start, loop_total = np.asarray(loop_start, dtype=np.int64), np.asarray(loop_total, dtype=np.int64)
    polygon = np.repeat(np.arange(len(loop_start)), loop_total)  # [L] polygon of each loop
    nxt = np.arange(len(polygon)) + 1
    last = loop_start + loop_total - 1
    nxt[last] = loop_start  # each polygon's last corner closes back to its first
    uv_edge = np.linalg.norm(uvs[nxt] - uvs, axis=1)  # [L]
    edge_3d = np.linalg.norm(positions[nxt] - positions, axis=1)
    valid = edge_3d > 1e-12
    ratio = np.where(valid, uv_edge / np.where(valid, edge_3d, 1.0), 0.0)
    scale = float(np.median(ratio[valid])) if valid.any() else 0.0
    torn_edge = valid & (ratio > TEAR_RATIO * scale) & (uv_edge > 1e-6)
    torn = np.zeros(len(loop_start), dtype=bool)
    np.logical_or.at(torn, polygon, torn_edge)
    shoelace = uvs[:, 0] * uvs[nxt, 1] - uvs[nxt, 0] * uvs[:, 1]  # twice the signed area, summed per polygon
    area = np.bincount(polygon, weights=shoelace, minlength=len(loop_start))
    jump = float(uv_edge[torn_edge].max()) if torn_edge.any() else 0.0
    return PolygonUVStats(len(loop_start), int(torn.sum()), int((area < 0).sum()), jump)
