"""The worker pool through the server an artist talks to: `propdreamer serve` on loopback, jobs sent by
the protocol client the add-on's job tracker is built on, the local pool against the Ray pool.

    python benchmarks/pool.py overhead [--jobs 20]      # scheduling overhead per job, local vs Ray
    python benchmarks/pool.py throughput [--jobs 4]     # a short real job, 1 and 2 local workers, 2 cores
    python benchmarks/pool.py studio [--slots 64 --jobs 200 --clients 16 --scale 0.01 --queue-order both]

- overhead: the stand-in pipeline (benchmarks/stand_in.py) returns at once; per job, submit -> the
  pipeline starting (it reports its start time), and the pipeline returning -> the `done` event, sent
  after the result is in the spool. Jobs one after another, one worker.
- throughput: real generate jobs on the builtin prior (draft, 30 stage-one steps), all submitted at
  once; jobs per minute with one and with two local workers.
- studio: a Ray cluster started here with one GPU's worth of simulated slots (`--num-gpus 1`, each actor
  asking 1/slots of it: fractional resources), the stand-in sleeping for job lengths drawn from the
  presets' prompt-to-GLB times scaled down (draft 120 s, standard 600 s, 3:1, +-20%), jobs from
  several clients at once (the request names the preset; the server's --queue-order fifo and
  longest-first, one run each; progress events at a real job's rate, --event-interval 1.0 s); makespan against the ideal (sum of lengths / slots), the event latency
  (the pipeline's send time -> the client's receipt), and the server's memory.
Linux only (/proc for memory). Starts and stops its own Ray head (`ray start --head`).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from propdreamer.server.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_memory import _free_port, rss_mib

HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}  # workers and actors import stand_in
RAY = str(Path(sys.executable).parent / "ray")
PRESET_S = {"draft": 120.0, "standard": 600.0}  # prompt -> GLB on one GPU, the presets' targets (issue 9)


def serve(spool: str, *extra: str) -> tuple[subprocess.Popen, str]:
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    cmd = [sys.executable, "-m", "propdreamer.server.cli", "serve", "--bind", endpoint, "--device", "cpu", "--spool", spool, *extra]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=None if os.environ.get("POOL_BENCH_LOG") else subprocess.DEVNULL), endpoint


def wait_ready(c: Client, n: int, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(w["ready"] for w in c.request("hello").body["pool"]["workers"]) >= n:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{n} workers did not come up within {timeout_s:.0f} s")


class RayHead:
    def __init__(self, *args: str) -> None:
        self.args = args

    def __enter__(self) -> RayHead:
        subprocess.run(
            [RAY, "start", "--head", "--port", str(_free_port()), "--include-dashboard=false", "--disable-usage-stats", *self.args],
            env=ENV,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run([RAY, "stop", "--force"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _ms(values: list[float]) -> str:
    values = sorted(values)
    return f"median {1000 * statistics.median(values):7.1f} ms, p90 {1000 * values[int(0.9 * (len(values) - 1))]:7.1f} ms, max {1000 * values[-1]:7.1f} ms"


def overhead(jobs: int) -> None:
    for kind in ("local", "ray"):
        spool = tempfile.mkdtemp()
        head = RayHead("--num-cpus", "2") if kind == "ray" else None
        if head:
            head.__enter__()
        server, endpoint = serve(spool, "--pipeline", "stand_in:run", "--prior", "stand-in", *(["--ray", "auto", "--ray-workers", "1"] if head else []))
        try:
            c = Client(endpoint, timeout_s=60)
            wait_ready(c, 1)
            to_start, to_spool = [], []
            for i in range(jobs + 2):  # the first two warm the worker up; not counted
                t_submit = time.time()
                job = c.request("submit", {"prompt": "instant"}).body["job"]
                first = c.wait_for(job, ("progress",), timeout_s=120).body
                done = c.wait_for(job, ("done", "failed"), timeout_s=120).body
                returned = float(c.fetch(job).decode().split("=")[1])
                if i >= 2:
                    to_start.append(first["losses"]["started"] - t_submit)
                    to_spool.append(done["time"] - returned)
                c.request("ack", {"job": job})
            print(f"{kind:5s} submit -> pipeline starts: {_ms(to_start)}")
            print(f"{kind:5s} pipeline returns -> done (result in spool): {_ms(to_spool)}")
            c.close()
        finally:
            server.terminate()
            server.wait(60)
            if head:
                head.__exit__()
            shutil.rmtree(spool, ignore_errors=True)


def throughput(jobs: int) -> None:
    for workers in (1, 2):
        spool = tempfile.mkdtemp()
        server, endpoint = serve(spool, "--prior", "builtin", "--workers", str(workers))
        try:
            c = Client(endpoint, timeout_s=60)
            wait_ready(c, workers)
            t0 = time.time()
            ids = [c.request("submit", {"prompt": p, "steps": 30}).body["job"] for p in ["a red cube", "a blue sphere", "a green cone", "a yellow torus"][:jobs]]
            ends = [c.wait_for(j, ("done", "failed"), timeout_s=3600).body for j in ids]
            wall = max(e["time"] for e in ends) - t0
            failed = [e for e in ends if e["event"] != "done"]
            print(f"{workers} worker(s): {len(ids)} jobs in {wall:6.1f} s = {60 * len(ids) / wall:5.2f} jobs/min{f' ({len(failed)} failed)' if failed else ''}")
            c.close()
        finally:
            server.terminate()
            server.wait(60)
            shutil.rmtree(spool, ignore_errors=True)


def list_schedule(lengths: list[float], slots: int) -> float:
    """The makespan of jobs started in this order on the first free of `slots`, with no overhead."""
    import heapq

    free = [0.0] * slots
    for length in lengths:
        heapq.heappush(free, heapq.heappop(free) + length)
    return max(free)


def studio(slots: int, jobs: int, clients: int, scale: float, seed: int, order: str, every: float) -> None:
    rng = random.Random(seed)
    presets, lengths = [], []  # the server knows a job's preset, not its length
    for _ in range(jobs):
        presets.append("draft" if rng.random() < 0.75 else "standard")
        lengths.append(scale * PRESET_S[presets[-1]] * rng.uniform(0.8, 1.2))
    spool = tempfile.mkdtemp()
    with RayHead("--num-cpus", "2", "--num-gpus", "1"):
        server, endpoint = serve(
            spool,
            "--pipeline",
            "stand_in:run",
            "--prior",
            "stand-in",
            "--ray",
            "auto",
            "--ray-workers",
            str(slots),
            "--ray-gpus-per-worker",
            f"{1.0 / slots:.6f}",
            "--queue-order",
            order,
        )
        try:
            probe = Client(endpoint, timeout_s=60)
            t_up = time.time()
            wait_ready(probe, slots)
            print(f"{slots} actors ready in {time.time() - t_up:.1f} s; server RSS {rss_mib(server.pid):.0f} MiB")
            latencies: list[float] = []
            ends: list[float] = []
            lock = threading.Lock()
            start = threading.Barrier(clients + 1)

            def artist(k: int) -> None:
                c = Client(endpoint, client_id=f"artist-{k}", timeout_s=120)
                mine = list(zip(lengths, presets))[k::clients]
                start.wait()
                ids = {c.request("submit", {"prompt": f"sleep {s:.3f} every {every}", "preset": p}).body["job"] for s, p in mine}
                pending, seen = set(ids), []
                while pending:
                    m = c.receive(timeout_s=600)
                    if m is None:
                        raise TimeoutError(f"artist {k}: no event for 600 s")
                    now = time.time()
                    body = m.body
                    if m.type == "event" and body.get("event") == "progress":
                        seen.append(now - body["losses"]["sent"])
                    elif m.type == "event" and body.get("event") in ("done", "failed", "cancelled") and body["job"] in pending:
                        pending.discard(body["job"])
                        with lock:
                            ends.append(now)
                with lock:
                    latencies.extend(seen)
                c.close()

            threads = [threading.Thread(target=artist, args=(k,)) for k in range(clients)]
            for t in threads:
                t.start()
            t0 = time.time()
            start.wait()
            for t in threads:
                t.join()
            makespan = max(ends) - t0
            ideal = sum(lengths) / slots
            latencies.sort()
            print(
                f"queue order {order}, progress every {every} s: {jobs} jobs from {clients} clients on {slots} slots: makespan {makespan:.1f} s, ideal {ideal:.1f} s "
                f"({100 * (makespan / ideal - 1):+.1f}%); longest job {max(lengths):.1f} s"
            )
            order_of = {"fifo": list(range(jobs)), "longest-first": sorted(range(jobs), key=lambda i: presets[i] != "standard")}[order]
            print(f"the same jobs in this order with no overhead (submission order for fifo): {list_schedule([lengths[i] for i in order_of], slots):.1f} s")
            print(
                f"event latency (pipeline -> client), {len(latencies)} progress events: median {1000 * latencies[len(latencies) // 2]:.0f} ms, "
                f"p99 {1000 * latencies[int(0.99 * (len(latencies) - 1))]:.0f} ms, max {1000 * latencies[-1]:.0f} ms"
            )
            print(f"server RSS {rss_mib(server.pid):.0f} MiB, peak {rss_mib(server.pid, 'VmHWM'):.0f} MiB")
            probe.close()
        finally:
            server.terminate()
            server.wait(120)
            shutil.rmtree(spool, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["overhead", "throughput", "studio"])
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--slots", type=int, default=64)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--scale", type=float, default=0.01, help="job length scale: 0.01 turns a 120 s draft job into 1.2 s")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--event-interval",
        type=float,
        default=1.0,
        help="seconds between a stand-in job's progress events (a real job reports about once a second: every 10-25 steps of 0.05-0.2 s on a GPU; not scaled with the job lengths)",
    )
    ap.add_argument("--queue-order", default="both", choices=["both", "fifo", "longest-first"], help="the server's --queue-order (both: one run each)")
    args = ap.parse_args()
    if args.part == "overhead":
        overhead(args.jobs or 20)
    elif args.part == "throughput":
        throughput(args.jobs or 4)
    else:
        for order in ["fifo", "longest-first"] if args.queue_order == "both" else [args.queue_order]:
            studio(args.slots, args.jobs or 200, args.clients, args.scale, args.seed, order, args.event_interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
