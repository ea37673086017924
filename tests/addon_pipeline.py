"""A fast stand-in pipeline for the add-on's tests (only the add-on is under test): real GLBs, made in
milliseconds. generate: a textured box; refine and texture: the uploaded triangles with planar UVs."""

import io
import time

import numpy as np
import trimesh
from PIL import Image

from propdreamer.core import provenance
from propdreamer.core.cancel import Cancelled
from propdreamer.core.gltf import read_mesh, textured_glb


def _png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _planar(vertices):
    lo, hi = vertices.min(0), vertices.max(0)
    return ((vertices[:, :2] - lo[:2]) / np.maximum(hi[:2] - lo[:2], 1e-9)).astype(np.float32)


def run(request, input_mesh, job):
    """The result carries a manifest as the real pipeline's does (core/provenance.py)."""
    glb = _run(request, input_mesh, job)
    return provenance.attach(glb, provenance.manifest(request, SETTINGS, "stand-in", None, {"stand-in": 0.01}))


SETTINGS = {
    "method": "sds",
    "representation": "nerf",
    "preset": "draft",
    "steps": 3,
    "guidance_scale": 10.0,
    "timesteps": {"kind": "uniform", "t_min": 0.02, "t_max": 0.95},
    "cameras": {"elevation_deg": [-10.0, 30.0]},
}


def _run(request, input_mesh, job):
    prompt = request["prompt"]
    job.event(
        "resolved",
        {
            "settings": {**SETTINGS, "method": request.get("method", "sds")},
            "warnings": [],
        },
    )
    if prompt == "error":
        raise RuntimeError("boom: the stand-in failed")
    if prompt.startswith("slow"):
        for step in range(600):
            if job.cancelled():
                raise Cancelled("cancelled by the artist")
            job.progress("coarse", step, 600, eta_s=0.05 * (600 - step))
            time.sleep(0.05)
    for step in range(3):
        job.progress("coarse", step + 1, 3, eta_s=0.0)
    job.preview(_png((200, 30, 30)))
    if request.get("lods", 1) > 1:  # the real LOD export (core/mesh/lod.py) on a small sphere
        import torch

        from propdreamer.core.gltf import lods_glb
        from propdreamer.core.mesh.export import ExportConfig
        from propdreamer.core.mesh.lod import LodConfig, export_lods

        sphere = trimesh.creation.icosphere(4, radius=0.5)  # 5,120 triangles: the "high-detail" surface
        config = ExportConfig(face_budget=2000, texture_size=64)
        levels = export_lods(np.asarray(sphere.vertices, dtype=np.float32), sphere.faces, lambda x: torch.sigmoid(4 * x), config, LodConfig(levels=request["lods"], samples=20_000))
        return lods_glb(levels, config)
    if request["kind"] == "generate":
        box = trimesh.creation.box(extents=(0.5, 0.5, 0.5))
        vertices, faces = np.asarray(box.vertices, dtype=np.float32), np.asarray(box.faces)
    else:
        vertices, faces, uvs = read_mesh(input_mesh)
        if request["kind"] == "texture":  # the add-on sends the UV map to bake into: the result carries it back
            return textured_glb(vertices, faces, uvs, _png((30, 30, 200)))
    return textured_glb(vertices, faces, _planar(vertices), _png((30, 30, 200)))
