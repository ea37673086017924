"""Job state for the add-on, bpy-free: submit jobs, poll the socket without blocking, keep each job's
stage, progress, ETA, latest preview and outcome, and hand finished results to the caller (which, in
Blender, imports them on the main thread)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .protocol import PROTOCOL_MAJOR, Client, ProtocolError, ServerError


@dataclass
class JobState:
    job: str
    kind: str
    prompt: str
    meta: dict[str, Any] = field(default_factory=dict)  # what the add-on needs to place the result
    body: dict[str, Any] = field(default_factory=dict)  # the submitted settings (history: re-run)
    state: str = "queued"  # queued, running, done, failed, cancelled, imported
    stage: str = ""
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    preview_png: bytes | None = None
    preview_serial: int = 0  # bumped with each new preview
    message: str = ""
    submitted_at: float = field(default_factory=time.time)

    @property
    def progress(self) -> float:
        return self.step / self.total if self.total else 0.0

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


class JobTracker:
    def __init__(self, endpoint: str, key: bytes | None = None, timeout_s: float = 10.0, client_id: str | None = None) -> None:
        self.endpoint = endpoint
        self.client = Client(endpoint, client_id=client_id, key=key, timeout_s=timeout_s)
        self.jobs: dict[str, JobState] = {}

    def close(self) -> None:
        self.client.close()

    def hello(self) -> dict[str, Any]:
        """The server's handshake; raises with a clear reason (down, wrong version, refused)."""
        body = self.client.request("hello").body
        if str(body.get("protocol", "")).split(".")[0] != PROTOCOL_MAJOR:
            raise ProtocolError("version", f"the server speaks protocol {body.get('protocol')}, this add-on {PROTOCOL_MAJOR}.x; update the one that is older")
        return body

    def submit(self, kind: str, body: dict[str, Any], buffers: list[bytes] | None = None, meta: dict[str, Any] | None = None) -> JobState:
        reply = self.client.request("submit", {**body, "kind": kind}, buffers=buffers)
        job = JobState(reply.body["job"], kind, body.get("prompt", ""), meta or {}, body=dict(body))
        self.jobs[job.job] = job
        return job

    def cancel(self, job: str) -> None:
        self.client.request("cancel", {"job": job})

    def poll(self, budget_s: float = 0.01) -> list[JobState]:
        """Apply the events that have arrived (waiting at most `budget_s`); jobs that just finished."""
        finished = []
        events, self.client.events = self.client.events, []
        deadline = time.monotonic() + budget_s
        while True:
            message = self.client.receive(0 if events else max(0.0, deadline - time.monotonic()))
            if message is None:
                break
            if message.type == "event":
                events.append(message)
        for event in events:
            job = self.jobs.get(event.body.get("job"))
            if job is None or not job.active:  # unknown, or already finished: a replayed event changes nothing
                continue
            kind = event.body.get("event")
            if kind == "progress":
                job.state, job.stage = "running", event.body.get("stage", "")
                job.step, job.total, job.eta_s = event.body.get("step", 0), event.body.get("total", 0), event.body.get("eta_s")
            elif kind == "preview" and event.buffers:
                job.preview_png, job.preview_serial = event.buffers[0], job.preview_serial + 1
            elif kind == "started":
                job.state = "running"
            elif kind in ("done", "failed", "cancelled"):
                job.state = kind
                job.message = event.body.get("reason", "")
                finished.append(job)
        return finished

    def fetch(self, job: str) -> bytes:
        return self.client.fetch(job)

    def acknowledge(self, job: str) -> None:
        try:
            self.client.request("ack", {"job": job})
        except ServerError:
            pass  # already gone: nothing to release

    def server_jobs(self) -> list[dict[str, Any]]:
        """This client's jobs the server still holds (results that arrived while Blender was closed)."""
        return self.client.request("list").body["jobs"]
