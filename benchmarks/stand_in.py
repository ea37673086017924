"""A stand-in pipeline for measuring the worker pool itself (benchmarks/pool.py): it sleeps for the
job's length and reports progress with the time it sent each event, so the server's scheduling and
event path are what is measured. Request fields it reads: `prompt` "sleep SECONDS [every INTERVAL]"
(default 0 s, a progress event every 0.2 s)."""

from __future__ import annotations

import time

PROGRESS_EVERY_S = 0.2


def run(request, input_mesh, job):
    started = time.time()
    words = request["prompt"].split()
    length = float(words[1]) if len(words) > 1 and words[0] == "sleep" else 0.0
    every = float(words[3]) if len(words) > 3 and words[2] == "every" else PROGRESS_EVERY_S
    job.progress("stage1", 0, 1, losses={"sent": started, "started": started})
    step = 0
    while time.time() - started < length:
        time.sleep(min(every, max(0.0, length - (time.time() - started))))
        step += 1
        job.progress("stage1", step, 1, losses={"sent": time.time(), "started": started})
    return f"returned={time.time():.6f}".encode()
