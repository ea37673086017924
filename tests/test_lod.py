"""Levels of detail with tangent-space normal maps (core/mesh/lod.py): the tangent frame follows glTF's
convention, a normal map brings each level's shading back towards the high-detail surface's (and a
map with the wrong handedness does not), the chain's face counts step by a quarter, and the LOD GLB
passes the Khronos validator with one node per level."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from propdreamer.core.gltf import lods_glb
from propdreamer.core.mesh.export import ExportConfig
from propdreamer.core.mesh.lod import LodConfig, export_lods, smooth_normals, tangent_frames
from propdreamer.core.mesh.lod_shading import shading_difference
from propdreamer.core.stage1.trainer import turntable_cameras

ROOT = Path(__file__).parents[1]


def _bumpy_sphere(subdivisions: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A sphere with a relief of bumps 3% of its radius: detail a coarse level cannot hold in its faces."""
    m = trimesh.creation.icosphere(subdivisions, radius=0.5)
    n = m.vertices / np.linalg.norm(m.vertices, axis=1, keepdims=True)
    v = m.vertices * (1 + 0.03 * np.sin(20 * n[:, 0]) * np.sin(20 * n[:, 1]))[:, None]
    return v.astype(np.float32), np.asarray(m.faces)


@pytest.fixture(scope="module")
def chain():
    v, f = _bumpy_sphere()
    config = ExportConfig(face_budget=4000, texture_size=128)
    return v, f, config, export_lods(v, f, lambda x: torch.sigmoid(4 * x), config, LodConfig(levels=3, samples=100_000))


@pytest.mark.parametrize("mirror", [False, True])
def test_tangents_point_along_u_and_the_sign_makes_the_bitangent_point_along_v(mirror):
    # A square in the z = 0 plane facing +z, u = x (or -x: a mirrored map), v = y.
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.stack([(1 - v[:, 0]) if mirror else v[:, 0], v[:, 1]], 1).astype(np.float32)
    n = smooth_normals(v, f)
    t = tangent_frames(v, f, uv, n)
    np.testing.assert_allclose(n, [[0, 0, 1]] * 4, atol=1e-6)
    np.testing.assert_allclose(t[:, :3], [[-1 if mirror else 1, 0, 0]] * 4, atol=1e-6)
    bitangent = t[:, 3:] * np.cross(n, t[:, :3])
    np.testing.assert_allclose(bitangent, [[0, 1, 0]] * 4, atol=1e-6)  # +v, whichever way u runs


def test_normals_and_tangents_are_unit_on_slivers_and_unmapped_faces():
    """A decimator leaves zero-area slivers, an unwrap may leave a face without UV area: glTF requires
    unit NORMAL and TANGENT vectors everywhere (the Khronos validator's ACCESSOR_VECTOR3_NON_UNIT)."""
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 2, 2], [3, 3, 3], [4, 4, 4], [5, 0, 0], [6, 0, 0], [5, 1, 0]], dtype=np.float32)
    f = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])  # a triangle, a sliver on its own (collinear corners), a triangle
    uv = np.array([[0, 0], [1, 0], [0, 1], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.2, 0.2], [0.2, 0.2], [0.2, 0.2]], dtype=np.float32)  # the last face has no UV area
    n = smooth_normals(v, f)
    t = tangent_frames(v, f, uv, n)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(t[:, :3], axis=1), 1, atol=1e-6)
    assert np.abs((t[:, :3] * n).sum(1)).max() < 1e-6


def test_each_level_is_about_a_quarter_of_the_one_before(chain):
    _, _, config, lods = chain
    faces = [len(l.mesh.faces) for l in lods]
    assert faces[0] <= config.face_budget and faces[0] >= 0.9 * config.face_budget
    assert all(0.2 <= b / a <= 0.3 for a, b in zip(faces, faces[1:])), faces
    assert [l.normal_map.shape[0] for l in lods] == [128, 64, 64]
    for lod in lods:
        assert np.allclose(np.linalg.norm(lod.tangents[:, :3], axis=1), 1, atol=1e-4) and set(np.unique(lod.tangents[:, 3])) <= {-1.0, 1.0}
        assert np.abs((lod.tangents[:, :3] * lod.normals).sum(1)).max() < 1e-4  # orthogonal to the normal


def test_a_level_the_budget_leaves_whole_is_the_surface_itself_and_gets_no_map():
    v, f = _bumpy_sphere(3)  # 1,280 triangles, under the budget: LOD0 is the surface, LOD1 a quarter of the budget
    config = ExportConfig(face_budget=2000, texture_size=64)
    lods = export_lods(v, f, lambda x: torch.sigmoid(4 * x), config, LodConfig(levels=2, samples=20_000))
    assert len(lods[0].mesh.faces) == len(f) and lods[0].normal_map is None and lods[1].normal_map is not None
    glb = lods_glb(lods, config)
    doc = json.loads(glb[20 : 20 + int.from_bytes(glb[12:16], "little")])
    assert ["normalTexture" in m for m in doc["materials"]] == [False, True]
    assert ["TANGENT" in mesh["primitives"][0]["attributes"] for mesh in doc["meshes"]] == [False, True]  # no unused tangents (the validator's UNUSED_MESH_TANGENT)


def test_the_normal_map_brings_each_levels_shading_back_to_the_high_detail_surfaces(chain):
    v, f, _, lods = chain
    cameras = turntable_cameras(2)
    for k, lod in enumerate(lods):
        without, with_map = shading_difference(lod, v, f, cameras, 128)
        assert with_map < 0.6 * without, (k, without, with_map)
    flipped = lods[1]
    flipped_map = flipped.normal_map.copy()
    flipped_map[..., 1] = 255 - flipped_map[..., 1]  # the other handedness (DirectX's green): detail lit from the wrong side
    wrong = type(flipped)(flipped.mesh, flipped.normals, flipped.tangents, flipped_map)
    assert shading_difference(wrong, v, f, cameras, 128)[1] > shading_difference(flipped, v, f, cameras, 128)[1] * 1.5


def test_the_lod_glb_has_a_node_per_level_and_passes_the_khronos_validator(chain, tmp_path):
    _, _, config, lods = chain
    path = tmp_path / "lods.glb"
    path.write_bytes(lods_glb(lods, config, name="crate"))
    prefix = subprocess.run(["bash", str(ROOT / "packaging/gltf_validator.sh")], capture_output=True, text=True, check=True).stdout.strip()
    out = subprocess.run(["node", str(ROOT / "packaging/validate_glb.js"), f"{prefix}/node_modules/gltf-validator", str(path)], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    assert report["numErrors"] == 0 and report["numWarnings"] == 0, report["messages"]
    scene = trimesh.load(path, force="scene")
    assert sorted(scene.graph.nodes_geometry) == ["crate_LOD0", "crate_LOD1", "crate_LOD2"]
    assert [len(scene.geometry[g].faces) for g in ("crate_LOD0", "crate_LOD1", "crate_LOD2")] == [len(l.mesh.faces) for l in lods]
    bounds = scene.geometry["crate_LOD0"].bounds
    np.testing.assert_allclose(bounds[1] - bounds[0], [1.0, 1.0, 1.0], atol=0.02)  # the unit box, every level in one frame


def test_blender_reads_the_normal_maps_in_the_frame_they_were_baked_in(chain, tmp_path):
    """Blender ignores a GLB's TANGENT and computes its own (MikkTSpace) from the imported normals and UVs:
    at every face corner of every level its tangent points where ours does and its bitangent sign agrees,
    so Blender decodes the maps as they were baked (real Blender, bpy)."""
    import sys

    from scipy.spatial import cKDTree

    _, _, config, lods = chain
    glb = tmp_path / "lods.glb"
    glb.write_bytes(lods_glb(lods, config, name="crate"))
    out = subprocess.run([sys.executable, str(ROOT / "tests/blender/lod_tangents.py"), str(glb), str(tmp_path / "frames.npz")], capture_output=True, text=True, timeout=300)
    assert "RESULT" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    frames = np.load(tmp_path / "frames.npz")
    lo, hi = lods[0].mesh.vertices.min(0), lods[0].mesh.vertices.max(0)
    for k, lod in enumerate(lods):
        ours = np.concatenate([(lod.mesh.vertices - (lo + hi) / 2) / float((hi - lo).max()), lod.mesh.uvs], 1)  # as the GLB places it, Z up
        theirs = np.concatenate([frames[f"crate_LOD{k}/position"], frames[f"crate_LOD{k}/uv"]], 1)
        distance, index = cKDTree(ours).query(theirs)
        assert distance.max() < 1e-4  # every corner found: same place, same UV
        cos = (frames[f"crate_LOD{k}/tangent"] * lod.tangents[index, :3]).sum(1) / np.linalg.norm(frames[f"crate_LOD{k}/tangent"], axis=1)
        signs = frames[f"crate_LOD{k}/sign"] == lod.tangents[index, 3]
        assert signs.mean() > 0.99 and np.median(cos) > np.cos(np.radians(3)) and np.quantile(cos, 0.05) > np.cos(np.radians(20)), (
            k,
            signs.mean(),
            np.degrees(np.arccos(np.clip(np.quantile(cos, [0.5, 0.05]), -1, 1))),
        )
