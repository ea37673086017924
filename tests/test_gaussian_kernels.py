"""Gaussians on a CUDA machine without gsplat's kernels (a driver but no CUDA toolkit to build them):
the check, the warning that says what to do, and the PyTorch compositor in their place. The build's
failure is simulated on the CPU (the loader raises, or returns gsplat's None for "no toolkit")."""

from __future__ import annotations

import logging

import pytest
import torch

from propdreamer.core.cameras import opencv_cameras
from propdreamer.core.gaussians import kernels
from propdreamer.core.gaussians import rasterize as raster
from propdreamer.core.gaussians.kernels import KernelStatus, kernel_status
from propdreamer.core.gaussians.projection import Splats


@pytest.fixture(autouse=True)
def fresh_check():
    kernels.forget()
    yield
    kernels.forget()


def _failed_build():
    raise RuntimeError("Error building extension 'gsplat_cuda': nvcc fatal : Unsupported gpu architecture 'compute_90'")


def test_a_failed_build_falls_back_with_one_warning_that_says_what_to_do(caplog):
    with caplog.at_level(logging.WARNING, logger="propdreamer.core.gaussians.kernels"):
        status = kernel_status(True, load=_failed_build)
        again = kernel_status(True, load=_failed_build)
    assert status == again and status.compositor == "pytorch"
    for needle in ("building them failed", "nvcc fatal", "PyTorch compositor", "CUDA toolkit", "prebuilt gsplat wheel"):
        assert needle in status.detail
    assert len([r for r in caplog.records if "gsplat" in r.getMessage()]) == 1  # once per process, not once per render


def test_no_toolkit_and_working_kernels():
    assert "no CUDA toolkit" in kernel_status(True, load=lambda: None).detail  # gsplat leaves _C None without nvcc
    kernels.forget()
    assert kernel_status(True, load=lambda: object()).compositor == "gsplat"
    assert kernel_status(False).compositor == "pytorch"  # the CPU never asks gsplat


def test_rasterize_follows_the_check_not_the_device(monkeypatch):
    """With the kernels unavailable the PyTorch compositor renders; with them, gsplat's path is taken."""
    g = torch.Generator().manual_seed(0)
    splats = Splats(torch.randn(20, 3, generator=g) * 0.3, torch.randn(20, 4, generator=g), torch.full((20, 3), 0.05), torch.full((20,), 0.5))
    colours = torch.rand(1, 20, 3, generator=g)
    from propdreamer.core.cameras import orbit_cameras

    cams = orbit_cameras(torch.tensor([20.0]), torch.tensor([30.0]), torch.tensor([2.2]), torch.tensor([40.0]))
    viewmats, Ks = opencv_cameras(cams, 16)
    asked = []

    def status(cuda: bool) -> KernelStatus:
        asked.append(cuda)
        return KernelStatus(compositor, "")

    monkeypatch.setattr(kernels, "kernel_status", status)
    monkeypatch.setattr(raster, "rasterize_gsplat", lambda *a: "gsplat's path")
    compositor = "pytorch"
    rgb, alpha, depth, _ = raster.rasterize(splats, colours, viewmats, Ks, 16, 16)
    expected = raster.rasterize_torch(splats, colours, viewmats, Ks, 16, 16)
    torch.testing.assert_close(rgb, expected[0], atol=1e-4, rtol=1e-4)
    compositor = "gsplat"
    assert raster.rasterize(splats, colours, viewmats, Ks, 16, 16) == "gsplat's path"
    assert asked == [False, False]


def test_the_worker_reports_the_compositor_for_welcome():
    from propdreamer.core.jobs import capabilities

    assert capabilities({"device": "cpu"}) == {"gaussians": {"compositor": "pytorch", "detail": "CPU: Gaussians render with the sparse PyTorch compositor"}}
