"""Moving the training loop's small host-side tensors to the GPU without stalling it.

Random draws come from one seeded CPU `torch.Generator` (runs reproduce on any device). Two ways
they could stall a CUDA step, and the two helpers that avoid them:

- A pageable host -> device copy (`x.to("cuda")`) makes the host wait for the copy, which waits for
  all the work queued before it: a host sync. `to_device` copies from pinned memory with
  `non_blocking=True` instead (PyTorch keeps the pinned block alive until the copy has run).
- Large draws (a jitter per ray sample: millions of numbers) are slow to make on the host and to
  copy. `device_generator` derives a generator on the device from the CPU one, so they are drawn
  where they are used; on the CPU it is the CPU generator itself, so CPU runs are unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor


def usable_device(name: str, what: str) -> torch.device:
    """The torch device `name` ("cpu", "cuda", "cuda:1"), or a ValueError naming `what` set it and what to
    pass instead when torch cannot parse it or sees no CUDA GPU."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{what} takes a torch device such as cpu, cuda or cuda:1; got '{name}'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what} is '{name}' but PyTorch sees no CUDA GPU; use 'cpu' or install a CUDA build of torch")
    return device


def to_device(x: Tensor, device: torch.device | str) -> Tensor:
    """`x.to(device)`, without a host sync when `x` is on the host and `device` is a GPU."""
    device = torch.device(device)
    if device.type != "cuda" or x.device.type != "cpu":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


def device_generator(generator: torch.Generator | None, device: torch.device | str) -> torch.Generator | None:
    """A generator on `device` seeded from the CPU `generator` (the CPU generator itself on the CPU)."""
    device = torch.device(device)
    if generator is None or device.type == "cpu":
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))  # a host-side draw: no device sync
    return torch.Generator(device=device).manual_seed(seed)
