"""Building catalogue payloads from command input, with schema violations as the user-facing `InvalidInput`."""

from __future__ import annotations

import unicodedata
from typing import Any, TypeVar

from kernel.errors import InvalidInput
from schemas import events as e

TPayload = TypeVar("TPayload", bound=e.Payload)


def payload(model: type[TPayload], **fields: Any) -> TPayload:
    """The payload, or `InvalidInput` naming the first field that breaks the schema."""
    from pydantic import ValidationError

    try:
        return model(**fields)
    except ValidationError as exc:
        raise invalid_input(exc) from exc


_INVISIBLE = frozenset(
    [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, *range(0x180B, 0x1810), 0x2800, 0x3164, 0xFFA0, *range(0xFE00, 0xFE10)]
)
"""Characters that are letters, symbols or marks by category but show nothing: Unicode's default-ignorable
fillers and variation selectors, and the blank Braille pattern."""


def _visible(c: str) -> bool:
    return unicodedata.category(c)[0] not in "ZCM" and ord(c) not in _INVISIBLE


def on_record(text: str, what: str, limit: int = 5000) -> str:
    """Reasons a person puts on record (a statement, a decision, grounds): refused unless they hold visible
    text, not only spaces, control or invisible characters (fillers, joiners, marks with nothing to mark), and
    at most `limit` characters of it."""
    if not isinstance(text, str) or not any(_visible(c) for c in text):
        raise InvalidInput(f"{what} must say something: it is blank")
    if len(text) > limit:
        raise InvalidInput(f"{what} must be at most {limit} characters, not {len(text)}")
    return text


def invalid_input(exc: Any) -> InvalidInput:
    """A pydantic `ValidationError` as one line naming the first field that breaks the schema."""
    errors = exc.errors()
    if not errors:
        return InvalidInput(str(exc))
    where = ".".join(str(p) for p in errors[0]["loc"]) or exc.title
    return InvalidInput(f"{where}: {errors[0]['msg']}")
