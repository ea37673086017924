"""Timestep schedules for score distillation (METHODS.md, "Timestep schedules")."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

ScheduleKind = Literal["uniform", "step", "sqrt", "linear"]


@dataclass(frozen=True)
class TimestepSchedule:
    """Fractions of T. `step`: t_max drops to `annealed_max` once `anneal_at` of the run has passed."""

    kind: ScheduleKind = "uniform"
    t_min: float = 0.02
    t_max: float = 0.98
    annealed_max: float = 0.5  # `step` schedule only (ProlificDreamer)
    anneal_at: float = 0.5  # `step` schedule only, as a fraction of the run

    def __post_init__(self) -> None:
        if self.kind not in ("uniform", "step", "sqrt", "linear"):
            raise ValueError(f"TimestepSchedule.kind must be uniform, step, sqrt or linear, got '{self.kind}'")
        if not 0 <= self.t_min < self.t_max <= 1:
            raise ValueError(f"TimestepSchedule needs 0 <= t_min < t_max <= 1, got t_min={self.t_min}, t_max={self.t_max}")

    def sample(self, step: int, steps: int, n: int, num_train_timesteps: int, generator: torch.Generator | None = None) -> Tensor:
        """`n` integer timesteps [n] for optimisation step `step` of `steps`."""
        T = num_train_timesteps
        lo, hi = round(self.t_min * T), round(self.t_max * T)
        progress = min(max(step / max(steps, 1), 0.0), 1.0)
        if self.kind == "uniform":
            return torch.randint(lo, hi + 1, (n,), generator=generator)
        if self.kind == "step":
            hi = round(self.annealed_max * T) if progress >= self.anneal_at else hi
            return torch.randint(lo, max(hi, lo) + 1, (n,), generator=generator)
        if self.kind == "sqrt":  # HiFA: t = t_max - (t_max - t_min) * sqrt(step / steps)
            t = hi - (hi - lo) * math.sqrt(progress)
        else:  # linear (DreamGaussian): t = (1 - step / steps) * T, clipped to [t_min, t_max]
            t = min(max((1 - progress) * T, lo), hi)
        return torch.full((n,), int(round(t)), dtype=torch.long)
