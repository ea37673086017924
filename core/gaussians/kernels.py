"""Whether gsplat's CUDA kernels load here, and the PyTorch compositor when they do not.

gsplat from PyPI compiles its CUDA kernels on first use, which needs a CUDA toolkit (nvcc); a machine
with only the NVIDIA driver has none, and gsplat then leaves its kernels unset, so the first Gaussian
render of a job would fail mid-run. The check runs once per process (the server's worker runs it at
start and reports it in `welcome`); without the kernels, Gaussians render on the GPU through the sparse
PyTorch compositor (`pairs.py`, the CPU's path: the same images, tested against the dense reference),
slower, with one warning that says how to get the kernels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

HOW_TO_GET_THEM = (
    "for the fast kernels, install a CUDA toolkit that matches torch's CUDA version (nvcc on PATH or CUDA_HOME) and restart the "
    "server once (gsplat builds them on first use, a few minutes), or install a prebuilt gsplat wheel for your torch and CUDA "
    "(gsplat's installation docs: docs.gsplat.studio)"
)


@dataclass(frozen=True)
class KernelStatus:
    compositor: str  # "gsplat" (CUDA kernels) or "pytorch" (pairs.py)
    detail: str  # what runs, and without the kernels why not and what to do

    def to_body(self) -> dict[str, str]:
        return {"compositor": self.compositor, "detail": self.detail}


def _load_gsplat_backend():
    """gsplat's compiled kernels module, building them if it must; None when gsplat found no toolkit."""
    from gsplat.cuda._backend import _C

    return _C


_STATUS: dict[bool, KernelStatus] = {}


def kernel_status(cuda: bool, load: Callable[[], object] = _load_gsplat_backend) -> KernelStatus:
    """Which compositor renders Gaussians on this machine (checked once per process for CUDA)."""
    if not cuda:
        return KernelStatus("pytorch", "CPU: Gaussians render with the sparse PyTorch compositor")
    if True not in _STATUS:
        try:
            backend = load()
            reason = None if backend is not None else "gsplat found no CUDA toolkit (nvcc) to build them"
        except Exception as err:  # a failed build (compiler errors, a toolkit that does not match torch)
            reason = f"building them failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        if reason is None:
            _STATUS[True] = KernelStatus("gsplat", "CUDA: Gaussians render with gsplat's CUDA kernels")
        else:
            _STATUS[True] = KernelStatus(
                "pytorch", f"gsplat's CUDA kernels are unavailable: {reason}. Gaussians render with the PyTorch compositor on the GPU instead (slower); {HOW_TO_GET_THEM}"
            )
            log.warning(_STATUS[True].detail)
    return _STATUS[True]


def forget() -> None:
    """Check again on the next call (tests)."""
    _STATUS.clear()
