"""Shared fixtures. Under CI=true a skipped test fails the run unless it was skipped for lack of a GPU:
the README installs every other dependency, so a skip would hide a broken install."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/tiny_models.py

_BAD_SKIPS: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if "CUDA" not in reason:
            _BAD_SKIPS.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") and _BAD_SKIPS and exitstatus == 0:
        print("\nCI forbids skips other than for a missing CUDA GPU:\n  " + "\n  ".join(_BAD_SKIPS))
        session.exitstatus = 1


@pytest.fixture(scope="session")
def builtin_prior():
    from propdreamer.core.priors import PriorConfig, load_prior

    return load_prior(PriorConfig(source="builtin", device="cpu"))


@pytest.fixture(scope="session")
def tiny_sd_folder(tmp_path_factory) -> Path:
    from tiny_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


@contextlib.contextmanager
def real_pipeline_server(spool: Path):
    """`propdreamer serve` in this process on loopback with the real pipeline on the builtin prior, on the
    CPU; yields the server and stops it on the way out."""
    from propdreamer.server.app import Server, ServerConfig
    from propdreamer.server.worker import WorkerConfig

    worker = WorkerConfig(pipeline="propdreamer.core.jobs:run_job", settings={"prior": "builtin", "device": "cpu"})
    server = Server(ServerConfig(bind="tcp://127.0.0.1:0", spool=spool, worker=worker))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(5)
        server.close()
