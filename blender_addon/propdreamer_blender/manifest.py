"""How a result was made, in Blender: the manifest the server puts in every result's GLB, shown as
custom properties of the object (a texture job's: of the material it adds). Re-running from it:
`provenance.py`.

Custom properties (Object properties > Custom Properties), each a plain value an artist can read or a
script can query: `propdreamer_prompt`, `propdreamer_negative_prompt`, `propdreamer_seed`,
`propdreamer_settings` (what ran, in one line), `propdreamer_prior`, `propdreamer_weights_sha256`,
`propdreamer_generator`, `propdreamer_created`, `propdreamer_seconds` (prompt to GLB on the server), and
`propdreamer_manifest`: the whole manifest as JSON, which re-running reads.
"""

from __future__ import annotations

import json

from .glb import MANIFEST_KEY
from .protocol import request as rq

PREFIX = "propdreamer_"


def apply(idblock, manifest: dict | None) -> None:
    """Show `manifest` on an object or material as custom properties (replacing what the glTF importer
    made of the extras: nested groups a script cannot re-run from)."""
    if MANIFEST_KEY in idblock.keys():
        del idblock[MANIFEST_KEY]
    if not manifest:
        return
    request, settings, prior = manifest.get("request", {}), manifest.get("settings", {}), manifest.get("prior", {})
    values = {
        "prompt": request.get("prompt", ""),
        "negative_prompt": request.get("negative_prompt", ""),
        "seed": int(request.get("seed", 0)),
        "settings": _summary(settings),
        "prior": str(prior.get("id") or ""),
        "weights_sha256": str(prior.get("weights_sha256") or ""),
        "generator": manifest.get("generator", ""),
        "created": manifest.get("created", ""),
        "seconds": float(sum(manifest.get("seconds", {}).values())),
        "manifest": json.dumps(manifest, separators=(",", ":")),
    }
    for name, value in values.items():
        idblock[PREFIX + name] = value


def read(idblock) -> dict | None:
    """The manifest an object or material carries, or None."""
    text = idblock.get(PREFIX + "manifest") if idblock is not None else None
    if not isinstance(text, str):
        return None
    try:
        manifest = json.loads(text)
    except ValueError:
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("request"), dict) else None


def _summary(settings: dict) -> str:
    try:
        return rq.settings_summary(settings)
    except (KeyError, TypeError, ValueError):  # a stand-in's or an older server's partial settings
        return ", ".join(f"{k} {v}" for k, v in settings.items() if isinstance(v, (str, int, float)))[:200]
