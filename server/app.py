"""The job server: a ZeroMQ ROUTER socket, a table of message handlers, the spool and the worker pool.

One loop, one thread: it polls the socket and the workers (pool.py: local processes or Ray actors), so a slow or vanished client never
blocks anything (ROUTER drops what a peer over its high-water mark cannot take; that client catches
up by re-subscribing from the last sequence number it saw). Every handler runs inside one try block:
a bad message gets an `error` reply and the server goes on.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from ..core.prompt_check import word_vocabulary
from ..core.request import AUTO_METHOD, CAMERA_MODES, KINDS, METHODS, PRESETS, REPRESENTATIONS, settings_summary
from .artist_keys import ArtistKeys
from .pool import LocalPool, Pool, local_devices
from .queue_order import check_order, expected_work, insert_at
from .schema import check_input_mesh, parse_request
from .spool import FINAL, Spool
from .uploads import UploadLimits, Uploads
from .wire import PROTOCOL_VERSION, Message, ProtocolError, ReplayGuard, WireLimits, claimed_client, decode, encode
from .worker import WorkerConfig
from .worker_messages import Cancelled, Done, Event, Failed, Preview

log = logging.getLogger(__name__)


@dataclass
class ServerConfig:
    bind: str = "tcp://127.0.0.1:5757"
    spool: Path = Path("~/.cache/propdreamer/spool")
    key: bytes | None = None  # shared-key mode: HMAC over all frames
    artist_keys: Path | None = None  # per-artist keys: a folder of <client id>.key files (artist_keys.py); replaces `key`
    share_jobs: bool = False  # let every client see, cancel and fetch every job
    result_ttl_s: float = 7 * 24 * 3600
    disk_retry_s: float = 10.0  # how often a server that started read-only (full disk) tries its spool again
    max_queued_per_client: int = 32  # jobs one client may have waiting; more are refused (queue_full)
    max_input_faces: int = 500_000  # triangles of a refine / texture job's mesh (2,000,000 ran at about 8 s a step on the CPU)
    max_routes: int = 10_000  # client ids the server remembers a connection for (least recently heard forgotten first)
    chunk_bytes: int = 1 * 2**20
    send_hwm: int = 1000
    prior: str = "builtin"
    device: str = "cpu"
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    limits: WireLimits = field(default_factory=WireLimits)
    uploads: UploadLimits = field(default_factory=UploadLimits)  # meshes sent in chunks (uploads.py)
    workers: int = 1  # local worker processes on `device` (e.g. CPU workers)
    devices: str | None = None  # "cuda:0,cuda:1": one local worker per device (overrides `workers`)
    ray: str | None = None  # "auto" or a Ray cluster's address: the workers are Ray actors (ray_pool.py)
    ray_workers: int | None = None  # actors on the Ray cluster (None: one per GPU it has)
    ray_resources: dict[str, float] | None = None  # what one actor asks Ray for (None: one GPU; a CPU if the cluster has no GPU)
    queue_order: str = "fifo"  # or "longest-first": a studio's batches finish sooner (queue_order.py)


def build_pool(config: ServerConfig) -> Pool:
    if config.ray:
        from .ray_pool import RayPool

        return RayPool(config.ray, config.worker, config.ray_workers, config.ray_resources)
    device = str(config.worker.settings.get("device", config.device))
    return LocalPool(config.worker, local_devices(device, config.workers, config.devices))


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.spool = Spool(Path(config.spool).expanduser())
        self.queue: list[str] = []  # queued job ids, the next to start first
        self.work: dict[str, float] = {}  # queued job id -> its expected length (queue_order.py)
        self.pinned = 0  # the queue's first entries that are retries (they start before anything else)
        self.told: dict[str, int] = {}  # queued job id -> the position its last `queued` event gave
        check_order(config.queue_order)
        self.read_only: str | None = None  # why the spool cannot be written (a full disk); None: it can
        self._recover()
        self.uploads = Uploads(self.spool.root / "uploads", config.uploads)
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.SNDHWM, config.send_hwm)
        self.socket.setsockopt(zmq.MAXMSGSIZE, config.limits.max_frame_bytes)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(config.bind)
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.routes: OrderedDict[str, bytes] = OrderedDict()  # client id -> ROUTER identity of its latest connection, least recent first
        self.artist_keys = ArtistKeys(config.artist_keys) if config.artist_keys else None
        self.replay = ReplayGuard(path=self.spool.root / "replay.json") if config.key or self.artist_keys else None
        self.seq = 0
        try:
            self.pool = build_pool(config)
        except BaseException:  # no workers (e.g. no Ray cluster): free the socket, or the process could not exit
            self.socket.close(0)
            self.context.term()
            raise
        self.vocabulary = word_vocabulary(config.prior)  # None: the prior reads any word (or the worker checks once loaded)
        self.handlers: dict[str, Callable[[Message], Message]] = {
            "hello": self.on_hello,
            "submit": self.on_submit,
            "upload": self.on_upload,
            "cancel": self.on_cancel,
            "status": self.on_status,
            "list": self.on_list,
            "subscribe": self.on_subscribe,
            "fetch": self.on_fetch,
            "ack": self.on_ack,
            "unload": self.on_unload,
        }
        self.worker_handlers: dict[type, Callable[[Any], None]] = {  # a worker's job messages, by class
            Event: self._on_event,
            Preview: self._on_preview,
            Done: self._on_done,
            Failed: self._on_failed,
            Cancelled: self._on_cancelled,
        }
        self._stop = False
        log.info("listening on %s (prior %s, device %s, spool %s)", self.endpoint, config.prior, config.device, self.spool.root)

    def _recover(self) -> None:
        """Pick up the spool after a restart; on a full disk, start read-only (and say so) and retry later."""
        try:
            queued, interrupted = self.spool.recover()
        except OSError as err:
            self.read_only = f"{self.spool.space_note()}: the server is read-only (status, list and fetch work; submit is refused) until space returns ({err.strerror})"
            self._requeue([r.id for r in self.spool.all() if r.state == "queued"])
            log.error("%s", self.read_only)
            return
        if self.read_only:
            log.info("the spool is writable again; accepting jobs")
        self.read_only = None
        self._requeue(queued)
        if queued or interrupted:
            log.info("recovered %d queued job(s); %d interrupted by the last shutdown", len(queued), len(interrupted))

    def _requeue(self, job_ids: list[str]) -> None:
        """The queue rebuilt from the spool's queued jobs (in submission order), in the server's order."""
        self.queue, self.work, self.pinned = [], {}, 0
        for job_id in job_ids:
            self._enqueue(job_id, self.spool.get(job_id).request)

    def _enqueue(self, job_id: str, request: dict[str, Any]) -> int:
        """Queue a job where the server's order puts it; its 1-based place in the queue."""
        self.work[job_id] = expected_work(request)
        at = insert_at(self.queue, self.work, self.work[job_id], self.config.queue_order, self.pinned)
        self.queue.insert(at, job_id)
        return at + 1

    def _dequeue(self, job_id: str) -> None:
        self.told.pop(job_id, None)
        if job_id in self.queue:
            if self.queue.index(job_id) < self.pinned:
                self.pinned -= 1
            self.queue.remove(job_id)
        self.work.pop(job_id, None)

    # -- sending -------------------------------------------------------------------------------
    def send(self, client: str, message: Message) -> None:
        route = self.routes.get(client)
        if route is not None:  # not connected now: the event is in the spool; the client re-subscribes later
            self._reply_raw(route, message, self._key_for(client))

    def _key_for(self, client: str | None) -> bytes | None:
        """What signs messages to `client`: its artist key, the shared key, or nothing (loopback)."""
        if self.artist_keys is not None:
            return self.artist_keys.get(client) if client else None
        return self.config.key

    def emit(self, job_id: str, kind: str, data: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        """Store the event in the spool, then send it; on a full disk it is sent unstored (seq -1: not replayable)."""
        client = self.spool.get(job_id).client
        try:
            event = self.spool.append_event(job_id, kind, data)
        except OSError:
            event = {"job": job_id, "seq": -1, "event": kind, "time": time.time(), **data, "unstored": self.spool.space_note()}
        self.send(client, Message("event", event, buffers or []))

    @staticmethod
    def error(code: str, text: str, reply_to: str = "") -> Message:
        return Message("error", {"code": code, "message": text, "reply_to": reply_to})

    # -- the loop ------------------------------------------------------------------------------
    def serve_forever(self, poll_ms: int = 20) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        next_expiry = next_retry = 0.0
        while not self._stop:
            if time.monotonic() >= next_expiry:  # results nobody fetched are kept for result_ttl_s
                try:
                    expired = self.spool.expire(self.config.result_ttl_s)
                except OSError as err:
                    expired = []
                    log.error("could not remove expired jobs: %s", err)
                if expired:
                    log.info("removed %d expired job(s)", len(expired))
                next_expiry = time.monotonic() + 600
            if self.read_only and time.monotonic() >= next_retry:  # a full disk at start: retry until space returns
                self._recover()
                next_retry = time.monotonic() + self.config.disk_retry_s
            if poller.poll(poll_ms):
                for _ in range(100):  # bounded burst, so the worker is never starved
                    try:
                        frames = self.socket.recv_multipart(flags=zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self.handle(frames)
            self.tend_pool()
            if self.replay is not None:
                self.replay.flush()

    def stop(self) -> None:
        self._stop = True

    def close(self) -> None:
        if self.replay is not None:
            self.replay.flush(force=True)
        self.pool.close()
        self.socket.close(0)
        self.context.term()

    def handle(self, frames: list[bytes]) -> None:
        route, frames = frames[0], frames[1:]
        try:
            message = decode(frames, self.config.key, self.config.limits, self.replay, keys=self.artist_keys.get if self.artist_keys else None)
        except ProtocolError as err:  # signed, in artist-key mode, with the key of the client id it claimed (if it has one)
            self._reply_raw(route, self.error(err.code, str(err)), self._key_for(claimed_client(frames, self.config.limits)))
            return
        self.routes[message.client] = route
        self.routes.move_to_end(message.client)
        while len(self.routes) > self.config.max_routes:  # bounded: a flood of fresh client ids costs nothing lasting
            self.routes.popitem(last=False)
        handler = self.handlers.get(message.type)
        try:
            if handler is None:
                reply = self.error("unknown_type", f"unknown message type '{message.type}'; this server handles {sorted(self.handlers)}", message.id)
            else:
                reply = handler(message)
        except ProtocolError as err:
            reply = self.error(err.code, str(err), message.id)
        except Exception as err:  # one bad message never stops the server
            log.exception("handler %s failed", message.type)
            reply = self.error("internal", f"the server failed on this message ({type(err).__name__}: {err}); it keeps running", message.id)
        reply.body.setdefault("reply_to", message.id)
        self.send(message.client, reply)

    def _reply_raw(self, route: bytes, message: Message, key: bytes | None) -> None:
        self.seq += 1
        message.client, message.seq = "server", self.seq
        try:
            self.socket.send_multipart([route, *encode(message, key)], flags=zmq.NOBLOCK)
        except zmq.Again:
            pass  # over the high-water mark: dropped, the client catches up by re-subscribing

    # -- jobs and the worker ---------------------------------------------------------------------
    def tend_pool(self) -> None:
        self.pool.refresh()
        for w in self.pool.slots:
            self._tend(w)
        for w in self.pool.free():
            if not self.queue:
                break
            job_id = self.queue[0]
            try:
                record = self.spool.get(job_id)
                self.spool.set_state(job_id, "running")
            except OSError:
                return  # a full disk: the job stays queued and starts when space returns
            self._dequeue(job_id)
            self.emit(job_id, "started", {"worker": w.name})
            w.submit(job_id, record.request, self.spool.input_mesh(job_id))
        self._tell_positions()

    def _tell_positions(self) -> None:
        """A `queued` event for each waiting job whose place changed since it was last told (once per
        tick, however many jobs started or arrived in it)."""
        for index, job_id in enumerate(self.queue):
            if self.told.get(job_id) != index + 1:
                self.told[job_id] = index + 1
                self.emit(job_id, "queued", {"position": index + 1})

    def _tend(self, w) -> None:
        """One worker: its messages, its death (the running job fails with the reason; a new worker takes
        the next job), or a cancel it ignored (killed and replaced)."""
        for message in w.poll():
            try:
                self.worker_handlers[type(message)](message)
            except OSError as err:  # a full disk: the job fails with the reason; the server goes on
                what = type(message).__name__.lower()
                self._fail_unstored(message.job_id, f"{self.spool.space_note()}; the job's {what} could not be kept ({err.strerror})")
        if not w.alive():
            reason = w.exit_reason()
            if w.current is not None and not self._retry(w.current, reason + self._where(w.current)):
                self._set_final(w.current, "failed", reason + self._where(w.current), {"reason": reason + self._where(w.current), "worker": w.name})
            log.warning("worker %s died (%s); starting a new one", w.name, reason)
            w.kill_and_restart()
        elif w.overdue_cancel():
            job_id = w.current
            log.warning("job %s ignored cancel for %.1f s; restarting worker %s", job_id, w.config.cancel_grace_s, w.name)
            w.kill_and_restart()
            self._set_final(job_id, "cancelled", "stopped by restarting the worker", {"forced": True})

    # -- a worker's job messages (worker_messages.py), by class: self.worker_handlers ------------------
    def _on_event(self, m: Event) -> None:
        if m.kind == "resolved":  # what runs, in the server's log too
            log.info("job %s runs %s%s", m.job_id, settings_summary(m.data["settings"]), "".join(f"; warning: {w}" for w in m.data.get("warnings", [])))
        self.emit(m.job_id, m.kind, m.data)

    def _on_preview(self, m: Preview) -> None:
        self.emit(m.job_id, "preview", {"format": "png"}, [m.png])

    def _on_done(self, m: Done) -> None:
        digest = self.spool.store_result(m.job_id, m.glb)
        self._set_final(m.job_id, "done", "", {"size": len(m.glb), "sha256": digest})

    def _on_failed(self, m: Failed) -> None:
        if m.traceback:  # where it failed, for whoever reads the server's log
            log.warning("job %s failed: %s\n%s", m.job_id, m.reason, m.traceback.rstrip())
        self._set_final(m.job_id, "failed", m.reason, {"reason": m.reason})

    def _on_cancelled(self, m: Cancelled) -> None:
        self._set_final(m.job_id, "cancelled", "", {})

    def _retry(self, job_id: str, reason: str) -> bool:
        """A job whose worker died runs once more, first in the queue, when its request asked for it
        (`retry`); never a second time, and never unasked (a job may have run for an hour)."""
        try:
            record = self.spool.get(job_id)
            if not record.request.get("retry") or any(e["event"] == "retrying" for e in self.spool.events(job_id)):
                return False
            self.spool.set_state(job_id, "queued")
        except (OSError, KeyError):
            return False
        self.emit(job_id, "retrying", {"reason": reason})
        self.queue.insert(0, job_id)
        self.work[job_id] = expected_work(record.request)
        self.pinned += 1
        return True

    def _where(self, job_id: str) -> str:
        """' (in stage texture, step 40 of 120)': where the job was, from its last progress event."""
        try:
            progress = [e for e in self.spool.events(job_id) if e["event"] == "progress"]
        except OSError:
            return ""
        return f" (in stage {progress[-1]['stage']}, step {progress[-1]['step']} of {progress[-1]['total']})" if progress else " (before its first step)"

    def _set_final(self, job_id: str, state: str, reason: str, data: dict[str, Any]) -> None:
        try:
            self.spool.set_state(job_id, state, reason)
        except OSError as err:
            self._fail_unstored(job_id, f"{self.spool.space_note()}; the job ended {state} but that could not be recorded ({err.strerror})")
            return
        self.emit(job_id, state, data)

    def _fail_unstored(self, job_id: str, reason: str) -> None:
        """Tell the client a job failed when the spool cannot record it (its state on disk stays as it was;
        a restart reports it interrupted)."""
        log.error("job %s: %s", job_id, reason)
        try:
            self.emit(job_id, "failed", {"reason": reason})  # sent unstored while the disk is full
        except (OSError, KeyError):
            pass

    def _own(self, message: Message) -> str:
        job_id = message.body.get("job")
        if not isinstance(job_id, str):
            raise ProtocolError("invalid_field", "field 'job': must be a job id string")
        try:
            record = self.spool.get(job_id)
        except KeyError:
            raise ProtocolError("unknown_job", f"no job {job_id} (finished jobs are kept until fetched and acknowledged, or for {self.config.result_ttl_s / 3600:.0f} h)") from None
        if record.client != message.client and not self.config.share_jobs:
            raise ProtocolError("unknown_job", f"no job {job_id} for this client")
        return job_id

    # -- handlers --------------------------------------------------------------------------------
    def on_hello(self, message: Message) -> Message:
        return Message(
            "welcome",
            {
                "protocol": PROTOCOL_VERSION,
                "kinds": list(KINDS),
                "methods": list(METHODS),
                "auto_method": dict(AUTO_METHOD),
                "camera_modes": list(CAMERA_MODES),
                "representations": list(REPRESENTATIONS),
                "presets": list(PRESETS),
                "prior": self.config.prior,
                "device": self.config.device,
                "free_gpu_memory": self.pool.slots[0].free_gpu_memory,  # as the first worker last saw it (None without CUDA)
                "capabilities": self.pool.slots[0].capabilities,  # what the first worker found at start, e.g. {"gaussians": {"compositor", "detail"}}
                "pool": self.pool.info(),  # {"kind": "local" | "ray", "workers": [{name, device, free_gpu_memory, busy, ready, ...}]}
                "signed": self.config.key is not None or self.artist_keys is not None,
                "artist_keys": self.artist_keys is not None,
                "max_input_faces": self.config.max_input_faces,  # clients refuse bigger meshes before preparing them
                "max_frame_bytes": self.config.limits.max_frame_bytes,
                "max_chunk_bytes": self.config.uploads.max_chunk_bytes,  # larger meshes go by `upload`, in chunks of at most this
                "max_upload_bytes": self.config.uploads.max_upload_bytes,
            },
        )

    def on_upload(self, message: Message) -> Message:
        """One chunk of a mesh (uploads.py); a submit names the upload once it is whole."""
        if self.read_only:
            raise ProtocolError("disk_full", self.read_only)
        if len(message.buffers) != 1:
            raise ProtocolError("invalid_field", f"an `upload` carries one chunk as its one buffer; got {len(message.buffers)} buffers")
        body = message.body
        try:
            upload = self.uploads.append(message.client, body.get("upload"), body.get("offset"), body.get("size"), message.buffers[0])
        except OSError as err:
            raise ProtocolError("disk_full", f"{self.spool.space_note()}: the upload was dropped ({err.strerror}); free space there and upload again") from None
        return Message("uploaded", {"upload": body["upload"], "received": upload.received, "size": upload.size})

    def on_submit(self, message: Message) -> Message:
        token = message.body.get("upload")  # the mesh sent before, in chunks
        body = {k: v for k, v in message.body.items() if k != "upload"}
        mesh = message.buffers[0] if message.buffers else None
        if token is not None:
            if message.buffers:
                raise ProtocolError("invalid_field", "a submit carries its mesh as a buffer or names an upload, not both")
            mesh = self.uploads.read(message.client, token)
        request, warnings = parse_request(body, len(message.buffers) or (0 if mesh is None else 1), self.vocabulary, self.config.prior)
        if request.needs_mesh:
            assert mesh is not None  # parse_request refuses a mesh job without one
            check_input_mesh(mesh, self.config.max_input_faces)
        if self.read_only:
            raise ProtocolError("disk_full", self.read_only)
        unavailable = self.pool.unavailable()
        if unavailable:
            raise ProtocolError("no_workers", f"{unavailable}; jobs already accepted stay queued and run when workers return")
        waiting = sum(1 for job_id in self.queue if self.spool.get(job_id).client == message.client)
        if waiting >= self.config.max_queued_per_client:
            raise ProtocolError(
                "queue_full", f"this client already has {waiting} jobs waiting (at most {self.config.max_queued_per_client}); wait for some to finish, or cancel some"
            )
        try:
            job_id = self.spool.accept(message.client, request.to_body(), mesh)
        except OSError as err:
            raise ProtocolError("disk_full", f"{self.spool.space_note()}: the job was not accepted ({err.strerror}); free space there and submit again") from None
        if token is not None:
            self.uploads.drop(message.client, token)  # the job keeps its own copy
        place = self._enqueue(job_id, request.to_body())  # acknowledged only now, after the spool has it on disk
        self.told[job_id] = place  # jobs it went ahead of (longest-first) are told at the end of the tick
        position = place + (0 if self.pool.free() else 1)
        # The settings that run are resolved against the loaded prior by the worker: the job's `resolved` event.
        return Message("accepted", {"job": job_id, "position": position, "warnings": warnings})

    def on_cancel(self, message: Message) -> Message:
        job_id = self._own(message)
        record = self.spool.get(job_id)
        if record.state == "queued":
            self._dequeue(job_id)
            self.spool.set_state(job_id, "cancelled")
            self.emit(job_id, "cancelled", {})
            return Message("cancel", {"job": job_id, "state": "cancelled"})
        if record.state == "running":
            worker = self.pool.running(job_id)
            if worker is not None:
                worker.cancel()
            return Message("cancel", {"job": job_id, "state": "cancelling"})
        return Message("cancel", {"job": job_id, "state": record.state, "note": "the job had already finished"})

    def on_status(self, message: Message) -> Message:
        job_id = self._own(message)
        record = self.spool.get(job_id)
        progress = [e for e in self.spool.events(job_id) if e["event"] == "progress"][-1:]
        return Message("status", {"job": job_id, "state": record.state, "reason": record.reason, "progress": progress[0] if progress else None, "request": record.request})

    def on_list(self, message: Message) -> Message:
        jobs = [r for r in self.spool.all() if r.client == message.client or self.config.share_jobs]
        return Message(
            "list",
            {
                "jobs": [
                    {"job": r.id, "state": r.state, "kind": r.request.get("kind", "generate"), "prompt": r.request.get("prompt", ""), "created": r.created, **self._ran(r.id)}
                    for r in jobs
                ]
            },
        )

    def _ran(self, job_id: str) -> dict[str, Any]:
        """What ran, once a job has started: the settings the worker resolved (its `resolved` event) and
        the worker that runs or ran it (its `started` event)."""
        events = self.spool.events(job_id)
        resolved = [e for e in events if e["event"] == "resolved"]
        started = [e for e in events if e["event"] == "started"]
        return {"settings": resolved[-1].get("settings") if resolved else None, "worker": started[-1].get("worker") if started else None}

    def on_subscribe(self, message: Message) -> Message:
        job_id = self._own(message)
        since = message.body.get("since", 0)
        if isinstance(since, bool) or not isinstance(since, int) or since < 0:
            raise ProtocolError("invalid_field", "field 'since': must be a sequence number >= 0")
        events = [e for e in self.spool.events(job_id, since) if e["event"] != "preview"]  # preview images are not kept
        for event in events:
            self.send(message.client, Message("event", event))
        return Message("subscribed", {"job": job_id, "replayed": len(events)})

    def on_fetch(self, message: Message) -> Message:
        job_id = self._own(message)
        offset = message.body.get("offset", 0)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ProtocolError("invalid_field", "field 'offset': must be an integer >= 0")
        try:
            size, digest = self.spool.result(job_id)
        except KeyError:
            raise ProtocolError("no_result", f"job {job_id} has no result yet (state: {self.spool.get(job_id).state})") from None
        if offset > size:
            raise ProtocolError("invalid_field", f"field 'offset': {offset} is past the end of the result ({size} bytes)")
        chunk = self.spool.read_result(job_id, offset, self.config.chunk_bytes)
        return Message("chunk", {"job": job_id, "offset": offset, "size": size, "sha256": digest, "last": offset + len(chunk) >= size}, [chunk])

    def on_ack(self, message: Message) -> Message:
        job_id = self._own(message)
        if self.spool.get(job_id).state not in FINAL:
            raise ProtocolError("invalid_state", f"job {job_id} is still {self.spool.get(job_id).state}; cancel it first")
        self.spool.remove(job_id)
        return Message("acked", {"job": job_id})

    def on_unload(self, message: Message) -> Message:
        idle = [w for w in self.pool.slots if w.current is None]
        if not idle:
            raise ProtocolError("busy", "every worker is running a job; unload frees GPU memory between jobs")
        for w in idle:
            w.kill_and_restart()  # a fresh worker holds no models and no GPU memory
        return Message("unloaded", {"workers": [w.name for w in idle], "busy": [w.name for w in self.pool.slots if w.current is not None]})


def serve(config: ServerConfig) -> None:
    server = Server(config)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        server.close()
