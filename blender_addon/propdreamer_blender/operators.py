"""The add-on's operators. Each submits and returns at once; the timer in tracking.py polls the socket
on the main thread and imports results as they arrive, so Blender never freezes. In background mode
(`blender -b`) or with `wait` set, an operator runs its job to completion before returning."""

from __future__ import annotations

from typing import TYPE_CHECKING

import bpy
from bpy.props import BoolProperty, StringProperty

from . import importer, panel_request, records, tracking
from .jobs import JobState
from .prefs import preferences
from .protocol import ProtocolError, ServerError
from .request_body import AUTO
from .tracking import tracker


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
            body = panel_request.job_body(settings, kind, context, seed)
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
            tracking.wait(job, context)
            if job.state not in ("imported",):
                self.report({"ERROR"}, f"PropDreamer: job {job.state}: {job.message or 'no result'}")
                return {"CANCELLED"}
            self.report({"INFO"}, f"PropDreamer: {job.message}")
            return {"FINISHED"}
        tracking.start_polling(context)
        self.report({"INFO"}, f"PropDreamer: job {job.job[:8]} queued")
        return {"FINISHED"}


class PROPDREAMER_OT_generate(JobOperator, bpy.types.Operator):
    """Make a new prop from the prompt, placed at the 3D cursor (Variations: that many, one seed each, in a row)"""

    bl_idname = "propdreamer.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}

    def execute(self, context):
        settings = context.scene.propdreamer
        seed, (x, y, z), jobs = panel_request.panel_seed(settings), context.scene.cursor.location, []
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
                    tracking.handle_finished(job, context)
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
        session = tracking.current()
        past = session.jobs.get(self.job) if session is not None else None
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
