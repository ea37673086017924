"""Job state for the add-on, bpy-free: submit jobs, poll the socket without blocking, keep each job's
stage, progress, ETA, latest preview, the settings the server resolved, and its outcome, and hand
finished results to the caller (which, in Blender, imports them on the main thread).

Every job state of the protocol is handled: queued, running, done, failed, cancelled and interrupted
(a server restart stopped it). Events carry a per-job sequence number; after a reconnect (or a silence
longer than RESUBSCRIBE_AFTER_S, e.g. events dropped while Blender was busy) the tracker re-subscribes
each active job from the last event it saw, without blocking."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .protocol import PROTOCOL_MAJOR, Client, ProtocolError, ServerError
from .protocol import request as rq

FINAL_STATES = ("done", "failed", "cancelled", "interrupted")  # the protocol's; the add-on adds "imported"
RESUBSCRIBE_AFTER_S = 15.0


@dataclass
class JobState:
    job: str
    kind: str
    prompt: str
    meta: dict[str, Any] = field(default_factory=dict)  # what the add-on needs to place the result
    body: dict[str, Any] = field(default_factory=dict)  # the submitted settings (history: re-run)
    state: str = "queued"  # queued, running, or one of FINAL_STATES; "imported" once in the scene
    stage: str = ""
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    preview_png: bytes | None = None
    preview_serial: int = 0  # bumped with each new preview
    message: str = ""
    submitted_at: float = field(default_factory=time.time)
    settings: dict[str, Any] | None = None  # what the server resolved and runs (the `resolved` event)
    warnings: list[str] = field(default_factory=list)  # e.g. words the prior does not know
    position: int = 0  # place in the server's queue while queued
    last_seq: int = -1  # the last event applied: re-subscribing resumes after it
    heard_at: float = field(default_factory=time.monotonic)

    @property
    def summary(self) -> str:
        """The resolved settings in one line, once the server has reported them."""
        return rq.settings_summary(self.settings) if self.settings else ""

    @property
    def progress(self) -> float:
        return self.step / self.total if self.total else 0.0

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


class JobTracker:
    def __init__(self, endpoint: str, key: bytes | None = None, timeout_s: float = 10.0, client_id: str | None = None) -> None:
        self.endpoint = endpoint
        self.client = Client(endpoint, client_id=client_id, key=key, timeout_s=timeout_s, watch_connections=True)
        self.jobs: dict[str, JobState] = {}
        self._limits: dict[str, Any] | None = None
        self.connections = 0  # connections made, the first one included

    def close(self) -> None:
        self.client.close()

    def hello(self) -> dict[str, Any]:
        """The server's handshake; raises with a clear reason (down, wrong version, refused)."""
        body = self.client.request("hello").body
        if str(body.get("protocol", "")).split(".")[0] != PROTOCOL_MAJOR:
            raise ProtocolError("version", f"the server speaks protocol {body.get('protocol')}, this add-on {PROTOCOL_MAJOR}.x; update the one that is older")
        return body

    def limits(self) -> dict[str, Any]:
        """The server's limits on uploads (from its welcome; asked once per tracker)."""
        if self._limits is None:
            body = self.hello()
            self._limits = {k: body[k] for k in ("max_input_faces", "max_frame_bytes", "max_chunk_bytes", "max_upload_bytes") if k in body}
        return self._limits

    def submit(self, kind: str, body: dict[str, Any], buffers: list[bytes] | None = None, meta: dict[str, Any] | None = None) -> JobState:
        chunk = int(self.limits().get("max_chunk_bytes", 0)) if buffers else 0
        if buffers and chunk:  # a mesh over one chunk goes first in chunks (`upload`)
            reply = self.client.submit({**body, "kind": kind}, buffers[0], chunk)
        else:
            reply = self.client.request("submit", {**body, "kind": kind}, buffers=buffers)
        job = JobState(
            reply.body["job"], kind, body.get("prompt", ""), meta or {}, body=dict(body), warnings=list(reply.body.get("warnings", [])), position=int(reply.body.get("position", 0))
        )
        self.jobs[job.job] = job
        return job

    def resubscribe(self, job: JobState) -> None:
        """Ask for the job's events after the last one seen; the reply and events arrive through `poll`."""
        job.heard_at = time.monotonic()
        self.client.send("subscribe", {"job": job.job, "since": job.last_seq + 1})

    def _connected(self) -> int:
        """Connections made since the last call (the monitor's events can arrive late and together, so
        they are counted, not just noticed)."""
        import zmq

        monitor = self.client.connections  # a message per (re)connection to the server, the first one included
        assert monitor is not None
        count = 0
        while monitor.poll(0):
            monitor.recv_multipart(zmq.NOBLOCK)
            count += 1
        return count

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
            if job is not None and self.apply(job, event.body, event.buffers):
                finished.append(job)
        made = self._connected()
        if made:
            self.connections += made
            for job in self.jobs.values():
                if job.active:
                    self.resubscribe(job)
        now = time.monotonic()
        for job in self.jobs.values():
            if job.active and now - job.heard_at > RESUBSCRIBE_AFTER_S:
                self.resubscribe(job)
        return finished

    @staticmethod
    def apply(job: JobState, event: dict[str, Any], buffers: list[bytes] | None = None) -> bool:
        """One event into the job's state; True when it finished the job. Replayed events (a sequence
        number already seen) and events after the job ended change nothing."""
        seq = event.get("seq")
        if not job.active or (isinstance(seq, int) and seq <= job.last_seq):
            return False
        if isinstance(seq, int):
            job.last_seq = seq
        job.heard_at = time.monotonic()
        kind = event.get("event")
        if kind == "queued":
            job.state, job.position = "queued", int(event.get("position", job.position))  # the first one (at accept) has none
        elif kind == "started":
            job.state = "running"
        elif kind == "resolved":
            job.settings = event.get("settings")
            job.warnings += [w for w in event.get("warnings", []) if w not in job.warnings]
        elif kind == "progress":
            job.state, job.stage = "running", event.get("stage", "")
            job.step, job.total, job.eta_s = event.get("step", 0), event.get("total", 0), event.get("eta_s")
        elif kind == "preview" and buffers:
            job.preview_png, job.preview_serial = buffers[0], job.preview_serial + 1
        elif kind in FINAL_STATES:
            job.state = kind
            job.message = event.get("reason", "") or ("stopped by a server restart; run it again" if kind == "interrupted" else "")
            return True
        return False

    def fetch(self, job: str) -> bytes:
        return self.client.fetch(job)

    def acknowledge(self, job: str) -> None:
        try:
            self.client.request("ack", {"job": job})
        except ServerError:
            pass  # already gone: nothing to release

    def server_jobs(self, timeout_s: float | None = None) -> list[dict[str, Any]]:
        """This client's jobs the server still holds (results that arrived while Blender was closed)."""
        return self.client.request("list", timeout_s=timeout_s).body["jobs"]
