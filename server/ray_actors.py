"""The Ray side of the worker pool: one long-lived actor per GPU of a Ray cluster, which Ray places
across machines, keeps alive, and lets us kill and replace. This module runs in the bridge process
(ray_bridge.py), never in the server's: a Ray driver shares its fate with the cluster (Ray ends a
driver that has lost its cluster for 60 s, and aborts one that talks to a restarted head).

Each actor loads the pipeline (and, on its first job, the prior) once and keeps it, and runs one job at
a time through the same `run_one` as the local worker process. It is a threaded actor: `run` occupies
one thread while `drain` (the job's events so far), `cancel` (the pipeline's cancel flag) and `hello`
answer on others. The bridge never blocks on Ray: it holds at most one outstanding call of each kind
per actor and looks at all of them with one `ray.wait(timeout=0)` per tick of its loop.

Faults: an actor that dies (its process or its node) fails its running job with the reason and is
replaced by a new actor, which takes the next job; a running job is never re-run on its own (it may
have run for an hour). When the cluster itself is unreachable, `ActorPool.lost` says why and the bridge
reports it and exits.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from .worker import JobHandle, WorkerConfig, gpu_memory_free, load_pipeline, pipeline_capabilities, run_one
from .worker_messages import FromWorker, GpuMemory, JobMessage, Outcome

log = logging.getLogger(__name__)

PING_EVERY_S = 2.0  # how often an idle actor is asked whether it is still there
LONG_POLL_S = 1.0  # a busy actor's drain returns at its first event, or after this with none


class _EventBuffer:
    """The pipe the local worker writes to, inside an actor: messages wait here until `drain`."""

    def __init__(self) -> None:
        self.items: collections.deque = collections.deque()
        self.arrived = threading.Condition()

    def send(self, message: FromWorker) -> None:
        with self.arrived:
            self.items.append(message)
            self.arrived.notify_all()

    def wait(self, timeout_s: float) -> None:
        """Until a message is here, or `timeout_s`."""
        with self.arrived:
            self.arrived.wait_for(lambda: bool(self.items), timeout_s)


class RayWorker:
    """The actor: one per GPU (or per CPU slot in tests)."""

    def __init__(self, pipeline: str, settings: dict[str, Any], preview_interval_s: float) -> None:
        self.settings, self.preview_interval_s = settings, preview_interval_s
        self.events = _EventBuffer()
        self.cancel_flag = threading.Event()
        try:
            self.run_fn, self.broken = load_pipeline(pipeline), None
        except Exception as err:  # stay up and fail each job with the reason
            self.run_fn, self.broken = None, f"the worker cannot load its pipeline '{pipeline}': {type(err).__name__}: {err}"
        self.capabilities = pipeline_capabilities(pipeline, settings) if not self.broken else {}

    def hello(self) -> dict[str, Any]:
        import os

        import ray

        gpus = ray.get_gpu_ids()
        return {
            "node": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
            "gpus": [str(g) for g in gpus],
            "free_gpu_memory": gpu_memory_free(),
            "capabilities": self.capabilities,
        }

    def run(self, job_id: str, request: dict[str, Any], input_mesh: bytes | None) -> Outcome:
        self.cancel_flag.clear()
        handle = JobHandle(self.events, job_id, self.cancel_flag, self.preview_interval_s, self.settings)
        final = run_one(self.run_fn, self.broken, job_id, request, input_mesh, handle)
        self.events.send(GpuMemory(gpu_memory_free()))
        return final

    def drain(self, wait_s: float = 0.0) -> list[FromWorker]:
        """The messages so far; with `wait_s`, the call waits up to that long for the first one (a long
        poll: a busy actor's events reach the server as they are sent, one call per batch of them)."""
        if wait_s > 0:
            self.events.wait(wait_s)
        out = []
        while self.events.items:
            out.append(self.events.items.popleft())
        return out

    def cancel(self) -> None:
        self.cancel_flag.set()


class RaySlot:
    """The bridge's handle of one actor, with the local worker's interface (pool.Slot)."""

    def __init__(self, pool: ActorPool, index: int) -> None:
        self.pool, self.name, self.config = pool, f"ray-{index}", pool.worker
        self.device = "gpu" if pool.resources.get("num_gpus") else "cpu"
        self.restarts = 0
        self.free_gpu_memory: int | None = None
        self.capabilities: dict[str, Any] = {}
        self.node: str | None = None
        self._start()

    def _start(self) -> None:
        self.actor = self.pool.actor_class.options(**self.pool.resources, max_concurrency=4, max_restarts=0).remote(
            self.config.pipeline, {**self.config.settings, "device": "auto"}, self.config.preview_interval_s
        )
        self.current: str | None = None
        self.ready = False
        self.cancel_requested_at: float | None = None
        self._dead: str | None = None
        self._hello = self.actor.hello.remote()
        self._run = self._drain = None
        self._last_asked = time.monotonic()  # when an idle actor was last asked whether it lives

    # -- the slot interface ------------------------------------------------------------------------
    def submit(self, job_id: str, request: dict[str, Any], input_mesh: bytes | None) -> None:
        self.current, self.cancel_requested_at = job_id, None
        self._run = self.actor.run.remote(job_id, request, input_mesh)

    def cancel(self) -> None:
        if self.current is not None and self.cancel_requested_at is None:
            self.actor.cancel.remote()
            self.cancel_requested_at = time.monotonic()

    def overdue_cancel(self) -> bool:
        return self.cancel_requested_at is not None and time.monotonic() - self.cancel_requested_at > self.config.cancel_grace_s

    def alive(self) -> bool:
        return self._dead is None

    def exit_reason(self) -> str:
        return self._dead or "the worker is alive"

    def kill_and_restart(self) -> None:
        import ray

        try:
            ray.kill(self.actor, no_restart=True)
        except Exception:  # already gone, or the cluster is: a new actor is asked for either way
            pass
        self.restarts += 1
        try:
            self._start()
        except Exception as err:  # the bridge reports the lost cluster and exits
            self.pool.lost = f"the Ray cluster at '{self.pool.address}' refused a new worker ({type(err).__name__}: {err})"

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device, "node": self.node, "free_gpu_memory": self.free_gpu_memory, "busy": self.current is not None, "ready": self.ready}

    def close(self) -> None:
        import ray

        try:
            ray.kill(self.actor, no_restart=True)
        except Exception:
            pass

    def poll(self) -> list[JobMessage]:
        """The actor's job messages since the last poll, without blocking; notes its death."""
        import ray

        out: list[JobMessage] = []
        now = time.monotonic()
        try:
            if self._hello is not None and self._done(self._hello):
                info, self._hello = ray.get(self._hello), None
                self.node, self.free_gpu_memory, self.capabilities = info["node"], info["free_gpu_memory"], info["capabilities"]
                self.ready = True
            if self._drain is not None and self._done(self._drain):
                out += self._messages(ray.get(self._drain))
                self._drain = None
            if self._run is not None and self._done(self._run):
                final: Outcome = ray.get(self._run)
                self._run = None
                if self._drain is not None:  # an earlier drain still in flight: its events come first
                    out += self._messages(ray.get(self._drain, timeout=10))
                    self._drain = None
                out += self._messages(ray.get(self.actor.drain.remote(), timeout=10))  # the events the job sent last
                out.append(final)
                self.current = self.cancel_requested_at = None
            elif self._drain is None and self._hello is None:
                if self.current is not None:  # busy: a long poll always in flight
                    self._drain = self.actor.drain.remote(LONG_POLL_S)
                elif now - self._last_asked >= PING_EVERY_S:
                    self._drain = self.actor.drain.remote()  # tells an idle actor's death
                    self._last_asked = now
        except ray.exceptions.RayActorError as err:
            self._dead = self._death(err)
        except ray.exceptions.GetTimeoutError:
            self._dead = "the worker stopped answering (Ray)"
        except Exception as err:  # the cluster itself: the server refuses submits and keeps running
            self.pool.lost = f"the Ray cluster at '{self.pool.address}' is unreachable ({type(err).__name__}: {err})"
            self._dead = self.pool.lost
        return out

    # -- helpers -----------------------------------------------------------------------------------
    def pending(self) -> list:
        """The calls to the actor still in flight (its start, an event drain, the job)."""
        return [r for r in (self._hello, self._drain, self._run) if r is not None]

    def _done(self, ref) -> bool:
        if self.pool.wait_error is not None:
            raise self.pool.wait_error  # the cluster itself (poll says so)
        return ref in self.pool.ready

    def _messages(self, items: list[FromWorker]) -> list[JobMessage]:
        out: list[JobMessage] = []
        for m in items:
            if isinstance(m, GpuMemory):
                self.free_gpu_memory = m.free
            elif isinstance(m, JobMessage):
                out.append(m)
        return out

    def _death(self, err: Exception) -> str:
        where = f" on node {self.node}" if self.node else ""
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"the worker {self.name} (a Ray actor{where}) died: {cause}"


class ActorPool:
    """The actors, in the bridge process: connects to the cluster and starts them."""

    def __init__(self, address: str, worker: WorkerConfig, workers: int | None = None, resources: dict[str, float] | None = None) -> None:
        try:
            import ray
        except ImportError as err:
            raise RuntimeError("--ray needs Ray: pip install 'propdreamer[cluster]' (or pip install ray) on this machine and on every worker node") from err
        if not ray.is_initialized():
            try:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            except ConnectionError as err:
                raise RuntimeError(
                    f"no Ray cluster at '{address}' ({err}); start one with `ray start --head` (and `ray start --address HEAD:6379` on each worker node), or run without --ray"
                ) from err
        self.address, self.worker = address, worker
        self.gcs_address: str = ray.get_runtime_context().gcs_address  # host:port of the cluster's head, which the bridge watches
        self.lost: str | None = None  # why the cluster cannot be used any more, once it went away
        self.ready: set = set()  # the actors' calls found finished by this tick's `refresh`
        self.wait_error: Exception | None = None  # what that wait raised (the cluster went away)
        total = ray.cluster_resources()
        if resources is None:
            resources = {"num_gpus": 1} if total.get("GPU", 0) >= 1 else {"num_cpus": 1}
        if "num_gpus" in resources:  # a GPU actor reserves no CPU (Ray's default of one would cap the actors per node at its CPUs)
            resources = {"num_cpus": 0, **resources}
        self.resources = resources
        if workers is None:
            workers = int(total.get("GPU", 0)) or 1
        if workers < 1:
            raise ValueError(f"--ray-workers must be at least 1, got {workers}")
        self.actor_class: Any = ray.remote(RayWorker)  # Ray types an actor class by hand-written stubs that do not know .options(**resources)
        self.slots = [RaySlot(self, i) for i in range(workers)]
        log.info("Ray pool: %d actor(s) asking %s each, cluster %s", workers, resources, {k: v for k, v in total.items() if k in ("CPU", "GPU")})

    def refresh(self) -> None:
        """Which in-flight calls of every actor have finished: one `ray.wait` per tick for the whole pool
        (64 actors asked one by one cost the loop more than the events they carry)."""
        import ray

        refs = [r for s in self.slots for r in s.pending()] if not self.lost else []
        self.ready, self.wait_error = set(), None
        if refs:
            try:
                done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                self.ready = set(done)
            except Exception as err:  # the cluster itself: each slot's poll reports it
                self.wait_error = err

    def close(self) -> None:
        for s in self.slots:
            s.close()
