"""`propdreamer serve` and `propdreamer submit` as processes, talking over loopback."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    return {**os.environ, "PYTHONPATH": str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "propdreamer.server.cli", *args], capture_output=True, text=True, timeout=timeout, env=_env())


def test_serve_then_submit_writes_the_result(tmp_path):
    bind = f"tcp://127.0.0.1:{_free_port()}"
    server = subprocess.Popen(
        [sys.executable, "-m", "propdreamer.server.cli", "serve", "--bind", bind, "--device", "cpu", "--spool", str(tmp_path / "spool"), "--pipeline", "fake_pipeline:run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    try:
        deadline = time.time() + 60
        out = None
        while time.time() < deadline:
            out = _cli("submit", "a red cube", "--server", bind, "-o", str(tmp_path / "cube.glb"), "--timeout", "5")
            if out.returncode == 0 or "no PropDreamer server answered" not in out.stderr:
                break
        assert out.returncode == 0, out.stderr
        assert (tmp_path / "cube.glb").read_bytes() == b"GLB:a red cube:"
        import trimesh

        mesh = tmp_path / "in.glb"
        mesh.write_bytes(trimesh.creation.box().export(file_type="glb"))
        out = _cli("submit", "a wooden cube", "--server", bind, "-o", str(tmp_path / "tex.glb"), "--texture", str(mesh))
        assert out.returncode == 0, out.stderr
        assert (tmp_path / "tex.glb").read_bytes() == b"GLB:a wooden cube:" + mesh.read_bytes()
        assert "does not know the word(s) ['wooden']" in out.stderr  # the builtin prior's server warns ...
        out = _cli("submit", "a wooden barrel", "--server", bind, "-o", str(tmp_path / "barrel.glb"))
        assert out.returncode == 2 and "knows none of the words ['barrel', 'wooden']" in out.stderr  # ... and refuses what it cannot read
        out = _cli("submit", "boom", "--server", bind, "-o", str(tmp_path / "x.glb"), "--method", "magic")
        assert out.returncode == 2 and "invalid choice" in out.stderr
    finally:
        server.terminate()
        log = server.communicate(timeout=10)[0]
    assert "listening on " + bind in log


def test_submit_without_a_server_says_how_to_start_one(tmp_path):
    out = _cli("submit", "x", "--server", f"tcp://127.0.0.1:{_free_port()}", "-o", str(tmp_path / "x.glb"), "--timeout", "1")
    assert out.returncode == 2 and "propdreamer serve" in out.stderr


def test_serve_refuses_the_network_without_a_key(tmp_path):
    out = _cli("serve", "--bind", "tcp://0.0.0.0:5999", "--device", "cpu", "--spool", str(tmp_path))
    assert out.returncode == 2 and "--key-file" in out.stderr
    key = tmp_path / "key"
    assert _cli("serve", "--new-key", str(key)).returncode == 0
    assert oct(key.stat().st_mode & 0o777) == "0o600"
