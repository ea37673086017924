"""A small synchronous client for the job server (the command line and the tests use it).

It never blocks forever: every call has a timeout, and events that arrive while it waits for a reply
are kept in `events` for the caller.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import zmq

from .wire import Message, ProtocolError, WireLimits, decode, encode

CHUNK_BYTES = 8 * 2**20  # an upload's chunk: the server's default `max_chunk_bytes` (its welcome says)


class ServerError(RuntimeError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Client:
    def __init__(self, endpoint: str, client_id: str | None = None, key: bytes | None = None, timeout_s: float = 10.0, watch_connections: bool = False) -> None:
        """`watch_connections`: `connections` receives one message per (re)connection to the server, the
        first one included (the monitor is attached before the socket connects)."""
        self.endpoint, self.key, self.timeout_s = endpoint, key, timeout_s
        self.client_id = client_id or uuid.uuid4().hex
        self.context: zmq.Context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.IDENTITY, uuid.uuid4().bytes)
        self.connections: zmq.Socket | None = self.socket.get_monitor_socket(zmq.EVENT_CONNECTED) if watch_connections else None
        self.socket.connect(endpoint)
        self.seq = int(time.time() * 1000)  # grows across restarts of the same client id
        self.events: list[Message] = []

    def close(self) -> None:
        if self.connections is not None:
            try:
                self.socket.disable_monitor()
            finally:
                self.connections.close(0)
        self.socket.close(0)

    def send(self, type_: str, body: dict[str, Any] | None = None, buffers: list[bytes] | None = None) -> Message:
        self.seq += 1
        message = Message(type_, body or {}, buffers or [], client=self.client_id, seq=self.seq)
        self.socket.send_multipart(encode(message, self.key))
        return message

    def receive(self, timeout_s: float | None = None) -> Message | None:
        if not self.socket.poll(int(1000 * (self.timeout_s if timeout_s is None else timeout_s))):
            return None
        frames = self.socket.recv_multipart()
        try:
            return decode(frames, self.key, WireLimits())
        except ProtocolError as err:
            if self.key and err.code == "unsigned":
                plain = decode(frames, None, WireLimits())
                if plain.type == "error":  # a refusal the server had no key to sign (unknown_client): read, and only ever obeyed by failing
                    return plain
            raise

    def request(self, type_: str, body: dict[str, Any] | None = None, buffers: list[bytes] | None = None, timeout_s: float | None = None) -> Message:
        """Send and wait for the reply to this message; raise ServerError on an `error` reply."""
        sent = self.send(type_, body, buffers)
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while time.monotonic() < deadline:
            reply = self.receive(max(0.0, deadline - time.monotonic()))
            if reply is None:
                break
            if reply.type == "event":
                self.events.append(reply)
            elif reply.body.get("reply_to") in (sent.id, ""):
                if reply.type == "error":
                    raise ServerError(reply.body["code"], reply.body["message"])
                return reply
        raise TimeoutError(f"no reply to '{type_}' from {self.endpoint} within {self.timeout_s:.0f} s: is `propdreamer serve` running there?")

    def submit(self, body: dict[str, Any], mesh: bytes | None = None, chunk_bytes: int = CHUNK_BYTES) -> Message:
        """Submit a job; a mesh larger than one chunk is sent first by `upload` and the submit names it."""
        if mesh is None or len(mesh) <= chunk_bytes:
            return self.request("submit", body, [mesh] if mesh is not None else None)
        return self.request("submit", {**body, "upload": self.upload(mesh, chunk_bytes)})

    def upload(self, data: bytes, chunk_bytes: int = CHUNK_BYTES) -> str:
        """Send `data` in chunks (`upload` messages); returns the upload's name for a submit."""
        import uuid

        token, offset = uuid.uuid4().hex, 0
        while offset < len(data):
            reply = self.request("upload", {"upload": token, "offset": offset, "size": len(data)}, [data[offset : offset + chunk_bytes]])
            offset = reply.body["received"]
        return token

    def wait_for(self, job: str, kinds: tuple[str, ...], timeout_s: float = 60.0) -> Message:
        """The next event of one of `kinds` for `job` (also among those already received)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for i, event in enumerate(self.events):
                if event.body.get("job") == job and event.body.get("event") in kinds:
                    return self.events.pop(i)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"job {job}: no {kinds} event within {timeout_s:.0f} s")
            message = self.receive(remaining)
            if message is not None and message.type == "event":
                self.events.append(message)

    def fetch(self, job: str, offset: int = 0) -> bytes:
        """The whole result, in chunks, checked against its SHA-256; resumable from `offset`."""
        import hashlib

        data = bytearray()
        digest = ""
        while True:
            chunk = self.request("fetch", {"job": job, "offset": offset + len(data)})
            data += chunk.buffers[0]
            digest = chunk.body["sha256"]
            if chunk.body["last"]:
                break
        if offset == 0 and hashlib.sha256(data).hexdigest() != digest:
            raise ProtocolError("bad_checksum", f"result of job {job} failed its SHA-256 check; fetch it again")
        return bytes(data)
