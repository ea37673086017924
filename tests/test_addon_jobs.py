"""The add-on's job tracker (bpy-free) against a real server on loopback: every job state the protocol
defines reaches the panel, and a tracker that lost the server re-subscribes from the last event it saw."""

import sys
import threading
import time
from pathlib import Path

import pytest

from propdreamer.server.app import Server, ServerConfig
from propdreamer.server.spool import STATES
from propdreamer.server.worker import WorkerConfig

sys.path.insert(0, str(Path(__file__).parents[1] / "blender_addon"))
from propdreamer_blender import jobs as addon_jobs
from propdreamer_blender.jobs import FINAL_STATES, JobState, JobTracker


def _serve(spool: Path, bind: str = "tcp://127.0.0.1:0") -> tuple[Server, threading.Thread]:
    server = Server(ServerConfig(bind=bind, spool=spool, prior="stand-in", worker=WorkerConfig(pipeline="fake_pipeline:run", cancel_grace_s=2.0, preview_interval_s=0.0)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def _stop(server, thread) -> None:
    server.stop()
    thread.join(5)
    server.close()


def _until(tracker: JobTracker, condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, [(j.prompt, j.state, j.message) for j in tracker.jobs.values()]
        tracker.poll(0.05)


@pytest.fixture
def served(tmp_path):
    server, thread = _serve(tmp_path / "spool")
    tracker = JobTracker(server.endpoint, timeout_s=10)
    yield server, tracker
    tracker.close()
    _stop(server, thread)


def test_the_tracker_knows_every_final_state_of_the_protocol():
    assert set(FINAL_STATES) == set(STATES) - {"queued", "running"}


def test_done_failed_cancelled_and_queued_reach_the_panel(served):
    _, tracker = served
    slow = tracker.submit("generate", {"prompt": "slow cube"})
    queued = tracker.submit("generate", {"prompt": "a red cube"})
    failing = tracker.submit("generate", {"prompt": "error"})
    _until(tracker, lambda: slow.state == "running" and queued.position >= 1)
    assert queued.state == "queued" and failing.position > queued.position
    tracker.cancel(slow.job)
    _until(tracker, lambda: not any(j.active for j in (slow, queued, failing)))
    assert (slow.state, queued.state, failing.state) == ("cancelled", "done", "failed")
    assert "boom" in failing.message
    assert queued.stage == "stage1" and queued.total == 3 and queued.preview_png == b"\x89PNG fake"
    assert tracker.fetch(queued.job) == b"GLB:a red cube:"


def test_an_interrupted_job_reaches_the_panel_after_the_server_restarts(tmp_path):
    """A server restart interrupts the running job; the tracker reconnects, re-subscribes from its last
    event and shows `interrupted` (before, the panel polled forever)."""
    server, thread = _serve(tmp_path / "spool")
    endpoint = server.endpoint
    tracker = JobTracker(endpoint, timeout_s=10)
    try:
        job = tracker.submit("generate", {"prompt": "slow cube"})
        _until(tracker, lambda: job.step >= 2)
        seen = job.last_seq
        _stop(server, thread)  # the artist's server goes down mid-job ...
        server, thread = _serve(tmp_path / "spool", bind=endpoint)  # ... and comes back on the same address
        _until(tracker, lambda: not job.active, timeout_s=addon_jobs.RESUBSCRIBE_AFTER_S - 5)  # on the reconnection, not the silence timer
        assert job.state == "interrupted" and job.last_seq > seen and "server stopped" in job.message
        # The new server may route the event to the client's id before the tracker's socket monitor reports
        # the new connection: the reconnection is seen within a poll or two, not necessarily first.
        _until(tracker, lambda: tracker.connections >= 2, timeout_s=10)
    finally:
        tracker.close()
        _stop(server, thread)


def test_the_first_connection_counts_however_fast_it_is_made(served, monkeypatch):
    """A connection made before the tracker watches its socket would go uncounted (the race that left a
    restarted server's reconnection at `connections` 1): the connect here completes before it returns."""
    import zmq

    server, _ = served
    connect = zmq.Socket.connect

    def connect_and_settle(self, address):
        done = connect(self, address)
        time.sleep(0.3)  # loopback TCP connects in well under this
        return done

    monkeypatch.setattr(zmq.Socket, "connect", connect_and_settle)
    tracker = JobTracker(server.endpoint, timeout_s=10)
    try:
        _until(tracker, lambda: tracker.connections == 1, timeout_s=5)
    finally:
        tracker.close()


def test_a_silent_job_is_resubscribed_without_blocking(served, monkeypatch):
    """Events dropped (a busy Blender, a full queue): after a silence the tracker asks again from the last
    one it saw, and replayed events change nothing."""
    server, tracker = served
    job = tracker.submit("generate", {"prompt": "a red cube"})
    _until(tracker, lambda: not job.active)
    assert job.state == "done"
    job.state, job.last_seq = "running", 1  # as if every event after the second had been lost
    monkeypatch.setattr(addon_jobs, "RESUBSCRIBE_AFTER_S", 0.0)
    t0 = time.monotonic()
    tracker.poll(0.0)
    assert time.monotonic() - t0 < 0.5  # the request is sent, not awaited
    _until(tracker, lambda: not job.active)
    assert job.state == "done"


def test_events_apply_in_order_once():
    job = JobState("j", "generate", "a red cube")
    settings = {
        "method": "sds",
        "representation": "nerf",
        "preset": "draft",
        "steps": 300,
        "guidance_scale": 10.0,
        "timesteps": {"kind": "uniform", "t_min": 0.02, "t_max": 0.95},
        "cameras": {"elevation_deg": [-10.0, 30.0]},
    }
    assert not JobTracker.apply(job, {"seq": 0, "event": "queued", "position": 2})
    assert job.position == 2
    assert not JobTracker.apply(job, {"seq": 1, "event": "started"}) and job.state == "running"
    assert not JobTracker.apply(job, {"seq": 2, "event": "resolved", "settings": settings, "warnings": ["w"]})
    assert job.summary == "sds on nerf, draft 300 steps, CFG 10, t 0.02-0.95, elevation -10..30" and job.warnings == ["w"]
    assert not JobTracker.apply(job, {"seq": 1, "event": "queued", "position": 5}) and job.state == "running"  # a replay
    assert JobTracker.apply(job, {"seq": 3, "event": "interrupted", "reason": ""})
    assert job.state == "interrupted" and not job.active
    assert not JobTracker.apply(job, {"seq": 4, "event": "done"}) and job.state == "interrupted"
