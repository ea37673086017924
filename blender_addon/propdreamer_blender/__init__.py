"""PropDreamer for Blender: text-to-3D props from a local PropDreamer server.

Register order: job records, settings, preferences, operators, panel, the load handler. Everything is removed again on unregister,
including the polling timer and the socket. bpy is imported only here and in the modules that draw or
operate, so the bpy-free ones (jobs, request_body, glb) import anywhere."""


def _modules():
    from . import operators, prefs, props, provenance, records, ui

    return operators, prefs, props, provenance, records, ui


def _classes():
    operators, prefs, props, provenance, records, ui = _modules()
    return (records.PropDreamerJobRecord, props.PropDreamerSettings, prefs.PropDreamerPreferences, *operators.CLASSES, *provenance.CLASSES, *ui.CLASSES)


def register() -> None:
    import bpy

    from . import props, records

    for cls in _classes():
        bpy.utils.register_class(cls)
    bpy.types.Scene.propdreamer = bpy.props.PointerProperty(type=props.PropDreamerSettings)
    records.register()


def unregister() -> None:
    import bpy

    from . import records, tracking

    records.unregister()
    tracking.shutdown()
    del bpy.types.Scene.propdreamer
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
