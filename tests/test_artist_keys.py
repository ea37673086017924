"""Per-artist keys (server/artist_keys.py) on real loopback sockets: a client id is usable only with its
own key, so nobody can take over an artist's jobs and events by sending that artist's client id."""

import os
import threading
import time

import pytest
import zmq

from propdreamer.server.app import Server, ServerConfig
from propdreamer.server.artist_keys import ArtistKeys, new_artist_key
from propdreamer.server.client import Client
from propdreamer.server.wire import Message, ProtocolError, decode, encode
from propdreamer.server.worker import WorkerConfig


@pytest.fixture
def keyed(tmp_path):
    folder = tmp_path / "keys"
    alice, bob = (new_artist_key(folder, name).read_bytes() for name in ("alice", "bob"))
    server = Server(
        ServerConfig(
            bind="tcp://127.0.0.1:0", spool=tmp_path / "spool", prior="stand-in", artist_keys=folder, worker=WorkerConfig(pipeline="fake_pipeline:run", preview_interval_s=0.0)
        )
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, folder, alice, bob
    server.stop()
    thread.join(5)
    server.close()


def _raw_reply(endpoint: str, frames: list[bytes], key: bytes | None) -> Message:
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.connect(endpoint)
    try:
        socket.send_multipart(frames)
        assert socket.poll(5000), "no reply"
        return decode(socket.recv_multipart(), key)
    finally:
        socket.close(0)


def test_each_artist_signs_with_their_own_key_and_nobody_else_can_use_their_id(keyed):
    server, folder, alice_key, bob_key = keyed
    alice = Client(server.endpoint, key=alice_key, client_id="alice", timeout_s=10)
    welcome = alice.request("hello").body
    assert welcome["signed"] and welcome["artist_keys"]
    job = alice.request("submit", {"prompt": "slow one"}).body["job"]
    alice.wait_for(job, ("started",), timeout_s=30)
    # Bob, with his own key, claims Alice's id: refused (the reply is signed with Alice's key, so he cannot even read it).
    forged = encode(Message("cancel", {"job": job}, client="alice", seq=10**6), bob_key)
    reply = _raw_reply(server.endpoint, forged, alice_key)
    assert reply.type == "error" and reply.body["code"] == "bad_signature"
    with pytest.raises(ProtocolError, match="signature"):
        _raw_reply(server.endpoint, forged, bob_key)
    assert server.spool.get(job).state == "running"  # nothing happened to Alice's job
    assert alice.wait_for(job, ("progress",), timeout_s=10).body["job"] == job  # her events still reach her, not him
    # Bob as himself works, and sees none of Alice's jobs.
    bob = Client(server.endpoint, key=bob_key, client_id="bob", timeout_s=10)
    assert bob.request("list").body["jobs"] == []
    alice.request("cancel", {"job": job})
    alice.close()
    bob.close()


def test_an_id_without_a_key_is_refused_and_keys_come_and_go_without_a_restart(keyed):
    server, folder, alice_key, _ = keyed
    carol_key = b"c" * 64
    hello = encode(Message("hello", {}, client="carol", seq=1), carol_key)
    reply = _raw_reply(server.endpoint, hello, None)  # no key to sign with: the reason comes unsigned
    assert reply.type == "error" and reply.body["code"] == "unknown_client" and "--new-artist-key carol" in reply.body["message"]
    from propdreamer.server.client import ServerError

    with pytest.raises(ServerError, match="no key for client id 'carol'"):  # what the add-on shows: what to ask for
        Client(server.endpoint, key=carol_key, client_id="carol", timeout_s=5).request("hello")
    unsigned = encode(Message("hello", {}, client="alice", seq=1))
    assert _raw_reply(server.endpoint, unsigned, None).body["code"] == "unsigned"  # nobody to sign the answer for
    path = folder / "carol.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, carol_key)
    os.close(fd)
    carol = Client(server.endpoint, key=carol_key, client_id="carol", timeout_s=10)
    assert carol.request("hello").type == "welcome"  # admitted as soon as her file is there
    path.unlink()
    time.sleep(0.01)
    with pytest.raises(ServerError, match="no key for client id 'carol'"):
        carol.request("hello", timeout_s=3)  # and shut out as soon as it is gone
    carol.close()


def test_the_key_table_refuses_unsafe_files_and_names(tmp_path, caplog):
    folder = tmp_path / "keys"
    new_artist_key(folder, "dave")
    keys = ArtistKeys(folder)
    assert len(keys.get("dave")) == 64 and keys.get("../dave") is None and keys.get("nobody") is None
    os.chmod(folder / "dave.key", 0o644)
    os.utime(folder / "dave.key", ns=(time.time_ns(), time.time_ns() + 10**9))
    assert keys.get("dave") is None and "chmod 600" in caplog.text
    with pytest.raises(FileExistsError):
        new_artist_key(folder, "dave")  # never overwrites an artist's key
    with pytest.raises(ValueError, match="client id"):
        new_artist_key(folder, "a/b")
    with pytest.raises(FileNotFoundError, match="--new-artist-key"):
        ArtistKeys(tmp_path / "missing")
