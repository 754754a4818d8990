"""What several handlers share: looking people up, reading files and times from arguments, printing lines."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from kernel.errors import InvalidInput
from provenance.cli.render import print_json, safe

if TYPE_CHECKING:
    from provenance.bootstrap import System


def person_id(system: System, handle: str) -> UUID:
    return system.app.person_by_handle(handle).id


def parse_expiry(text: str | None) -> datetime | None:
    """An ISO 8601 time, or a duration from now such as `30m`, `12h` or `7d`."""
    if not text:
        return None
    match = re.fullmatch(r"\+?(\d+)([smhd])", text.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        seconds = amount * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
        try:
            return datetime.now(UTC) + timedelta(seconds=seconds)
        except OverflowError:
            raise InvalidInput(f"--expires {text} is out of range") from None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--expires must be an ISO 8601 time or a duration like 7d, not {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def read_file(path: str, limit: int) -> bytes:
    """The file's bytes; refused (before reading) when it is larger than `limit` bytes."""
    file = Path(path)
    if not file.is_file():
        raise InvalidInput(f"no such file: {path}")
    with file.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise InvalidInput(f"{path} is larger than {limit} bytes")
    return data


def show(args: argparse.Namespace, data: Any, lines: Callable[[], Iterable[str]]) -> None:
    """`--json`: the data as JSON; otherwise the rendered lines (rendered only then)."""
    if args.json:
        print_json(data)
    else:
        emit(lines())


def emit(lines: Iterable[str]) -> None:
    """Print rendered lines, one each (nothing at all for none)."""
    for line in lines:
        print(safe(line))
