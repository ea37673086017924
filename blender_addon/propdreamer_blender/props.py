"""Scene settings: `bpy.context.scene.propdreamer`."""

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, FloatProperty, FloatVectorProperty, IntProperty, StringProperty

from .protocol import request as rq
from .records import PropDreamerJobRecord
from .request_body import AUTO, method_items

# Every choice comes from the one registry in the job request (core/request.py).
METHODS = method_items()
REPRESENTATIONS = [(v, label, d + (f" (Auto method: {rq.AUTO_METHOD[v].upper()})")) for v, label, d in rq.REPRESENTATION_CHOICES]
PRESETS = list(rq.PRESET_CHOICES)
CAMERAS = list(rq.CAMERA_MODE_CHOICES)
STARTS = list(rq.INIT_CHOICES)
BAKE_INTO = [
    ("new", "New UV map", "Unwrap each object anew with Blender's Smart UV Project (on a copy; seams only along polygon edges) and add the map"),
    ("active", "Active UV map", "Each object's active UV map, as the artist unwrapped it; overlaps and UVs outside [0, 1] are reported first"),
    ("named", "UV map named", "The UV map with the name below on each object"),
]


class PropDreamerSettings(bpy.types.PropertyGroup):
    prompt: StringProperty(name="Prompt", description="What to make, e.g. 'a wooden barrel'", default="a red cube")
    negative_prompt: StringProperty(name="Negative", description="What to avoid", default="")
    method: EnumProperty(name="Method", items=METHODS, default=AUTO)
    representation: EnumProperty(name="Representation", items=REPRESENTATIONS, default="nerf")
    preset: EnumProperty(name="Preset", items=PRESETS, default="draft")
    seed: IntProperty(name="Seed", min=0, max=2**31 - 1, default=0)
    variations: IntProperty(
        name="Variations",
        min=1,
        max=16,
        default=1,
        description="Generate this many, seeds s .. s+N-1, laid out in a row from the 3D cursor (with several workers they run at once)",
    )
    random_seed: BoolProperty(name="Random seed", description="A new seed for every job", default=False)
    init: EnumProperty(name="Start from", items=STARTS, default="auto", description="Where Generate starts its object (Refine starts from the selected mesh)")
    mark_asset: BoolProperty(
        name="Mark as Asset", description="Mark each imported result as an asset of this file (Asset Browser), tagged and described from how it was made", default=False
    )
    face_budget: IntProperty(
        name="Face budget",
        min=0,
        max=200_000,
        default=0,
        description="The most triangles Generate and Refine may give the object (1,000 to 200,000); 0: the preset's (draft 20,000, standard and high 100,000)",
    )
    lods: IntProperty(
        name="LODs",
        min=1,
        max=4,
        default=1,
        description="Levels of detail for Generate and Refine: 1, the object alone; 2 to 4, LOD0 at the face budget and each next level a quarter of it, "
        "every level with a normal map of the full-detail surface, in a collection with LOD0 shown",
    )
    cameras: EnumProperty(name="Cameras", items=CAMERAS, default="prior")
    elevation: FloatVectorProperty(name="Elevation", size=2, default=(-10.0, 60.0), min=-89.0, max=89.0, description="Degrees above the ground plane (min, max)")
    distance: FloatVectorProperty(name="Distance", size=2, default=(2.0, 2.4), min=0.5, max=20.0, description="Camera distance in object units (min, max)")
    fov: FloatProperty(name="Field of view", default=40.0, min=5.0, max=120.0)
    target_size: FloatProperty(name="Size", description="Largest dimension of the result in the scene", default=1.0, min=0.001, unit="LENGTH")
    bake_into: EnumProperty(name="Bake into", items=BAKE_INTO, default="new", description="Which UV map Texture Selected bakes into")
    uv_map: StringProperty(name="UV map", description="Bake into the UV map of this name (Bake into: UV map named)", default="UVMap")
    jobs: CollectionProperty(type=PropDreamerJobRecord, description="Jobs submitted from this file, kept in the .blend so results survive Blender closing")
    waiting: IntProperty(default=0, options={"SKIP_SAVE"})  # recorded jobs finished on the server, not yet imported
    waiting_note: StringProperty(default="", options={"SKIP_SAVE"})
    wait: BoolProperty(name="Wait", description="Block until each job finishes (batch scripts)", default=False, options={"SKIP_SAVE"})
    active_job: StringProperty(default="", options={"SKIP_SAVE"})
