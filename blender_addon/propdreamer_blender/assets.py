"""Generated props as assets of the open file, for Blender's Asset Browser (the panel's "Mark as
Asset"): marked, described and tagged from the manifest of how they were made, with a preview that
Blender renders of the object itself."""

from __future__ import annotations

import bpy

TAG = "PropDreamer"


def mark(obj: bpy.types.Object, manifest: dict | None) -> None:
    obj.asset_mark()
    data = obj.asset_data
    made = manifest or {}
    request, settings = made.get("request", {}), made.get("settings", {})
    data.description = f"{request.get('prompt', obj.name)} (PropDreamer, seed {request.get('seed', 0)})"
    for tag in (TAG, settings.get("method"), settings.get("representation")):
        if tag and tag not in data.tags:
            data.tags.new(tag)
    obj.asset_generate_preview()  # queued: Blender renders it when it next can (not in background mode)
