"""What the in-Blender benchmarks share (texture_scaling, texture_colour, refine_keeps): a real
`propdreamer serve` on loopback (builtin prior, CPU), a fresh scene with the add-on enabled and pointed
at it, and the polygon measure of an object's UV map. Import after `bpy`."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import addon_utils
import bpy
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "blender_addon"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from via_server import _free_port  # noqa: E402


@contextmanager
def serve(prior: str = "builtin"):
    """A `propdreamer serve` process as an artist starts it; yields (endpoint, process)."""
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    with tempfile.TemporaryDirectory() as spool:
        server = subprocess.Popen(
            [sys.executable, "-m", "propdreamer.server.cli", "serve", "--bind", endpoint, "--device", "cpu", "--prior", prior, "--spool", spool],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield endpoint, server
        finally:
            from propdreamer_blender import tracking

            tracking.shutdown()
            server.terminate()
            server.wait(30)


def fresh_scene(endpoint: str, timeout_s: float = 120.0):
    """An empty scene, the add-on enabled and pointed at `endpoint`; returns the panel's settings."""
    from propdreamer_blender import tracking

    tracking.shutdown()
    bpy.ops.wm.read_homefile(use_empty=True)
    addon_utils.enable("propdreamer_blender", default_set=True)
    prefs = bpy.context.preferences.addons["propdreamer_blender"].preferences
    prefs.server, prefs.timeout_s = endpoint, timeout_s
    return bpy.context.scene.propdreamer


def uv_stats(obj: bpy.types.Object, uvs: np.ndarray):
    """uv_check.polygon_uv_stats of a per-loop UV map [L, 2] of `obj`."""
    from propdreamer_blender import importer
    from propdreamer_blender.importer import _array
    from propdreamer_blender.uv_check import polygon_uv_stats

    m = obj.data
    positions = importer._world_positions(obj)[_array(m.loops, "vertex_index", np.int64, 1)]
    return polygon_uv_stats(uvs, positions, _array(m.polygons, "loop_start", np.int64, 1), _array(m.polygons, "loop_total", np.int64, 1))
