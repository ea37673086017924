"""The worker pool on a local Ray cluster started by these tests (`ray start --head`, CPU actors, no
GPU): jobs run on actors, two at once on two actors, cancel, an actor killed mid-job, a cancel it
ignores, a server restart with jobs in the spool while Ray keeps running, and the cluster's head
stopped and started again under a running server. The stand-in pipeline (fake_pipeline.py) runs inside
the actors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from propdreamer.server.app import Server, ServerConfig
from propdreamer.server.client import Client, ServerError
from propdreamer.server.worker import WorkerConfig

TESTS = Path(__file__).parent
RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = _free_port()
ADDRESS = f"127.0.0.1:{PORT}"


def _head(action: str) -> None:
    """Start the cluster's head on PORT, or stop every Ray process of this machine."""
    # Four logical CPUs on this 2-core machine: each actor asks for one; the actors mostly sleep. The
    # actors import fake_pipeline from here (the raylet's environment passes to its workers).
    env = {**os.environ, "PYTHONPATH": str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = ["start", "--head", "--port", str(PORT), "--num-cpus", "4", "--include-dashboard=false", "--disable-usage-stats"] if action == "start" else ["stop", "--force"]
    subprocess.run([RAY, *args], env=env, check=action == "start", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    _head("start")
    yield
    _head("stop")


def _start(spool: Path, workers: int = 2) -> tuple[Server, threading.Thread]:
    config = ServerConfig(
        bind="tcp://127.0.0.1:0",
        spool=spool,
        prior="stand-in",
        ray=ADDRESS,
        ray_workers=workers,
        worker=WorkerConfig(pipeline="fake_pipeline:run", cancel_grace_s=1.0, preview_interval_s=0.0),
    )
    server = Server(config)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def _stop(server: Server, thread: threading.Thread) -> None:
    server.stop()
    thread.join(10)
    server.close()


def _wait_ready(c: Client, n: int, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pool = c.request("hello").body["pool"]
        if sum(w["ready"] for w in pool["workers"]) >= n:
            return pool
        time.sleep(0.2)
    raise AssertionError(f"the Ray actors did not come up: {pool}")


@pytest.fixture
def server(tmp_path):
    server, thread = _start(tmp_path / "spool")
    yield server
    _stop(server, thread)


def test_two_jobs_run_at_once_on_two_actors(server):
    c = Client(server.endpoint, timeout_s=30)
    pool = _wait_ready(c, 2)
    assert pool["kind"] == "ray" and [w["name"] for w in pool["workers"]] == ["ray-0", "ray-1"] and pool["workers"][0]["node"]
    a = c.request("submit", {"prompt": "nap one"}).body["job"]
    b = c.request("submit", {"prompt": "nap two"}).body["job"]
    done_a, done_b = c.wait_for(a, ("done", "failed"), timeout_s=60), c.wait_for(b, ("done", "failed"), timeout_s=60)
    assert done_a.body["event"] == done_b.body["event"] == "done"
    events = {j: server.spool.events(j) for j in (a, b)}
    started = {j: next(e for e in ev if e["event"] == "started") for j, ev in events.items()}
    finished = {j: next(e for e in ev if e["event"] == "done") for j, ev in events.items()}
    assert {started[a]["worker"], started[b]["worker"]} == {"ray-0", "ray-1"}
    assert max(s["time"] for s in started.values()) < min(f["time"] for f in finished.values())  # they overlapped
    assert [e["event"] for e in events[a]].count("progress") == 9  # 6 naps + 3 steps, in order, before done
    assert c.fetch(a) == b"GLB:nap one:" and c.fetch(b) == b"GLB:nap two:"
    listed = {j["job"]: j["worker"] for j in c.request("list").body["jobs"]}
    assert listed == {a: started[a]["worker"], b: started[b]["worker"]}
    c.close()


def test_cancel_a_running_actor_job_and_a_stubborn_one(server):
    c = Client(server.endpoint, timeout_s=30)
    _wait_ready(c, 2)
    job = c.request("submit", {"prompt": "slow"}).body["job"]
    c.wait_for(job, ("progress",), timeout_s=60)
    t0 = time.monotonic()
    assert c.request("cancel", {"job": job}).body["state"] == "cancelling"
    assert c.wait_for(job, ("cancelled", "done", "failed"), timeout_s=30).body["event"] == "cancelled"
    assert time.monotonic() - t0 < 2.0  # within a second or so (the pipeline checks every step)
    stubborn = c.request("submit", {"prompt": "stubborn"}).body["job"]
    c.wait_for(stubborn, ("started",), timeout_s=60)
    time.sleep(0.5)
    c.request("cancel", {"job": stubborn})
    final = c.wait_for(stubborn, ("cancelled", "done", "failed"), timeout_s=30).body
    assert final["event"] == "cancelled" and final.get("forced")  # the actor was killed and replaced
    assert sum(s.restarts for s in server.pool.slots) == 1
    after = c.request("submit", {"prompt": "after"}).body["job"]
    assert c.wait_for(after, ("done", "failed"), timeout_s=60).body["event"] == "done"
    c.close()


def test_a_killed_actor_fails_its_job_with_the_reason_and_the_next_job_runs(server):
    c = Client(server.endpoint, timeout_s=30)
    _wait_ready(c, 2)
    crash = c.request("submit", {"prompt": "crash"}).body["job"]
    queued = [c.request("submit", {"prompt": f"nap {i}"}).body["job"] for i in range(3)]
    failed = c.wait_for(crash, ("done", "failed"), timeout_s=60).body
    assert failed["event"] == "failed" and "Ray actor" in failed["reason"] and "died" in failed["reason"], failed
    for job in queued:  # none lost, none re-run by surprise
        assert c.wait_for(job, ("done", "failed"), timeout_s=90).body["event"] == "done"
    assert server.spool.get(crash).state == "failed"  # never re-run on its own
    c.close()


def test_the_server_restarts_with_jobs_in_the_spool_while_ray_keeps_running(tmp_path):
    spool = tmp_path / "spool"
    server, thread = _start(spool, workers=1)
    c = Client(server.endpoint, client_id="artist", timeout_s=30)
    _wait_ready(c, 1)
    running = c.request("submit", {"prompt": "slow"}).body["job"]
    waiting = c.request("submit", {"prompt": "nap later"}).body["job"]
    c.wait_for(running, ("progress",), timeout_s=60)
    c.close()
    _stop(server, thread)  # the server goes away; Ray (and its cluster) stay up
    server, thread = _start(spool, workers=1)
    try:
        c = Client(server.endpoint, client_id="artist", timeout_s=30)
        c.request("subscribe", {"job": waiting, "since": 0})  # as the add-on does after a restart: events replay, then arrive live
        assert c.wait_for(waiting, ("done", "failed"), timeout_s=120).body["event"] == "done"
        assert c.request("status", {"job": running}).body["state"] == "interrupted"  # by the restart: reported, not re-run
        assert c.fetch(waiting) == b"GLB:nap later:"
        c.close()
    finally:
        _stop(server, thread)


def test_the_server_outlives_its_cluster_and_reconnects_when_it_is_back(tmp_path):
    """The head stops under a running job (as a head node that crashes or is rebooted): the server keeps
    serving, the running job fails with the reason, the queued job stays queued, submits are refused
    with what is happening; past the 60 s after which Ray ends a driver that lost its cluster, the
    server is still up. The head starts again: new actors come up and the queued job runs."""
    server, thread = _start(tmp_path / "spool", workers=1)
    try:
        c = Client(server.endpoint, timeout_s=30)
        _wait_ready(c, 1)
        running = c.request("submit", {"prompt": "slow"}).body["job"]
        queued = c.request("submit", {"prompt": "nap queued"}).body["job"]
        c.wait_for(running, ("progress",), timeout_s=60)
        _head("stop")
        failed = c.wait_for(running, ("failed", "done"), timeout_s=30).body
        assert failed["event"] == "failed" and "Ray cluster" in failed["reason"] and "unreachable" in failed["reason"], failed
        with pytest.raises(ServerError) as err:
            c.request("submit", {"prompt": "one more"})
        assert err.value.code == "no_workers" and "reconnects by itself" in str(err.value)
        time.sleep(65)  # Ray ends a driver 60 s after it lost its cluster: the server is not one
        assert thread.is_alive() and c.request("hello").type == "welcome"
        assert c.request("status", {"job": queued}).body["state"] == "queued"  # kept for when workers return
        _head("start")
        assert c.wait_for(queued, ("done", "failed"), timeout_s=120).body["event"] == "done"
        assert c.fetch(queued) == b"GLB:nap queued:"
        assert c.request("submit", {"prompt": "nap after"}).type == "accepted"
        c.close()
    finally:
        _stop(server, thread)
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
        except OSError:
            _head("start")  # for any test after this one


def test_unload_replaces_the_idle_actors_and_jobs_run_after(server):
    c = Client(server.endpoint, timeout_s=30)
    _wait_ready(c, 2)
    running = c.request("submit", {"prompt": "slow"}).body["job"]
    c.wait_for(running, ("progress",), timeout_s=60)
    worker = c.request("status", {"job": running}).body
    reply = c.request("unload").body
    busy = [w["name"] for w in c.request("hello").body["pool"]["workers"] if w["busy"]]
    assert reply["busy"] == busy and len(reply["workers"]) == 1 and reply["workers"] != busy, (reply, worker)
    assert sum(s.restarts for s in server.pool.slots) == 1  # the idle actor was replaced; the busy one kept its job
    _wait_ready(c, 2)
    after = c.request("submit", {"prompt": "nap after unload"}).body["job"]
    assert c.wait_for(after, ("done", "failed"), timeout_s=60).body["event"] == "done"
    c.request("cancel", {"job": running})
    assert c.wait_for(running, ("cancelled", "done", "failed"), timeout_s=30).body["event"] == "cancelled"
    c.close()


def test_a_server_pointed_at_no_cluster_says_how_to_start_one(tmp_path):
    """At once (Ray's own connect tries for over a minute), and the process can exit (the socket is freed)."""
    with pytest.raises(ConnectionError) as err:
        Server(
            ServerConfig(bind="tcp://127.0.0.1:0", spool=tmp_path / "spool", prior="stand-in", ray=f"127.0.0.1:{_free_port()}", worker=WorkerConfig(pipeline="fake_pipeline:run"))
        )
    assert "no Ray cluster at" in str(err.value) and "ray start --head" in str(err.value)
