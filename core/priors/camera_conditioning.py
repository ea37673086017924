"""Camera conditioning for priors that take it (the builtin prior from version 2 on).

A prompt's view suffix ("side view") says where the camera stands only roughly: every elevation from
-10 to 60 degrees reads "side view", so an unconditioned prior's idea of a side view is an average
over elevations, and SDS pulls a render at elevation 0 toward a cylinder seen from 25 degrees up (a
bucket: wider at the top, rounded underneath). A camera-conditioned prior (as MVDream and Zero-1-to-3
condition on the camera) is told the exact view: the features below pass through the UNet's class
embedding (diffusers' `class_embed_type="projection"`) and are added to its timestep embedding.

    f(camera) = [sin e, cos e, sin a, cos a, (d - 2.2) / 0.2, 1]     e elevation, a azimuth, d distance
    f(unknown) = 0                                                   (trained by camera dropout)

The last feature says "a camera is given", so an unknown camera is not mistaken for e = a = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cameras import Cameras

CAMERA_FEATURES = 6
DISTANCE_CENTRE, DISTANCE_SCALE = 2.2, 0.2  # the prior's training orbit: distance 2.0 to 2.4


def camera_features(cameras: Cameras | None, n: int) -> Tensor:
    """[n, CAMERA_FEATURES]: the features of each camera, or zeros ("unknown") when `cameras` is None."""
    if cameras is None:
        return torch.zeros(n, CAMERA_FEATURES)
    if len(cameras) != n:
        raise ValueError(f"camera conditioning needs one camera per image: got {len(cameras)} cameras for {n} images")
    e = torch.deg2rad(cameras.elevation_deg.detach().float().cpu())
    a = torch.deg2rad(cameras.azimuth_deg.detach().float().cpu())
    d = (cameras.distance.detach().float().cpu() - DISTANCE_CENTRE) / DISTANCE_SCALE
    return torch.stack([e.sin(), e.cos(), a.sin(), a.cos(), d, torch.ones_like(e)], dim=-1)
