"""Add-on preferences: where the server is, the optional shared key, timeouts."""

import uuid

import bpy
from bpy.props import FloatProperty, StringProperty


class PropDreamerPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    server: StringProperty(name="Server", description="ZeroMQ address of `propdreamer serve`", default="tcp://127.0.0.1:5757")
    key_file: StringProperty(name="Key file", description="Shared key file for a server on the LAN (optional)", subtype="FILE_PATH", default="")
    timeout_s: FloatProperty(name="Timeout (s)", description="How long to wait for the server to answer", default=10.0, min=1.0, max=600.0)
    client_id: StringProperty(name="Client id", description="Identifies this Blender to the server, so results survive a restart", default="")
    last_check: StringProperty(name="Last check", default="", options={"SKIP_SAVE"})

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "server")
        layout.prop(self, "key_file")
        layout.prop(self, "timeout_s")
        layout.operator("propdreamer.check_server", icon="LINKED")
        if self.last_check:
            layout.label(text=self.last_check)


def preferences(context=None) -> PropDreamerPreferences:
    prefs = (context or bpy.context).preferences.addons[__package__].preferences
    if not prefs.client_id:
        prefs.client_id = uuid.uuid4().hex
    return prefs


def read_key(prefs: PropDreamerPreferences) -> bytes | None:
    if not prefs.key_file:
        return None
    path = bpy.path.abspath(prefs.key_file)
    try:
        with open(path, "rb") as f:
            return f.read().strip()
    except OSError as err:
        raise ValueError(f"cannot read the key file {path}: {err.strerror}; set it in the add-on preferences or clear it") from err
