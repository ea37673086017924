"""The artist's path, for benchmarks: a `propdreamer serve` on loopback, jobs built and tracked by the
Blender add-on's own bpy-free code (request_body.job_request, jobs.JobTracker), the returned GLB read
back as Blender's importer would see it (Y up -> Z up).

    with ArtistPath(prior="builtin") as path:
        glb, seconds, job = path.generate("a red cube", seed=0)
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "blender_addon"))
from propdreamer_blender.jobs import JobState, JobTracker  # noqa: E402  (the add-on's own, bpy-free)
from propdreamer_blender.request_body import PanelSettings, job_request  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ArtistPath:
    """A server process started as an artist starts it, and the add-on's tracker connected to it."""

    def __init__(self, prior: str = "builtin", device: str = "cpu", threads: int = 0, spool: Path | None = None, log: Path | None = None) -> None:
        self.prior, self.device, self.threads = prior, device, threads
        self._tmp = tempfile.TemporaryDirectory(prefix="propdreamer_bench_")
        self.spool = spool or Path(self._tmp.name) / "spool"
        self.log = log or Path(self._tmp.name) / "server.log"
        self.endpoint = f"tcp://127.0.0.1:{_free_port()}"
        self.process: subprocess.Popen | None = None
        self.tracker: JobTracker | None = None

    def __enter__(self) -> ArtistPath:
        env = dict(os.environ)
        if self.threads:
            env["OMP_NUM_THREADS"] = str(self.threads)
        command = [sys.executable, "-m", "propdreamer.server.cli", "serve", "--bind", self.endpoint, "--prior", self.prior, "--device", self.device, "--spool", str(self.spool)]
        self.process = subprocess.Popen(command, stdout=open(self.log, "w"), stderr=subprocess.STDOUT, env=env)
        self.tracker = JobTracker(self.endpoint, timeout_s=5.0)
        deadline = time.monotonic() + 120
        while True:
            try:
                self.tracker.hello()
                return self
            except TimeoutError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"`propdreamer serve` did not start; its log: {self.log.read_text()[-2000:]}") from None

    def __exit__(self, *exc) -> None:
        if self.tracker is not None:
            self.tracker.close()
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
        self._tmp.cleanup()

    def generate(
        self, prompt: str, seed: int = 0, method: str = "auto", representation: str = "nerf", preset: str = "draft", timeout_s: float = 3600.0, lods: int = 1
    ) -> tuple[bytes, float, JobState]:
        """Press Generate with the panel's defaults but these fields; the GLB, the seconds from submit to
        done, and the job (its `settings` are what the server resolved)."""
        request = job_request("generate", PanelSettings(prompt=prompt, method=method, representation=representation, preset=preset, seed=seed, lods=lods))
        t0 = time.monotonic()
        job = self.tracker.submit("generate", request.to_body())
        while job.active:
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"job {job.job} ('{prompt}') took over {timeout_s:.0f} s")
            self.tracker.poll(0.5)
        seconds = time.monotonic() - t0
        if job.state != "done":
            raise RuntimeError(f"job '{prompt}' ended {job.state}: {job.message}")
        glb = self.tracker.fetch(job.job)
        self.tracker.acknowledge(job.job)
        return glb, seconds, job


def read_glb(glb: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A result GLB as the scorer reads meshes: vertices [V, 3] in PropDreamer's Z-up frame, faces
    [F, 3], UVs [V, 2] (the pipeline's convention: trimesh undoes glTF's flip of v), texture [T, T, 3] uint8."""
    import trimesh

    scene = trimesh.load(io.BytesIO(glb), file_type="glb", force="scene", process=False)
    (mesh,) = [g for g in scene.dump() if isinstance(g, trimesh.Trimesh)]
    v = np.asarray(mesh.vertices, dtype=np.float32)
    vertices = np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=-1)
    texture = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"))
    return vertices, np.asarray(mesh.faces, dtype=np.int64), np.asarray(mesh.visual.uv, dtype=np.float32), texture
