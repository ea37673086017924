"""The panel's settings as a job request body (request_body.py builds it, bpy-free), with the scene's
cameras turned into the object's frame when the panel asks for them."""

from __future__ import annotations

import math
import random

from .request_body import PanelSettings, job_request


def panel_seed(settings) -> int:
    return random.randrange(2**31 - 1) if settings.random_seed else settings.seed


def job_body(settings, kind: str, context, seed: int | None = None) -> dict:
    """The panel's settings as the job request's wire body (request_body.py builds it, bpy-free), with
    `seed` when given (variations), else the panel's."""
    seed = panel_seed(settings) if seed is None else seed
    panel = PanelSettings(
        prompt=settings.prompt,
        negative_prompt=settings.negative_prompt,
        method=settings.method,
        representation=settings.representation,
        preset=settings.preset,
        seed=seed,
        cameras=settings.cameras,
        elevation=tuple(settings.elevation),
        distance=tuple(settings.distance),
        fov=settings.fov,
        init=settings.init,
        face_budget=settings.face_budget,
        lods=settings.lods,
    )
    matrices, fovs = scene_cameras(settings, context) if settings.cameras in ("scene", "active") else ((), ())
    return job_request(kind, panel, tuple(matrices), tuple(fovs)).to_body()


def scene_cameras(settings, context) -> tuple[list, list]:
    """The scene's cameras (all, or the active one) in the object's frame: the result sits at the cursor
    and is about 1 unit wide."""
    cams = [context.scene.camera] if settings.cameras == "active" else [o for o in context.scene.objects if o.type == "CAMERA"]
    cams = [c for c in cams if c is not None]
    origin, size = context.scene.cursor.location, settings.target_size
    matrices = []
    for cam in cams:
        m = cam.matrix_world.copy()
        m.translation = (m.translation - origin) / size
        matrices.append([m[r][c] for r in range(4) for c in range(4)])
    return matrices, [math.degrees(c.data.angle) for c in cams]
