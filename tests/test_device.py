"""Host -> device helpers: unchanged behaviour on the CPU; reproducible, sync-free draws on CUDA."""

import pytest
import torch

from propdreamer.core.device import device_generator, to_device


def test_on_the_cpu_the_helpers_change_nothing():
    g = torch.Generator().manual_seed(5)
    assert device_generator(g, "cpu") is g and device_generator(None, "cuda") is None
    x = torch.arange(6.0)
    assert to_device(x, "cpu") is x


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_draws_reproduce_and_copies_arrive_without_a_sync():
    a = torch.rand(1000, generator=device_generator(torch.Generator().manual_seed(1), "cuda"), device="cuda")
    b = torch.rand(1000, generator=device_generator(torch.Generator().manual_seed(1), "cuda"), device="cuda")
    torch.testing.assert_close(a, b)
    x = torch.randn(4096)
    torch.cuda.set_sync_debug_mode("error")  # a synchronising call raises
    try:
        y = to_device(x, "cuda")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(y.cpu(), x)
