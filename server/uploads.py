"""Meshes sent in chunks: a client's `upload` messages, written to the spool's disk as they arrive.

ZeroMQ delivers a multipart message whole, so libzmq holds every frame of a message before the server
sees the first one, and its `MAXMSGSIZE` bounds a frame, not a message. Large meshes therefore travel
as a series of `upload` messages, one chunk each (at most `max_chunk_bytes`), and the frame limit can
be small enough that no message a client may send holds much memory. A `submit` then names the
upload instead of carrying the mesh (docs/protocol.md, "Uploads").

An upload is the client's: its token is the client's own name for it, and it is found by client id
and token together. Chunks arrive in order (each at the offset the server has reached, so a client
that lost a reply asks again at the offset the error names). Unfinished uploads are forgotten after
`max_age_s` and at restart; a client holds at most `per_client` at once.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .wire import ProtocolError

TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class UploadLimits:
    max_chunk_bytes: int = 8 * 2**20  # one `upload` message's buffer
    max_upload_bytes: int = 64 * 2**20  # one mesh (the add-on's upload at the 500,000-triangle limit is 36 MB: 20 bytes a corner, 12 a triangle)
    per_client: int = 2  # unfinished uploads a client holds at once
    total: int = 64  # unfinished uploads on the server
    max_age_s: float = 3600.0  # an unfinished upload untouched this long is removed


@dataclass
class Upload:
    path: Path
    size: int  # bytes the client said it will send
    received: int
    touched: float  # time.monotonic() of the last chunk


class Uploads:
    def __init__(self, folder: Path, limits: UploadLimits | None = None) -> None:
        self.folder, self.limits = folder, limits or UploadLimits()
        shutil.rmtree(folder, ignore_errors=True)  # what a previous run left unfinished is not resumable
        folder.mkdir(parents=True, exist_ok=True)
        self.open: dict[tuple[str, str], Upload] = {}

    def append(self, client: str, token: object, offset: object, size: object, chunk: bytes) -> Upload:
        """One chunk, written at `offset`; OSError (a full disk) propagates after the upload is dropped."""
        token = self._token(token)
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= self.limits.max_upload_bytes:
            raise ProtocolError("invalid_field", f"field 'size': the whole mesh in bytes, 1 to {self.limits.max_upload_bytes}; got {size!r}")
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise ProtocolError("invalid_field", f"field 'offset': where this chunk starts, in bytes; got {offset!r}")
        if len(chunk) > self.limits.max_chunk_bytes:
            raise ProtocolError("invalid_field", f"a chunk is at most {self.limits.max_chunk_bytes} bytes; got {len(chunk)}")
        self.expire()
        key = (client, token)
        upload = self.open.get(key)
        if offset == 0:  # a new upload (or the same token started again)
            self.drop(client, token)
            mine = sum(1 for c, _ in self.open if c == client)
            if mine >= self.limits.per_client or len(self.open) >= self.limits.total:
                raise ProtocolError(
                    "too_many_uploads",
                    f"at most {self.limits.per_client} uploads not yet submitted per client and {self.limits.total} on the server; submit one, or start one again under its name "
                    f"(unfinished uploads are removed after {self.limits.max_age_s:.0f} s)",
                )
            upload = Upload(self.folder / f"{hashlib.sha256(f'{client}/{token}'.encode()).hexdigest()[:32]}.part", size, 0, time.monotonic())
            upload.path.write_bytes(b"")
            self.open[key] = upload
        if upload is None or offset != upload.received:
            expected = 0 if upload is None else upload.received
            raise ProtocolError("bad_offset", f"upload '{token}' is at byte {expected}; send the chunk that starts there (offset {expected})")
        if size != upload.size or offset + len(chunk) > upload.size:
            raise ProtocolError("invalid_field", f"upload '{token}' was started with size {upload.size}; this chunk ends at byte {offset + len(chunk)}")
        try:
            with upload.path.open("ab") as f:
                f.write(chunk)
        except OSError:
            self.drop(client, token)
            raise
        upload.received += len(chunk)
        upload.touched = time.monotonic()
        return upload

    def read(self, client: str, token: object) -> bytes:
        """A finished upload's bytes (it stays until `drop`: a submit refused for another reason keeps it)."""
        token = self._token(token)
        upload = self.open.get((client, token))
        if upload is None:
            raise ProtocolError("bad_upload", f"no upload '{token}' from this client; send the mesh with `upload` first (unfinished uploads are removed after an hour)")
        if upload.received != upload.size:
            raise ProtocolError("bad_upload", f"upload '{token}' has {upload.received} of {upload.size} bytes; send the rest (offset {upload.received})")
        return upload.path.read_bytes()

    def drop(self, client: str, token: str) -> None:
        upload = self.open.pop((client, token), None)
        if upload is not None:
            upload.path.unlink(missing_ok=True)

    def expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, u in self.open.items() if now - u.touched > self.limits.max_age_s]:
            self.drop(*key)

    @staticmethod
    def _token(token: object) -> str:
        if not isinstance(token, str) or not TOKEN.match(token):
            raise ProtocolError("invalid_field", f"field 'upload': the client's name for the upload, 1-64 letters, digits, '-' or '_'; got {token!r}")
        return token
