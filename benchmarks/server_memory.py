"""The server's memory under hostile load: a `propdreamer serve` process on loopback (the stand-in
pipeline, so only the server is measured), its resident set size (RSS) read from /proc before and
after each case.

    python benchmarks/server_memory.py [--clients 20000] [--frames 20] [--frame-mib 60]

- churn: `hello` from N fresh client ids (each used to cost about 3.8 KB, never released);
- oversize: a message of F frames of M MiB each (over the frame count and the per-message total);
- big frame: one frame over the 64 MiB frame limit (ZeroMQ drops it and the connection).
Linux only (/proc).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
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
            big = b"\0" * (args.frame_mib * 2**20)
            raw.send_multipart([encode(Message("hello", client="big", seq=1))[0], b"\x80"] + [big] * args.frames)
            assert raw.poll(60_000), "no reply to the oversize message"
            reply = raw.recv_multipart()
            probe.request("hello")
            rows.append((f"after {args.frames} frames of {args.frame_mib} MiB", rss_mib(server.pid)))
            huge = b"\0" * (65 * 2**20)
            raw.send_multipart([encode(Message("hello", client="huge", seq=1))[0], b"\x80", huge])
            time.sleep(2)
            probe.request("hello")
            rows.append(("after one 65 MiB frame", rss_mib(server.pid)))
            print(f"replies to the churn: {replies:,}; to the oversize message: {reply[-1][:100]!r}")
            for name, value in rows:
                print(f"{name:40s} RSS {value:7.0f} MiB")
            print(f"peak RSS of the server process (VmHWM): {rss_mib(server.pid, 'VmHWM'):.0f} MiB (target: under 400)")
        finally:
            server.terminate()
            server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
