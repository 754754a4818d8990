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


def on_record(text: str, what: str, limit: int = 5000) -> str:
    """Reasons a person puts on record (a statement, a decision, grounds): refused unless they hold visible
    text, not only spaces, control or invisible characters, and at most `limit` characters of it."""
    if not isinstance(text, str) or not any(unicodedata.category(c)[0] not in "ZC" for c in text):
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
