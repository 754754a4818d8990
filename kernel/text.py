"""Characters that text shown to a person writes out instead of obeying."""

from __future__ import annotations

from collections.abc import Iterable

BIDI_CONTROLS = (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
"""Bidirectional embeddings, overrides and isolates: each reorders what is shown after it."""


def written_out(code_points: Iterable[int]) -> dict[int, str]:
    """A `str.translate` table that writes each code point out as `\\uXXXX`."""
    return {c: f"\\u{c:04x}" for c in code_points}
