"""Building catalogue payloads from command input, with schema violations as the user-facing `InvalidInput`."""

from __future__ import annotations

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
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or model.__name__
        raise InvalidInput(f"{where}: {first['msg']}") from exc
