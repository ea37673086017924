"""Faults that used to lose work or let a replay in: a full disk, replays across a restart, forged
timestamps and sequence numbers. Real server on loopback, the fake pipeline."""

import errno
import threading
import time

import msgpack
import pytest
import zmq

from propdreamer.server import spool as spool_module
from propdreamer.server.app import Server, ServerConfig
from propdreamer.server.client import Client, ServerError
from propdreamer.server.wire import Message, ProtocolError, ReplayGuard, decode, encode, sign
from propdreamer.server.worker import WorkerConfig

KEY = b"k" * 32


def _start(tmp_path, **overrides):
    config = ServerConfig(
        **{
            "bind": "tcp://127.0.0.1:0",
            "spool": tmp_path / "spool",
            "prior": "stand-in",
            "worker": WorkerConfig(pipeline="fake_pipeline:run", cancel_grace_s=2.0, preview_interval_s=0.0),
            **overrides,
        }
    )
    server = Server(config)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def _stop(server, thread):
    server.stop()
    thread.join(5)
    server.close()


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _raw(endpoint):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def _reply(sock, key=None, timeout_ms=5000):
    assert sock.poll(timeout_ms), "no reply"
    return decode(sock.recv_multipart(), key)


# -- a full disk ---------------------------------------------------------------------------------------
def test_a_full_disk_while_a_job_runs_fails_it_with_the_reason_and_the_server_goes_on(tmp_path, monkeypatch):
    server, thread = _start(tmp_path)
    try:
        c = Client(server.endpoint, timeout_s=10)
        job = c.request("submit", {"prompt": "slow cube"}).body["job"]
        c.wait_for(job, ("progress",), timeout_s=30)
        monkeypatch.setattr(spool_module, "_atomic_write", _disk_full)
        monkeypatch.setattr(server.spool, "append_event", _disk_full)
        c.request("cancel", {"job": job})  # the state write of the cancel fails: it used to end the server
        failed = c.wait_for(job, ("failed", "cancelled"), timeout_s=30)
        assert failed.body["event"] == "failed" and "disk full" in failed.body["reason"]
        assert thread.is_alive() and c.request("hello").type == "welcome"
        with pytest.raises(ServerError) as refused:
            c.request("submit", {"prompt": "a red cube"})
        assert refused.value.code == "disk_full" and "MB free in" in str(refused.value)
        monkeypatch.undo()  # space returns
        again = c.request("submit", {"prompt": "a red cube"}).body["job"]
        assert c.wait_for(again, ("done",), timeout_s=30).body["event"] == "done"
        c.close()
    finally:
        _stop(server, thread)


def test_a_submit_on_a_full_disk_leaves_nothing_half_written(tmp_path, monkeypatch):
    server, thread = _start(tmp_path)
    try:
        c = Client(server.endpoint, timeout_s=10)
        real_fsync = spool_module.os.fsync
        monkeypatch.setattr(spool_module.os, "fsync", _disk_full)  # the data is written, then the disk is full
        with pytest.raises(ServerError) as refused:
            c.request("submit", {"prompt": "a red cube"})
        assert refused.value.code == "disk_full"
        monkeypatch.setattr(spool_module.os, "fsync", real_fsync)
        leftovers = [p.name for p in (tmp_path / "spool" / "jobs").rglob("*")]
        assert leftovers == [], leftovers  # no .new-* folder, no stray .tmp file
        assert server.spool.all() == []
        c.close()
    finally:
        _stop(server, thread)


def test_a_server_started_on_a_full_disk_is_read_only_until_space_returns(tmp_path, monkeypatch):
    first, thread = _start(tmp_path)
    c = Client(first.endpoint, timeout_s=10)
    running = c.request("submit", {"prompt": "slow cube"}).body["job"]
    c.wait_for(running, ("progress",), timeout_s=30)
    queued = c.request("submit", {"prompt": "a red cube"}).body["job"]
    c.close()
    _stop(first, thread)
    monkeypatch.setattr(spool_module, "_atomic_write", _disk_full)
    server, thread = _start(tmp_path, disk_retry_s=0.2)  # recover() cannot mark the running job interrupted
    try:
        assert server.read_only and "read-only" in server.read_only
        c = Client(server.endpoint, client_id=None, timeout_s=10)
        with pytest.raises(ServerError) as refused:
            c.request("submit", {"prompt": "a red cube"})
        assert refused.value.code == "disk_full" and "read-only" in str(refused.value)
        monkeypatch.undo()
        deadline = time.time() + 10
        while server.read_only and time.time() < deadline:
            time.sleep(0.05)
        assert server.read_only is None
        assert server.spool.get(running).state == "interrupted" and server.spool.get(queued).state in ("queued", "running", "done")
        c.close()
    finally:
        _stop(server, thread)


# -- replays and forged headers ------------------------------------------------------------------------
def test_a_captured_signed_submit_replayed_after_a_restart_is_refused(tmp_path):
    server, thread = _start(tmp_path, key=KEY)
    frames = encode(Message("submit", {"prompt": "a red cube"}, client="artist", seq=10), KEY)
    sock = _raw(server.endpoint)
    sock.send_multipart(frames)  # the artist's submit, captured on the wire
    assert _reply(sock, KEY).type == "accepted"
    sock.close(0)
    _stop(server, thread)
    server, thread = _start(tmp_path, key=KEY)  # a normal restart, seconds later
    try:
        sock = _raw(server.endpoint)
        sock.send_multipart(frames)  # the attacker's copy
        reply = _reply(sock, KEY)
        assert reply.type == "error" and reply.body["code"] == "replayed"
        assert len(server.spool.all()) == 1
        sock.close(0)
    finally:
        _stop(server, thread)


def _signed_header(key, **header):
    fields = {"v": "1.0", "type": "hello", "id": "x", "client": "mallory", "seq": 1, "ts": time.time(), **header}
    frames = [msgpack.packb(fields), msgpack.packb({})]
    return [sign(key, frames), *frames]


@pytest.mark.parametrize(
    "header, needle",
    [
        ({"ts": float("nan")}, "'ts' must be a finite time"),
        ({"ts": float("inf")}, "'ts' must be a finite time"),
        ({"seq": 2**64 - 1}, "'seq' must be an integer in [0, 2^53]"),
        ({"seq": -1}, "'seq' must be an integer in [0, 2^53]"),
    ],
)
def test_non_finite_times_and_absurd_sequence_numbers_are_bad_headers(header, needle):
    with pytest.raises(ProtocolError) as err:
        decode(_signed_header(KEY, **header), KEY, replay=ReplayGuard())
    assert err.value.code == "bad_header" and needle in str(err.value)


def test_a_forged_huge_sequence_number_locks_a_client_out_for_one_window_at_most():
    guard = ReplayGuard(max_clock_skew_s=0.1)
    guard.check("artist", 2**53, time.time())  # forged
    with pytest.raises(ProtocolError, match="already used"):
        guard.check("artist", 5, time.time())
    time.sleep(0.25)  # past 2 x the clock window: anything the forger captured is stale anyway
    guard.check("artist", 6, time.time())


def test_the_replay_table_survives_a_restart_and_forgets_silent_clients(tmp_path):
    path = tmp_path / "replay.json"
    guard = ReplayGuard(path=path)
    guard.check("artist", 7, time.time())
    guard.flush(force=True)
    again = ReplayGuard(path=path)
    with pytest.raises(ProtocolError, match="already used"):
        again.check("artist", 7, time.time())
    again.check("artist", 8, time.time())
    path.write_text('{"old": [3, 0.0], "broken": "x"}')  # unreadable entries: ignored; the clock check remains
    ReplayGuard(path=path).check("old", 1, time.time())


def test_a_worker_that_segfaults_says_what_happened_and_where(tmp_path):
    server, thread = _start(tmp_path)
    try:
        c = Client(server.endpoint, timeout_s=10)
        job = c.request("submit", {"prompt": "segfault"}).body["job"]
        reason = c.wait_for(job, ("failed",), timeout_s=60).body["reason"]
        assert "SIGSEGV" in reason and "native library crashed" in reason and "in stage texture, step 40 of 120" in reason
        assert "out of memory" not in reason
        after = c.request("submit", {"prompt": "a red cube"}).body["job"]  # a new worker takes the next job
        assert c.wait_for(after, ("done",), timeout_s=60).body["event"] == "done"
        c.close()
    finally:
        _stop(server, thread)


def test_queued_jobs_per_client_and_remembered_clients_are_bounded(tmp_path):
    server, thread = _start(tmp_path, max_queued_per_client=2, max_routes=50)
    try:
        c = Client(server.endpoint, timeout_s=10)
        running = c.request("submit", {"prompt": "slow cube"}).body["job"]
        c.wait_for(running, ("progress",), timeout_s=30)
        for _ in range(2):
            c.request("submit", {"prompt": "a red cube"})
        with pytest.raises(ServerError) as refused:
            c.request("submit", {"prompt": "a red cube"})
        assert refused.value.code == "queue_full" and "at most 2" in str(refused.value)
        other = Client(server.endpoint, timeout_s=10)
        other.request("submit", {"prompt": "a red cube"})  # the limit is per client
        for i in range(200):  # fresh client ids
            churn = Client(server.endpoint, client_id=f"churn{i}", timeout_s=10)
            churn.request("hello")
            churn.close()
        assert len(server.routes) <= 50
        c.request("cancel", {"job": running})
        c.close(), other.close()
    finally:
        _stop(server, thread)


def test_a_message_over_the_total_limit_is_refused_before_its_signature_is_computed():
    from propdreamer.server.wire import WireLimits

    frames = encode(Message("submit", {"prompt": "big", "kind": "texture"}, [b"\x00" * 600, b"\x00" * 600], client="big", seq=1), b"w" * 32)
    with pytest.raises(ProtocolError) as err:
        decode(frames, KEY, WireLimits(max_message_bytes=1000))  # the wrong key: refused for its size, never hashed
    assert err.value.code == "message_too_large"


def test_input_meshes_over_the_face_limit_are_refused_at_submit(tmp_path):
    import trimesh

    from propdreamer.server.schema import glb_triangles

    sphere = trimesh.creation.icosphere(subdivisions=4)  # 5,120 triangles
    glb = sphere.export(file_type="glb")
    assert glb_triangles(glb) == len(sphere.faces)
    server, thread = _start(tmp_path, max_input_faces=5000)
    try:
        c = Client(server.endpoint, timeout_s=10)
        with pytest.raises(ServerError) as refused:
            c.request("submit", {"prompt": "paint", "kind": "texture"}, buffers=[glb])
        assert refused.value.code == "invalid_field" and "5,120 triangles, over this server's limit of 5,000" in str(refused.value)
        small = trimesh.creation.box().export(file_type="glb")
        assert c.request("submit", {"prompt": "paint", "kind": "refine"}, buffers=[small]).type == "accepted"
        c.close()
    finally:
        _stop(server, thread)


@pytest.mark.parametrize("value", [b"", msgpack.ExtType(1, b"")])
def test_zero_length_binary_and_extension_values_are_refused(value):
    frames = [msgpack.packb({"v": "1.0", "type": "hello", "id": "x", "client": "c", "seq": 1, "ts": time.time()}), msgpack.packb({"x": value}, use_bin_type=True)]
    with pytest.raises(ProtocolError) as err:
        decode(frames)
    assert err.value.code == "bad_msgpack"
