"""Indices of the ray samples worth evaluating, without a host sync on CUDA.

`torch.nonzero` must tell the host how many samples are occupied before it can size its output:
a host sync in every step. The static path returns a fixed number of indices instead
(`torch.nonzero_static`), padded with N, the index of a dummy slot the renderer discards. The
capacity follows the occupied fraction of earlier steps, copied to the host asynchronously (into
pinned memory, read once the copy has landed), with headroom; as a fraction of N it carries over a
change of render resolution. A step whose count exceeds the capacity drops the samples beyond it
(they render as empty space) and the next steps get a larger capacity; `overflows` counts them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class SampleCompactor:
    def __init__(self, static: bool | None = None, headroom: float = 1.3, granule: int = 1 << 14) -> None:
        self.static = static  # None: on CUDA only
        self.headroom, self.granule = headroom, granule
        self.fraction = 1.0  # occupied fraction the capacity is sized for (all samples until measured)
        self.overflows = 0
        self._pending: tuple[Tensor, int, int, torch.cuda.Event | None] | None = None  # (count on the host, N, capacity, copy-done event)

    def _collect(self) -> None:
        if self._pending is None:
            return
        host, n, capacity, event = self._pending
        if event is not None and not event.query():
            return  # the copy has not landed yet: keep the current capacity
        count = int(host)
        self.overflows += count > capacity
        self.fraction = min(1.0, count / max(n, 1))
        self._pending = None

    def __call__(self, valid: Tensor) -> Tensor:
        """valid [N] bool -> indices [M] of the valid samples; on the static path M is fixed and the
        padding index is N."""
        static = valid.is_cuda if self.static is None else self.static
        if not static:
            return valid.nonzero().squeeze(-1)
        self._collect()
        n = valid.numel()
        capacity = min(n, max(self.granule, math.ceil(self.fraction * self.headroom * n / self.granule) * self.granule))
        try:
            idx = torch.nonzero_static(valid, size=capacity, fill_value=n).squeeze(-1)  # [capacity]
        except (NotImplementedError, RuntimeError):  # a PyTorch build without it on this device
            self.static = False
            return valid.nonzero().squeeze(-1)
        if self._pending is None:  # measure this step's count without waiting for it
            count = valid.sum()
            host = torch.empty((), dtype=count.dtype, pin_memory=valid.is_cuda)
            host.copy_(count, non_blocking=valid.is_cuda)
            event = None
            if valid.is_cuda:
                event = torch.cuda.Event()
                event.record()
            self._pending = (host, n, capacity, event)
        return idx
