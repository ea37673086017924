"""The workers that run jobs, behind one interface the server's loop uses.

A pool is a list of worker slots, each running one job at a time. Two kinds:

- `LocalPool`: supervised processes on this machine (`worker.Supervisor`), one per device
  (`--devices cuda:0,cuda:1`) or N on one device (`--workers N`, e.g. CPU workers).
- `RayPool` (`ray_pool.py`): long-lived Ray actors, one per GPU of a Ray cluster (`--ray auto` or
  `--ray ADDRESS`), which Ray schedules across machines, driven through a child process
  (`ray_bridge.py`) so the server outlives its cluster.

Every slot offers what the server needs, the same on both: `submit`, `poll` (its job messages, worker_messages.py: events,
previews, the final done / failed / cancelled), `cancel`, `overdue_cancel`, `alive` / `exit_reason`,
`kill_and_restart`, `info()` for `welcome`, and the `current` job. The spool stays the one record of
jobs and results: a slot's result reaches the spool before the job is reported done.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Protocol

from .worker import Supervisor, WorkerConfig
from .worker_messages import JobMessage


class Slot(Protocol):
    name: str
    device: str
    current: str | None
    ready: bool
    free_gpu_memory: int | None
    capabilities: dict[str, Any]
    restarts: int

    def submit(self, job_id: str, request: dict[str, Any], input_mesh: bytes | None) -> None: ...
    def poll(self) -> list[JobMessage]: ...
    def cancel(self) -> None: ...
    def overdue_cancel(self) -> bool: ...
    def alive(self) -> bool: ...
    def exit_reason(self) -> str: ...
    def kill_and_restart(self) -> None: ...
    def info(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


class Pool:
    """Worker slots; `kind` names the engine ("local" or "ray")."""

    kind = "local"

    def __init__(self, slots: list[Slot]) -> None:
        self.slots = slots

    def free(self) -> list[Slot]:
        """Slots ready for a job, in order."""
        return [s for s in self.slots if s.current is None and s.ready and s.alive()]

    def running(self, job_id: str) -> Slot | None:
        return next((s for s in self.slots if s.current == job_id), None)

    def refresh(self) -> None:
        """Once per tick of the server's loop, before the slots are polled (Ray: one wait for all actors)."""

    def unavailable(self) -> str | None:
        """Why no job can run at all (a Ray cluster that went away), or None."""
        return None

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "workers": [s.info() for s in self.slots]}

    def close(self) -> None:
        for s in self.slots:
            s.close()


class LocalPool(Pool):
    def __init__(self, worker: WorkerConfig, devices: list[str]) -> None:
        if not devices:
            raise ValueError("a local pool needs at least one device, e.g. ['cpu'] or ['cuda:0', 'cuda:1']")
        threads = cpu_threads(devices, os.cpu_count() or 1)
        super().__init__(
            [
                Supervisor(replace(worker, settings={**worker.settings, "device": d, **({"threads": threads} if d == "cpu" else {})}), name=f"local-{i}")
                for i, d in enumerate(devices)
            ]
        )


def cpu_threads(devices: list[str], cores: int) -> int:
    """Compute threads for each CPU worker: the cores shared out among them. torch's default (every core
    in every process) makes two CPU workers on 2 cores run 4 busy threads that spin against each other:
    2.75x slower than one worker, not faster (BENCHMARKS.md, "The worker pool")."""
    cpu_workers = sum(1 for d in devices if d == "cpu")
    return max(1, cores // max(1, cpu_workers))


def local_devices(device: str, workers: int = 1, devices: str | None = None) -> list[str]:
    """The local pool's devices: `devices` "cuda:0,cuda:1" (one worker each), else `workers` on `device`."""
    if devices:
        names = [d.strip() for d in devices.split(",") if d.strip()]
        bad = [d for d in names if d != "cpu" and not (d.startswith("cuda") and (d == "cuda" or d[5:].isdigit()))]
        if bad or not names:
            raise ValueError(f"--devices takes a comma-separated list such as cuda:0,cuda:1 (or cpu), got {devices!r}")
        return names
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    return [device] * workers
