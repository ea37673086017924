"""The supervised child process that runs the GPU work, one job at a time.

The server talks to it over a `multiprocessing` pipe. If the child dies (an exception escaping the
pipeline, out of memory, a kill), the supervisor fails the job with the reason and starts a new child,
so the next job runs. Cancellation is cooperative (the pipeline checks `cancelled()` every step); a
child that does not stop within `cancel_grace_s` is killed and replaced.

The pipeline is named by an import path "module:function" with the signature

    run(request: dict, input_mesh: bytes | None, job: JobHandle) -> bytes   (the result GLB)

and reports through `job.progress(...)`, `job.preview(png)` and `job.cancelled()`. The pipe carries
the typed messages of `worker_messages.py`.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from ..core.cancel import Cancelled as JobCancelled  # one cancel exception, core's
from .worker_messages import Cancelled, Capabilities, Done, Event, Failed, FromWorker, GpuMemory, JobMessage, Outcome, Preview, Ready, RunJob, Stop


class JobHandle:
    """What a pipeline sees of the server: progress and preview reporting, and the cancel flag."""

    def __init__(self, conn, job_id: str, cancel_flag, preview_interval_s: float, settings: dict[str, Any] | None = None) -> None:
        self._conn, self.job_id, self._cancel = conn, job_id, cancel_flag
        self.settings = settings or {}  # the server's prior and device
        self._preview_interval_s, self._last_preview = preview_interval_s, 0.0

    def progress(self, stage: str, step: int, total: int, eta_s: float | None = None, losses: dict[str, float] | None = None) -> None:
        self._conn.send(Event(self.job_id, "progress", {"stage": stage, "step": step, "total": total, "eta_s": eta_s, "losses": losses or {}}))

    def event(self, kind: str, data: dict[str, Any]) -> None:
        """Any other event of the job (e.g. `resolved`, the settings that run), kept in the spool."""
        self._conn.send(Event(self.job_id, kind, data))

    def preview(self, png: bytes) -> None:
        now = time.monotonic()
        if now - self._last_preview >= self._preview_interval_s:  # throttled
            self._last_preview = now
            self._conn.send(Preview(self.job_id, png))

    def cancelled(self) -> bool:
        return self._cancel.is_set()


def load_pipeline(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def worker_main(conn, pipeline_path: str, cancel_flag, preview_interval_s: float, settings: dict[str, Any]) -> None:
    if settings.get("threads"):
        limit_threads(int(settings["threads"]))
    try:
        run = load_pipeline(pipeline_path)
        broken = None
    except Exception as err:  # stay up and fail each job with the reason, rather than die and respawn forever
        run, broken = None, f"the server cannot load its pipeline '{pipeline_path}': {type(err).__name__}: {err}"
    conn.send(Ready(broken))
    conn.send(Capabilities(pipeline_capabilities(pipeline_path, settings) if not broken else {}))
    conn.send(GpuMemory(gpu_memory_free()))
    while True:
        message: RunJob | Stop = conn.recv()
        if isinstance(message, Stop):
            return
        job_id = message.job_id
        conn.send(run_one(run, broken, job_id, message.request, message.input_mesh, JobHandle(conn, job_id, cancel_flag, preview_interval_s, settings)))
        conn.send(GpuMemory(gpu_memory_free()))


def limit_threads(threads: int) -> None:
    """This process's compute threads (a CPU worker sharing the cores with others), set before the
    pipeline imports torch and again through torch if it is already loaded."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def run_one(run, broken: str | None, job_id: str, request: dict[str, Any], input_mesh: bytes | None, handle: JobHandle) -> Outcome:
    """One job through the pipeline -> its final message (Done, Cancelled or Failed with the reason and
    the traceback). Shared by the local worker process and the Ray actor."""
    if broken:
        return Failed(job_id, broken)
    try:
        result = run(request, input_mesh, handle)
    except JobCancelled:
        return Cancelled(job_id)
    except MemoryError:
        return Failed(job_id, "out of memory on the server; try the draft preset or free GPU memory with 'unload'", traceback.format_exc(limit=8))
    except Exception as err:  # the job fails with its reason; the worker lives on for the next job
        if _out_of_gpu_memory(err):
            reason = "out of GPU memory; try the draft preset, a smaller batch, or free memory with 'unload'"
        else:
            reason = f"{type(err).__name__}: {err}"
        return Failed(job_id, reason, traceback.format_exc(limit=8))
    return Done(job_id, bytes(result))


def _out_of_gpu_memory(err: Exception) -> bool:
    """torch's out-of-memory error (CUDA's allocator); torch is only looked at if the pipeline loaded it."""
    oom = getattr(sys.modules.get("torch"), "OutOfMemoryError", None)
    return oom is not None and isinstance(err, oom)


def pipeline_capabilities(pipeline_path: str, settings: dict[str, Any]) -> dict[str, Any]:
    """What the pipeline reports about this machine at start (its module's `capabilities(settings)`, if it
    has one), for `welcome`; e.g. which compositor renders Gaussians."""
    module = importlib.import_module(pipeline_path.partition(":")[0])
    report = getattr(module, "capabilities", None)
    if report is None:
        return {}
    try:
        return dict(report(settings))
    except Exception as err:  # a report that fails says so; jobs still run
        return {"error": f"{type(err).__name__}: {err}"}


def gpu_memory_free() -> int | None:
    """Free bytes on the worker's CUDA device, or None (no torch loaded yet, or no GPU)."""
    torch = sys.modules.get("torch")  # the pipeline imports torch; never import it just for this
    if torch is not None and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info()[0])
    return None


@dataclass
class WorkerConfig:
    pipeline: str = "propdreamer.core.jobs:run_job"
    cancel_grace_s: float = 1.0
    preview_interval_s: float = 1.0
    settings: dict[str, Any] = field(default_factory=dict)  # passed to the pipeline as job.settings


class Supervisor:
    """Starts, feeds and, when it must, replaces the worker process."""

    process: BaseProcess  # the worker process and the server's end of its pipe: set by `start`
    conn: Connection

    def __init__(self, config: WorkerConfig, name: str = "local-0") -> None:
        self.config, self.name = config, name
        self.device = str(config.settings.get("device", "cpu"))
        self._ctx = mp.get_context("spawn")
        self.current: str | None = None
        self.cancel_requested_at: float | None = None
        self.restarts = 0
        self.free_gpu_memory: int | None = None
        self.capabilities: dict[str, Any] = {}  # reported by the worker at start (None-free: empty until then)
        self.start()

    def start(self) -> None:
        self.cancel_flag = self._ctx.Event()
        parent, child = self._ctx.Pipe()
        self.process = self._ctx.Process(
            target=worker_main, args=(child, self.config.pipeline, self.cancel_flag, self.config.preview_interval_s, self.config.settings), daemon=True
        )
        self.process.start()
        child.close()
        self.conn = parent
        self.ready = False

    def alive(self) -> bool:
        return self.process.is_alive()

    def submit(self, job_id: str, request: dict[str, Any], input_mesh: bytes | None) -> None:
        self.cancel_flag.clear()
        self.cancel_requested_at = None
        self.current = job_id
        self.conn.send(RunJob(job_id, request, input_mesh))

    def cancel(self) -> None:
        if self.current is not None and self.cancel_requested_at is None:
            self.cancel_flag.set()
            self.cancel_requested_at = time.monotonic()

    def kill_and_restart(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.restarts += 1
        self.current = None
        self.cancel_requested_at = None
        self.start()

    def overdue_cancel(self) -> bool:
        return self.cancel_requested_at is not None and time.monotonic() - self.cancel_requested_at > self.config.cancel_grace_s

    def poll(self) -> list[JobMessage]:
        """The job messages from the worker, without blocking (the worker's own are kept here)."""
        out: list[JobMessage] = []
        try:
            while self.conn.poll():
                message: FromWorker = self.conn.recv()
                if isinstance(message, Ready):
                    self.ready = True
                elif isinstance(message, GpuMemory):  # reported by the worker at start and after each job
                    self.free_gpu_memory = message.free
                elif isinstance(message, Capabilities):  # what the pipeline found on this machine, once at start
                    self.capabilities = message.report
                else:
                    if isinstance(message, Done | Failed | Cancelled):
                        self.current = None
                        self.cancel_requested_at = None
                    out.append(message)
        except (EOFError, OSError):
            pass  # the worker died; `alive()` tells the server
        return out

    def info(self) -> dict[str, Any]:
        """This worker for `welcome`: its name, device, free GPU memory and whether it runs a job."""
        return {"name": self.name, "device": self.device, "free_gpu_memory": self.free_gpu_memory, "busy": self.current is not None, "ready": self.ready}

    def exit_reason(self) -> str:
        code = self.process.exitcode
        if code is not None and code < 0:
            import signal

            name = signal.Signals(-code).name
            cause = {
                "SIGSEGV": "a native library crashed (a segmentation fault)",
                "SIGBUS": "a native library crashed (a bus error)",
                "SIGABRT": "a native library aborted",
                "SIGKILL": "out of memory, or killed by hand",
                "SIGTERM": "stopped by a signal from outside",
            }.get(name, "killed by a signal")
            return f"the worker process died of {name}: {cause}; the server log holds its last lines"
        return f"the worker process exited with code {code}"

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(Stop())
                self.process.join(timeout=2)
            except (OSError, BrokenPipeError):
                pass
            if self.process.is_alive():
                self.process.kill()
                self.process.join(timeout=5)
