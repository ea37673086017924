"""The panel's settings -> the job request the add-on sends, bpy-free (the benchmark of record builds
its requests with this same function, so it measures what an artist's Generate sends)."""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import request as rq

AUTO = "auto"  # the panel's "Auto" method: the prior's default for the representation


@dataclass(frozen=True)
class PanelSettings:
    """What the panel holds (props.PropDreamerSettings), as plain values."""

    prompt: str
    negative_prompt: str = ""
    method: str = AUTO
    representation: str = "nerf"
    preset: str = "draft"
    seed: int = 0
    cameras: str = "prior"  # one of request.CAMERA_MODES
    elevation: tuple[float, float] = (-10.0, 60.0)
    distance: tuple[float, float] = (2.0, 2.4)
    fov: float = 40.0
    init: str = "auto"  # one of request.INITS: where Generate starts
    face_budget: int = 0  # the exported mesh's most triangles; 0: the preset's
    lods: int = 1  # levels of detail (1: the object alone)


def job_request(kind: str, s: PanelSettings, matrices: tuple = (), fovs_deg: tuple = ()) -> rq.JobRequest:
    """`matrices` / `fovs_deg`: the scene's cameras in the object's frame, for camera modes scene / active."""
    if s.cameras not in rq.CAMERA_MODES:
        raise ValueError(f"cameras must be one of {list(rq.CAMERA_MODES)}, got {s.cameras!r}")
    if s.cameras == "prior":
        cameras = None
    elif s.cameras == "orbit":
        cameras = rq.CameraSetup(rq.OrbitRange(elevation_deg=tuple(s.elevation), distance=tuple(s.distance), fov_deg=(s.fov, s.fov)))
    else:
        if not matrices:
            raise ValueError("no camera in the scene: add one, or choose the prior's default cameras")
        cameras = rq.CameraSetup(matrices=tuple(tuple(m) for m in matrices), fovs_deg=tuple(fovs_deg))
    try:
        return rq.JobRequest(
            kind=kind,
            prompt=s.prompt,
            negative_prompt=s.negative_prompt,
            method=None if s.method == AUTO else s.method,
            representation=s.representation,
            preset=s.preset,
            seed=s.seed,
            cameras=cameras,
            uvs="keep" if kind == "texture" else "auto",  # the add-on always sends the UV map to bake into
            init=s.init if kind == "generate" else "auto",
            face_budget=s.face_budget if s.face_budget and kind != "texture" else None,  # a texture job keeps the artist's mesh
            lods=s.lods if kind != "texture" else 1,
        )
    except rq.RequestError as err:
        raise ValueError(str(err)) from None


def method_items() -> list[tuple[str, str, str]]:
    auto = ", ".join(f"{m.upper()} on {r}" for r, m in rq.AUTO_METHOD.items())
    return [(AUTO, "Auto", f"The prior's default: {auto}"), *rq.METHOD_CHOICES]
