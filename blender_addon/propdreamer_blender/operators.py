"""The add-on's operators. Each submits and returns at once; a `bpy.app.timers` callback polls the
socket on the main thread and imports results as they arrive, so Blender never freezes. In background
mode (`blender -b`) or with `wait` set, an operator runs its job to completion before returning."""

from __future__ import annotations

import math
import random
import time
from typing import TYPE_CHECKING

import bpy
from bpy.props import BoolProperty, StringProperty

from . import importer, manifest, records
from .glb import read_manifest
from .jobs import FINAL_STATES, JobState, JobTracker
from .prefs import preferences, read_key
from .protocol import ProtocolError, ServerError
from .request_body import AUTO, PanelSettings, job_request

_TRACKER: JobTracker | None = None
_SYNCED: set[str] = set()  # jobs whose end without a result is already written to their record
POLL_INTERVAL_S = 0.2


def tracker(context=None) -> JobTracker:
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


def _explain(err: Exception, endpoint: str) -> str:
    if isinstance(err, TimeoutError):
        return f"no answer from the PropDreamer server at {endpoint}: start it with `propdreamer serve`, or fix the address in the add-on preferences"
    if isinstance(err, ServerError) and err.code == "unknown_job":
        return f"that job has already finished or is no longer on the server ({err})"
    if isinstance(err, ServerError) and err.code in ("unsigned", "bad_signature", "replayed"):
        return f"the server refused this add-on ({err}): set the same key file in the add-on preferences as the server uses"
    if isinstance(err, (ServerError, ProtocolError)) and getattr(err, "code", "") == "version_mismatch":
        return f"the server and this add-on speak different protocol versions ({err}): update the older one"
    return str(err)


def _report(operator, context, err: Exception) -> set[str]:
    """Turn a server or input error into an operator report that says what to do."""
    operator.report({"ERROR"}, f"PropDreamer: {_explain(err, preferences(context).server)}")
    return {"CANCELLED"}


def _panel_seed(settings) -> int:
    return random.randrange(2**31 - 1) if settings.random_seed else settings.seed


def _job_body(settings, kind: str, context, seed: int | None = None) -> dict:
    """The panel's settings as the job request's wire body (request_body.py builds it, bpy-free), with
    `seed` when given (variations), else the panel's."""
    seed = _panel_seed(settings) if seed is None else seed
    panel = PanelSettings(
        prompt=settings.prompt,
        negative_prompt=settings.negative_prompt,
        method=settings.method,
        representation=settings.representation,
        preset=settings.preset,
        seed=seed,
        cameras=settings.cameras,
        elevation=tuple(settings.elevation),
        distance=tuple(settings.distance),
        fov=settings.fov,
        init=settings.init,
    )
    matrices, fovs = _scene_cameras(settings, context) if settings.cameras in ("scene", "active") else ((), ())
    return job_request(kind, panel, tuple(matrices), tuple(fovs)).to_body()


def _scene_cameras(settings, context) -> tuple[list, list]:
    """The scene's cameras (all, or the active one) in the object's frame: the result sits at the cursor
    and is about 1 unit wide."""
    cams = [context.scene.camera] if settings.cameras == "active" else [o for o in context.scene.objects if o.type == "CAMERA"]
    cams = [c for c in cams if c is not None]
    origin, size = context.scene.cursor.location, settings.target_size
    matrices = []
    for cam in cams:
        m = cam.matrix_world.copy()
        m.translation = (m.translation - origin) / size
        matrices.append([m[r][c] for r in range(4) for c in range(4)])
    return matrices, [math.degrees(c.data.angle) for c in cams]


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
        obj = importer.import_glb(data, f"PropDreamer {job.prompt}"[:60])
        manifest.apply(obj, read_manifest(data))  # how it was made: custom properties, and Re-run with These Settings
        importer.place(obj, meta.get("location", (0.0, 0.0, 0.0)), meta.get("size", 1.0))
        if job.kind == "refine" and meta.get("source") in bpy.data.objects:
            source = bpy.data.objects[meta["source"]]
            obj.rotation_euler = (0.0, 0.0, 0.0)
            source.hide_set(True)
        job.message = f"added '{obj.name}'"
    job.state = "imported"
    records.set_state(job.job, "imported", job.message)
    t.acknowledge(job.job)


def _sync_records() -> None:
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
    _sync_records()
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


def _start_polling(context) -> None:
    context.window_manager.progress_begin(0, 100)
    if not bpy.app.timers.is_registered(poll_jobs):
        bpy.app.timers.register(poll_jobs, first_interval=POLL_INTERVAL_S, persistent=True)


def _wait(job: JobState, context, timeout_s: float = 24 * 3600) -> None:
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
    _sync_records()


class JobOperator:
    """What every operator that sends jobs shares: sending (from the panel's settings, or a request body
    as it is) and, in background mode or with `wait`, waiting for the results."""

    wait: BoolProperty(name="Wait", description="Run the job to completion before returning", default=False, options={"SKIP_SAVE"})
    detach: BoolProperty(
        name="Detach", description="Return once submitted, even in background mode (scripts that poll or save themselves)", default=False, options={"SKIP_SAVE", "HIDDEN"}
    )

    if TYPE_CHECKING:  # bpy.types.Operator's, which every class using this one also derives from

        def report(self, type: set[str], message: str) -> set[str]: ...

    def submit(self, context, kind: str, buffers=None, meta=None, seed: int | None = None) -> JobState | None:
        """One job from the panel's settings (with `seed` when given)."""
        settings = context.scene.propdreamer
        if not settings.prompt.strip():
            self.report({"ERROR"}, "PropDreamer: the prompt is empty; describe the object, e.g. 'a wooden barrel'")
            return None
        try:
            body = _job_body(settings, kind, context, seed)
        except ValueError as err:
            _report(self, context, err)
            return None
        return self.submit_body(context, kind, body, buffers, meta)

    def submit_body(self, context, kind: str, body: dict, buffers=None, meta=None) -> JobState | None:
        """One job with this request body as it is (e.g. a result's own settings, to make it again)."""
        try:
            job = tracker(context).submit(kind, body, buffers, meta)
        except (TimeoutError, ServerError, ProtocolError, ValueError, OSError) as err:
            _report(self, context, err)
            return None
        context.scene.propdreamer.active_job = job.job
        records.record(context.scene, job.job, kind, job.prompt, job.meta)  # in the .blend: the result survives Blender closing
        return job

    def finish_all(self, context, jobs: list[JobState]) -> set[str]:
        results = [self.finish(context, job) for job in jobs]
        return {"FINISHED"} if jobs and all(r == {"FINISHED"} for r in results) else {"CANCELLED"}

    def finish(self, context, job: JobState) -> set[str]:
        if (bpy.app.background and not self.detach) or self.wait or context.scene.propdreamer.wait:
            _wait(job, context)
            if job.state not in ("imported",):
                self.report({"ERROR"}, f"PropDreamer: job {job.state}: {job.message or 'no result'}")
                return {"CANCELLED"}
            self.report({"INFO"}, f"PropDreamer: {job.message}")
            return {"FINISHED"}
        _start_polling(context)
        self.report({"INFO"}, f"PropDreamer: job {job.job[:8]} queued")
        return {"FINISHED"}


class PROPDREAMER_OT_generate(JobOperator, bpy.types.Operator):
    """Make a new prop from the prompt, placed at the 3D cursor (Variations: that many, one seed each, in a row)"""

    bl_idname = "propdreamer.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}

    def execute(self, context):
        settings = context.scene.propdreamer
        seed, (x, y, z), jobs = _panel_seed(settings), context.scene.cursor.location, []
        for i in range(settings.variations):  # variations: seeds s .. s+N-1, in a row along +X from the 3D cursor
            job = self.submit(context, "generate", meta={"location": (x + 1.25 * settings.target_size * i, y, z), "size": settings.target_size}, seed=(seed + i) % (2**31 - 1))
            if job is None:
                break
            jobs.append(job)
        return self.finish_all(context, jobs)


class PROPDREAMER_OT_refine_selected(JobOperator, bpy.types.Operator):
    """Use the active mesh as the starting point; the result is added beside it and the original hidden"""

    bl_idname = "propdreamer.refine_selected"
    bl_label = "Refine Selected"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return context.active_object is not None and context.active_object.type == "MESH"

    def execute(self, context):
        obj = context.active_object
        try:
            importer.check_size(obj, tracker(context).limits(), with_uvs=False)
            upload = importer.mesh_for_upload(obj)
        except (TimeoutError, ServerError, ProtocolError, OSError) as err:
            return _report(self, context, err)
        except ValueError as err:
            self.report({"ERROR"}, f"PropDreamer: {err}")
            return {"CANCELLED"}
        centre, size = importer.world_bounds(obj)  # the result is placed back into the source's world box
        job = self.submit(context, "refine", [upload.glb], {"location": centre, "size": size or context.scene.propdreamer.target_size, "source": obj.name})
        return self.finish(context, job) if job else {"CANCELLED"}


class PROPDREAMER_OT_texture_selected(JobOperator, bpy.types.Operator):
    """Texture every selected mesh from the prompt (one job each); geometry and existing UV maps are kept"""

    bl_idname = "propdreamer.texture_selected"
    bl_label = "Texture Selected"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return any(o.type == "MESH" for o in context.selected_objects)

    def execute(self, context):
        settings = context.scene.propdreamer
        jobs = []
        try:
            limits = tracker(context).limits()
        except (TimeoutError, ServerError, ProtocolError, ValueError, OSError) as err:
            return _report(self, context, err)
        for obj in [o for o in context.selected_objects if o.type == "MESH"]:
            try:
                importer.check_size(obj, limits, with_uvs=True)
                upload = importer.mesh_for_upload(obj, _bake_into(settings, obj))
            except ValueError as err:
                self.report({"WARNING"}, f"PropDreamer: skipped {obj.name}: {err}")
                continue
            for warning in upload.warnings:  # before the job starts: what baking into this map will do
                self.report({"WARNING"}, f"PropDreamer: {warning}")
            job = self.submit(context, "texture", [upload.glb], {"target": obj.name, "uv_map": upload.uv_map, "geometry": upload.geometry})
            if job is None:
                return {"CANCELLED"}
            job.warnings[:0] = upload.warnings
            jobs.append(job)
        return self.finish_all(context, jobs)


def _bake_into(settings, obj) -> str:
    """The UV map to bake `obj`'s texture into (importer.NEW_UV_MAP: a new one), from the panel's choice."""
    if settings.bake_into == "new":
        return importer.NEW_UV_MAP
    if settings.bake_into == "active":
        if obj.data.uv_layers.active is None:
            raise ValueError("it has no UV map to bake into; unwrap it, or choose Bake into: New UV map")
        return obj.data.uv_layers.active.name
    return settings.uv_map


class PROPDREAMER_OT_cancel(bpy.types.Operator):
    """Cancel a PropDreamer job (the latest one when none is named)"""

    bl_idname = "propdreamer.cancel"
    bl_label = "Cancel"
    job: StringProperty(default="")

    def execute(self, context):
        job = self.job or context.scene.propdreamer.active_job
        if not job:
            self.report({"WARNING"}, "PropDreamer: no job to cancel")
            return {"CANCELLED"}
        try:
            tracker(context).cancel(job)
        except (TimeoutError, ServerError, ProtocolError) as err:
            return _report(self, context, err)
        self.report({"INFO"}, f"PropDreamer: cancelling {job[:8]}")
        return {"FINISHED"}


class PROPDREAMER_OT_check_server(bpy.types.Operator):
    """Ask the server who it is: protocol, prior, device, free GPU memory"""

    bl_idname = "propdreamer.check_server"
    bl_label = "Check Server"

    def execute(self, context):
        prefs = preferences(context)
        try:
            body = tracker(context).hello()
        except (TimeoutError, ServerError, ProtocolError, ValueError, OSError) as err:
            prefs.last_check = _explain(err, prefs.server)
            self.report({"ERROR"}, f"PropDreamer: {prefs.last_check}")
            return {"CANCELLED"}
        free = body.get("free_gpu_memory")
        memory = f", {free / 2**30:.1f} GiB GPU memory free" if free else ""
        prefs.last_check = f"protocol {body['protocol']}, prior {body['prior']}, device {body['device']}{memory}"
        gaussians = (body.get("capabilities") or {}).get("gaussians") or {}
        if body["device"] != "cpu" and gaussians.get("compositor") == "pytorch":  # a GPU without gsplat's kernels: say why Gaussians are slow
            prefs.last_check += "; Gaussians without gsplat's CUDA kernels (slower)"
            self.report({"WARNING"}, f"PropDreamer server: {gaussians.get('detail', '')}")
        self.report({"INFO"}, f"PropDreamer server: {prefs.last_check}")
        return {"FINISHED"}


class PROPDREAMER_OT_fetch_again(bpy.types.Operator):
    """Import results that finished while Blender was closed (or crashed): recorded jobs go where they
    were meant to (textures onto their objects, if unchanged); others are placed at the 3D cursor"""

    bl_idname = "propdreamer.fetch_again"
    bl_label = "Import Finished Results"

    def execute(self, context):
        t = tracker(context)
        scene = context.scene
        fetched, problems = 0, []
        try:
            on_server = {j["job"]: j for j in t.server_jobs()}
            recorded = {r.job: r for r in scene.propdreamer.jobs}
            for job_id, j in on_server.items():
                if j["state"] != "done" or (job_id in t.jobs and t.jobs[job_id].state == "imported"):
                    continue
                r = recorded.get(job_id)
                if r is not None and r.state not in records.OPEN_STATES:
                    continue  # imported (or given up) from this file already
                kind = j.get("kind", "generate")
                if r is None and kind == "texture":
                    problems.append(f"texture job {job_id[:8]} ('{j.get('prompt', '')}') was not recorded in this file, so its object is unknown; open the .blend it was sent from")
                    continue
                meta = records.meta_of(r) if r is not None else {"location": tuple(scene.cursor.location), "size": scene.propdreamer.target_size}
                job = JobState(job_id, kind, j.get("prompt", ""), meta, state="done", settings=j.get("settings"))
                t.jobs[job.job] = job
                try:
                    handle_finished(job, context)
                except ValueError as err:  # e.g. the mesh changed since it was sent: refused, the result stays on the server
                    job.state, job.message = "failed", str(err)
                    records.set_state(job_id, "submitted", job.message)  # still open: undo the edit and import again
                if job.state == "imported":
                    fetched += 1
                else:
                    problems.append(job.message)
        except (TimeoutError, ServerError, ProtocolError) as err:
            return _report(self, context, err)
        records.check_waiting({job_id: j["state"] for job_id, j in on_server.items()})  # the list just made: imported ones are no longer open
        for problem in problems:
            self.report({"WARNING"}, f"PropDreamer: {problem}")
        self.report({"INFO"}, f"PropDreamer: fetched {fetched} result(s)")
        return {"FINISHED"}


class PROPDREAMER_OT_rerun(bpy.types.Operator):
    """Put a past job's settings back into the panel and run it again (on the current selection for
    refine and texture jobs)"""

    bl_idname = "propdreamer.rerun"
    bl_label = "Re-run"
    job: StringProperty(default="")
    wait: BoolProperty(name="Wait", default=False, options={"SKIP_SAVE"})

    def execute(self, context):
        past = _TRACKER.jobs.get(self.job) if _TRACKER is not None else None
        if past is None or not past.body:
            self.report({"ERROR"}, "PropDreamer: that job is not in this session's history")
            return {"CANCELLED"}
        settings = context.scene.propdreamer
        for name, unset in (("prompt", ""), ("negative_prompt", ""), ("method", AUTO), ("representation", "nerf"), ("preset", "draft"), ("seed", 0)):
            setattr(settings, name, past.body.get(name, unset))
        settings.random_seed = False
        operator = {"generate": bpy.ops.propdreamer.generate, "refine": bpy.ops.propdreamer.refine_selected, "texture": bpy.ops.propdreamer.texture_selected}[past.kind]
        return operator(wait=self.wait)


CLASSES = (
    PROPDREAMER_OT_rerun,
    PROPDREAMER_OT_generate,
    PROPDREAMER_OT_refine_selected,
    PROPDREAMER_OT_texture_selected,
    PROPDREAMER_OT_cancel,
    PROPDREAMER_OT_check_server,
    PROPDREAMER_OT_fetch_again,
)
