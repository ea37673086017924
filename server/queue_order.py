"""The order queued jobs start in: first come, first served (the default), or longest first.

`fifo` is what an artist expects at a shared server: a job starts after the jobs submitted before it.
`longest-first` is for a studio's batches on many workers: a long job that starts last ends last, and
the whole batch waits for it; starting the longest jobs first (LPT scheduling) brings a batch's
makespan within a few percent of the ideal (sum of job lengths / workers) where first come, first
served is 50-70% over it (BENCHMARKS.md, "The worker pool"). Drafts then wait behind standard jobs:
a studio chooses this for the server, an artist does not choose it per job.

A job's length is estimated before it runs from what its request says, torch-free: the optimisation
steps its kind runs at its preset (stage one's steps, stage two's geometry and texture steps; `steps`
overrides stage one's), each weighted by the pixels it renders (its resolution schedule) relative to a
32 px render. The table restates the presets (`core/stage1/presets.py`, `core/stage2/presets.py`): the
server does not import torch; a test keeps the two equal.
"""

from __future__ import annotations

from typing import Any

ORDERS = ("fifo", "longest-first")

Schedule = tuple[tuple[float, int], ...]  # (from this fraction of the stage, render this many px square)

# preset -> (steps, resolution schedule) of stage one, of stage two's geometry, of its texture
PRESET_WORK: dict[str, tuple[tuple[int, Schedule], ...]] = {
    "draft": ((300, ((0.0, 32),)), (120, ((0.0, 32),)), (80, ((0.0, 32),))),
    "standard": ((2500, ((0.0, 64), (0.5, 128))), (1500, ((0.0, 256), (0.5, 512))), (800, ((0.0, 512),))),
    "high": ((5000, ((0.0, 64), (0.3, 128), (0.6, 256))), (3000, ((0.0, 256), (0.3, 512))), (1500, ((0.0, 512),))),
}
STAGES_OF_KIND = {"generate": (0, 1, 2), "refine": (1, 2), "texture": (2,)}


def expected_work(request: dict[str, Any]) -> float:
    """A job's relative length: over the stages it runs, steps x mean rendered pixels / 32^2."""
    stages = PRESET_WORK.get(request.get("preset") or "draft", PRESET_WORK["draft"])
    work = 0.0
    for i in STAGES_OF_KIND.get(request.get("kind") or "generate", (0, 1, 2)):
        steps, schedule = stages[i]
        if i == 0 and request.get("steps"):
            steps = int(request["steps"])
        work += steps * _mean_pixels(schedule) / 32**2
    return work


def _mean_pixels(schedule: Schedule) -> float:
    """Pixels per view averaged over a stage: each resolution for the fraction of the stage it lasts."""
    ends = [start for start, _ in schedule[1:]] + [1.0]
    return sum((end - start) * side**2 for (start, side), end in zip(schedule, ends))


def insert_at(queue: list[str], work: dict[str, float], new_work: float, order: str, pinned: int = 0) -> int:
    """Where a job of `new_work` joins `queue` (job ids, the next to start first): at the end (fifo), or
    after every job at least as long (longest-first; equal lengths keep their submission order). The
    first `pinned` entries (jobs retried after their worker died) stay ahead of everything."""
    if order == "fifo":
        return len(queue)
    for i in range(pinned, len(queue)):
        if work.get(queue[i], 0.0) < new_work:
            return i
    return len(queue)


def check_order(order: str) -> str:
    if order not in ORDERS:
        raise ValueError(f"--queue-order takes one of {', '.join(ORDERS)}, got {order!r}")
    return order
