"""Meshes sent in chunks (server/uploads.py): a texture job whose mesh is over the frame limit reaches
the worker byte for byte through `upload` messages, from the protocol client and from the add-on's job
tracker; chunks out of order, unfinished or too many uploads, and a full disk are refused with what to
do, and nothing of a refused upload stays on disk. A real server on loopback, the stand-in pipeline
(it echoes the mesh it was given)."""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
from pathlib import Path

import pytest

from propdreamer.server.app import Server, ServerConfig
from propdreamer.server.client import Client, ServerError
from propdreamer.server.uploads import UploadLimits
from propdreamer.server.wire import WireLimits
from propdreamer.server.worker import WorkerConfig

sys.path.insert(0, str(Path(__file__).parents[1] / "blender_addon"))
from propdreamer_blender.jobs import JobTracker

CHUNK = 64 * 1024


def _glb(triangles: int, payload: int) -> bytes:
    """A GLB whose JSON declares `triangles` and whose binary chunk holds `payload` random bytes (any
    byte lost, doubled or moved shows in the echo)."""
    doc = {
        "asset": {"version": "2.0"},
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3 * triangles, "type": "VEC3"}],
        "bufferViews": [{"buffer": 0, "byteLength": payload}],
        "buffers": [{"byteLength": payload}],
    }
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    binary = os.urandom(payload)
    return (
        struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(text) + 8 + len(binary))
        + struct.pack("<I4s", len(text), b"JSON")
        + text
        + struct.pack("<I4s", len(binary), b"BIN\x00")
        + binary
    )


@pytest.fixture
def server(tmp_path):
    # A frame limit of 256 KiB stands in for the default 16 MiB: the same code, small meshes.
    config = ServerConfig(
        bind="tcp://127.0.0.1:0",
        spool=tmp_path / "spool",
        prior="stand-in",
        worker=WorkerConfig(pipeline="fake_pipeline:run", cancel_grace_s=1.0, preview_interval_s=0.0),
        limits=WireLimits(max_frame_bytes=256 * 1024, max_message_bytes=300 * 1024),
        uploads=UploadLimits(max_chunk_bytes=CHUNK, max_upload_bytes=4 * 2**20, per_client=2),
    )
    server = Server(config)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.stop()
    thread.join(5)
    server.close()


def test_a_mesh_over_the_frame_limit_reaches_the_worker_whole_in_chunks(server):
    mesh = _glb(20_000, 1_000_000)  # about 4x the frame limit, 16 chunks
    c = Client(server.endpoint, timeout_s=30)
    welcome = c.request("hello").body
    assert welcome["max_chunk_bytes"] == CHUNK and welcome["max_upload_bytes"] == 4 * 2**20
    job = c.submit({"prompt": "a wooden crate", "kind": "texture"}, mesh, chunk_bytes=welcome["max_chunk_bytes"]).body["job"]
    assert c.wait_for(job, ("done", "failed"), timeout_s=60).body["event"] == "done"
    assert c.fetch(job) == b"GLB:a wooden crate:" + mesh  # the worker got every byte, in order
    assert list((server.spool.root / "uploads").iterdir()) == []  # the job keeps its own copy; the upload is gone
    c.close()


def test_the_addon_sends_a_large_mesh_in_chunks(server):
    mesh = _glb(20_000, 700_000)
    tracker = JobTracker(server.endpoint, timeout_s=30)
    try:
        job = tracker.submit("texture", {"prompt": "a stone vase"}, [mesh])
        assert tracker.client.wait_for(job.job, ("done", "failed"), timeout_s=60).body["event"] == "done"
        assert tracker.fetch(job.job) == b"GLB:a stone vase:" + mesh
    finally:
        tracker.close()


def test_propdreamer_submit_sends_a_large_mesh_in_chunks(server, tmp_path):
    from propdreamer.server.cli import main

    mesh = _glb(20_000, 500_000)
    (tmp_path / "big.glb").write_bytes(mesh)
    out = tmp_path / "textured.glb"
    assert main(["submit", "a red cube", "--server", server.endpoint, "--texture", str(tmp_path / "big.glb"), "-o", str(out), "--timeout", "60"]) == 0
    assert out.read_bytes() == b"GLB:a red cube:" + mesh


def test_uploads_out_of_order_unfinished_or_too_many_are_refused_with_what_to_do(server):
    c = Client(server.endpoint, timeout_s=10)
    data = os.urandom(3 * CHUNK)
    c.request("upload", {"upload": "u1", "offset": 0, "size": len(data)}, [data[:CHUNK]])
    with pytest.raises(ServerError) as err:  # a chunk skipped
        c.request("upload", {"upload": "u1", "offset": 2 * CHUNK, "size": len(data)}, [data[2 * CHUNK :]])
    assert err.value.code == "bad_offset" and f"offset {CHUNK}" in str(err.value)
    with pytest.raises(ServerError) as err:  # submitted before the last chunk
        c.request("submit", {"prompt": "a crate", "kind": "texture", "upload": "u1"})
    assert err.value.code == "bad_upload" and f"{CHUNK} of {3 * CHUNK} bytes" in str(err.value)
    with pytest.raises(ServerError) as err:  # someone else's name for an upload is not theirs to use
        Client(server.endpoint, client_id="mallory", timeout_s=10).request("submit", {"prompt": "x", "kind": "texture", "upload": "u1"})
    assert err.value.code == "bad_upload"
    c.request("upload", {"upload": "u2", "offset": 0, "size": 10}, [b"0123456789"])
    with pytest.raises(ServerError) as err:  # a third unfinished upload from one client
        c.request("upload", {"upload": "u3", "offset": 0, "size": 10}, [b"0123456789"])
    assert err.value.code == "too_many_uploads"
    with pytest.raises(ServerError) as err:
        c.request("upload", {"upload": "big", "offset": 0, "size": 5 * 2**20}, [b"x"])
    assert err.value.code == "invalid_field" and "size" in str(err.value)
    with pytest.raises(ServerError) as err:
        c.request("upload", {"upload": "../../etc/passwd", "offset": 0, "size": 10}, [b"0123456789"])
    assert err.value.code == "invalid_field"
    with pytest.raises(ServerError) as err:  # a mesh inline and an upload named: one or the other
        c.request("submit", {"prompt": "a crate", "kind": "texture", "upload": "u2"}, [b"glTF"])
    assert err.value.code == "invalid_field"
    assert server.spool.all() == []
    c.close()


def test_a_full_disk_during_an_upload_drops_it_and_says_so(server, monkeypatch):
    c = Client(server.endpoint, timeout_s=10)
    c.request("upload", {"upload": "u1", "offset": 0, "size": 2 * CHUNK}, [b"a" * CHUNK])
    real_open = Path.open

    def full(self, *args, **kwargs):
        if self.suffix == ".part":
            raise OSError(28, "No space left on device")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", full)
    with pytest.raises(ServerError) as err:
        c.request("upload", {"upload": "u1", "offset": CHUNK, "size": 2 * CHUNK}, [b"b" * CHUNK])
    assert err.value.code == "disk_full" and "upload again" in str(err.value)
    monkeypatch.undo()
    assert list((server.spool.root / "uploads").iterdir()) == []  # nothing half-written kept
    assert c.request("hello").type == "welcome"
    c.close()


def test_the_default_frame_limit_is_small_and_uploads_fit_under_it():
    limits, uploads = WireLimits(), UploadLimits()
    assert limits.max_frame_bytes <= 16 * 2**20  # what libzmq may hold of one frame before the server sees it
    assert uploads.max_chunk_bytes + 64 * 1024 <= limits.max_frame_bytes and uploads.max_chunk_bytes + 2 * 4096 <= limits.max_message_bytes
