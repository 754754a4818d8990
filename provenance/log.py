"""Reading the application's notification log (the outbox) as envelopes, in notification order."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import JSONTranscoder, Mapper, Notification
from eventsourcing.utils import resolve_topic

from provenance.application import ProvenanceApp
from schemas.envelope import EventEnvelope


def envelope_of(event: Any, stream_type: str, position: int | None = None) -> EventEnvelope:
    return EventEnvelope(
        event_id=event.event_id,
        stream_type=stream_type,
        stream_id=str(event.originator_id),
        stream_version=event.originator_version,
        event_type=event.type,
        schema_version=event.schema_version,
        occurred_at=event.timestamp,
        actor=event.actor,
        payload=event.payload,
        command_id=event.command_id,
        position=position,
    )


def stream_type_of(topic: str) -> str:
    """Stored topics are pinned as `provenance:<stream type>.<Started|Recorded>`."""
    return topic.partition(":")[2].partition(".")[0]


def to_envelopes(app: ProvenanceApp, notifications: Sequence[Notification]) -> list[EventEnvelope]:
    to_event = app.mapper.to_domain_event
    direct = _direct_decoder(app.mapper)
    if direct is None:
        return [envelope_of(to_event(n), stream_type_of(n.topic), n.id) for n in notifications]
    envelopes: list[EventEnvelope] = []
    for n in notifications:
        envelope = direct(n)
        envelopes.append(envelope if envelope is not None else envelope_of(to_event(n), stream_type_of(n.topic), n.id))
    return envelopes


def read_log(app: ProvenanceApp, after: int, limit: int) -> list[EventEnvelope]:
    """Up to `limit` envelopes with notification ids greater than `after`."""
    notifications = app.recorder.select_notifications(start=after, limit=limit, inclusive_of_start=False)
    return to_envelopes(app, notifications)


def stream_log(app: ProvenanceApp, stream_id: UUID, stream_type: str, after_version: int = 0) -> list[EventEnvelope]:
    """One stream's events after a version, as envelopes (without log positions)."""
    events = app.repository.event_store.get(stream_id, gt=after_version or None)
    return [envelope_of(event, stream_type) for event in events]


def last_position(app: ProvenanceApp) -> int:
    return app.recorder.max_notification_id() or 0


_LONG_NUMBER = re.compile(rb"\d{19}")
"""A run of digits that may be an integer past 64 bits, which orjson would read as a float."""


def _loads(state: bytes) -> Any:
    """The stored JSON read as the transcoder's standard library reads it, through orjson when that is the same.

    orjson refuses what only the standard library accepts (NaN and infinities, lone surrogates) and reads an
    integer past 64 bits as a float; those documents go to the standard library, so every value is the same.
    """
    if _LONG_NUMBER.search(state) is None:
        try:
            return orjson.loads(state)
        except orjson.JSONDecodeError:
            pass
    return json.loads(state)


def _direct_decoder(mapper: Mapper[Any]) -> Callable[[Notification], EventEnvelope | None] | None:
    """Envelopes straight from the stored JSON, without building domain event objects on the way.

    Only for the plain JSON transcoder with no cipher and no compressor, and only for stored events whose
    sole transcoded value is the timestamp and whose class needs no upcasting; anything else answers None
    and goes through the mapper, so the result is always what the mapper would have given.
    """
    if mapper.cipher is not None or mapper.compressor is not None or type(mapper.transcoder) is not JSONTranscoder:
        return None
    loads = _loads
    from_iso = datetime.fromisoformat

    def decode(n: Notification) -> EventEnvelope | None:
        state = n.state
        if type(state) is not bytes or type(n.originator_id) is not UUID or state.count(b'"_type_"') != 1:
            return None
        if not _plain_topic(n.topic):
            return None
        try:
            data = loads(state)
            stamp = data["timestamp"]
            if len(stamp) != 2 or stamp["_type_"] != "datetime_iso" or "class_version" in data:
                return None
            return EventEnvelope(
                event_id=data["event_id"],
                stream_type=stream_type_of(n.topic),
                stream_id=str(n.originator_id),
                stream_version=n.originator_version,
                event_type=data["type"],
                schema_version=data["schema_version"],
                occurred_at=from_iso(stamp["_data_"]),
                actor=data["actor"],
                payload=data["payload"],
                command_id=data["command_id"],
                position=n.id,
            )
        except (KeyError, TypeError, ValueError):
            return None

    return decode


@lru_cache(maxsize=64)
def _plain_topic(topic: str) -> bool:
    """A stored topic of our event classes at class version 1 (nothing for the mapper to upcast)."""
    if not topic.startswith("provenance:"):
        return False
    try:
        cls = resolve_topic(topic)
    except Exception:  # an unknown topic: let the mapper raise its own error
        return False
    return getattr(cls, "class_version", 1) == 1
