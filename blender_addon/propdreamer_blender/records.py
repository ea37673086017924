"""Jobs recorded in the .blend, so results survive Blender closing or crashing.

Every submitted job is written into the scene (`scene.propdreamer.jobs`) with what to do with its
result: where a new object goes, which object a texture belongs to (by name and a hash of its
geometry) and which UV map it was baked into. The client id that owns the jobs on the server is kept
in the add-on's user folder (prefs.py). Opening a .blend that lists jobs not yet brought into the
scene asks the server which of them are finished and offers them in the panel (Import Finished
Results); the server keeps a result until it is fetched."""

from __future__ import annotations

import bpy
from bpy.app.handlers import persistent
from bpy.props import FloatProperty, FloatVectorProperty, StringProperty

OPEN_STATES = ("submitted",)  # recorded, result not yet in the scene
CHECK_TIMEOUT_S = 2.0  # opening a file waits at most this long for the server (it may be down)


class PropDreamerJobRecord(bpy.types.PropertyGroup):
    job: StringProperty(name="Job")
    kind: StringProperty(name="Kind")
    prompt: StringProperty(name="Prompt")
    state: StringProperty(name="State", default="submitted")  # submitted, imported, failed, cancelled
    message: StringProperty(name="Message")
    target: StringProperty(name="Object", description="Texture jobs: the object the texture belongs to; refine jobs: the source object")
    geometry: StringProperty(name="Geometry hash", description="The target's geometry when it was sent: a changed mesh refuses the texture")
    uv_map: StringProperty(name="UV map", description="The UV map the texture was baked into; empty: a new one")
    location: FloatVectorProperty(name="Location", size=3)
    size: FloatProperty(name="Size", default=1.0)


def record(scene: bpy.types.Scene, job: str, kind: str, prompt: str, meta: dict) -> PropDreamerJobRecord:
    r = scene.propdreamer.jobs.add()
    r.job, r.kind, r.prompt = job, kind, prompt
    r.target = meta.get("target", meta.get("source", ""))
    r.geometry, r.uv_map = meta.get("geometry", ""), meta.get("uv_map", "")
    r.location, r.size = meta.get("location", (0.0, 0.0, 0.0)), meta.get("size", 1.0)
    return r


def find(job: str) -> PropDreamerJobRecord | None:
    """The record of `job` in any open scene."""
    for scene in bpy.data.scenes:
        for r in scene.propdreamer.jobs:
            if r.job == job:
                return r
    return None


def meta_of(r: PropDreamerJobRecord) -> dict:
    """The record as the meta an operator gives a job at submit."""
    meta = {"location": tuple(r.location), "size": r.size}
    if r.kind == "texture":
        meta.update(target=r.target, geometry=r.geometry, uv_map=r.uv_map)
    elif r.kind == "refine":
        meta["source"] = r.target
    return meta


def set_state(job: str, state: str, message: str = "") -> None:
    r = find(job)
    if r is not None:
        r.state, r.message = state, message[:500]


def open_records(scene: bpy.types.Scene) -> list[PropDreamerJobRecord]:
    return [r for r in scene.propdreamer.jobs if r.state in OPEN_STATES]


def check_waiting(states: dict[str, str] | None = None) -> None:
    """Which recorded jobs are finished on the server (`states`: job -> state from a `list` the caller
    just made; else asked here); the panel offers them (settings.waiting)."""
    from .operators import tracker
    from .protocol import ProtocolError, ServerError

    scene = bpy.context.scene
    if scene is None or not hasattr(scene, "propdreamer"):
        return
    settings = scene.propdreamer
    mine = {r.job for r in open_records(scene)}
    if not mine:
        settings.waiting = 0
        return
    try:
        if states is None:
            states = {j["job"]: j["state"] for j in tracker().server_jobs(timeout_s=CHECK_TIMEOUT_S)}
    except (TimeoutError, ProtocolError, ServerError, OSError, ValueError) as err:
        settings.waiting_note = f"could not ask the server about {len(mine)} recorded job(s): {err}"
        print(f"PropDreamer: {settings.waiting_note}")
        return
    for r in open_records(scene):
        if r.job not in states:
            r.state, r.message = "failed", "the server no longer has this job (its result was fetched elsewhere, or its spool was cleared)"
        elif states[r.job] in ("failed", "cancelled", "interrupted"):
            r.state, r.message = states[r.job], f"the job {states[r.job]} on the server"
    ready = [r for r in open_records(scene) if states.get(r.job) == "done"]
    settings.waiting = len(ready)
    settings.waiting_note = f"{len(ready)} result(s) finished while this file was closed" if ready else ""
    if ready:
        print(f"PropDreamer: {settings.waiting_note}: press Import Finished Results in the PropDreamer panel")


@persistent
def on_load(_dummy=None) -> None:
    """After a .blend opens: look for finished results of its recorded jobs (off the load itself)."""
    if bpy.app.background:
        check_waiting()  # scripts run right after loading; no timer would fire before they do
    else:
        bpy.app.timers.register(lambda: check_waiting(), first_interval=0.5)


def register() -> None:
    if on_load not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(on_load)


def unregister() -> None:
    if on_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(on_load)
