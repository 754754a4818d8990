"""Ids derived from command ids, so that a retried command names the same things and records nothing twice."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

_IDS = uuid5(NAMESPACE_URL, "provenance:ids")


def derived_id(kind: str, *parts: object) -> UUID:
    """A stable id from a command id (and whatever else identifies the thing)."""
    return uuid5(_IDS, ":".join([kind, *map(str, parts)]))


def new_command_id() -> str:
    return str(uuid4())
