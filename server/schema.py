"""The server's side of job validation: `core/request.py`'s JobRequest (the one request type every
front end uses), with its errors turned into `invalid_field` protocol errors, and the prompt checked
against the words the server's prior can read before the job is accepted."""

from __future__ import annotations

from typing import Any

from ..core.prompt_check import unknown_words
from ..core.request import (  # noqa: F401  (the registry, re-exported for the server's `welcome`)
    KINDS as JOB_KINDS, METHODS, PRESETS, REPRESENTATIONS, CameraSetup, JobRequest, RequestError, prompt_warnings,
)
from .wire import ProtocolError


def parse_request(body: dict[str, Any], n_buffers: int, vocabulary: frozenset[str] | None = None, prior: str = "") -> tuple[JobRequest, list[str]]:
    """A validated request and its warnings; ProtocolError('invalid_field') names what to change."""
    try:
        request = JobRequest.from_body(body, n_buffers)
        warnings = prompt_warnings(request.prompt, unknown_words(request.prompt, vocabulary), prior)
    except RequestError as err:
        raise ProtocolError("invalid_field", str(err)) from None
    return request, warnings
