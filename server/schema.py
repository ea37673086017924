"""Job requests as typed dataclasses, built from a message body with every field validated.

Errors name the field and the allowed values, so a client (or an artist reading the add-on's report)
knows exactly what to change. Unknown fields are refused rather than silently ignored.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .wire import ProtocolError

JOB_KINDS = ("generate", "refine", "texture")
METHODS = ("sds", "nfsd", "vsd", "ssd", "vdm")
REPRESENTATIONS = ("nerf", "gaussians")
PRESETS = ("draft", "standard", "high")
MAX_PROMPT_CHARS = 1000
MAX_EXPLICIT_CAMERAS = 64


def _invalid(name: str, message: str) -> ProtocolError:
    return ProtocolError("invalid_field", f"field '{name}': {message}")


def _choice(body: dict, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = body.get(name, default)
    if value not in allowed:
        raise _invalid(name, f"must be one of {list(allowed)}, got {value!r}")
    return value


def _number(body: dict, name: str, default: float, lo: float, hi: float, integer: bool = False) -> float:
    value = body.get(name, default)
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise _invalid(name, f"must be {kind} in [{lo}, {hi}], got {value!r}")
    return value


def _text(body: dict, name: str, default: str | None, required: bool = False) -> str:
    if required and name not in body:
        raise _invalid(name, "is required")
    value = body.get(name, default)
    if not isinstance(value, str):
        raise _invalid(name, f"must be a string, got {type(value).__name__}")
    if len(value) > MAX_PROMPT_CHARS:
        raise _invalid(name, f"is limited to {MAX_PROMPT_CHARS} characters, got {len(value)}")
    return value


def _range(body: dict, name: str, default: tuple[float, float], lo: float, hi: float) -> tuple[float, float]:
    value = body.get(name, list(default))
    ok = isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok or not lo <= value[0] <= value[1] <= hi:
        raise _invalid(name, f"must be [low, high] with {lo} <= low <= high <= {hi}, got {value!r}")
    return float(value[0]), float(value[1])


def _refuse_unknown(body: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise ProtocolError("invalid_field", f"{where}: unknown field(s) {unknown}; allowed: {sorted(known)}")


@dataclass(frozen=True)
class CameraSetup:
    """Orbit ranges (Blender world, degrees and metres; azimuth 0 = front, on -Y), or explicit cameras."""

    elevation_deg: tuple[float, float] = (-10.0, 60.0)
    azimuth_deg: tuple[float, float] = (-180.0, 180.0)
    distance: tuple[float, float] = (2.0, 2.4)
    fov_deg: tuple[float, float] = (40.0, 40.0)
    # Explicit cameras (e.g. the scene's cameras): 4x4 camera-to-world matrices, row-major, camera
    # looking down its -Z, and vertical field of view in degrees. When given, they replace the orbit.
    matrices: tuple[tuple[float, ...], ...] = ()
    fovs_deg: tuple[float, ...] = ()

    @classmethod
    def from_body(cls, body: Any) -> "CameraSetup":
        if not isinstance(body, dict):
            raise _invalid("cameras", "must be a map")
        _refuse_unknown(body, {"elevation_deg", "azimuth_deg", "distance", "fov_deg", "matrices", "fovs_deg"}, "cameras")
        d = cls()
        matrices = body.get("matrices", [])
        fovs = body.get("fovs_deg", [])
        if not isinstance(matrices, list) or len(matrices) > MAX_EXPLICIT_CAMERAS:
            raise _invalid("cameras.matrices", f"must be a list of at most {MAX_EXPLICIT_CAMERAS} 4x4 matrices")
        for i, m in enumerate(matrices):
            if not (isinstance(m, list) and len(m) == 16 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in m)):
                raise _invalid(f"cameras.matrices[{i}]", "must be 16 finite numbers (a row-major 4x4 camera-to-world matrix)")
        if not isinstance(fovs, list) or len(fovs) != len(matrices):
            raise _invalid("cameras.fovs_deg", f"needs one field of view per matrix ({len(matrices)})")
        for i, f in enumerate(fovs):
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 1 <= f <= 170:
                raise _invalid(f"cameras.fovs_deg[{i}]", f"must be a number in [1, 170] degrees, got {f!r}")
        return cls(
            elevation_deg=_range(body, "elevation_deg", d.elevation_deg, -90, 90),
            azimuth_deg=_range(body, "azimuth_deg", d.azimuth_deg, -360, 360),
            distance=_range(body, "distance", d.distance, 0.1, 100),
            fov_deg=_range(body, "fov_deg", d.fov_deg, 1, 170),
            matrices=tuple(tuple(float(v) for v in m) for m in matrices),
            fovs_deg=tuple(float(f) for f in fovs),
        )


@dataclass(frozen=True)
class JobRequest:
    kind: str
    prompt: str
    negative_prompt: str = ""
    method: str = "sds"
    representation: str = "nerf"
    preset: str = "draft"
    seed: int = 0
    cameras: CameraSetup = field(default_factory=CameraSetup)

    FIELDS = frozenset({"kind", "prompt", "negative_prompt", "method", "representation", "preset", "seed", "cameras"})

    @classmethod
    def from_body(cls, body: dict[str, Any], n_buffers: int) -> "JobRequest":
        _refuse_unknown(body, set(cls.FIELDS), "submit")
        kind = _choice(body, "kind", JOB_KINDS, "generate")
        request = cls(
            kind=kind,
            prompt=_text(body, "prompt", None, required=True),
            negative_prompt=_text(body, "negative_prompt", ""),
            method=_choice(body, "method", METHODS, "sds"),
            representation=_choice(body, "representation", REPRESENTATIONS, "nerf"),
            preset=_choice(body, "preset", PRESETS, "draft"),
            seed=int(_number(body, "seed", 0, 0, 2**31 - 1, integer=True)),
            cameras=CameraSetup.from_body(body.get("cameras", {})),
        )
        if not request.prompt.strip():
            raise _invalid("prompt", "must not be empty: describe the object, e.g. 'a red cube'")
        needs_mesh = kind in ("refine", "texture")
        if needs_mesh and n_buffers != 1:
            raise _invalid("buffers", f"a '{kind}' job carries its input mesh as exactly one GLB buffer frame, got {n_buffers}")
        if not needs_mesh and n_buffers:
            raise _invalid("buffers", f"a 'generate' job carries no buffers, got {n_buffers}")
        return request

    def to_body(self) -> dict[str, Any]:
        body = asdict(self)
        body["cameras"] = {k: [list(v) for v in val] if k == "matrices" else list(val) for k, val in body["cameras"].items()}
        return body
