"""The envelope every event travels in, on the log and into the projections.

It is deliberately a plain frozen dataclass rather than a pydantic model: projections handle hundreds of
thousands of envelopes a second on rebuild, and the payload was already validated when it was recorded.
`schemas.catalogue` validates payloads and exports the JSON Schema that consumers in other languages use.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from schemas.catalogue import InvalidEvent


@dataclass(frozen=True, slots=True)
class EventEnvelope:
    event_id: str
    stream_type: str
    stream_id: str
    stream_version: int
    event_type: str
    schema_version: int
    occurred_at: datetime
    actor: str
    payload: dict[str, Any]
    command_id: str | None = None
    # Where the event was read from: the notification id in embedded mode, or the Kafka offset. Not part of
    # the event itself, so it is left out of equality and serialisation.
    position: int | None = field(default=None, compare=False)

    def with_payload(self, schema_version: int, payload: dict[str, Any]) -> EventEnvelope:
        return replace(self, schema_version=schema_version, payload=payload)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "stream_type": self.stream_type,
            "stream_id": self.stream_id,
            "stream_version": self.stream_version,
            "event_type": self.event_type,
            "schema_version": self.schema_version,
            "occurred_at": self.occurred_at.isoformat(),
            "actor": self.actor,
            "command_id": self.command_id,
            "payload": self.payload,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any], position: int | None = None) -> EventEnvelope:
        try:
            return cls(
                event_id=str(data["event_id"]),
                stream_type=str(data["stream_type"]),
                stream_id=str(data["stream_id"]),
                stream_version=int(data["stream_version"]),
                event_type=str(data["event_type"]),
                schema_version=int(data["schema_version"]),
                occurred_at=datetime.fromisoformat(data["occurred_at"]),
                actor=str(data["actor"]),
                payload=dict(data["payload"]),
                command_id=data.get("command_id"),
                position=position,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _invalid(f"malformed event envelope: {exc!r}") from exc

    @classmethod
    def from_json(cls, raw: bytes, position: int | None = None) -> EventEnvelope:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _invalid(f"event is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise _invalid("event is not a JSON object")
        return cls.from_dict(data, position)


def _invalid(reason: str) -> InvalidEvent:
    """`schemas.catalogue.InvalidEvent`, imported only when an envelope fails: the catalogue imports this module,
    and an import statement on the way of every good envelope cost a tenth of its decoding."""
    from schemas.catalogue import InvalidEvent

    return InvalidEvent(reason)
