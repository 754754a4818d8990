"""The base of every aggregate: a stream of catalogue events.

Each aggregate records events of the catalogue in `schemas` (type, schema version, JSON payload) inside
two `eventsourcing` event classes, one that starts a stream and one for everything after. Keeping the
payload shapes in one place (the catalogue) means the write side, the log and the projections cannot
drift apart. The stored topics are pinned with explicit `TOPIC`s, so moving these classes never orphans
history.

Idempotency lives here too: every event carries the id of the command that caused it. A command id seen
before is a no-op when it would record the same thing again, and an error when it would record something
else (the id was reused for a different command).
"""

from __future__ import annotations

import types
from typing import Any, ClassVar, TypeVar
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from kernel.errors import CommandConflict
from schemas.catalogue import CURRENT_VERSION, STREAM_OF, upcast_payload, validate_payload
from schemas.events import Payload

TStream = TypeVar("TStream", bound="EventStream")


class EventStream(Aggregate):
    """An aggregate whose events are catalogue events; subclasses handle them in `_when_<EventType>`."""

    STREAM_TYPE: ClassVar[str]
    TOPIC: ClassVar[str]

    class Started(Aggregate.Created):
        event_id: str
        actor: str
        type: str
        schema_version: int
        payload: dict[str, Any]
        command_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate._apply_catalogue_event(self)

    class Recorded(Aggregate.Event):
        event_id: str
        actor: str
        type: str
        schema_version: int
        payload: dict[str, Any]
        command_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate._apply_catalogue_event(self)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Pin the stored topics of the aggregate and its events to the stream type, not the class path."""
        cls.TOPIC = f"provenance:{cls.STREAM_TYPE}"
        for name in ("Event", "Created", "Started", "Recorded"):
            if name not in cls.__dict__:
                pinned = types.new_class(name, (getattr(cls, name),))
                pinned.__module__ = cls.__module__
                pinned.__qualname__ = f"{cls.__qualname__}.{name}"
                pinned.TOPIC = f"provenance:{cls.STREAM_TYPE}.{name}"  # type: ignore[attr-defined]
                setattr(cls, name, pinned)
        super().__init_subclass__(**kwargs)

    def __init__(self) -> None:
        self.commands: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self._running: set[str] = set()  # command ids recording events in this unit of work, not yet saved

    @classmethod
    def _start(
        cls: type[TStream],
        stream_id: UUID,
        event_type: str,
        payload: Payload | dict[str, Any],
        *,
        actor: str,
        command_id: str | None,
    ) -> TStream:
        cls._check_stream(event_type)
        return cls._create(
            cls.Started,
            id=stream_id,
            event_id=str(uuid4()),
            actor=actor,
            type=event_type,
            schema_version=CURRENT_VERSION[event_type],
            payload=validate_payload(event_type, payload),
            command_id=command_id,
        )

    def _record(
        self, event_type: str, payload: Payload | dict[str, Any], *, actor: str, command_id: str | None
    ) -> bool:
        """Record an event; returns False (and records nothing) for a repeat of an earlier command."""
        data = self._data(event_type, payload)
        if command_id is not None and self.already_handled(command_id, event_type, data):
            return False
        self._append(event_type, data, actor=actor, command_id=command_id)
        return True

    def _data(self, event_type: str, payload: Payload | dict[str, Any]) -> dict[str, Any]:
        """The payload as validated JSON-safe data, for an event of this stream."""
        self._check_stream(event_type)
        return validate_payload(event_type, payload)

    def _append(self, event_type: str, data: dict[str, Any], *, actor: str, command_id: str | None) -> None:
        """Trigger the event; `data` comes from `_data` and was checked for a repeated command already."""
        if command_id is not None:
            self._running.add(command_id)
        self.trigger_event(
            self.Recorded,
            event_id=str(uuid4()),
            actor=actor,
            type=event_type,
            schema_version=CURRENT_VERSION[event_type],
            payload=data,
            command_id=command_id,
        )

    def already_handled(self, command_id: str, event_type: str, data: dict[str, Any]) -> bool:
        """True when this command id already recorded exactly this; raises when it recorded something else.

        A command that records several events on one aggregate (a block verdict records the decision and the
        block) is still running while it records the second one: that is not a reuse of its id.
        """
        seen = self.commands.get(command_id)
        if seen is None:
            return False
        if (event_type, data) in seen:
            return True
        if command_id not in self._running:
            raise CommandConflict(
                f"command id {command_id} was already used for a different command on {self.STREAM_TYPE} {self.id}"
            )
        return False

    def collect_events(self) -> Any:
        self._running.clear()
        return super().collect_events()

    def handled(self, command_id: str) -> bool:
        return command_id in self.commands

    @classmethod
    def _check_stream(cls, event_type: str) -> None:
        if STREAM_OF.get(event_type) != cls.STREAM_TYPE:
            raise TypeError(f"{event_type} is not an event of a {cls.STREAM_TYPE} stream")

    def _apply_catalogue_event(self, event: Started | Recorded) -> None:
        _, payload = upcast_payload(event.type, event.schema_version, event.payload)
        if event.command_id is not None:
            self.commands.setdefault(event.command_id, []).append((event.type, payload))
        getattr(self, f"_when_{event.type}")(payload, event)
