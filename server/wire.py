"""The one message shape on the wire, and its safe decoding (docs/protocol.md describes it in full).

A message is a list of ZeroMQ frames:

    [signature]  header  body  *buffers

- `header`: msgpack map {"v": protocol version "MAJOR.MINOR", "type", "id", "client", "seq", "ts"};
- `body`: msgpack map, the message type's fields;
- `buffers`: bulk data (meshes, images) as raw frames, never inside the msgpack body;
- `signature` (shared-key mode only): HMAC-SHA256 over every following frame, checked with
  `hmac.compare_digest` before anything is decoded. Replays are rejected: per client, `seq` must grow,
  and `ts` must lie within `max_clock_skew_s` of the receiver's clock.

msgpack is decoded with explicit limits (string, binary, array and map lengths; no extension types;
bounded nesting) and every frame has a size cap, so hostile input costs little and never crashes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

PROTOCOL_VERSION = "1.0"


class ProtocolError(ValueError):
    """A message that cannot be accepted; `code` is machine-readable, the text says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class WireLimits:
    max_frames: int = 8
    max_frame_bytes: int = 16 * 2**20  # ZeroMQ's MAXMSGSIZE: a larger frame is dropped before it is read; meshes travel in 8 MiB chunks (uploads.py)
    max_message_bytes: int = 20 * 2**20  # all frames together, checked before the signature is computed
    max_header_bytes: int = 4096
    max_body_bytes: int = 1 * 2**20
    max_str_len: int = 64 * 1024
    max_bin_len: int = 0  # no binary inside msgpack: bulk data travels as buffers
    max_array_len: int = 4096
    max_map_len: int = 256
    max_depth: int = 16


@dataclass
class Message:
    type: str
    body: dict[str, Any] = field(default_factory=dict)
    buffers: list[bytes] = field(default_factory=list)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    client: str = ""
    seq: int = 0
    ts: float = field(default_factory=time.time)
    version: str = PROTOCOL_VERSION

    def header(self) -> dict[str, Any]:
        return {"v": self.version, "type": self.type, "id": self.id, "client": self.client, "seq": self.seq, "ts": self.ts}


def _depth(obj: Any, limit: int, level: int = 1) -> None:
    """Nesting within `limit`, and no binary or extension values (even empty ones: msgpack's length
    limits let a zero-length one through)."""
    if level > limit:
        raise ProtocolError("too_deep", f"message nests deeper than {limit} levels")
    if isinstance(obj, (bytes, msgpack.ExtType)):
        raise ProtocolError("bad_msgpack", "binary and extension values are not allowed inside a message; bulk data travels as buffers")
    if isinstance(obj, dict):
        for v in obj.values():
            _depth(v, limit, level + 1)
    elif isinstance(obj, list):
        for v in obj:
            _depth(v, limit, level + 1)


def unpack_map(data: bytes, limits: WireLimits, what: str) -> dict[str, Any]:
    """Decode one msgpack map with every limit enforced; anything else raises ProtocolError."""
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,  # invalid UTF-8 raises
            strict_map_key=True,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.max_bin_len,
            max_array_len=limits.max_array_len,
            max_map_len=limits.max_map_len,
            max_ext_len=0,
            use_list=True,
        )
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, TypeError) as err:
        raise ProtocolError("bad_msgpack", f"{what} is not valid msgpack within the limits: {type(err).__name__}: {err}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_msgpack", f"{what} must be a msgpack map, got {type(obj).__name__}")
    if not all(isinstance(k, str) for k in obj):
        raise ProtocolError("bad_msgpack", f"{what} keys must be strings")
    _depth(obj, limits.max_depth)
    return obj


def _pack(obj: dict[str, Any]) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def sign(key: bytes, frames: list[bytes]) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for frame in frames:
        mac.update(len(frame).to_bytes(8, "big"))  # length-prefixed: frame boundaries are signed too
        mac.update(frame)
    return mac.hexdigest().encode()


def encode(message: Message, key: bytes | None = None) -> list[bytes]:
    frames = [_pack(message.header()), _pack(message.body), *message.buffers]
    return [sign(key, frames), *frames] if key else frames


MAX_SEQ = 2**53  # sequence numbers are integers in [0, 2^53]: exact in every client's number type


class ReplayGuard:
    """Remembers the highest `seq` seen per client; rejects anything not newer or too far off in time.

    A client's entry is forgotten after `2 * max_clock_skew_s` of silence: any message it sent before
    that fails the clock check anyway, so a forged huge `seq` locks a client id out for that window at
    most. With a `path` the table survives restarts: it is loaded at start and written (atomically)
    by `flush`, which the server calls at most every `flush_every_s` and when it stops; messages
    signed before the server started are checked against it, so a captured message replayed after a
    restart is refused too.
    """

    def __init__(self, max_clock_skew_s: float = 120.0, max_clients: int = 10_000, path: Path | None = None, flush_every_s: float = 0.5) -> None:
        self.max_clock_skew_s, self.max_clients, self.path, self.flush_every_s = max_clock_skew_s, max_clients, path, flush_every_s
        self._last: dict[str, tuple[int, float]] = {}  # client -> (highest seq, when it was seen, server clock)
        self._dirty, self._flushed_at = False, 0.0
        if path is not None and path.is_file():
            try:
                saved = json.loads(path.read_text())
                self._last = {str(c): (int(v[0]), float(v[1])) for c, v in saved.items()}
            except (ValueError, TypeError, IndexError, AttributeError):
                self._last = {}  # an unreadable table: the clock check still refuses anything older than the window
            self._forget_silent(time.time())

    def _forget_silent(self, now: float) -> None:
        window = 2 * self.max_clock_skew_s
        for client in [c for c, (_, seen) in self._last.items() if now - seen > window]:
            del self._last[client]

    def check(self, client: str, seq: int, ts: float) -> None:
        now = time.time()
        if not math.isfinite(ts) or abs(now - ts) > self.max_clock_skew_s:
            raise ProtocolError("replayed", f"message timestamp is more than {self.max_clock_skew_s:.0f} s from the server's clock; check both clocks")
        last = self._last.get(client)
        if last is not None and now - last[1] > 2 * self.max_clock_skew_s:
            last = None
        if last is not None and seq <= last[0]:
            raise ProtocolError("replayed", "message sequence number was already used (a replay, or a client restarted without a new client id)")
        if client not in self._last and len(self._last) >= self.max_clients:
            self._forget_silent(now)
            if len(self._last) >= self.max_clients:
                self._last.pop(min(self._last, key=lambda c: self._last[c][1]))  # the longest silent
        self._last[client] = (seq, now)
        self._dirty = True

    def flush(self, force: bool = False) -> None:
        """Write the table to `path` (atomically) if it changed; at most every `flush_every_s` unless forced."""
        now = time.monotonic()
        if self.path is None or not self._dirty or (not force and now - self._flushed_at < self.flush_every_s):
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            tmp.write_text(json.dumps({c: [seq, seen] for c, (seq, seen) in self._last.items()}))
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk: kept in memory, written when space returns
            return
        self._dirty, self._flushed_at = False, now


def claimed_client(frames: list[bytes], limits: WireLimits = WireLimits()) -> str | None:
    """The client id a signed message's header claims, read with the decoding limits; None if unreadable."""
    if len(frames) < 3 or len(frames[1]) > limits.max_header_bytes:
        return None
    try:
        client = unpack_map(frames[1], limits, "header").get("client")
    except ProtocolError:
        return None
    return client if isinstance(client, str) else None


def decode(
    frames: list[bytes], key: bytes | None = None, limits: WireLimits = WireLimits(), replay: ReplayGuard | None = None, keys: Callable[[str], bytes | None] | None = None
) -> Message:
    """Frames -> Message, checking size, signature (before the body is decoded), msgpack limits and the
    header. `keys`: per-artist keys (artist_keys.py): the signature is checked with the key of the
    client id the header claims, and a client id without one is refused."""
    if keys is not None:
        client = claimed_client(frames, limits)
        if client is None:
            raise ProtocolError("unsigned", "this server requires messages signed with your artist key: [signature, header, body, *buffers]")
        key = keys(client)
        if key is None:
            raise ProtocolError(
                "unknown_client",
                f"this server has no key for client id '{client}': ask for one "
                f"(`propdreamer serve --artist-keys DIR --new-artist-key {client}`), set it as the add-on's Key file, "
                "and that name as its Client id",
            )
    if len(frames) > limits.max_frames + (1 if key else 0):
        raise ProtocolError("too_many_frames", f"a message has at most {limits.max_frames} frames")
    if any(len(f) > limits.max_frame_bytes for f in frames):
        raise ProtocolError("frame_too_large", f"a frame is larger than {limits.max_frame_bytes} bytes")
    if sum(len(f) for f in frames) > limits.max_message_bytes:
        raise ProtocolError("message_too_large", f"a message is limited to {limits.max_message_bytes} bytes in all; send a smaller mesh")
    if key:
        if len(frames) < 3:
            raise ProtocolError("unsigned", "this server requires signed messages: [signature, header, body, *buffers]")
        signature, frames = frames[0], frames[1:]
        if not hmac.compare_digest(signature, sign(key, frames)):
            raise ProtocolError("bad_signature", "message signature does not match: check that client and server use the same key")
    if len(frames) < 2:
        raise ProtocolError("too_few_frames", "a message needs a header frame and a body frame")
    if len(frames[0]) > limits.max_header_bytes or len(frames[1]) > limits.max_body_bytes:
        raise ProtocolError("frame_too_large", f"header is limited to {limits.max_header_bytes} bytes and body to {limits.max_body_bytes}")
    header = unpack_map(frames[0], limits, "header")
    body = unpack_map(frames[1], limits, "body")
    expected: dict[str, type | tuple[type, ...]] = {"v": str, "type": str, "id": str, "client": str, "seq": int, "ts": (int, float)}
    for name, kind in expected.items():
        if name not in header:
            raise ProtocolError("bad_header", f"header field '{name}' is missing")
        if not isinstance(header[name], kind) or isinstance(header[name], bool):
            raise ProtocolError("bad_header", f"header field '{name}' has the wrong type ({type(header[name]).__name__})")
    if not math.isfinite(header["ts"]):
        raise ProtocolError("bad_header", f"header field 'ts' must be a finite time in seconds, got {header['ts']!r}")
    if not 0 <= header["seq"] <= MAX_SEQ:
        raise ProtocolError("bad_header", f"header field 'seq' must be an integer in [0, 2^53], got {header['seq']}")
    major = header["v"].split(".")[0]
    if major != PROTOCOL_VERSION.split(".")[0]:
        raise ProtocolError(
            "version_mismatch",
            f"protocol version {header['v']} is not compatible with the server's {PROTOCOL_VERSION}; update the add-on or the server so their major versions match",
        )
    if replay is not None:
        replay.check(header["client"], header["seq"], float(header["ts"]))
    return Message(
        type=header["type"], body=body, buffers=list(frames[2:]), id=header["id"], client=header["client"], seq=header["seq"], ts=float(header["ts"]), version=header["v"]
    )
