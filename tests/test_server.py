"""The job server on real loopback sockets, with a fast stand-in pipeline."""

import os
import threading
import time

import pytest

from propdreamer.server.app import Server, ServerConfig
from propdreamer.server.client import Client, ServerError
from propdreamer.server.worker import WorkerConfig


def _start(tmp_path, **overrides):
    config = ServerConfig(
        **{
            "bind": "tcp://127.0.0.1:0",
            "spool": tmp_path / "spool",
            "prior": "stand-in",  # the fake pipeline reads no prior
            "worker": WorkerConfig(pipeline="fake_pipeline:run", cancel_grace_s=1.0, preview_interval_s=0.0),
            **overrides,
        }
    )
    server = Server(config)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def server(tmp_path):
    server, thread = _start(tmp_path)
    yield server
    server.stop()
    thread.join(5)
    server.close()


def test_hello_submit_progress_fetch_ack(server):
    c = Client(server.endpoint, timeout_s=30)
    welcome = c.request("hello")
    assert welcome.type == "welcome" and welcome.body["protocol"] == "1.0" and "vdm" in welcome.body["methods"]
    job = c.request("submit", {"prompt": "a red cube", "method": "nfsd"}).body["job"]
    done = c.wait_for(job, ("done", "failed"), timeout_s=60)
    assert done.body["event"] == "done", done.body
    status = c.request("status", {"job": job}).body
    assert status["state"] == "done" and status["progress"]["stage"] == "stage1"
    assert c.fetch(job) == b"GLB:a red cube:"
    assert [j["job"] for j in c.request("list").body["jobs"]] == [job]
    assert c.request("ack", {"job": job}).type == "acked"
    with pytest.raises(ServerError) as err:
        c.request("status", {"job": job})
    assert err.value.code == "unknown_job"
    c.close()


def test_events_replay_in_order_after_reconnect(server):
    c = Client(server.endpoint, client_id="artist", timeout_s=30)
    job = c.request("submit", {"prompt": "a blue torus"}).body["job"]
    c.wait_for(job, ("done",), timeout_s=60)
    c.close()
    again = Client(server.endpoint, client_id="artist", timeout_s=30)  # Blender restarted, same client id
    reply = again.request("subscribe", {"job": job, "since": 0})  # replayed events arrive before the reply
    events = [e.body for e in again.events if e.body["job"] == job]
    assert reply.body["replayed"] == len(events)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "queued" and kinds[-1] == "done" and "started" in kinds and kinds.count("progress") == 3
    later = Client(server.endpoint, client_id="artist", timeout_s=30)
    later.request("subscribe", {"job": job, "since": events[-2]["seq"]})
    assert [e.body["event"] for e in later.events] == [events[-2]["event"], "done"]
    assert later.fetch(job).startswith(b"GLB:")
    again.close()
    later.close()


def test_other_clients_cannot_see_or_cancel_my_jobs(server):
    mine, theirs = Client(server.endpoint, timeout_s=30), Client(server.endpoint, timeout_s=30)
    job = mine.request("submit", {"prompt": "slow one"}).body["job"]
    for action in ("status", "cancel", "fetch"):
        with pytest.raises(ServerError) as err:
            theirs.request(action, {"job": job})
        assert err.value.code == "unknown_job"
    assert theirs.request("list").body["jobs"] == []
    mine.request("cancel", {"job": job})
    mine.close()
    theirs.close()


def test_cancel_queued_running_finished_and_twice(server):
    c = Client(server.endpoint, timeout_s=30)
    running = c.request("submit", {"prompt": "slow A"}).body["job"]
    queued = c.request("submit", {"prompt": "slow B"}).body["job"]
    c.wait_for(running, ("started",), timeout_s=60)
    assert c.request("cancel", {"job": queued}).body["state"] == "cancelled"
    assert c.request("cancel", {"job": queued}).body["state"] == "cancelled"  # twice: same answer
    t0 = time.time()
    assert c.request("cancel", {"job": running}).body["state"] == "cancelling"
    c.request("cancel", {"job": running})
    c.wait_for(running, ("cancelled",), timeout_s=10)
    assert time.time() - t0 < 1.5  # stops within about a second
    assert c.request("status", {"job": running}).body["state"] == "cancelled"
    done = c.request("submit", {"prompt": "quick"}).body["job"]
    c.wait_for(done, ("done",), timeout_s=60)
    assert c.request("cancel", {"job": done}).body["state"] == "done"
    c.close()


def test_stubborn_job_is_stopped_by_restarting_the_worker(server):
    c = Client(server.endpoint, timeout_s=30)
    job = c.request("submit", {"prompt": "stubborn"}).body["job"]
    c.wait_for(job, ("started",), timeout_s=60)
    time.sleep(0.2)
    c.request("cancel", {"job": job})
    forced = c.wait_for(job, ("cancelled",), timeout_s=10)
    assert forced.body.get("forced") is True
    nxt = c.request("submit", {"prompt": "after"}).body["job"]
    assert c.wait_for(nxt, ("done", "failed"), timeout_s=120).body["event"] == "done"
    c.close()


def test_worker_death_fails_the_job_and_the_next_job_runs(server):
    c = Client(server.endpoint, timeout_s=30)
    dead = c.request("submit", {"prompt": "crash"}).body["job"]
    nxt = c.request("submit", {"prompt": "next"}).body["job"]
    failed = c.wait_for(dead, ("failed",), timeout_s=60)
    assert "SIGKILL" in failed.body["reason"]
    assert c.wait_for(nxt, ("done", "failed"), timeout_s=120).body["event"] == "done"
    err = c.request("submit", {"prompt": "error"}).body["job"]
    assert "boom" in c.wait_for(err, ("failed",), timeout_s=60).body["reason"]
    c.close()


def test_a_failed_jobs_traceback_reaches_the_server_log(server, caplog):
    c = Client(server.endpoint, timeout_s=30)
    job = c.request("submit", {"prompt": "error"}).body["job"]
    with caplog.at_level("WARNING", logger="propdreamer.server.app"):
        assert c.wait_for(job, ("failed",), timeout_s=60).body["reason"] == "RuntimeError: boom: the pipeline failed"
        time.sleep(0.2)  # the log line is written in the same tick as the event
    logged = [r.getMessage() for r in caplog.records if job in r.getMessage()]
    assert any("Traceback" in line and "fake_pipeline.py" in line and 'raise RuntimeError("boom' in line for line in logged), logged
    c.close()


def test_restart_runs_queued_jobs_and_reports_interrupted_ones(tmp_path):
    server, thread = _start(tmp_path)
    c = Client(server.endpoint, client_id="me", timeout_s=30)
    running = c.request("submit", {"prompt": "slow R"}).body["job"]
    queued = c.request("submit", {"prompt": "survivor"}).body["job"]
    c.wait_for(running, ("started",), timeout_s=60)
    server.stop()
    thread.join(5)
    server.close()  # the server goes down with one job running and one queued
    c.close()
    server, thread = _start(tmp_path)
    try:
        c = Client(server.endpoint, client_id="me", timeout_s=30)
        assert c.request("status", {"job": running}).body["state"] == "interrupted"
        deadline = time.time() + 60
        while c.request("status", {"job": queued}).body["state"] != "done" and time.time() < deadline:
            time.sleep(0.2)
        assert c.fetch(queued) == b"GLB:survivor:"
        c.close()
    finally:
        server.stop()
        thread.join(5)
        server.close()


def test_bad_messages_get_error_replies_and_the_server_goes_on(server):
    import zmq

    c = Client(server.endpoint, timeout_s=10)
    with pytest.raises(ServerError) as err:
        c.request("teleport")
    assert err.value.code == "unknown_type"
    with pytest.raises(ServerError) as err:
        c.request("submit", {"prompt": "x", "method": "magic"})
    assert err.value.code == "invalid_field" and "'method'" in str(err.value)
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.connect(server.endpoint)
    raw.send_multipart([b"\xdf\xff\xff\xff\xff", b"junk"])  # a header claiming 4 billion entries
    assert raw.poll(5000)
    reply = raw.recv_multipart()
    from propdreamer.server.wire import decode

    assert decode(reply).body["code"] == "bad_msgpack"
    raw.close(0)
    assert c.request("hello").type == "welcome"  # still serving
    c.close()


def test_texture_job_carries_its_mesh(server):
    import trimesh

    mesh = trimesh.creation.box().export(file_type="glb")
    c = Client(server.endpoint, timeout_s=30)
    job = c.request("submit", {"prompt": "paint", "kind": "texture"}, buffers=[mesh]).body["job"]
    c.wait_for(job, ("done",), timeout_s=60)
    assert c.fetch(job) == b"GLB:paint:" + mesh
    with pytest.raises(ServerError, match="not a readable GLB"):  # refused at submit, not deep in the worker
        c.request("submit", {"prompt": "paint", "kind": "texture"}, buffers=[b"MESH"])
    c.close()


def test_signed_mode_rejects_unsigned_and_forged_clients(tmp_path):
    key = b"s" * 32
    server, thread = _start(tmp_path, key=key)
    try:
        good = Client(server.endpoint, key=key, timeout_s=10)
        assert good.request("hello").body["signed"] is True
        bad = Client(server.endpoint, key=b"x" * 32, timeout_s=3)
        with pytest.raises((ServerError, Exception)):
            bad.request("hello")
        good.close()
        bad.close()
    finally:
        server.stop()
        thread.join(5)
        server.close()


def test_load_eight_clients_ten_jobs_each_with_one_that_never_reads(server):
    import zmq

    deaf = zmq.Context.instance().socket(zmq.DEALER)  # submits, then never reads a byte
    deaf.setsockopt(zmq.RCVHWM, 10)
    deaf.connect(server.endpoint)
    from propdreamer.server.wire import Message, encode

    for i in range(10):
        deaf.send_multipart(encode(Message("submit", {"prompt": f"deaf {i}"}, client="deaf", seq=i + 1)))
    clients = [Client(server.endpoint, timeout_s=30) for _ in range(7)]
    jobs = {c.client_id: [c.request("submit", {"prompt": f"job {i}"}).body["job"] for i in range(10)] for c in clients}
    # Poll every reading client round-robin until all their jobs are done; none waits over a second
    # for its next event while it has work pending, whatever the deaf client does.
    pending = {c.client_id: set(jobs[c.client_id]) for c in clients}
    last_event = {c.client_id: time.monotonic() for c in clients}
    worst_gap = 0.0
    deadline = time.monotonic() + 180
    while any(pending.values()) and time.monotonic() < deadline:
        for c in clients:
            m = c.receive(0.01)
            now = time.monotonic()
            if m is not None and m.type == "event":
                worst_gap = max(worst_gap, now - last_event[c.client_id])
                last_event[c.client_id] = now
                if m.body["event"] == "done":
                    pending[c.client_id].discard(m.body["job"])
            elif not pending[c.client_id]:
                last_event[c.client_id] = now
    assert not any(pending.values()), "some jobs never finished"
    assert worst_gap < 1.0, worst_gap
    for c in clients:  # everyone still gets answers within a second
        t0 = time.monotonic()
        assert c.request("hello", timeout_s=5).type == "welcome"
        assert time.monotonic() - t0 < 1.0
        c.close()
    deaf.close(0)


def test_a_pipeline_that_cannot_load_fails_jobs_with_the_reason(tmp_path):
    config = ServerConfig(bind="tcp://127.0.0.1:0", spool=tmp_path / "spool", prior="stand-in", worker=WorkerConfig(pipeline="no_such_module:run"))
    server = Server(config)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        c = Client(server.endpoint, timeout_s=30)
        job = c.request("submit", {"prompt": "a red cube"}).body["job"]
        failed = c.wait_for(job, ("failed", "done"), timeout_s=60)
        assert failed.body["event"] == "failed" and "no_such_module" in failed.body["reason"]
        assert server.pool.slots[0].restarts == 0
        c.close()
    finally:
        server.stop()
        thread.join(5)
        server.close()


def test_client_that_disappears_mid_job_fetches_its_result_later(server):
    c = Client(server.endpoint, client_id="blender-session", timeout_s=30)
    job = c.request("submit", {"prompt": "slow but finite"}).body["job"]
    c.wait_for(job, ("started",), timeout_s=60)
    c.close()  # Blender was closed mid-job
    deadline = time.time() + 60
    back = Client(server.endpoint, client_id="blender-session", timeout_s=30)
    while back.request("status", {"job": job}).body["state"] == "running" and time.time() < deadline:
        time.sleep(0.5)
    assert back.request("status", {"job": job}).body["state"] == "done"
    assert back.fetch(job) == b"GLB:slow but finite:"
    back.close()


def test_oversize_frames_never_reach_the_server(tmp_path):
    import zmq

    from propdreamer.server.wire import Message, WireLimits, encode

    server, thread = _start(tmp_path, limits=WireLimits(max_frame_bytes=64 * 1024))
    try:
        raw = zmq.Context.instance().socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(server.endpoint)
        raw.send_multipart(encode(Message("submit", {"prompt": "big", "kind": "texture"}, [b"\x00" * 200_000], client="big", seq=1)))
        assert not raw.poll(1000)  # ZeroMQ dropped the connection: no job, no reply
        raw.close(0)
        c = Client(server.endpoint, timeout_s=10)
        assert c.request("hello").type == "welcome"
        assert server.spool.all() == []
        c.close()
    finally:
        server.stop()
        thread.join(5)
        server.close()


def test_welcome_reports_the_free_gpu_memory_the_worker_last_saw(server):
    c = Client(server.endpoint, timeout_s=30)
    assert c.request("hello").body["free_gpu_memory"] is None  # no CUDA torch in the worker yet
    job = c.request("submit", {"prompt": "gpu"}).body["job"]
    c.wait_for(job, ("done",), timeout_s=60)
    deadline = time.time() + 10
    while c.request("hello").body["free_gpu_memory"] is None and time.time() < deadline:
        time.sleep(0.05)
    assert c.request("hello").body["free_gpu_memory"] == 123456789
    c.close()


def test_two_local_workers_run_two_jobs_at_once(tmp_path):
    from propdreamer.server.pool import local_devices

    server, thread = _start(tmp_path, workers=2)
    try:
        c = Client(server.endpoint, timeout_s=30)
        a = c.request("submit", {"prompt": "nap a"}).body["job"]
        b = c.request("submit", {"prompt": "nap b"}).body["job"]
        for job in (a, b):
            assert c.wait_for(job, ("done", "failed"), timeout_s=60).body["event"] == "done"
        started = {j: next(e for e in server.spool.events(j) if e["event"] == "started") for j in (a, b)}
        done = {j: next(e for e in server.spool.events(j) if e["event"] == "done") for j in (a, b)}
        assert {s["worker"] for s in started.values()} == {"local-0", "local-1"}
        assert max(s["time"] for s in started.values()) < min(d["time"] for d in done.values())  # at once
        pool = c.request("hello").body["pool"]
        assert pool["kind"] == "local" and [(w["name"], w["device"]) for w in pool["workers"]] == [("local-0", "cpu"), ("local-1", "cpu")]
        threads = c.request("submit", {"prompt": "threads"}).body["job"]  # two CPU workers share the cores, not each take all
        assert c.wait_for(threads, ("done", "failed"), timeout_s=60).body["event"] == "done"
        assert c.fetch(threads) == f"threads={max(1, (os.cpu_count() or 1) // 2)}".encode()
        assert c.request("unload").body["workers"] == ["local-0", "local-1"]  # both idle: both restarted
        c.close()
    finally:
        server.stop()
        thread.join(5)
        server.close()
    assert local_devices("cuda", devices="cuda:0,cuda:1") == ["cuda:0", "cuda:1"] and local_devices("cpu", workers=3) == ["cpu"] * 3
    with pytest.raises(ValueError, match="cuda:0,cuda:1"):
        local_devices("cuda", devices="gpu0")


def test_retry_runs_a_job_once_more_when_its_worker_dies(server, tmp_path):
    c = Client(server.endpoint, timeout_s=30)
    flaky = c.request("submit", {"prompt": f"crash-once {tmp_path / 'marker'}", "retry": True}).body["job"]
    assert c.wait_for(flaky, ("done", "failed"), timeout_s=90).body["event"] == "done"
    kinds = [e["event"] for e in server.spool.events(flaky)]
    assert kinds.count("started") == 2 and "retrying" in kinds and "killed" not in kinds
    always = c.request("submit", {"prompt": "crash", "retry": True}).body["job"]
    final = c.wait_for(always, ("done", "failed"), timeout_s=90).body
    assert final["event"] == "failed" and "SIGKILL" in final["reason"]
    assert [e["event"] for e in server.spool.events(always)].count("retrying") == 1  # once, never twice
    plain = c.request("submit", {"prompt": "crash"}).body["job"]  # unasked: failed, not re-run
    assert c.wait_for(plain, ("done", "failed"), timeout_s=90).body["event"] == "failed"
    assert "retrying" not in [e["event"] for e in server.spool.events(plain)]
    with pytest.raises(ServerError, match="retry"):
        c.request("submit", {"prompt": "a red cube", "retry": "yes"})
    c.close()


def test_longest_first_starts_the_longest_queued_job_first(tmp_path):
    server, thread = _start(tmp_path, queue_order="longest-first")
    try:
        c = Client(server.endpoint, timeout_s=30)
        busy = c.request("submit", {"prompt": "slow busy"}).body["job"]  # holds the one worker while the others queue
        c.wait_for(busy, ("started",), timeout_s=60)
        draft = c.request("submit", {"prompt": "a draft", "preset": "draft"}).body
        standard = c.request("submit", {"prompt": "a standard", "preset": "standard"}).body
        short = c.request("submit", {"prompt": "a short one", "preset": "draft", "steps": 1}).body
        assert (draft["position"], standard["position"], short["position"]) == (2, 2, 4)  # the standard job goes ahead of the draft
        while c.wait_for(draft["job"], ("queued",), timeout_s=10).body.get("position") != 2:  # the draft is told it moved back
            pass
        c.request("cancel", {"job": busy})
        for job in (draft["job"], standard["job"], short["job"]):
            assert c.wait_for(job, ("done", "failed"), timeout_s=60).body["event"] == "done"
        started = {j: next(e["time"] for e in server.spool.events(j) if e["event"] == "started") for j in (draft["job"], standard["job"], short["job"])}
        assert started[standard["job"]] < started[draft["job"]] < started[short["job"]]
        c.close()
    finally:
        server.stop()
        thread.join(5)
        server.close()
