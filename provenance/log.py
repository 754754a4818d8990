"""Reading the application's notification log (the outbox) as envelopes, in notification order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Notification

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
    return [envelope_of(to_event(n), stream_type_of(n.topic), n.id) for n in notifications]


def read_log(app: ProvenanceApp, after: int, limit: int) -> list[EventEnvelope]:
    """Up to `limit` envelopes with notification ids greater than `after`."""
    notifications = app.recorder.select_notifications(start=after, limit=limit, inclusive_of_start=False)
    return to_envelopes(app, notifications)


def last_position(app: ProvenanceApp) -> int:
    return app.recorder.max_notification_id() or 0
