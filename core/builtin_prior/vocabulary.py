"""What the builtin prior knows: its shapes, its colours, and the captions built from them."""

from __future__ import annotations

# Linear-RGB albedos in [0, 1]. Hues are kept far apart so a 32 px render still tells them apart
# under shading; "white" stays below the white background so its silhouette remains visible.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.10, 0.10),
    "orange": (0.95, 0.50, 0.05),
    "yellow": (0.92, 0.85, 0.10),
    "green": (0.15, 0.70, 0.15),
    "blue": (0.12, 0.25, 0.90),
    "purple": (0.55, 0.15, 0.75),
    "white": (0.78, 0.78, 0.78),
    "black": (0.12, 0.12, 0.12),
}

# Analytic signed distance functions for these live in `shapes.py`.
SHAPES: tuple[str, ...] = ("sphere", "cube", "cylinder", "cone", "torus", "capsule", "pyramid")


def caption(colour: str, shape: str, view_suffix: str = "") -> str:
    """The builtin prior's caption form: "a {colour} {shape}" plus an optional view suffix."""
    return f"a {colour} {shape}{view_suffix}"


def parse_caption(prompt: str) -> tuple[str | None, str | None]:
    """The colour and shape words a prompt names, if any (first match of each)."""
    words = prompt.lower().replace(",", " ").split()
    colour = next((w for w in words if w in COLOURS), None)
    shape = next((w for w in words if w in SHAPES), None)
    return colour, shape
