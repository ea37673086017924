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


def flush_denormals() -> None:
    """Treat subnormal floats as zero on the CPU (flush-to-zero / denormals-are-zero).

    Score distillation starts from tiny numbers: hash tables initialised at +-1e-4, Adam's second
    moments of gradients that small. Arithmetic on subnormals is tens of times slower on x86, and it
    made stage one's first steps 3-4x slower than its last (BENCHMARKS.md). Nothing the optimisation
    needs lives below 1e-38. Sets the calling thread's floating-point mode, which PyTorch's CPU worker
    threads inherit only if they start afterwards: entry points call it before any tensor work (the
    CLI, the server's worker, the benchmarks); the trainer calls it again for library users, which
    covers at least the thread it runs on. No effect on GPUs."""
    import warnings

    # numpy notices that its smallest subnormal now reads as zero, which is the point: say nothing.
    warnings.filterwarnings("ignore", message="The value of the smallest subnormal", category=UserWarning)
    torch.set_flush_denormal(True)
