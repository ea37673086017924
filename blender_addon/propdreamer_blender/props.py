"""Scene settings: `bpy.context.scene.propdreamer`."""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, FloatVectorProperty, IntProperty, StringProperty

from .protocol import request as rq
from .request_body import AUTO, method_items

# Every choice comes from the one registry in the job request (core/request.py).
METHODS = method_items()
REPRESENTATIONS = [(v, label, d + (f" (Auto method: {rq.AUTO_METHOD[v].upper()})")) for v, label, d in rq.REPRESENTATION_CHOICES]
PRESETS = list(rq.PRESET_CHOICES)
CAMERAS = list(rq.CAMERA_MODE_CHOICES)


class PropDreamerSettings(bpy.types.PropertyGroup):
    prompt: StringProperty(name="Prompt", description="What to make, e.g. 'a wooden barrel'", default="a red cube")
    negative_prompt: StringProperty(name="Negative", description="What to avoid", default="")
    method: EnumProperty(name="Method", items=METHODS, default=AUTO)
    representation: EnumProperty(name="Representation", items=REPRESENTATIONS, default="nerf")
    preset: EnumProperty(name="Preset", items=PRESETS, default="draft")
    seed: IntProperty(name="Seed", min=0, max=2**31 - 1, default=0)
    random_seed: BoolProperty(name="Random seed", description="A new seed for every job", default=False)
    cameras: EnumProperty(name="Cameras", items=CAMERAS, default="prior")
    elevation: FloatVectorProperty(name="Elevation", size=2, default=(-10.0, 60.0), min=-89.0, max=89.0, description="Degrees above the ground plane (min, max)")
    distance: FloatVectorProperty(name="Distance", size=2, default=(2.0, 2.4), min=0.5, max=20.0, description="Camera distance in object units (min, max)")
    fov: FloatProperty(name="Field of view", default=40.0, min=5.0, max=120.0)
    target_size: FloatProperty(name="Size", description="Largest dimension of the result in the scene", default=1.0, min=0.001, unit="LENGTH")
    wait: BoolProperty(name="Wait", description="Block until each job finishes (batch scripts)", default=False, options={"SKIP_SAVE"})
    active_job: StringProperty(default="", options={"SKIP_SAVE"})
