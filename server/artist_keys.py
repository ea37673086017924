"""Per-artist keys: one key file per client id, so that a client id is only usable by whoever holds its
key (with one shared key, anyone who has it can send any artist's client id and take over that
artist's jobs and events).

The server's key table is a folder (`propdreamer serve --artist-keys DIR`) of files `<client id>.key`,
each made by `propdreamer serve --artist-keys DIR --new-artist-key NAME` (32 random bytes, hex, mode
0600). The artist puts the same file in the add-on's preferences (Key file) and their name as its
Client id. A message is checked against the key of the client id its header claims (the header is
read first, with the same decoding limits as everything else, then the signature checked before the
body is decoded); replies and events to that artist are signed with the same key. The folder is
read as it is: adding a file admits an artist, removing it shuts them out, without a restart.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

CLIENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ArtistKeys:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise FileNotFoundError(
                f"the artist key folder {self.folder} does not exist; make one key per artist with `propdreamer serve --artist-keys {self.folder} --new-artist-key NAME`"
            )
        self._cache: dict[str, tuple[int, bytes | None]] = {}  # client id -> (the file's mtime_ns, its key)

    def get(self, client: str) -> bytes | None:
        """The key of `client`, or None when it has none (or an unusable one, which the log explains)."""
        if not CLIENT_ID.match(client):
            return None
        path = self.folder / f"{client}.key"
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._cache.pop(client, None)
            return None
        cached = self._cache.get(client)
        if cached is not None and cached[0] == stat.st_mtime_ns:
            return cached[1]
        key = self._read(path, stat.st_mode)
        self._cache[client] = (stat.st_mtime_ns, key)
        return key

    @staticmethod
    def _read(path: Path, mode: int) -> bytes | None:
        if mode & 0o077:
            log.error("ignoring %s: it is readable by other users; run `chmod 600 %s`", path, path)
            return None
        key = path.read_bytes().strip()
        if len(key) < 32:
            log.error("ignoring %s: its key is shorter than 32 bytes; make a new one with --new-artist-key", path)
            return None
        return key


def new_artist_key(folder: str | Path, client: str) -> Path:
    """Write `folder/<client>.key` (32 random bytes as hex, mode 0600); never overwrites one."""
    if not CLIENT_ID.match(client):
        raise ValueError(f"an artist's name (their client id) is 1-64 letters, digits, '_', '.' or '-', got {client!r}")
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{client}.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(os.urandom(32).hex())
    return path
