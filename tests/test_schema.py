"""Job requests (core/request.py) as the server validates them: every field validated, errors name the
field and the allowed values; unset fields stay unset (the prior's default, resolved by the worker)."""

import pytest

from propdreamer.core.guidance import METHODS as CORE_METHODS
from propdreamer.core.request import METHODS, JobRequest
from propdreamer.server.schema import parse_request
from propdreamer.server.wire import ProtocolError


def test_defaults_and_round_trip():
    req = JobRequest.from_body({"prompt": "a red cube"}, n_buffers=0)
    assert (req.kind, req.method, req.representation, req.preset, req.seed) == ("generate", None, "nerf", "draft", 0)
    assert (req.cameras, req.guidance_scale, req.steps, req.t_range) == (None, None, None, None)  # the prior's defaults
    assert "method" not in req.to_body() and "cameras" not in req.to_body()  # unset stays unset on the wire
    again = JobRequest.from_body(req.to_body(), n_buffers=0)
    assert again == req
    full = JobRequest("a red cube", method="vsd", guidance_scale=7.5, steps=40, t_range=(0.1, 0.9), negative_prompt="blurry")
    assert JobRequest.from_body(full.to_body(), 0) == full


def test_a_request_built_in_code_is_validated_too():
    with pytest.raises(ValueError, match="'method'"):
        JobRequest("a red cube", method="dds")
    with pytest.raises(ValueError, match="'t_range'"):
        JobRequest("a red cube", t_range=(0.5, 0.5))


def test_explicit_cameras_round_trip():
    eye = [1.0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2.0, 0, 0, 0, 1]
    req = JobRequest.from_body({"prompt": "x", "cameras": {"matrices": [eye], "fovs_deg": [50]}}, n_buffers=0)
    assert req.cameras.matrices == (tuple(eye),) and req.cameras.fovs_deg == (50.0,)
    assert JobRequest.from_body(req.to_body(), n_buffers=0) == req


def test_the_server_offers_exactly_the_core_methods():
    assert set(METHODS) == set(CORE_METHODS)


@pytest.mark.parametrize(
    "body, buffers, needle",
    [
        ({}, 0, "'prompt': is required"),
        ({"prompt": "   "}, 0, "must not be empty"),
        ({"prompt": 3}, 0, "'prompt': must be a string"),
        ({"prompt": "x" * 2000}, 0, "limited to 1000"),
        ({"prompt": "x", "method": "dds"}, 0, "'method': must be one of ['sds', 'nfsd', 'vsd', 'ssd', 'vdm']"),
        ({"prompt": "x", "preset": "ultra"}, 0, "'preset': must be one of ['draft', 'standard', 'high']"),
        ({"prompt": "x", "representation": "mesh"}, 0, "'representation'"),
        ({"prompt": "x", "kind": "delete"}, 0, "'kind'"),
        ({"prompt": "x", "seed": -1}, 0, "'seed': must be an integer"),
        ({"prompt": "x", "seed": 1.5}, 0, "'seed'"),
        ({"prompt": "x", "seed": True}, 0, "'seed'"),
        ({"prompt": "x", "colour": "red"}, 0, "unknown field(s) ['colour']"),
        ({"prompt": "x", "cameras": {"distance": [3, 2]}}, 0, "'distance'"),
        ({"prompt": "x", "cameras": {"elevation_deg": [0, float("nan")]}}, 0, "'elevation_deg'"),
        ({"prompt": "x", "cameras": {"matrices": [[1, 2, 3]], "fovs_deg": [40]}}, 0, "cameras.matrices[0]"),
        ({"prompt": "x", "cameras": {"matrices": [[0.0] * 16], "fovs_deg": []}}, 0, "one field of view per matrix"),
        ({"prompt": "x", "cameras": "orbit"}, 0, "'cameras': must be a map"),
        ({"prompt": "x", "cameras": {"matrices": [[1, 0, 0, 5000, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]], "fovs_deg": [40]}}, 0, "within 1000 m"),
        ({"prompt": "x", "cameras": {"matrices": [[1e308] * 12 + [0, 0, 0, 1]], "fovs_deg": [40]}}, 0, "cameras.matrices[0]"),
        ({"prompt": "x", "cameras": {"matrices": [[0.0] * 12 + [0, 0, 0, 1]], "fovs_deg": [40]}}, 0, "must be invertible"),
        ({"prompt": "x", "kind": "texture"}, 0, "exactly one GLB buffer"),
        ({"prompt": "x"}, 1, "carries no buffers"),
        ({"prompt": "x", "guidance_scale": -1}, 0, "'guidance_scale'"),
        ({"prompt": "x", "steps": 0}, 0, "'steps'"),
        ({"prompt": "x", "t_range": [0.9, 0.1]}, 0, "'t_range'"),
        ({"prompt": "x", "negative_prompt": 5}, 0, "'negative_prompt'"),
    ],
)
def test_bad_fields_are_named(body, buffers, needle):
    with pytest.raises(ProtocolError) as err:
        parse_request(body, n_buffers=buffers)
    assert err.value.code == "invalid_field"
    assert needle in str(err.value)
