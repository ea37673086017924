"""Reading the few things the add-on needs straight out of a GLB, without bpy (so it is testable by
plain pytest): the texture coordinates per vertex, the triangle indices and the base-colour image.
Used for texture jobs, whose GLB holds the artist's own triangles, one vertex per face corner."""

from __future__ import annotations

import json
import struct

_COMPONENTS = {5126: ("f", 4), 5125: ("I", 4), 5123: ("H", 2), 5121: ("B", 1)}
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


def _accessor(doc: dict, binary: bytes, index: int) -> list:
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    fmt, size = _COMPONENTS[acc["componentType"]]
    width = _WIDTH[acc["type"]]
    stride = view.get("byteStride") or size * width
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    out = []
    for i in range(acc["count"]):
        values = struct.unpack_from("<" + fmt * width, binary, start + i * stride)
        out.append(values if width > 1 else values[0])
    return out


def read_texture_result(data: bytes) -> tuple[list[tuple[float, float]], list[int], bytes]:
    """UVs per vertex (Blender's convention: v up), triangle corner indices, and the PNG bytes."""
    doc, binary = _chunks(data)
    primitive = doc["meshes"][0]["primitives"][0]
    uvs = [(u, 1.0 - v) for u, v in _accessor(doc, binary, primitive["attributes"]["TEXCOORD_0"])]  # glTF v runs down
    indices = _accessor(doc, binary, primitive["indices"]) if "indices" in primitive else list(range(len(uvs)))
    image = doc["images"][0]
    view = doc["bufferViews"][image["bufferView"]]
    png = binary[view.get("byteOffset", 0) : view.get("byteOffset", 0) + view["byteLength"]]
    return uvs, indices, png


def write_mesh_glb(positions: list[tuple[float, float, float]], triangles: list[tuple[int, int, int]]) -> bytes:
    """A minimal GLB of one triangle mesh (positions in Blender's Z-up world, written Y up as glTF wants)."""
    if not positions or not triangles:
        raise ValueError("the mesh has no triangles to send; select a mesh object with faces")
    pos = b"".join(struct.pack("<3f", x, z, -y) for x, y, z in positions)
    idx = b"".join(struct.pack("<3I", *t) for t in triangles)
    lo = [min(p[i] for p in ((x, z, -y) for x, y, z in positions)) for i in range(3)]
    hi = [max(p[i] for p in ((x, z, -y) for x, y, z in positions)) for i in range(3)]
    doc = {
        "asset": {"version": "2.0", "generator": "PropDreamer Blender add-on"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "buffers": [{"byteLength": len(pos) + len(idx)}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(pos), "target": 34962},
                        {"buffer": 0, "byteOffset": len(pos), "byteLength": len(idx), "target": 34963}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": len(positions), "type": "VEC3", "min": lo, "max": hi},
                      {"bufferView": 1, "componentType": 5125, "count": 3 * len(triangles), "type": "SCALAR"}],
    }
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    binary = pos + idx
    binary += b"\x00" * (-len(binary) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    return struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<I4s", len(js), b"JSON") + js + struct.pack("<I4s", len(binary), b"BIN\x00") + binary
