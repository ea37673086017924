"""The spool keeps jobs, events and results across restarts and crashes."""

import hashlib

import pytest

from propdreamer.server.spool import Spool


def test_accept_persists_before_returning_and_survives_a_new_instance(tmp_path):
    spool = Spool(tmp_path)
    job = spool.accept("alice", {"prompt": "a red cube"}, input_mesh=b"glb")
    again = Spool(tmp_path)  # a restarted server
    record = again.get(job)
    assert (record.client, record.request, record.state) == ("alice", {"prompt": "a red cube"}, "queued")
    assert again.input_mesh(job) == b"glb"
    assert [e["event"] for e in again.events(job)] == ["queued"]


def test_restart_reports_running_jobs_as_interrupted_and_keeps_the_queue(tmp_path):
    spool = Spool(tmp_path)
    a = spool.accept("c", {"prompt": "a"})
    b = spool.accept("c", {"prompt": "b"})
    c = spool.accept("c", {"prompt": "c"})
    spool.set_state(a, "running")
    spool.set_state(c, "done")
    (tmp_path / "jobs" / ".new-half-written").mkdir()  # a crash in the middle of accept
    queued, interrupted = Spool(tmp_path).recover()
    assert queued == [b] and interrupted == [a]
    assert spool.get(a).state == "interrupted" and "submit it again" in spool.get(a).reason
    assert spool.events(a)[-1]["event"] == "interrupted"
    assert not (tmp_path / "jobs" / ".new-half-written").exists()


def test_events_have_sequence_numbers_and_can_be_replayed_from_one(tmp_path):
    spool = Spool(tmp_path)
    job = spool.accept("c", {})
    for step in range(3):
        spool.append_event(job, "progress", {"step": step})
    events = spool.events(job)
    assert [e["seq"] for e in events] == [0, 1, 2, 3]
    assert [e["step"] for e in spool.events(job, since=2)] == [1, 2]
    with open(tmp_path / "jobs" / job / "events.jsonl", "a") as f:
        f.write('{"job": "cut sho')  # a crash mid-line
    assert len(spool.events(job)) == 4
    restarted = Spool(tmp_path)
    event = restarted.append_event(job, "progress", {"step": 3})
    assert event["seq"] == 4 and restarted.events(job)[-1]["step"] == 3


def test_results_are_chunked_with_a_checksum(tmp_path):
    spool = Spool(tmp_path)
    job = spool.accept("c", {})
    data = bytes(range(256)) * 100
    digest = spool.store_result(job, data)
    assert spool.result(job) == (len(data), hashlib.sha256(data).hexdigest()) and digest == hashlib.sha256(data).hexdigest()
    chunks = [spool.read_result(job, off, 1000) for off in range(0, len(data), 1000)]
    assert b"".join(chunks) == data


def test_expiry_removes_only_old_finished_jobs(tmp_path):
    spool = Spool(tmp_path)
    old_done, old_queued = spool.accept("c", {}), spool.accept("c", {})
    spool.set_state(old_done, "done")
    created = spool.get(old_done).created
    assert spool.expire(60, now=created + 3600) == [old_done]
    assert spool.get(old_queued).state == "queued"
    with pytest.raises(KeyError):
        spool.get(old_done)


def test_job_ids_cannot_escape_the_spool(tmp_path):
    spool = Spool(tmp_path)
    for bad in ("../etc", "a/b", "", "x" * 100):
        with pytest.raises(KeyError):
            spool.get(bad)


def test_passing_events_are_written_at_once_and_lasting_ones_forced_to_disk(tmp_path, monkeypatch):
    import os

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    spool = Spool(tmp_path)
    job = spool.accept("c", {"prompt": "a"})
    synced.clear()
    for step in range(50):  # progress is written for every reader at once, without waiting on the disk
        spool.append_event(job, "progress", {"step": step})
    spool.append_event(job, "queued", {"position": 3})
    assert synced == [] and len(Spool(tmp_path).events(job)) == 52
    for kind in ("started", "resolved", "done"):  # what a job is and how it ended: on the disk before it is sent
        spool.append_event(job, kind, {})
    assert len(synced) == 3
