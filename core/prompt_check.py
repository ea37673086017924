"""The words a prior can read, without loading it (torch-free: the server checks prompts with it).

Only word-level tokenizers (the builtin prior's) have words they cannot read; a BPE tokenizer such as
Stable Diffusion's CLIP reads any text, and has no vocabulary to check against here (None).
"""

from __future__ import annotations

import json
from pathlib import Path

from .builtin_prior import BUILTIN, BUILTIN_FOLDER
from .request import prompt_words


def word_vocabulary(source: str) -> frozenset[str] | None:
    """The lower-case words of a word-level prior's tokenizer; None when any word can be read (or the
    prior is not a local folder: a Hub id is checked by the worker once the prior is loaded)."""
    folder = BUILTIN_FOLDER if source == BUILTIN else Path(source).expanduser()
    path = folder / "tokenizer" / "tokenizer.json"
    if not path.is_file():
        return None
    model = json.loads(path.read_text()).get("model", {})
    if model.get("type") != "WordLevel":
        return None
    return frozenset(w.lower() for w in model.get("vocab", {}))


def unknown_words(prompt: str, vocabulary: frozenset[str] | None) -> list[str]:
    """The prompt's words outside the vocabulary, in order (none when every word can be read)."""
    return [] if vocabulary is None else [w for w in prompt_words(prompt) if w not in vocabulary]
