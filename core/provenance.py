"""How a result was made, carried inside it: a manifest in the GLB's `extras`.

Every GLB PropDreamer returns holds, under the key `propdreamer` of the extras of each mesh node (and of
the `asset`), what is needed to know and to make it again:

    generator   "PropDreamer <version>"
    request     the job request as sent (the wire body: kind, prompt, negative prompt, seed, ...)
    settings    what ran: the request resolved against the prior (method, scale, steps, timesteps, cameras)
    prior       its id (`builtin`, a Hub id or a folder) and the SHA-256 of its weights
    seconds     the time each stage took
    created     when it finished (UTC, ISO 8601)

Blender's glTF importer turns node extras into the object's custom properties, so an imported result
shows its manifest in the Object properties; the add-on re-runs a result from it. The weights' digest
says which weights made it, not only which name: a Hub id's files change with each revision. Hugging
Face's cache names each large file by its SHA-256 already (the blob a snapshot links to), so that name
is used when it is one; other files are hashed once per process (by path, size and modification time).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import struct
from functools import lru_cache
from pathlib import Path
from typing import Any

MANIFEST_KEY = "propdreamer"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".ckpt", ".msgpack")
_SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")
_GLB_MAGIC, _JSON_CHUNK = 0x46546C67, 0x4E4F534A


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("propdreamer")
    except PackageNotFoundError:
        return "unknown"


def weights_digest(folder: str | Path) -> str:
    """SHA-256 over the prior folder's weight files: each file's relative path and content digest."""
    root = Path(folder)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise ValueError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) under {root}")
    combined = hashlib.sha256()
    for path in files:
        stat = path.stat()
        combined.update(f"{path.relative_to(root).as_posix()}:{_file_digest(str(path), stat.st_size, stat.st_mtime_ns)}\n".encode())
    return combined.hexdigest()


@lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    target = Path(path).resolve()
    if _SHA256_NAME.match(target.name) and target.parent.name == "blobs":  # the Hugging Face cache: named by its SHA-256
        return target.name
    digest = hashlib.sha256()
    with open(target, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest(request_body: dict[str, Any], settings: dict[str, Any], prior_id: str, prior_folder: str | Path | None, seconds: dict[str, float]) -> dict[str, Any]:
    """The manifest of one result (see the module's docstring)."""
    return {
        "generator": f"PropDreamer {version()}",
        "request": request_body,
        "settings": settings,
        "prior": {"id": prior_id, "weights_sha256": weights_digest(prior_folder) if prior_folder else None},
        "seconds": {k: round(float(v), 3) for k, v in seconds.items()},
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _split(glb: bytes) -> tuple[dict[str, Any], bytes]:
    """A GLB -> its JSON and the chunks after the JSON chunk, untouched."""
    if len(glb) < 20:
        raise ValueError("not a GLB: too short")
    magic, _, length = struct.unpack_from("<III", glb, 0)
    json_length, chunk_type = struct.unpack_from("<II", glb, 12)
    if magic != _GLB_MAGIC or chunk_type != _JSON_CHUNK or length != len(glb):
        raise ValueError("not a GLB: bad header or first chunk")
    return json.loads(glb[20 : 20 + json_length]), glb[20 + json_length :]


def _join(document: dict[str, Any], rest: bytes) -> bytes:
    text = json.dumps(document, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)  # chunks are 4-byte aligned; JSON pads with spaces
    body = struct.pack("<II", len(text), _JSON_CHUNK) + text + rest
    return struct.pack("<III", _GLB_MAGIC, 2, 12 + len(body)) + body


def attach(glb: bytes, record: dict[str, Any]) -> bytes:
    """The same GLB with `record` in the extras of its asset and of every node that holds a mesh; the
    binary chunk (geometry, textures) is copied byte for byte."""
    document, rest = _split(glb)
    document.setdefault("asset", {}).setdefault("extras", {})[MANIFEST_KEY] = record
    for node in document.get("nodes", []):
        if "mesh" in node:
            node.setdefault("extras", {})[MANIFEST_KEY] = record
    return _join(document, rest)


def read(glb: bytes) -> dict[str, Any] | None:
    """The manifest of a GLB, or None when it has none."""
    document, _ = _split(glb)
    return document.get("asset", {}).get("extras", {}).get(MANIFEST_KEY)
