"""How a result was made, inside it (core/provenance.py): the manifest in a GLB's extras, and the digest
of the prior's weights."""

import io
import json
import os

import numpy as np
import pytest
import trimesh

from propdreamer.core import provenance


def _glb() -> bytes:
    return trimesh.Scene(trimesh.creation.box()).export(file_type="glb")


def test_attach_puts_the_manifest_in_the_extras_and_keeps_the_binary_chunk():
    glb = _glb()
    record = {"request": {"prompt": "a red cube", "seed": 3}, "settings": {"method": "sds"}, "seconds": {"coarse": 1.5}}
    out = provenance.attach(glb, record)
    assert provenance.read(out) == record and provenance.read(glb) is None
    document, rest = provenance._split(out)
    assert rest == provenance._split(glb)[1]  # geometry and textures byte for byte
    assert [n["extras"]["propdreamer"] for n in document["nodes"] if "mesh" in n] == [record]
    assert len(out) % 4 == 0
    loaded = trimesh.load(io.BytesIO(out), file_type="glb", force="mesh")  # still a valid GLB to another reader
    np.testing.assert_allclose(sorted(map(tuple, loaded.vertices)), sorted(map(tuple, trimesh.creation.box().vertices)), atol=1e-6)
    with pytest.raises(ValueError, match="not a GLB"):
        provenance.attach(b"PNG....................", record)


def test_weights_digest_hashes_contents_and_trusts_the_hub_cache_names(tmp_path):
    folder = tmp_path / "prior"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "model.safetensors").write_bytes(b"weights one")
    (folder / "model_index.json").write_text("{}")  # configs are not weights
    first = provenance.weights_digest(folder)
    assert len(first) == 64 and provenance.weights_digest(folder) == first
    (folder / "model_index.json").write_text('{"changed": 1}')
    assert provenance.weights_digest(folder) == first
    (folder / "unet" / "model.safetensors").write_bytes(b"weights two")  # new content (new size): a new digest
    second = provenance.weights_digest(folder)
    assert second != first
    # The Hugging Face cache: a snapshot links each file to a blob named by its SHA-256, which is used as it is.
    blobs = tmp_path / "hub" / "blobs"
    blobs.mkdir(parents=True)
    name = "ab" * 32
    (blobs / name).write_bytes(b"not what the name says")  # the name is trusted, not re-hashed
    snapshot = tmp_path / "hub" / "snapshots" / "rev" / "unet"
    snapshot.mkdir(parents=True)
    os.symlink(blobs / name, snapshot / "model.safetensors")
    import hashlib

    assert provenance.weights_digest(snapshot.parent) == hashlib.sha256(f"unet/model.safetensors:{name}\n".encode()).hexdigest()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no weight files"):
        provenance.weights_digest(tmp_path / "empty")


def test_manifest_names_the_request_the_settings_the_prior_and_the_times(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"x")
    record = provenance.manifest({"prompt": "a red cube", "seed": 1}, {"method": "sds", "steps": 300}, "builtin", tmp_path, {"coarse": 1.23456})
    assert record["request"]["prompt"] == "a red cube" and record["settings"]["steps"] == 300
    assert record["prior"] == {"id": "builtin", "weights_sha256": provenance.weights_digest(tmp_path)}
    assert record["seconds"] == {"coarse": 1.235} and record["generator"].startswith("PropDreamer ") and record["created"].endswith("+00:00")
    json.dumps(record)  # plain JSON all through
