"""The PropDreamer panel in the 3D viewport's sidebar (N panel, "PropDreamer" tab)."""

from __future__ import annotations

import os
import tempfile

import bpy

from . import manifest, tracking

_PREVIEWS: dict[str, tuple[int, str]] = {}  # job -> (preview serial, image name)


def _preview_image(job) -> bpy.types.Image | None:
    if not job.preview_png:
        return None
    serial, name = _PREVIEWS.get(job.job, (-1, ""))
    image = bpy.data.images.get(name)
    if serial != job.preview_serial or image is None:
        fd, path = tempfile.mkstemp(suffix=".png")
        with os.fdopen(fd, "wb") as f:
            f.write(job.preview_png)
        if image is not None:
            bpy.data.images.remove(image)
        image = bpy.data.images.load(path)
        image.pack()
        os.remove(path)
        image.name = f".propdreamer_preview_{job.job[:8]}"
        _PREVIEWS[job.job] = (job.preview_serial, image.name)
    image.preview_ensure()
    return image


class PROPDREAMER_PT_panel(bpy.types.Panel):
    bl_label = "PropDreamer"
    bl_idname = "PROPDREAMER_PT_panel"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "PropDreamer"

    def draw(self, context):
        s = context.scene.propdreamer
        layout = self.layout
        layout.prop(s, "prompt", text="")
        layout.prop(s, "negative_prompt")
        col = layout.column(align=True)
        col.prop(s, "method")
        col.prop(s, "representation")
        col.prop(s, "preset")
        col.prop(s, "init")
        col.prop(s, "face_budget")
        col.prop(s, "lods")
        col.prop(s, "mark_asset")
        row = layout.row(align=True)
        row.prop(s, "seed")
        row.prop(s, "random_seed", text="", icon="FILE_REFRESH")
        layout.prop(s, "cameras")
        if s.cameras == "orbit":
            col = layout.column(align=True)
            col.prop(s, "elevation")
            col.prop(s, "distance")
            col.prop(s, "fov")
        layout.prop(s, "target_size")
        col = layout.column(align=True)
        row = col.row(align=True)
        row.operator("propdreamer.generate", text="Generate" if s.variations == 1 else f"Generate {s.variations}", icon="MESH_MONKEY")
        row.prop(s, "variations", text="")
        col.operator("propdreamer.refine_selected", icon="MODIFIER")
        col.operator("propdreamer.texture_selected", icon="TEXTURE")
        row = col.row(align=True)
        row.prop(s, "bake_into", text="Bake into")
        if s.bake_into == "named":
            row.prop(s, "uv_map", text="")
        if context.active_object is not None and manifest.read(context.active_object) is not None:  # a generated result: how it was made, and making it again
            box = layout.box()
            box.label(text=context.active_object.get("propdreamer_settings", "")[:90], icon="INFO")
            box.operator("propdreamer.rerun_selected", icon="FILE_REFRESH")
        row = layout.row(align=True)
        row.operator("propdreamer.check_server", icon="LINKED")
        row.operator("propdreamer.fetch_again", text="Fetch Results", icon="IMPORT")
        if s.waiting:  # recorded jobs that finished while this file was closed
            box = layout.box()
            box.label(text=s.waiting_note, icon="INFO")
            box.operator("propdreamer.fetch_again", icon="IMPORT")
        tracker = tracking.current()
        if tracker is None or not tracker.jobs:
            return
        box = layout.box()
        box.label(text="Jobs")
        for job in sorted(tracker.jobs.values(), key=lambda j: -j.submitted_at)[:8]:
            row = box.row()
            row.label(text=f"{job.kind}: {job.prompt}"[:40])
            if job.summary:  # the settings the server resolved: what actually runs
                box.label(text=job.summary[:90], icon="SETTINGS")
            for warning in job.warnings:
                box.label(text=warning[:90], icon="ERROR")
            if job.active:
                eta = f", {job.eta_s:.0f} s left" if job.eta_s else ""
                waiting = f"queued, position {job.position}" if job.state == "queued" and job.position else job.state
                text = f"{job.stage} {job.step}/{job.total}{eta}" if job.stage else waiting
                if hasattr(box, "progress"):
                    box.progress(factor=job.progress, type="BAR", text=text)
                else:
                    box.label(text=text)
                box.operator("propdreamer.cancel", icon="CANCEL").job = job.job
                image = _preview_image(job)
                if image is not None and image.preview is not None:
                    box.template_icon(icon_value=image.preview.icon_id, scale=6.0)
            else:
                row = box.row()
                icon = "CHECKMARK" if job.state in ("done", "imported") else "CANCEL" if job.state == "cancelled" else "ERROR"
                row.label(text=f"{job.state}: {job.message}"[:80], icon=icon)
                row.operator("propdreamer.rerun", text="", icon="FILE_REFRESH").job = job.job


CLASSES = (PROPDREAMER_PT_panel,)
