"""The add-on's one connection to the server and the timer that keeps it moving: a `JobTracker` for the
server in the preferences, a `bpy.app.timers` callback that polls it on the main thread and puts
finished results into the scene, and waiting for a job in background mode (`blender -b`)."""

from __future__ import annotations

import time

import bpy

from . import assets, importer, manifest, records
from .glb import read_manifest
from .jobs import FINAL_STATES, JobState, JobTracker
from .prefs import preferences, read_key
from .protocol import ProtocolError, ServerError

_TRACKER: JobTracker | None = None
_SYNCED: set[str] = set()  # jobs whose end without a result is already written to their record
POLL_INTERVAL_S = 0.2


def tracker(context=None) -> JobTracker:
    """The tracker for the server in the preferences (a new one when the address changed)."""
    global _TRACKER
    prefs = preferences(context)
    if _TRACKER is None or _TRACKER.endpoint != prefs.server:
        if _TRACKER is not None:
            _TRACKER.close()
        _TRACKER = JobTracker(prefs.server, key=read_key(prefs), timeout_s=prefs.timeout_s, client_id=prefs.client_id)
    return _TRACKER


def shutdown() -> None:
    global _TRACKER
    if _TRACKER is not None:
        _TRACKER.close()
        _TRACKER = None
    if bpy.app.timers.is_registered(poll_jobs):
        bpy.app.timers.unregister(poll_jobs)


def current() -> JobTracker | None:
    """The tracker as it is, without connecting (None before the first job): what the panel draws."""
    return _TRACKER


def handle_finished(job: JobState, context=None) -> None:
    """Fetch a finished job's result and put it into the scene (main thread)."""
    context = context or bpy.context
    if job.state != "done":
        return
    t = tracker(context)
    data = t.fetch(job.job)
    meta = job.meta
    if job.kind == "texture":
        obj = bpy.data.objects.get(meta.get("target", ""))
        if obj is None or obj.type != "MESH":
            job.state, job.message = "failed", f"the object '{meta.get('target')}' is gone; its texture waits on the server (Import Finished Results once it is back)"
            return
        layer, material = importer.apply_texture(obj, data, meta.get("uv_map", importer.NEW_UV_MAP), f"PropDreamer {job.prompt}"[:60], meta.get("geometry"))
        manifest.apply(bpy.data.materials[material], read_manifest(data))  # how the texture was made: on the material it added, not the artist's object
        job.message = f"textured '{obj.name}': UV map '{layer}', material '{material}'"
    else:
        obj, *lower = importer.import_glb(data, f"PropDreamer {job.prompt}"[:60])  # lower: LOD1.., when asked for
        made = read_manifest(data)
        for o in (obj, *lower):
            manifest.apply(o, made)  # how it was made: custom properties, and Re-run with These Settings
        if context.scene.propdreamer.mark_asset:
            assets.mark(obj, made)
        importer.place(obj, meta.get("location", (0.0, 0.0, 0.0)), meta.get("size", 1.0))
        bpy.context.view_layer.update()
        for o in lower:  # every level where LOD0 is (the GLB gives them one frame)
            o.matrix_world = obj.matrix_world.copy()
        if job.kind == "refine" and meta.get("source") in bpy.data.objects:
            source = bpy.data.objects[meta["source"]]
            obj.rotation_euler = (0.0, 0.0, 0.0)
            source.hide_set(True)
        job.message = f"added '{obj.name}'"
    job.state = "imported"
    records.set_state(job.job, "imported", job.message)
    t.acknowledge(job.job)


def sync_records() -> None:
    """Jobs that ended without a result are marked so in the .blend (imported ones are marked on import),
    each once: this runs with every poll of the timer."""
    for job in _TRACKER.jobs.values() if _TRACKER is not None else ():
        if job.state in FINAL_STATES and job.state != "done" and job.job not in _SYNCED:
            _SYNCED.add(job.job)
            record = records.find(job.job)
            if record is not None and record.state in records.OPEN_STATES:
                record.state, record.message = job.state, job.message[:500]


def poll_jobs() -> float | None:
    """The timer: apply events, import finished results; stops itself when nothing is running."""
    if _TRACKER is None:
        return None
    wm = bpy.context.window_manager
    try:
        for job in _TRACKER.poll():
            try:
                handle_finished(job)
            except Exception as err:  # shown in the panel, never swallowed
                job.state, job.message = "failed", f"could not import the result: {err}"
                print(f"PropDreamer: job {job.job}: {job.message}")
    except (TimeoutError, ProtocolError, ServerError) as err:
        print(f"PropDreamer: {err}")
    sync_records()
    active = [j for j in _TRACKER.jobs.values() if j.active]
    if active:
        wm.progress_update(int(100 * min(j.progress for j in active)))
    else:
        wm.progress_end()
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()
    return POLL_INTERVAL_S if active else None


def start_polling(context) -> None:
    context.window_manager.progress_begin(0, 100)
    if not bpy.app.timers.is_registered(poll_jobs):
        bpy.app.timers.register(poll_jobs, first_interval=POLL_INTERVAL_S, persistent=True)


def wait(job: JobState, context, timeout_s: float = 24 * 3600) -> None:
    t = tracker(context)
    deadline = time.monotonic() + timeout_s
    shown, told = ("", -1.0), False
    while job.active and time.monotonic() < deadline:
        for finished in t.poll(budget_s=0.2):
            handle_finished(finished, context)
        if job.summary and not told:  # what the server resolved: the settings that actually run
            print(f"PropDreamer: running {job.summary}" + "".join(f"\nPropDreamer: warning: {w}" for w in job.warnings), flush=True)
            told = True
        if bpy.app.background and job.stage and (job.stage != shown[0] or time.monotonic() - shown[1] > 10.0):
            eta = f", about {job.eta_s:.0f} s left in this stage" if job.eta_s is not None else ""
            print(f"PropDreamer: {job.stage} {job.step}/{job.total}{eta}", flush=True)  # the only progress a headless run shows
            shown = (job.stage, time.monotonic())
    if job.state in ("done",):
        handle_finished(job, context)
    sync_records()
