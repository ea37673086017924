"""PropDreamer for Blender: text-to-3D props from a local PropDreamer server.

Register order: settings, preferences, operators, panel. Everything is removed again on unregister,
including the polling timer and the socket."""

import bpy

from . import operators, prefs, props, ui

_CLASSES = (props.PropDreamerSettings, prefs.PropDreamerPreferences, *operators.CLASSES, *ui.CLASSES)


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.propdreamer = bpy.props.PointerProperty(type=props.PropDreamerSettings)


def unregister() -> None:
    operators.shutdown()
    del bpy.types.Scene.propdreamer
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
