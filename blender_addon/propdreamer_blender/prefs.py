"""Add-on preferences: where the server is, the optional shared key, timeouts; and the client id.

The client id ties this Blender's jobs to it on the server. It is written to the add-on's user folder
the moment it is created (preferences are saved only when the artist saves them, and a crash loses
them), and read from there first."""

import os
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


def client_id_file() -> str:
    """Where the client id lives: the extension's user folder (a legacy add-on: Blender's config folder)."""
    try:
        folder = bpy.utils.extension_path_user(__package__, create=True)
    except (ValueError, AttributeError):  # not installed as an extension
        folder = bpy.utils.user_resource("CONFIG", path="propdreamer", create=True)
    return os.path.join(folder, "client_id")


def _stored_client_id(prefs: PropDreamerPreferences) -> str:
    path = client_id_file()
    try:
        with open(path, encoding="utf-8") as f:
            stored = f.read().strip()
    except OSError:
        stored = ""
    if stored:
        return stored
    client_id = prefs.client_id or uuid.uuid4().hex
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(client_id)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return client_id


def preferences(context=None) -> PropDreamerPreferences:
    prefs = (context or bpy.context).preferences.addons[__package__].preferences
    stored = _stored_client_id(prefs)
    if prefs.client_id != stored:
        prefs.client_id = stored
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
