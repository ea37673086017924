"""The messages between the server and a worker (a local process's pipe, or a Ray actor's calls).

The server sends `RunJob` (or `Stop`); the worker answers with the rest. Every message is a frozen
dataclass, so a reader finds each field by name and the server dispatches on the class (a handler
table, as it does for the wire's message types).

    worker start:  Ready, Capabilities, GpuMemory
    each job:      Event* / Preview*, then one final message (Done | Failed | Cancelled), GpuMemory
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# -- server -> worker ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunJob:
    job_id: str
    request: dict[str, Any]  # the spooled job request (core/request.py's fields)
    input_mesh: bytes | None  # the artist's mesh (GLB) for texture and iterate jobs


@dataclass(frozen=True)
class Stop:
    """The worker exits its loop (the server is closing)."""


# -- worker -> server: about the worker ----------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    broken: str | None  # why the pipeline could not be loaded (every job then fails with it), or None


@dataclass(frozen=True)
class Capabilities:
    report: dict[str, Any]  # what the pipeline found on this machine at start (e.g. the Gaussian compositor), for `welcome`


@dataclass(frozen=True)
class GpuMemory:
    free: int | None  # bytes free on the worker's CUDA device; None without a GPU or before torch loads


# -- worker -> server: about a job ---------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    job_id: str
    kind: str  # progress, resolved, ... (docs/protocol.md "Events")
    data: dict[str, Any]


@dataclass(frozen=True)
class Preview:
    job_id: str
    png: bytes


@dataclass(frozen=True)
class Done:
    job_id: str
    glb: bytes  # the result, stored in the spool before `done` is sent


@dataclass(frozen=True)
class Failed:
    job_id: str
    reason: str  # what the artist reads
    traceback: str = field(default="", repr=False)  # where it happened, for the server's log


@dataclass(frozen=True)
class Cancelled:
    job_id: str


Outcome = Done | Failed | Cancelled  # how a job ended: exactly one per RunJob
JobMessage = Event | Preview | Outcome  # what the server's loop handles (the slot keeps the worker's own)
FromWorker = Ready | Capabilities | GpuMemory | JobMessage
