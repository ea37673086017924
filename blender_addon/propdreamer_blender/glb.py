"""The add-on's GLBs, without bpy (so they are testable by plain pytest): the mesh it uploads (one
vertex per face corner, with the UVs to bake into) and what it reads back from a texture result (the
UVs per vertex, the triangles and the base-colour image). numpy arrays: Blender ships numpy, and a
500,000-triangle upload is 1.5 million corners."""

from __future__ import annotations

import json
import struct

import numpy as np

_COMPONENTS = {5126: ("f", 4), 5125: ("I", 4), 5123: ("H", 2), 5121: ("B", 1)}
_DTYPES = {5126: "<f4", 5125: "<u4", 5123: "<u2", 5121: "u1"}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def _chunks(data: bytes) -> tuple[dict, bytes]:
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF" or version != 2:
        raise ValueError("the server's result is not a glTF 2.0 binary (GLB)")
    offset, doc, binary = 12, None, b""
    while offset < min(length, len(data)):
        size, kind = struct.unpack_from("<I4s", data, offset)
        body = data[offset + 8 : offset + 8 + size]
        if kind == b"JSON":
            doc = json.loads(body)
        elif kind == b"BIN\x00":
            binary = body
        offset += 8 + size
    if doc is None:
        raise ValueError("the GLB has no JSON chunk")
    return doc, binary


def _accessor(doc: dict, binary: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dtype = np.dtype(_DTYPES[acc["componentType"]])
    width = _WIDTH[acc["type"]]
    stride = view.get("byteStride") or dtype.itemsize * width
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    rows = np.lib.stride_tricks.as_strided(np.frombuffer(binary, dtype=np.uint8, offset=start), (acc["count"], dtype.itemsize * width), (stride, 1))
    values = np.ascontiguousarray(rows).view(dtype).reshape(acc["count"], width)  # [count, width]
    return values if width > 1 else values[:, 0]


def read_texture_result(data: bytes) -> tuple[np.ndarray, np.ndarray, bytes]:
    """UVs per vertex [V, 2] (Blender's convention: v up), triangle corner indices [3F], and the PNG bytes."""
    doc, binary = _chunks(data)
    primitive = doc["meshes"][0]["primitives"][0]
    uvs = _accessor(doc, binary, primitive["attributes"]["TEXCOORD_0"]).astype(np.float32)
    uvs[:, 1] = 1.0 - uvs[:, 1]  # glTF's v runs down
    indices = _accessor(doc, binary, primitive["indices"]).astype(np.int64) if "indices" in primitive else np.arange(len(uvs))
    image = doc["images"][0]
    view = doc["bufferViews"][image["bufferView"]]
    png = binary[view.get("byteOffset", 0) : view.get("byteOffset", 0) + view["byteLength"]]
    return uvs, indices, png


def write_mesh_glb(positions: np.ndarray, triangles: np.ndarray, uvs: np.ndarray | None = None) -> bytes:
    """A minimal GLB of one triangle mesh: positions [V, 3] in Blender's Z-up world (written Y up, as
    glTF wants), triangles [F, 3], and optionally a UV map [V, 2] (v up; written v down, as glTF wants)."""
    positions = np.asarray(positions, dtype=np.float32).reshape(-1, 3)
    triangles = np.asarray(triangles, dtype=np.uint32).reshape(-1, 3)
    if not len(positions) or not len(triangles):
        raise ValueError("the mesh has no triangles to send; select a mesh object with faces")
    y_up = np.ascontiguousarray(np.stack([positions[:, 0], positions[:, 2], -positions[:, 1]], axis=-1))
    views, accessors, blobs, offset = [], [], [], 0

    def add(array: np.ndarray, kind: str, component: int, target: int, bounds: bool = False) -> None:
        nonlocal offset
        blob = np.ascontiguousarray(array).tobytes()
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(blob), "target": target})
        accessor = {"bufferView": len(views) - 1, "componentType": component, "count": len(array) if array.ndim > 1 else array.size, "type": kind}
        if bounds:
            accessor.update(min=array.min(0).tolist(), max=array.max(0).tolist())
        accessors.append(accessor)
        blobs.append(blob + b"\x00" * (-len(blob) % 4))
        offset += len(blobs[-1])

    add(y_up, "VEC3", 5126, 34962, bounds=True)
    add(triangles.reshape(-1), "SCALAR", 5125, 34963)
    attributes = {"POSITION": 0}
    if uvs is not None:
        uvs = np.asarray(uvs, dtype=np.float32).reshape(-1, 2)
        if len(uvs) != len(positions):
            raise ValueError(f"one UV per vertex: {len(uvs)} UVs for {len(positions)} vertices")
        add(np.stack([uvs[:, 0], 1.0 - uvs[:, 1]], axis=-1), "VEC2", 5126, 34962)
        attributes["TEXCOORD_0"] = 2
    primitive = {"attributes": attributes, "indices": 1}
    if uvs is not None:
        primitive["material"] = 0  # UVs belong to a material in glTF readers (trimesh drops UVs without one)
    doc = {
        "asset": {"version": "2.0", "generator": "PropDreamer Blender add-on"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [primitive]}],
        "buffers": [{"byteLength": offset}],
        "bufferViews": views,
        "accessors": accessors,
    }
    if uvs is not None:
        doc["materials"] = [{"name": "PropDreamer upload", "pbrMetallicRoughness": {"baseColorFactor": [0.8, 0.8, 0.8, 1.0]}}]
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    binary = b"".join(blobs)
    total = 12 + 8 + len(js) + 8 + len(binary)
    return struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<I4s", len(js), b"JSON") + js + struct.pack("<I4s", len(binary), b"BIN\x00") + binary


MANIFEST_KEY = "propdreamer"  # where PropDreamer's server puts how a result was made (core/provenance.py)


def read_manifest(data: bytes) -> dict | None:
    """The manifest in a result's `asset.extras` (request, resolved settings, prior and its weights'
    digest, version, timings), or None for a GLB without one."""
    doc, _ = _chunks(data)
    manifest = doc.get("asset", {}).get("extras", {}).get(MANIFEST_KEY)
    return manifest if isinstance(manifest, dict) else None
