"""A fast stand-in for the real pipeline, for server tests: the prompt picks the behaviour."""

import os
import signal
import time


def run(request, input_mesh, job):
    prompt = request["prompt"]
    if prompt == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if prompt == "segfault":  # a native library crashing mid-job (xatlas did, on large meshes)
        job.progress("texture", 40, 120)
        time.sleep(0.3)  # the progress event reaches the server first
        os.kill(os.getpid(), signal.SIGSEGV)
    if prompt.startswith("crash-once "):  # a worker lost once (a node gone), fine the second time
        marker = prompt.split(" ", 1)[1]
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
    if prompt == "error":
        raise RuntimeError("boom: the pipeline failed")
    if prompt.startswith("slow"):  # cooperative: stops within a step when cancelled
        for step in range(400):
            if job.cancelled():
                from propdreamer.server.worker import JobCancelled

                raise JobCancelled()
            job.progress("stage1", step, 400)
            time.sleep(0.05)
    if prompt == "gpu":  # pretend a CUDA torch is loaded in this worker, with 123456789 bytes free
        import sys
        import types

        cuda = types.SimpleNamespace(is_available=lambda: True, mem_get_info=lambda: (123456789, 987654321))
        sys.modules["torch"] = types.SimpleNamespace(cuda=cuda)
    if prompt.startswith("nap"):  # a short job that takes a while: two of them overlap on two workers
        for step in range(6):
            job.progress("stage1", step, 6)
            time.sleep(0.25)
    if prompt == "threads":  # the compute threads this worker was given
        return f"threads={os.environ.get('OMP_NUM_THREADS')}".encode()
    if prompt == "stubborn":  # ignores cancel
        time.sleep(30)
    for step in range(3):
        job.progress("stage1", step, 3, eta_s=0.1 * (3 - step), losses={"sds": 1.0 / (step + 1)})
    job.preview(b"\x89PNG fake")
    echo = input_mesh or b""
    return b"GLB:" + prompt.encode() + b":" + echo
