"""'Re-run with these settings' on a selected generated object: its manifest (manifest.py) sent again."""

from __future__ import annotations

import bpy

from .manifest import read
from .operators import JobOperator
from .protocol import request as rq


class PROPDREAMER_OT_rerun_selected(JobOperator, bpy.types.Operator):
    """Make the active object again with the settings it was made with (its prompt, seed, method, preset,
    cameras...), placed beside it; the panel takes those settings too"""

    bl_idname = "propdreamer.rerun_selected"
    bl_label = "Re-run with These Settings"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        record = read(obj) if obj is not None else None
        return record is not None and record["request"].get("kind", "generate") == "generate"

    def execute(self, context):
        obj = context.active_object
        record = read(obj)
        assert record is not None  # poll() checked
        request = dict(record["request"])
        try:
            rq.JobRequest.from_body({**request, "kind": "generate"})  # this add-on's request still reads it (an older manifest may not)
        except rq.RequestError as err:
            self.report({"ERROR"}, f"PropDreamer: the settings '{obj.name}' was made with cannot be sent again: {err}")
            return {"CANCELLED"}
        settings = context.scene.propdreamer
        for name in ("prompt", "negative_prompt", "representation", "preset", "seed"):
            if name in request:
                setattr(settings, name, request[name])
        settings.method = request.get("method") or "auto"
        settings.face_budget = request.get("face_budget") or 0  # 0: the preset's
        settings.lods = request.get("lods") or 1
        settings.random_seed = False
        size = max(obj.dimensions) or settings.target_size
        x, y, z = obj.matrix_world.translation
        job = self.submit_body(context, "generate", request, meta={"location": (x + 1.25 * size, y, z), "size": size})
        return self.finish(context, job) if job else {"CANCELLED"}


CLASSES = (PROPDREAMER_OT_rerun_selected,)
