"""The server's side of job validation: `core/request.py`'s JobRequest (the one request type every
front end uses), with its errors turned into `invalid_field` protocol errors, and the prompt checked
against the words the server's prior can read before the job is accepted."""

from __future__ import annotations

import json
import struct
from typing import Any

from ..core.prompt_check import unknown_words
from ..core.request import JobRequest, RequestError, prompt_warnings
from .wire import ProtocolError


def parse_request(body: dict[str, Any], n_buffers: int, vocabulary: frozenset[str] | None = None, prior: str = "") -> tuple[JobRequest, list[str]]:
    """A validated request and its warnings; ProtocolError('invalid_field') names what to change."""
    try:
        request = JobRequest.from_body(body, n_buffers)
        warnings = prompt_warnings(request.prompt, unknown_words(request.prompt, vocabulary), prior)
    except RequestError as err:
        raise ProtocolError("invalid_field", str(err)) from None
    return request, warnings


def glb_triangles(glb: bytes) -> int:
    """The triangles a GLB's meshes hold, read from its JSON chunk alone (no geometry is decoded):
    each triangle primitive's index count / 3, or its vertex count / 3 when it has no indices."""
    try:
        magic, _, _ = struct.unpack_from("<4sII", glb, 0)
        length, kind = struct.unpack_from("<I4s", glb, 12)
        if magic != b"glTF" or kind != b"JSON":
            raise ValueError("not a GLB")
        doc = json.loads(glb[20 : 20 + length])
        accessors = doc.get("accessors", [])
        total = 0
        for mesh in doc.get("meshes", []):
            for primitive in mesh.get("primitives", []):
                if primitive.get("mode", 4) != 4:  # points and lines hold no triangles
                    continue
                counted = primitive["indices"] if "indices" in primitive else primitive["attributes"]["POSITION"]
                total += int(accessors[counted]["count"]) // 3
        return total
    except (struct.error, ValueError, KeyError, IndexError, TypeError) as err:
        raise ProtocolError("invalid_field", f"field 'buffers': the input mesh is not a readable GLB ({err}); export the object as glTF binary (.glb)") from None


def check_input_mesh(glb: bytes, max_triangles: int) -> int:
    """The mesh's triangle count; refused over `max_triangles` with what to do."""
    triangles = glb_triangles(glb)
    if triangles > max_triangles:
        raise ProtocolError(
            "invalid_field",
            f"field 'buffers': the input mesh has {triangles:,} triangles, over this server's limit of {max_triangles:,}; "
            "decimate it (Blender: Decimate modifier) or raise the server's --max-input-faces",
        )
    return triangles
