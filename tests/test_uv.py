"""UV maps for texture jobs: the chunked xatlas unwrap (xatlas alone crashes the process on large meshes),
baking into the UVs the mesh came with, the decimated proxy for high-poly meshes, and the `uvs` field."""

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import trimesh

from propdreamer.core.gltf import read_mesh, textured_glb
from propdreamer.core.jobs import texture_uvs
from propdreamer.core.mesh.export import ExportConfig
from propdreamer.core.mesh.uv import UnwrapConfig, into_unit_tile, unwrap, weld
from propdreamer.core.pipeline import texture_mesh, texture_proxy
from propdreamer.core.request import JobRequest, RequestError
from propdreamer.core.stage1.presets import StagePreset
from propdreamer.core.stage1.trainer import DistillationConfig
from propdreamer.core.stage2.presets import RefinePreset

TINY = RefinePreset(
    "tiny",
    16,
    StagePreset("g", steps=2, batch=1, resolutions=((0.0, 32),), report_every=1, preview_every=2),
    StagePreset("t", steps=4, batch=2, resolutions=((0.0, 32),), report_every=2, preview_every=4),
    ExportConfig(texture_size=64),
)


def test_the_chunked_unwrap_survives_the_mesh_that_crashes_xatlas():
    """xatlas 0.0.11 dies by SIGSEGV on an ico sphere of 81,920 triangles in one piece; in pieces it
    unwraps. Run in a child process so a crash fails this test instead of killing the test run."""
    code = (
        "import numpy as np, trimesh; from propdreamer.core.mesh.uv import unwrap\n"
        "m = trimesh.creation.icosphere(subdivisions=6); v, f = np.asarray(m.vertices, np.float32), np.asarray(m.faces)\n"
        "vm, f2, uv = unwrap(v, f)\n"
        "assert len(f) == 81920 and (v[vm][f2] == v[f]).all() and uv.min() >= 0 and uv.max() <= 1, 'wrong unwrap'\n"
        "print('ok', len(vm))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.startswith("ok"), (out.returncode, out.stderr[-2000:])


def test_unwrap_keeps_every_corner_in_place_and_in_order():
    m = trimesh.creation.icosphere(subdivisions=3)
    v, f = np.asarray(m.vertices, np.float32), np.asarray(m.faces)
    vm, f2, uv = unwrap(v, f, UnwrapConfig(chunk_faces=300))  # 1,280 triangles in 5 pieces
    np.testing.assert_array_equal(v[vm][f2], v[f])
    assert uv.shape == (len(vm), 2) and uv.min() >= 0 and uv.max() <= 1
    corners = uv[f2]  # [F, 3, 2]: no triangle is degenerate in UV space
    area = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    assert (np.abs(area) > 0).all()
    with pytest.raises(ValueError, match="chunk_faces"):
        UnwrapConfig(chunk_faces=100_000)


def test_into_unit_tile_moves_whole_triangles_by_whole_tiles():
    uv = np.array([[[1.2, -0.8], [1.4, -0.8], [1.3, -0.6]], [[0.1, 0.1], [0.2, 0.1], [0.1, 0.2]]], np.float32)
    out = into_unit_tile(uv)
    np.testing.assert_allclose(out[0], uv[0] + [-1.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(out[1], uv[1])


def test_weld_merges_corners_at_the_same_position():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], np.float32)  # two triangles, split
    w, f = weld(v, np.array([[0, 1, 2], [3, 5, 4]]))
    assert len(w) == 4
    np.testing.assert_array_equal(w[f], v[[[0, 1, 2], [3, 5, 4]]])


def _corner_mesh(subdivisions: int = 2):
    """A sphere uploaded as the add-on does: one vertex per corner, with planar UVs inside [0, 1]."""
    m = trimesh.creation.icosphere(subdivisions=subdivisions)
    v = np.asarray(m.vertices, np.float32)[np.asarray(m.faces)].reshape(-1, 3)
    return v, np.arange(len(v)).reshape(-1, 3), ((v[:, :2] + 1) / 2).astype(np.float32)


def test_texture_bakes_into_the_uvs_it_was_given(builtin_prior):
    v, f, uv = _corner_mesh()
    result = texture_mesh(builtin_prior, "a blue sphere", v, f, DistillationConfig(), refine=TINY, uvs=uv)
    np.testing.assert_array_equal(result.vertices, v)  # nothing split, nothing moved: the artist's map, as sent
    np.testing.assert_array_equal(result.faces, f)
    np.testing.assert_array_equal(result.uvs, uv)
    v2, f2, uv2 = read_mesh(textured_glb(result.vertices, result.faces, result.uvs, result.texture_png))
    np.testing.assert_array_equal(v2, v)
    np.testing.assert_allclose(uv2, uv, atol=1e-6)


def test_a_high_poly_mesh_is_optimised_on_a_proxy_and_baked_in_full(builtin_prior):
    v, f, uv = _corner_mesh(4)  # 5,120 triangles, 15,360 corners
    w, wf = texture_proxy(v, f, 10_000)
    assert len(w) == 2562 and len(wf) == 5120  # welded, not decimated
    w, wf = texture_proxy(v, f, 1000)
    assert 900 <= len(wf) <= 1000
    result = texture_mesh(builtin_prior, "a blue sphere", v, f, DistillationConfig(), refine=replace(TINY, texture_proxy_faces=1000), uvs=uv)
    assert 900 <= result.proxy_faces <= 1000
    np.testing.assert_array_equal(result.uvs, uv)  # baked onto the full mesh's own map
    import io

    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(result.texture_png)).convert("RGB")).astype(float)
    rows, cols = ((1 - uv[:, 1]) * 64).clip(0, 63).astype(int), (uv[:, 0] * 64).clip(0, 63).astype(int)
    assert (image[rows, cols].sum(-1) > 0).all()  # baked wherever the mesh's own UVs point
    assert image[0, 0].sum() == 0 and image[63, 63].sum() == 0  # and nowhere else (the planar map is a disk)


def test_the_uvs_field_chooses_the_map_and_refuses_what_cannot_be():
    keep = JobRequest(prompt="a red cube", kind="texture", uvs="keep")
    assert keep.to_body()["uvs"] == "keep" and "uvs" not in JobRequest(prompt="a red cube", kind="texture").to_body()
    with pytest.raises(RequestError, match="uvs"):
        JobRequest(prompt="a red cube", kind="generate", uvs="keep")
    with pytest.raises(RequestError, match="uvs"):
        JobRequest.from_body({"prompt": "a red cube", "kind": "texture", "uvs": "mine"})
    uv = np.zeros((3, 2), np.float32)
    assert texture_uvs(keep, uv) is uv and texture_uvs(replace(keep, uvs="new"), uv) is None
    assert texture_uvs(replace(keep, uvs="auto"), None) is None
    with pytest.raises(ValueError, match="has none"):
        texture_uvs(keep, None)
