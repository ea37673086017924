"""The job request: one typed description of a job, from any front end to the pipeline.

The Blender add-on, `propdreamer generate` and `submit`, the server's validation, the worker and the
benchmarks all build, send or read this one type. It is free of torch and bpy (the extension build
vendors this file beside the protocol code), so every front end validates a job the same way.

A field left unset (None) means "the prior's default": the method for the representation, the
cameras, the guidance scale, the timesteps and the step count are resolved in one place,
`core/resolve.py`, against the prior that runs the job; the resolved values are reported back.

The choices (job kinds, methods, representations, presets, the add-on's camera modes) are listed once
here, with the labels the panel shows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

# -- the registry of choices: (value, label, description) -----------------------------------------
KIND_CHOICES = (
    ("generate", "Generate", "A new prop from the prompt"),
    ("refine", "Refine", "The input mesh seeds the optimisation; the result stays that object"),
    ("texture", "Texture", "A texture and a UV map for the input mesh; its geometry is kept"),
)
METHOD_CHOICES = (
    ("sds", "SDS", "DreamFusion's score distillation"),
    ("nfsd", "NFSD", "Noise-free score distillation"),
    ("vsd", "VSD", "ProlificDreamer's variational score distillation (slower, sharper)"),
    ("ssd", "SSD", "SteinDreamer's Stein score distillation"),
    ("vdm", "VDM", "DreamMapping's variational distribution mapping with DCA"),
)
REPRESENTATION_CHOICES = (
    ("nerf", "NeRF", "A neural field first"),
    ("gaussians", "Gaussians", "3D Gaussians first"),
)
PRESET_CHOICES = (
    ("draft", "Draft", "Minutes; fine on a CPU"),
    ("standard", "Standard", "A GPU and some patience"),
    ("high", "High", "Best quality, slowest"),
)
# How the add-on chooses cameras; on the wire they become no `cameras` (the prior's), an orbit, or matrices.
CAMERA_MODE_CHOICES = (
    ("prior", "Prior's default", "Where the prior was trained to see objects from (recommended)"),
    ("orbit", "Orbit", "Random cameras around the object within the ranges below"),
    ("scene", "Scene cameras", "Every camera in the scene"),
    ("active", "Active camera", "The scene's active camera only"),
)
# Which UV map a texture job bakes into. The add-on always sends one (a new map from Blender's own
# unwrapper, which never cuts a polygon, or one of the object's maps), so it asks for "keep".
UV_CHOICES = (
    ("auto", "Auto", "The UV map that comes with the mesh (TEXCOORD_0) when it has one, else a new unwrap"),
    ("keep", "The mesh's UVs", "Bake into the UV map that comes with the mesh; refused when it has none"),
    ("new", "New unwrap", "The server unwraps the mesh anew (xatlas), whatever UVs it has"),
)
# Where stage one of a generate job starts. Refine starts from the artist's mesh; texture keeps it.
INIT_CHOICES = (
    ("auto", "Auto", "Shap-E's shape of the prompt for VDM on Gaussians (as DreamMapping) when the server has Stable Diffusion and Shap-E's weights, else a ball"),
    ("ball", "Ball", "A ball of density or of Gaussians at the centre (DreamFusion, Magic3D)"),
    ("shap-e", "Shap-E", "Shap-E's coloured shape of the prompt (DreamMapping, GaussianDreamer); needs Stable Diffusion and openai/shap-e on the server"),
)
AUTO_METHOD = {"nerf": "sds", "gaussians": "vdm"}  # VDM + DCA on Gaussians, as in DreamMapping


def values(choices: tuple[tuple[str, str, str], ...]) -> tuple[str, ...]:
    return tuple(c[0] for c in choices)


KINDS, METHODS, REPRESENTATIONS, PRESETS, CAMERA_MODES, UV_SOURCES, INITS = map(
    values, (KIND_CHOICES, METHOD_CHOICES, REPRESENTATION_CHOICES, PRESET_CHOICES, CAMERA_MODE_CHOICES, UV_CHOICES, INIT_CHOICES)
)

MIN_FACE_BUDGET, MAX_FACE_BUDGET = 1_000, 200_000  # the triangles an artist may ask the exported mesh to have at most
MAX_LODS = 4  # levels of detail: LOD0 (at the face budget) .. LOD3
RepresentationName = Literal["nerf", "gaussians"]  # REPRESENTATIONS, as a type (tests/test_request.py keeps them equal)
StartName = Literal["ball", "shap-e"]  # where stage one starts once `init` auto is resolved

MAX_PROMPT_CHARS = 1000
MAX_EXPLICIT_CAMERAS = 64
MAX_STEPS = 100_000
# Camera positions beyond this many metres from the object are refused: the object would be a dot.
MAX_CAMERA_DISTANCE = 1000.0


class RequestError(ValueError):
    """A request field that cannot be used; `field` names it, the message says what is allowed."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"field '{field_name}': {message}")
        self.field = field_name


# -- validation helpers ----------------------------------------------------------------------------
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _choice(body: dict, name: str, allowed: tuple[str, ...], default: str | None, none_ok: bool = False) -> str | None:
    value = body.get(name, default)
    if value is None and none_ok:
        return None
    if value not in allowed:
        extra = " (or leave it unset for the prior's default)" if none_ok else ""
        raise RequestError(name, f"must be one of {list(allowed)}{extra}, got {value!r}")
    return value


def _number(body: dict, name: str, lo: float, hi: float, integer: bool = False) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_number(value) or (integer and not isinstance(value, int)) or not lo <= value <= hi:
        raise RequestError(name, f"must be {'an integer' if integer else 'a number'} in [{lo}, {hi}], got {value!r}")
    return value


def _text(body: dict, name: str, default: str | None) -> str:
    if name not in body and default is None:
        raise RequestError(name, "is required")
    value = body.get(name, default)
    if not isinstance(value, str):
        raise RequestError(name, f"must be a string, got {type(value).__name__}")
    if len(value) > MAX_PROMPT_CHARS:
        raise RequestError(name, f"is limited to {MAX_PROMPT_CHARS} characters, got {len(value)}")
    return value


def _range(body: dict, name: str, default: tuple[float, float], lo: float, hi: float, strict: bool = False) -> tuple[float, float]:
    value = body.get(name, list(default))
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value)
    if not ok or not lo <= value[0] <= value[1] <= hi or (strict and value[0] == value[1]):
        order = "<" if strict else "<="
        raise RequestError(name, f"must be [low, high] with {lo} <= low {order} high <= {hi}, got {value!r}")
    return float(value[0]), float(value[1])


def _det3(m) -> float:
    """The determinant of a row-major 4x4 matrix's upper-left 3x3."""
    a, b, c, d, e, f, g, h, k = m[0], m[1], m[2], m[4], m[5], m[6], m[8], m[9], m[10]
    return a * (e * k - f * h) - b * (d * k - f * g) + c * (d * h - e * g)


def _refuse_unknown(body: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise RequestError(where, f"unknown field(s) {unknown}; allowed: {sorted(known)}")


# -- the request -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OrbitRange:
    """Where random cameras may stand: ranges (low, high) in Blender's world, degrees and metres;
    azimuth 0 = front, on -Y. Stage one samples from it (core/cameras.py re-exports it)."""

    elevation_deg: tuple[float, float] = (-10.0, 60.0)
    azimuth_deg: tuple[float, float] = (-180.0, 180.0)
    distance: tuple[float, float] = (2.0, 2.4)
    fov_deg: tuple[float, float] = (40.0, 40.0)

    def __post_init__(self) -> None:
        for name in ("elevation_deg", "azimuth_deg", "distance", "fov_deg"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"OrbitRange.{name} must be (low, high) with low <= high, got {(lo, hi)}")
        if self.distance[0] <= 0:
            raise ValueError(f"OrbitRange.distance must be positive, got {self.distance}")
        if not 0 < self.fov_deg[0] <= self.fov_deg[1] < 180:
            raise ValueError(f"OrbitRange.fov_deg must lie in (0, 180), got {self.fov_deg}")


@dataclass(frozen=True)
class CameraSetup:
    """An orbit, or explicit cameras (e.g. the scene's): row-major 4x4 camera-to-world matrices, the
    camera looking down its -Z, and one vertical field of view each. Explicit cameras replace the orbit."""

    orbit: OrbitRange = field(default_factory=OrbitRange)
    matrices: tuple[tuple[float, ...], ...] = ()
    fovs_deg: tuple[float, ...] = ()

    FIELDS = frozenset({"elevation_deg", "azimuth_deg", "distance", "fov_deg", "matrices", "fovs_deg"})

    @classmethod
    def from_body(cls, body: Any) -> CameraSetup:
        if not isinstance(body, dict):
            raise RequestError("cameras", "must be a map (or leave it unset for the prior's default cameras)")
        _refuse_unknown(body, set(cls.FIELDS), "cameras")
        matrices, fovs = body.get("matrices", []), body.get("fovs_deg", [])
        if not isinstance(matrices, (list, tuple)) or len(matrices) > MAX_EXPLICIT_CAMERAS:
            raise RequestError("cameras.matrices", f"must be a list of at most {MAX_EXPLICIT_CAMERAS} 4x4 matrices")
        if not isinstance(fovs, (list, tuple)) or len(fovs) != len(matrices):
            raise RequestError("cameras.fovs_deg", f"needs one field of view per matrix ({len(matrices)})")
        for i, m in enumerate(matrices):
            if not (isinstance(m, (list, tuple)) and len(m) == 16 and all(_is_number(v) for v in m)):
                raise RequestError(f"cameras.matrices[{i}]", "must be 16 finite numbers (a row-major 4x4 camera-to-world matrix)")
            if any(abs(m[4 * r + 3]) > MAX_CAMERA_DISTANCE for r in range(3)) or any(abs(v) > 1e3 for v in m) or list(m[12:]) != [0, 0, 0, 1]:
                raise RequestError(f"cameras.matrices[{i}]", f"must be a rigid camera-to-world matrix (last row 0 0 0 1) within {MAX_CAMERA_DISTANCE:g} m of the object")
            if not 1e-6 <= abs(_det3(m)) <= 1e6:
                raise RequestError(
                    f"cameras.matrices[{i}]",
                    f"must be invertible with a sane scale (the determinant of its 3x3 part is {_det3(m):.3g}); use the camera's world matrix without zero or extreme scale",
                )
        for i, f in enumerate(fovs):
            if not _is_number(f) or not 1 <= f <= 170:
                raise RequestError(f"cameras.fovs_deg[{i}]", f"must be a number in [1, 170] degrees, got {f!r}")
        d = OrbitRange()
        orbit = OrbitRange(
            elevation_deg=_range(body, "elevation_deg", d.elevation_deg, -90, 90),
            azimuth_deg=_range(body, "azimuth_deg", d.azimuth_deg, -360, 360),
            distance=_range(body, "distance", d.distance, 0.1, 100),
            fov_deg=_range(body, "fov_deg", d.fov_deg, 1, 170),
        )
        return cls(orbit, tuple(tuple(float(v) for v in m) for m in matrices), tuple(float(f) for f in fovs))

    def to_body(self) -> dict[str, Any]:
        if self.matrices:
            return {"matrices": [list(m) for m in self.matrices], "fovs_deg": list(self.fovs_deg)}
        o = self.orbit
        return {"elevation_deg": list(o.elevation_deg), "azimuth_deg": list(o.azimuth_deg), "distance": list(o.distance), "fov_deg": list(o.fov_deg)}


@dataclass(frozen=True)
class JobRequest:
    """One job. None in an optional field: the prior's default (core/resolve.py)."""

    prompt: str
    kind: str = "generate"
    negative_prompt: str = ""  # the unconditional branch of CFG (NFSD: its negative-prompt term)
    method: str | None = None  # None: SDS on a NeRF, VDM + DCA on Gaussians
    representation: RepresentationName = "nerf"
    preset: str = "draft"
    seed: int = 0
    steps: int | None = None  # stage one's steps; None: the preset's
    guidance_scale: float | None = None  # None: the method's default on this prior
    t_range: tuple[float, float] | None = None  # timesteps as fractions of T; None: the prior's schedule
    cameras: CameraSetup | None = None  # None: where the prior was trained to look from
    uvs: str = "auto"  # texture jobs: which UV map the texture is baked into (UV_CHOICES)
    init: str = "auto"  # generate jobs: where stage one starts (INIT_CHOICES)
    retry: bool = False  # run the job once more if its worker dies under it (never on its own: a job may have run for an hour)
    face_budget: int | None = None  # generate / refine jobs: the exported mesh's most triangles; None: the preset's
    lods: int = 1  # generate / refine jobs: levels of detail; 2..4 adds LOD1.. at a quarter of the faces each, every level with a normal map

    FIELDS = frozenset(
        {
            "kind",
            "prompt",
            "negative_prompt",
            "method",
            "representation",
            "preset",
            "seed",
            "steps",
            "guidance_scale",
            "t_range",
            "cameras",
            "uvs",
            "init",
            "retry",
            "face_budget",
            "lods",
        }
    )

    def __post_init__(self) -> None:
        self.from_body(self.to_body(), 1 if self.kind in ("refine", "texture") else 0)  # one validation, whoever builds it

    @property
    def needs_mesh(self) -> bool:
        return self.kind in ("refine", "texture")

    @classmethod
    def from_body(cls, body: Any, n_buffers: int | None = None) -> JobRequest:
        """Validate a message body (msgpack-decoded). `n_buffers`: the mesh frames that came with it (checked when given)."""
        if not isinstance(body, dict):
            raise RequestError("submit", "the body must be a map")
        _refuse_unknown(body, set(cls.FIELDS), "submit")
        kind = _choice(body, "kind", KINDS, "generate")
        prompt = _text(body, "prompt", None)
        if not prompt.strip():
            raise RequestError("prompt", "must not be empty: describe the object, e.g. 'a red cube'")
        seed = _number(body, "seed", 0, 2**31 - 1, integer=True)
        steps = _number(body, "steps", 1, MAX_STEPS, integer=True)
        face_budget = _number(body, "face_budget", MIN_FACE_BUDGET, MAX_FACE_BUDGET, integer=True)
        if face_budget is not None and kind == "texture":
            raise RequestError("face_budget", "sets the triangles of a mesh PropDreamer makes; a texture job keeps the artist's mesh as it is (leave it out)")
        lods = _number(body, "lods", 1, MAX_LODS, integer=True)
        if lods is not None and lods > 1 and kind == "texture":
            raise RequestError("lods", "levels of detail are made from a mesh PropDreamer makes; a texture job keeps the artist's mesh as it is (leave it out)")
        t_range = None if body.get("t_range") is None else _range(body, "t_range", (0.0, 1.0), 0.0, 1.0, strict=True)
        cameras = None if body.get("cameras") is None else CameraSetup.from_body(body["cameras"])
        request = object.__new__(cls)  # validated here; __post_init__ would validate again
        values_ = dict(
            kind=kind,
            prompt=prompt,
            negative_prompt=_text(body, "negative_prompt", ""),
            method=_choice(body, "method", METHODS, None, none_ok=True),
            representation=_choice(body, "representation", REPRESENTATIONS, "nerf"),
            preset=_choice(body, "preset", PRESETS, "draft"),
            seed=int(seed or 0),
            steps=None if steps is None else int(steps),
            guidance_scale=_number(body, "guidance_scale", 0.0, 1000.0),
            t_range=t_range,
            cameras=cameras,
            uvs=_choice(body, "uvs", UV_SOURCES, "auto"),
            init=_choice(body, "init", INITS, "auto"),
            retry=body.get("retry", False),
            face_budget=None if face_budget is None else int(face_budget),
            lods=int(lods or 1),
        )
        if not isinstance(values_["retry"], bool):
            raise RequestError("retry", f"must be true or false, got {values_['retry']!r}")
        if values_["uvs"] != "auto" and kind != "texture":
            raise RequestError("uvs", f"chooses the UV map of a texture job; a '{kind}' job makes its own (leave it out)")
        if values_["init"] != "auto" and kind != "generate":
            raise RequestError("init", f"chooses where a generate job starts; a '{kind}' job starts from its input mesh (leave it out)")
        for name, value in values_.items():
            object.__setattr__(request, name, value)
        if n_buffers is not None:
            if request.needs_mesh and n_buffers != 1:
                raise RequestError("buffers", f"a '{kind}' job carries its input mesh as exactly one GLB buffer frame, got {n_buffers}")
            if not request.needs_mesh and n_buffers:
                raise RequestError("buffers", f"a 'generate' job carries no buffers, got {n_buffers}")
        return request

    def to_body(self) -> dict[str, Any]:
        """The wire form: unset fields are left out, so the receiver resolves them."""
        body: dict[str, Any] = {"kind": self.kind, "prompt": self.prompt, "representation": self.representation, "preset": self.preset, "seed": self.seed}
        if self.negative_prompt:
            body["negative_prompt"] = self.negative_prompt
        for name in ("method", "steps", "guidance_scale"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        if self.t_range is not None:
            body["t_range"] = list(self.t_range)
        if self.cameras is not None:
            body["cameras"] = self.cameras.to_body()
        if self.uvs != "auto":
            body["uvs"] = self.uvs
        if self.init != "auto":
            body["init"] = self.init
        if self.retry:
            body["retry"] = True
        if self.face_budget is not None:
            body["face_budget"] = self.face_budget
        if self.lods > 1:
            body["lods"] = self.lods
        return body


# -- prompt words the prior knows ------------------------------------------------------------------
FUNCTION_WORDS = frozenset({"a", "an", "the", "of", "with", "and", "in", "on", "made", "view", "front", "side", "back", "overhead"})


def prompt_words(prompt: str) -> list[str]:
    """The words of a prompt, lower case, as a word-level tokenizer splits them (punctuation dropped)."""
    return re.findall(r"\w+", prompt.lower())


def prompt_warnings(prompt: str, unknown: list[str], prior: str) -> list[str]:
    """Warnings about words the prior cannot read; raises RequestError when it reads no word that
    describes an object (only articles and view words), since distilling that makes nothing in particular."""
    unknown_set = {w.lower() for w in unknown}
    if not unknown_set:
        return []
    known = [w for w in prompt_words(prompt) if w not in unknown_set]
    if not [w for w in known if w not in FUNCTION_WORDS]:
        raise RequestError(
            "prompt",
            f"the prior '{prior}' knows none of the words {sorted(unknown_set)} of '{prompt}', so the job would "
            "make nothing in particular; use words it knows (the builtin prior: a colour and a shape, "
            "e.g. 'a red cube'), or run the server with Stable Diffusion (--prior)",
        )
    return [f"the prior '{prior}' does not know the word(s) {sorted(unknown_set)}; they are ignored"]


# -- what ran -------------------------------------------------------------------------------------
def settings_summary(settings: dict[str, Any]) -> str:
    """One line for the panel and the logs: 'sds on nerf, draft 300 steps, CFG 10, t 0.02-0.95, elevation -10..30'
    (a texture job: 'texture, draft 80 steps, CFG 10, ...': it runs the texture stage only)."""
    cams = settings["cameras"]
    where = f"{cams['explicit']} explicit camera(s)" if "explicit" in cams else f"elevation {cams['elevation_deg'][0]:g}..{cams['elevation_deg'][1]:g}"
    t = settings["timesteps"]
    what = (
        f"texture, {settings['preset']} {settings['texture_steps']} steps"
        if "texture_steps" in settings
        else f"{settings['method']} on {settings['representation']}, {settings['preset']} {settings['steps']} steps"
    )
    if settings.get("init") == "shap-e":
        what += ", from Shap-E"
    return f"{what}, CFG {settings['guidance_scale']:g}, t {t['t_min']:g}-{t['t_max']:g}, {where}"
