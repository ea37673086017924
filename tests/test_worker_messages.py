"""The typed messages between the server and its workers (server/worker_messages.py), and how a job's
end becomes one of them (`run_one`)."""

import multiprocessing as mp

import pytest
import torch

from propdreamer.core.cancel import Cancelled as JobCancelled
from propdreamer.server import worker_messages as wm
from propdreamer.server.worker import run_one


class _Handle:
    job_id = "j1"


def _raise(err):
    def run(request, input_mesh, job):
        raise err

    return run


def test_torch_out_of_memory_is_named_for_the_artist_with_its_traceback():
    end = run_one(_raise(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")), None, "j1", {}, None, _Handle())
    assert isinstance(end, wm.Failed) and end.job_id == "j1"
    assert end.reason.startswith("out of GPU memory; try the draft preset")
    assert "Tried to allocate" in end.traceback and "def run" not in end.reason


def test_an_error_that_only_shares_the_name_is_not_taken_for_out_of_memory():
    class OutOfMemoryError(RuntimeError):  # e.g. a library's own, about host memory or a quota
        pass

    end = run_one(_raise(OutOfMemoryError("quota of 3 meshes reached")), None, "j1", {}, None, _Handle())
    assert isinstance(end, wm.Failed) and end.reason == "OutOfMemoryError: quota of 3 meshes reached"


def test_every_ending_is_one_typed_message():
    assert run_one(lambda r, m, j: b"glTF", None, "j1", {}, None, _Handle()) == wm.Done("j1", b"glTF")
    assert run_one(_raise(JobCancelled("stop")), None, "j1", {}, None, _Handle()) == wm.Cancelled("j1")
    broken = run_one(None, "the server cannot load its pipeline 'x:y'", "j1", {}, None, _Handle())
    assert broken == wm.Failed("j1", "the server cannot load its pipeline 'x:y'")
    failed = run_one(_raise(ValueError("bad camera")), None, "j1", {}, None, _Handle())
    assert failed.reason == "ValueError: bad camera" and "test_worker_messages.py" in failed.traceback


@pytest.mark.parametrize(
    "message",
    [
        wm.RunJob("j1", {"prompt": "a red cube"}, b"GLB"),
        wm.Stop(),
        wm.Ready(None),
        wm.Capabilities({"gaussians": {"compositor": "torch"}}),
        wm.GpuMemory(123),
        wm.Event("j1", "progress", {"step": 1}),
        wm.Preview("j1", b"\x89PNG"),
        wm.Done("j1", b"glTF"),
        wm.Failed("j1", "boom", "Traceback ..."),
        wm.Cancelled("j1"),
    ],
)
def test_messages_cross_a_process_pipe_unchanged(message):
    a, b = mp.get_context("spawn").Pipe()
    a.send(message)
    assert b.recv() == message


def test_the_server_handles_every_job_message_and_nothing_else():
    from propdreamer.server.app import Server

    handled = {wm.Event, wm.Preview, wm.Done, wm.Failed, wm.Cancelled}
    assert set(wm.JobMessage.__args__) == handled  # the slot keeps Ready, Capabilities, GpuMemory
    assert {name for name in dir(Server) if name.startswith("_on_")} == {"_on_event", "_on_preview", "_on_done", "_on_failed", "_on_cancelled"}
