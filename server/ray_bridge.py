"""The bridge: a child process of the server that is the Ray driver, so the server outlives its cluster.

A Ray driver shares its fate with the cluster: Ray ends a driver that cannot reach the cluster's head
for 60 s, and aborts one whose call reaches a restarted head (measured with Ray 2.60; BENCHMARKS.md,
"The worker pool"). The server therefore never imports Ray. It starts this process, which connects,
starts the actors (ray_actors.py), and relays between the server's pipe and the actors:

    server -> bridge:  Submit, Cancel, Restart (one slot), Close
    bridge -> server:  Up (connected: how many slots, what each asks for), SlotReady, SlotMessages (a
                       slot's job messages, worker_messages.py), SlotDead (an actor died), Lost (the
                       cluster went away; the bridge exits after sending it)

The bridge watches the head itself (a TCP connect to its GCS port once a second): a head that refuses
connections is reported as lost at once, not after Ray's 60 s. The server starts a new bridge to
reconnect (ray_pool.py).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from .worker import WorkerConfig
from .worker_messages import JobMessage

PROBE_EVERY_S = 1.0  # how often the bridge checks that the cluster's head accepts connections
PROBE_MISSES = 2  # refused connections in a row before the cluster is taken as gone
DEATH_GRACE_S = 1.5  # a dead actor is reported after this, once its head still answers: a head that stops takes its actors first
TICK_S = 0.01  # the bridge's loop: commands, one ray.wait for every actor, then each actor's messages

# -- server -> bridge -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Submit:
    slot: int
    job_id: str
    request: dict[str, Any]
    input_mesh: bytes | None


@dataclass(frozen=True)
class Cancel:
    slot: int


@dataclass(frozen=True)
class Restart:
    """Kill the slot's actor and start a new one (an actor that ignored cancel, died, or was unloaded)."""

    slot: int


@dataclass(frozen=True)
class Close:
    pass


ToBridge = Submit | Cancel | Restart | Close

# -- bridge -> server -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Up:
    slots: int  # actors started (the number asked for, or one per GPU of the cluster)
    resources: dict[str, float]  # what each actor asks Ray for
    cluster: dict[str, float]  # the cluster's CPUs and GPUs


@dataclass(frozen=True)
class SlotReady:
    slot: int
    node: str | None
    free_gpu_memory: int | None
    capabilities: dict[str, Any]


@dataclass(frozen=True)
class SlotMessages:
    slot: int
    messages: list[JobMessage]  # in the order the job sent them; an Outcome ends the job
    free_gpu_memory: int | None


@dataclass(frozen=True)
class SlotDead:
    slot: int
    reason: str


@dataclass(frozen=True)
class Lost:
    reason: str  # why the cluster cannot be used: it was never reached, or it went away


FromBridge = Up | SlotReady | SlotMessages | SlotDead | Lost


def refusal(host: str, port: int, timeout_s: float) -> str | None:
    """Why a TCP connect to host:port fails (None: it connects)."""
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
        return None
    except OSError as err:
        return err.strerror or type(err).__name__


class HeadProbe:
    """Whether the cluster's head accepts TCP connections, checked on a thread (never blocks the loop)."""

    def __init__(self, gcs_address: str) -> None:
        host, _, port = gcs_address.rpartition(":")
        self.where, self.misses, self.error = (host, int(port)), 0, ""
        threading.Thread(target=self._watch, daemon=True).start()

    def refuses_now(self) -> bool:
        """One connect, now (when an actor dies: did its cluster go with it?)."""
        error = refusal(*self.where, timeout_s=1.0)
        if error is not None:
            self.misses, self.error = PROBE_MISSES, error
        return error is not None

    def gone(self) -> str | None:
        return f"its head at {self.where[0]}:{self.where[1]} refuses connections ({self.error})" if self.misses >= PROBE_MISSES else None

    def _watch(self) -> None:
        while True:
            error = refusal(*self.where, timeout_s=2.0)
            self.misses, self.error = (0, self.error) if error is None else (self.misses + 1, error)
            time.sleep(PROBE_EVERY_S)


def bridge_main(conn: Connection, address: str, worker: WorkerConfig, workers: int | None, resources: dict[str, float] | None) -> None:
    """The bridge process: connect, start the actors, relay until Close or the cluster is lost."""
    logging.basicConfig(level=logging.WARNING)
    host, _, port = address.rpartition(":")
    if host and port.isdigit() and (error := refusal(host, int(port), timeout_s=5.0)) is not None:  # say so now (Ray's own connect tries for over a minute)
        conn.send(Lost(f"nothing answers at {address} ({error})"))
        os._exit(0)
    try:
        from .ray_actors import ActorPool

        pool = ActorPool(address, worker, workers, resources)
    except Exception as err:  # no Ray, no cluster: the server says why
        conn.send(Lost(str(err)))
        os._exit(0)
    import ray

    total = ray.cluster_resources()
    conn.send(Up(len(pool.slots), pool.resources, {k: v for k, v in total.items() if k in ("CPU", "GPU")}))
    probe = HeadProbe(pool.gcs_address)
    told_ready = [False] * len(pool.slots)  # SlotReady sent for the slot's current actor
    told_dead = [False] * len(pool.slots)
    dead_since: list[float | None] = [None] * len(pool.slots)  # when the slot's actor was found dead
    while True:
        while conn.poll(TICK_S):
            command: ToBridge = conn.recv()
            if isinstance(command, Close):
                pool.close()
                os._exit(0)
            slot = pool.slots[command.slot]
            if isinstance(command, Submit):
                slot.submit(command.job_id, command.request, command.input_mesh)
            elif isinstance(command, Cancel):
                slot.cancel()
            elif isinstance(command, Restart):
                slot.kill_and_restart()
                told_ready[command.slot] = told_dead[command.slot] = False
                dead_since[command.slot] = None
        pool.refresh()
        for i, slot in enumerate(pool.slots):
            free_before = slot.free_gpu_memory
            messages = slot.poll()
            if slot.ready and not told_ready[i]:
                conn.send(SlotReady(i, slot.node, slot.free_gpu_memory, slot.capabilities))
                told_ready[i] = True
            if messages or slot.free_gpu_memory != free_before:
                conn.send(SlotMessages(i, messages, slot.free_gpu_memory))
            if not slot.alive() and not told_dead[i] and not pool.lost:
                since = dead_since[i] = dead_since[i] or time.monotonic()
                if time.monotonic() - since >= DEATH_GRACE_S and not probe.refuses_now():
                    conn.send(SlotDead(i, slot.exit_reason()))
                    told_dead[i] = True
        gone = pool.lost or probe.gone()
        if gone:
            conn.send(Lost(gone if pool.lost else f"the Ray cluster at '{address}' is unreachable: {gone}"))
            os._exit(0)  # no ray.shutdown: it may wait on the head that is gone
