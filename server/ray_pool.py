"""The worker pool on a Ray cluster, as the server sees it: one slot per Ray actor (one per GPU), driven
through the bridge process (ray_bridge.py), which is the Ray driver. The server never imports Ray, so a
cluster that goes away cannot take the server with it.

The cluster going away (its head stops, the network drops): the bridge says so and exits, or Ray ends
it. Running jobs fail with that reason (never re-run on their own; a job's `retry` field re-queues it
once); queued jobs stay queued; submits are refused with the reason. Every `RECONNECT_EVERY_S` the
server starts a new bridge; once the cluster is back, new actors come up and the queue runs again.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing as mp
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from .pool import Pool, Slot
from .ray_bridge import Cancel, Close, FromBridge, Lost, Restart, SlotDead, SlotMessages, SlotReady, Submit, ToBridge, Up, bridge_main
from .worker import WorkerConfig
from .worker_messages import Cancelled, Done, Failed, JobMessage

log = logging.getLogger(__name__)

RECONNECT_EVERY_S = 5.0  # a lost cluster: how often a new bridge tries to reach it
START_TIMEOUT_S = 180.0  # the first connection, at server start (Ray's own start on a busy head can take a minute)


class BridgeSlot:
    """One Ray actor, as the server sees it: the local worker's interface (pool.Slot)."""

    def __init__(self, pool: RayPool, index: int) -> None:
        self.pool, self.index, self.name, self.config = pool, index, f"ray-{index}", pool.worker
        self.device = "gpu" if pool.resources.get("num_gpus") else "cpu"
        self.restarts = 0
        self.free_gpu_memory: int | None = None
        self.capabilities: dict[str, Any] = {}
        self.node: str | None = None
        self.current: str | None = None
        self.ready = False
        self.cancel_requested_at: float | None = None
        self.dead: str | None = None  # why the actor died (its job fails with it), until it is replaced
        self.inbox: list[JobMessage] = []  # job messages the bridge relayed, for the next poll

    def submit(self, job_id: str, request: dict[str, Any], input_mesh: bytes | None) -> None:
        self.current, self.cancel_requested_at = job_id, None
        self.pool.send(Submit(self.index, job_id, request, input_mesh))

    def cancel(self) -> None:
        if self.current is not None and self.cancel_requested_at is None:
            self.pool.send(Cancel(self.index))
            self.cancel_requested_at = time.monotonic()

    def overdue_cancel(self) -> bool:
        return self.cancel_requested_at is not None and time.monotonic() - self.cancel_requested_at > self.config.cancel_grace_s

    def alive(self) -> bool:
        return self.dead is None

    def exit_reason(self) -> str:
        return self.dead or "the worker is alive"

    def kill_and_restart(self) -> None:
        self.restarts += 1
        self.current = self.cancel_requested_at = self.dead = None
        self.ready, self.inbox = False, []
        self.pool.send(Restart(self.index))  # ready again when the bridge says the new actor is

    def poll(self) -> list[JobMessage]:
        out, self.inbox = self.inbox, []
        return out

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device, "node": self.node, "free_gpu_memory": self.free_gpu_memory, "busy": self.current is not None, "ready": self.ready}

    def close(self) -> None:
        pass  # the bridge kills every actor when the pool closes

    # -- what the bridge tells --------------------------------------------------------------------
    def on_ready(self, m: SlotReady) -> None:
        self.ready, self.node, self.free_gpu_memory, self.capabilities = True, m.node, m.free_gpu_memory, m.capabilities

    def on_messages(self, m: SlotMessages) -> None:
        self.free_gpu_memory = m.free_gpu_memory
        self.inbox += m.messages
        if any(isinstance(x, Done | Failed | Cancelled) for x in m.messages):
            self.current = self.cancel_requested_at = None

    def on_lost(self, reason: str) -> None:
        self.ready = False
        if self.current is not None:
            self.dead = reason  # the server fails the running job with it


class RayPool(Pool):
    kind = "ray"

    def __init__(self, address: str, worker: WorkerConfig, workers: int | None = None, resources: dict[str, float] | None = None) -> None:
        if importlib.util.find_spec("ray") is None:
            raise RuntimeError("--ray needs Ray: pip install 'propdreamer[cluster]' (or pip install ray) on this machine and on every worker node")
        if workers is not None and workers < 1:
            raise ValueError(f"--ray-workers must be at least 1, got {workers}")
        self.address, self.worker, self.workers_asked, self.resources_asked = address, worker, workers, resources
        self._ctx = mp.get_context("spawn")
        self.lost: str | None = None  # why no job can run on the cluster now, while it is gone
        self.process: BaseProcess | None = None
        self.conn: Connection | None = None
        self.next_attempt = 0.0
        self._start_bridge()
        up = self._first_word(START_TIMEOUT_S)
        if isinstance(up, Lost):
            self._reap()
            raise ConnectionError(
                f"no Ray cluster at '{address}' ({up.reason}); start one with `ray start --head` (and `ray start --address HEAD:6379` on each worker node), or run without --ray"
            )
        self.resources = up.resources
        self.workers_asked = up.slots  # a reconnection asks for as many as the first connection started
        self.bridge_slots = [BridgeSlot(self, i) for i in range(up.slots)]
        slots: list[Slot] = list(self.bridge_slots)
        super().__init__(slots)
        log.info("Ray pool: %d actor(s) asking %s each, cluster %s", up.slots, up.resources, up.cluster)

    # -- the bridge process ---------------------------------------------------------------------------
    def _start_bridge(self) -> None:
        parent, child = self._ctx.Pipe()
        self.process = self._ctx.Process(target=bridge_main, args=(child, self.address, self.worker, self.workers_asked, self.resources_asked), daemon=True)
        self.process.start()
        child.close()
        self.conn = parent

    def _first_word(self, timeout_s: float) -> Up | Lost:
        assert self.conn is not None and self.process is not None
        if self.conn.poll(timeout_s):
            try:
                m = self.conn.recv()
                if isinstance(m, Up | Lost):
                    return m
            except (EOFError, OSError):
                pass
            return Lost(f"the Ray driver process ended (exit code {self.process.exitcode})")
        return Lost(f"Ray did not connect within {timeout_s:.0f} s")

    def _reap(self) -> None:
        """The bridge is gone or going: close our end and make sure its process has ended."""
        if self.conn is not None:
            self.conn.close()
        if self.process is not None:
            self.process.join(timeout=2)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(timeout=5)
        self.conn = self.process = None

    def send(self, command: ToBridge) -> None:
        if self.conn is None:
            return  # the cluster is gone: the slots are down and the server refuses submits
        try:
            self.conn.send(command)
        except (BrokenPipeError, OSError) as err:
            self._went_away(f"the Ray driver process ended ({type(err).__name__})")

    # -- the pool's interface -----------------------------------------------------------------------
    def refresh(self) -> None:
        """What the bridge relayed since the last tick; a new bridge when the cluster is gone and it is time."""
        if self.conn is None:
            if time.monotonic() >= self.next_attempt:
                self.next_attempt = time.monotonic() + RECONNECT_EVERY_S
                self._start_bridge()
            return
        try:
            while self.conn is not None and self.conn.poll():
                self._on(self.conn.recv())
        except (EOFError, OSError):
            assert self.process is not None
            self.process.join(timeout=2)
            self._went_away(f"the Ray driver process ended (exit code {self.process.exitcode})")

    def _on(self, m: FromBridge) -> None:
        if isinstance(m, SlotMessages):
            self.bridge_slots[m.slot].on_messages(m)
        elif isinstance(m, SlotReady):
            self.bridge_slots[m.slot].on_ready(m)
        elif isinstance(m, SlotDead):
            self.bridge_slots[m.slot].dead = m.reason
        elif isinstance(m, Lost):
            self._went_away(m.reason)
        elif isinstance(m, Up):
            log.warning("the Ray cluster at '%s' is back: %d actor(s) starting", self.address, m.slots)
            self.lost = None

    def _went_away(self, reason: str) -> None:
        if self.lost is None:  # the first word of it is kept (a failed reconnection says less)
            self.lost = f"{reason}; the server reconnects by itself when it is back (every {RECONNECT_EVERY_S:.0f} s)"
            log.error("%s", self.lost)
        for s in self.bridge_slots:
            s.on_lost(self.lost)
        self._reap()
        self.next_attempt = time.monotonic() + RECONNECT_EVERY_S

    def unavailable(self) -> str | None:
        return self.lost

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.send(Close())
            except (BrokenPipeError, OSError):
                pass
            if self.process is not None:
                self.process.join(timeout=15)
        self._reap()
