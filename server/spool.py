"""The spool: every accepted job and its results live on disk, so nothing is lost to a crash or restart.

Layout, one folder per job (`<spool>/jobs/<job_id>/`):

    request.json   the validated request, the client id and the creation time (written before the ack)
    input.glb      the input mesh of a refine / texture job
    state.json     {"state": ..., "reason": ...}; replaced atomically on every transition
    events.jsonl   one JSON event per line, each with a per-job sequence number (for re-subscription)
    result.glb     the result, and result.sha256 beside it

Every write goes to a temporary file that is fsynced and renamed over the old one, so a reader sees
either the old or the new content, never half of either. Events are appended and fsynced, except the
passing ones (`PASSING_EVENTS`: progress, previews, queue positions): those reach the operating system
at once (a crash of the server loses none) but are not forced to the disk one by one; a power cut may
lose the last of them, never a job, a state or a result. fsyncing each of them made the server's loop
wait on the disk hundreds of times a second with many workers (BENCHMARKS.md, "The worker pool").
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
FINAL = ("done", "failed", "cancelled", "interrupted")
PASSING_EVENTS = frozenset({"progress", "preview", "queued"})  # written, not fsynced one by one (a job's first `queued` is)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no stray temporary file
        raise


@dataclass
class JobRecord:
    id: str
    client: str
    created: float
    request: dict[str, Any]
    state: str
    reason: str = ""


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.jobs = self.root / "jobs"
        self.jobs.mkdir(parents=True, exist_ok=True)
        self._next_seq: dict[str, int] = {}  # per job; read from events.jsonl once, then counted here

    def _dir(self, job_id: str) -> Path:
        if not job_id.isalnum() or len(job_id) > 64:
            raise KeyError(f"invalid job id {job_id!r}")
        return self.jobs / job_id

    # -- accepting and reading jobs --------------------------------------------------------------
    def accept(self, client: str, request: dict[str, Any], input_mesh: bytes | None = None) -> str:
        """Persist a new queued job; only after this returns may the server acknowledge it."""
        job_id = uuid.uuid4().hex
        folder = self._dir(job_id)
        tmp = self.jobs / f".new-{job_id}"
        try:
            tmp.mkdir()
            if input_mesh is not None:
                _atomic_write(tmp / "input.glb", input_mesh)
            _atomic_write(tmp / "request.json", json.dumps({"client": client, "created": time.time(), "request": request}).encode())
            _atomic_write(tmp / "state.json", json.dumps({"state": "queued", "reason": ""}).encode())
            os.replace(tmp, folder)  # the job appears whole, or not at all
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a full disk leaves no half-made job behind
            raise
        try:
            self.append_event(job_id, "queued", {}, sync=True)
        except BaseException:
            self.remove(job_id)  # refused, so it must not run after a restart either
            raise
        return job_id

    def space_note(self) -> str:
        """'disk full: 3 MB free in /path/spool', for the reasons the server gives."""
        try:
            free = shutil.disk_usage(self.root).free / 2**20
        except OSError:
            return f"disk full in {self.root}"
        return f"disk full: {free:.0f} MB free in {self.root}"

    def get(self, job_id: str) -> JobRecord:
        folder = self._dir(job_id)
        if not (folder / "request.json").is_file():
            raise KeyError(f"no job {job_id}")
        meta = json.loads((folder / "request.json").read_text())
        state = json.loads((folder / "state.json").read_text())
        return JobRecord(job_id, meta["client"], meta["created"], meta["request"], state["state"], state.get("reason", ""))

    def all(self) -> list[JobRecord]:
        """Every job, oldest first."""
        records = [self.get(p.name) for p in self.jobs.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return sorted(records, key=lambda r: r.created)

    def input_mesh(self, job_id: str) -> bytes | None:
        path = self._dir(job_id) / "input.glb"
        return path.read_bytes() if path.is_file() else None

    # -- state and events ------------------------------------------------------------------------
    def set_state(self, job_id: str, state: str, reason: str = "") -> None:
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}")
        _atomic_write(self._dir(job_id) / "state.json", json.dumps({"state": state, "reason": reason}).encode())

    def append_event(self, job_id: str, kind: str, data: dict[str, Any], sync: bool | None = None) -> dict[str, Any]:
        """Append one event; fsynced unless it is a passing one (`sync` None: by its kind)."""
        sync = kind not in PASSING_EVENTS if sync is None else sync
        path = self._dir(job_id) / "events.jsonl"
        if job_id not in self._next_seq:
            self._next_seq[job_id] = len(self.events(job_id))
            if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
                with open(path, "a") as f:  # a line cut short by a crash: end it, so the next event stands alone
                    f.write("\n")
        seq = self._next_seq[job_id]
        self._next_seq[job_id] = seq + 1
        event = {"job": job_id, "seq": seq, "event": kind, "time": time.time(), **data}
        try:
            with open(path, "a") as f:
                f.write(json.dumps(event) + "\n")
                f.flush()
                if sync:
                    os.fsync(f.fileno())
        except BaseException:
            self._next_seq.pop(job_id, None)  # the next append re-counts the events and ends a line cut short
            raise
        return event

    def events(self, job_id: str, since: int = 0) -> list[dict[str, Any]]:
        path = self._dir(job_id) / "events.jsonl"
        if not path.is_file():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a crash: it was never acknowledged
                continue
            if event["seq"] >= since:
                out.append(event)
        return out

    # -- results ---------------------------------------------------------------------------------
    def store_result(self, job_id: str, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        folder = self._dir(job_id)
        _atomic_write(folder / "result.glb", data)
        _atomic_write(folder / "result.sha256", digest.encode())
        return digest

    def result(self, job_id: str) -> tuple[int, str]:
        """(size in bytes, sha256) of a stored result."""
        folder = self._dir(job_id)
        if not (folder / "result.glb").is_file():
            raise KeyError(f"job {job_id} has no result")
        return (folder / "result.glb").stat().st_size, (folder / "result.sha256").read_text()

    def read_result(self, job_id: str, offset: int, length: int) -> bytes:
        with open(self._dir(job_id) / "result.glb", "rb") as f:
            f.seek(offset)
            return f.read(length)

    def remove(self, job_id: str) -> None:
        """Forget a job and its files (after the client acknowledged its result, or on expiry)."""
        folder = self._dir(job_id)
        trash = self.jobs / f".del-{job_id}"
        os.replace(folder, trash)
        shutil.rmtree(trash)
        self._next_seq.pop(job_id, None)

    # -- restart ---------------------------------------------------------------------------------
    def recover(self) -> tuple[list[str], list[str]]:
        """After a restart: jobs that were running become `interrupted` (reported, never silently lost);
        queued jobs stay queued. Returns (queued ids oldest first, interrupted ids). Half-written
        temporary folders from a crash are removed."""
        for leftover in self.jobs.glob(".*"):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
        queued, interrupted = [], []
        for record in self.all():
            if record.state == "running":
                reason = "the server stopped while this job was running; submit it again"
                self.set_state(record.id, "interrupted", reason)
                self.append_event(record.id, "interrupted", {"reason": reason})
                interrupted.append(record.id)
            elif record.state == "queued":
                queued.append(record.id)
        return queued, interrupted

    def expire(self, max_age_s: float, now: float | None = None) -> list[str]:
        """Remove finished jobs older than `max_age_s`; returns their ids."""
        now = time.time() if now is None else now
        gone = [r.id for r in self.all() if r.state in FINAL and now - r.created > max_age_s]
        for job_id in gone:
            self.remove(job_id)
        return gone
