"""The server's memory under hostile load: a `propdreamer serve` process on loopback (the stand-in
pipeline, so only the server is measured), its resident set size (RSS) read from /proc before and
after each case.

    python benchmarks/server_memory.py [--clients 20000] [--frames 20] [--frame-mib 60]

- churn: `hello` from N fresh client ids (each used to cost about 3.8 KB, never released);
- oversize: a message of F frames of M MiB each (over the frame size, count and per-message total);
- big frame: one 65 MiB frame (over the frame limit: ZeroMQ drops it and the connection);
- many frames under the frame limit: F frames of 15 MiB (what libzmq still holds whole; refused then);
- upload: a 60 MiB mesh in 8 MiB chunks and a texture job that names it (the artist's large mesh).
Each case's peak is the server's VmHWM after the case, reset before it (/proc/PID/clear_refs).
Linux only (/proc).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import zmq

from propdreamer.server.client import Client
from propdreamer.server.wire import Message, encode

ROOT = Path(__file__).resolve().parents[1]


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident set size now (VmRSS), or its peak so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def _mesh(size: int) -> bytes:
    """A GLB of `size` bytes whose JSON declares 400,000 triangles (the server reads only its JSON)."""
    import json
    import struct

    text = json.dumps(
        {
            "asset": {"version": "2.0"},
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
            "accessors": [{"bufferView": 0, "componentType": 5126, "count": 1_200_000, "type": "VEC3"}],
            "bufferViews": [{"buffer": 0, "byteLength": size}],
            "buffers": [{"byteLength": size}],
        }
    ).encode()
    text += b" " * (-len(text) % 4)
    return struct.pack("<4sII", b"glTF", 2, 28 + len(text) + size) + struct.pack("<I4s", len(text), b"JSON") + text + struct.pack("<I4s", size, b"BIN\x00") + os.urandom(size)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=20_000)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--frame-mib", type=int, default=60)
    args = ap.parse_args()
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory() as spool:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "propdreamer.server.cli",
                "serve",
                "--bind",
                endpoint,
                "--device",
                "cpu",
                "--prior",
                "builtin",
                "--spool",
                spool,
                "--pipeline",
                "fake_pipeline:run",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            probe = Client(endpoint, timeout_s=30)
            probe.request("hello")
            rows = [("start", rss_mib(server.pid))]
            raw = zmq.Context.instance().socket(zmq.DEALER)
            raw.setsockopt(zmq.LINGER, 0)
            raw.connect(endpoint)
            replies = 0
            for i in range(args.clients):
                raw.send_multipart(encode(Message("hello", client=f"churn{i}", seq=1)))
                while raw.poll(0):  # read the replies as we go, like a client would
                    raw.recv_multipart()
                    replies += 1
            while replies < args.clients and raw.poll(10_000):
                raw.recv_multipart()
                replies += 1
            probe.request("hello")
            rows.append((f"after {args.clients:,} fresh client ids", rss_mib(server.pid)))
            peaks = {"start": rss_mib(server.pid, "VmHWM"), rows[1][0]: rss_mib(server.pid, "VmHWM")}

            def case(name: str, frames: list[bytes]) -> None:
                Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
                sock = zmq.Context.instance().socket(zmq.DEALER)
                sock.setsockopt(zmq.LINGER, 0)
                sock.connect(endpoint)
                sock.send_multipart(frames)
                answer = sock.recv_multipart()[-1][:90] if sock.poll(30_000) else b"(no reply: dropped by ZeroMQ)"
                sock.close(0)
                probe.request("hello")
                rows.append((name, rss_mib(server.pid)))
                peaks[name] = rss_mib(server.pid, "VmHWM")
                print(f"{name}: {answer!r}")

            header = encode(Message("hello", client="big", seq=1))[0]
            case(f"{args.frames} frames of {args.frame_mib} MiB", [header, b"\x80"] + [b"\0" * (args.frame_mib * 2**20)] * args.frames)
            case("one 65 MiB frame", [header, b"\x80", b"\0" * (65 * 2**20)])
            case(f"{args.frames} frames of 15 MiB (each under the frame limit)", [header, b"\x80"] + [b"\0" * (15 * 2**20)] * args.frames)
            Path(f"/proc/{server.pid}/clear_refs").write_text("5")
            mesh = _mesh(60 * 2**20)
            artist = Client(endpoint, client_id="artist", timeout_s=60)
            job = artist.submit({"prompt": "a red cube", "kind": "texture"}, mesh).body["job"]
            assert artist.wait_for(job, ("done", "failed"), timeout_s=120).body["event"] == "done"
            rows.append(("a 60 MiB mesh uploaded in chunks, its texture job run", rss_mib(server.pid)))
            peaks[rows[-1][0]] = rss_mib(server.pid, "VmHWM")
            print(f"replies to the churn: {replies:,}")
            print(f"{'after':60s} {'RSS':>8s} {'peak in the case':>18s}")
            for name, value in rows:
                print(f"{name:60s} {value:4.0f} MiB {peaks.get(name, float('nan')):8.0f} MiB")
            print(f"peak RSS of the server process over the run's cases: {max(peaks.values()):.0f} MiB (target: under 400)")
        finally:
            server.terminate()
            server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
