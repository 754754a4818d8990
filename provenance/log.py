"""Reading the application's notification log (the outbox) as envelopes, in notification order."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from itertools import pairwise
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import JSONTranscoder, Mapper, Notification
from eventsourcing.sqlite import SQLiteApplicationRecorder
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
        stream_id = str(n.originator_id) if type(n.originator_id) is UUID else None
        envelope = direct(n.id, stream_id, n.originator_version, n.topic, n.state)
        envelopes.append(envelope if envelope is not None else envelope_of(to_event(n), stream_type_of(n.topic), n.id))
    return envelopes


def read_log(app: ProvenanceApp, after: int, limit: int) -> list[EventEnvelope]:
    """Up to `limit` envelopes with notification ids greater than `after`.

    Those this process recorded itself and that follow on from `after` without a gap come from memory
    (`provenance.application.recent`); the rest, from the store.
    """
    recent = app.recent.after(after, limit)
    envelopes = [envelope_of(event, stream_type_of(topic), position) for position, event, topic in recent]
    if len(envelopes) < limit:
        envelopes += _stored(app, recent[-1][0] if recent else after, limit - len(envelopes))
    return envelopes


@dataclass(frozen=True)
class Share:
    """The log's streams whose ids sort from `low` up to `high` (not included; None: to the end); `Share()` is
    all of them. Stream ids are UUIDs in lower-case hex, and the bounds are their first byte (`split_log`).

    Every row of every read model derives from the events of one stream, so projections fed with each share
    of the log on its own hold, between them, exactly the rows of projections fed with all of it.
    """

    low: str = ""
    high: str | None = None

    @property
    def whole(self) -> bool:
        return not self.low and self.high is None

    def holds(self, stream_id: str) -> bool:
        return self.low <= stream_id and (self.high is None or stream_id < self.high)


def split_log(count: int) -> list[Share]:
    """`count` disjoint shares that hold every stream between them, alike in size, by the first byte of the
    stream id (by its first hex digit, three shares would hold 6, 5 and 5 sixteenths)."""
    bounds = [round(256 * n / count) for n in range(count + 1)]
    return [Share(f"{low:02x}" if low else "", f"{high:02x}" if high < 256 else None) for low, high in pairwise(bounds)]


def can_share(app: ProvenanceApp) -> bool:
    """Whether `read_share` can pick a share's events in the store's own query (or must read them all):
    eventsourcing's SQLite recorder with UUID stream ids, or its PostgreSQL one."""
    return _sqlite_recorder(app) is not None or _postgres_recorder(app) is not None


def _sqlite_recorder(app: ProvenanceApp) -> SQLiteApplicationRecorder | None:
    """eventsourcing's SQLite recorder when it is the application's and stores stream ids as UUIDs."""
    recorder = app.recorder
    if isinstance(recorder, SQLiteApplicationRecorder) and recorder.datastore.originator_id_type == "uuid":
        return recorder
    return None


def _postgres_recorder(app: ProvenanceApp) -> Any | None:
    """eventsourcing's PostgreSQL recorder when it is the application's (its module, and psycopg with it, is
    loaded only by an application that uses it)."""
    module = sys.modules.get("eventsourcing.postgres")
    recorder = app.recorder
    return recorder if module is not None and isinstance(recorder, module.PostgresApplicationRecorder) else None


def read_share(app: ProvenanceApp, share: Share, after: int, until: int, limit: int) -> list[EventEnvelope]:
    """Up to `limit` envelopes of the share's streams, with notification ids greater than `after` and at most
    `until`, read straight from the store (a rebuild's replay: nothing this process recorded).

    A store that cannot pick a share's events itself (`can_share`) is read whole and the share's kept here.
    """
    if share.whole or can_share(app):
        envelopes = _stored(app, after, limit, until, None if share.whole else share)
        return [e for e in envelopes if e.position is not None and e.position <= until]
    kept: list[EventEnvelope] = []
    while len(kept) < limit and after < until:
        batch = [e for e in _stored(app, after, limit) if e.position is not None and e.position <= until]
        if not batch:
            break
        kept += [e for e in batch if share.holds(e.stream_id)]
        after = batch[-1].position or until
    return kept[:limit]  # the caller reads on after the last one it got


def _stored(
    app: ProvenanceApp, after: int, limit: int, until: int | None = None, share: Share | None = None
) -> list[EventEnvelope]:
    rows = _sqlite_rows(app, after, limit, until, share)
    if rows is None:
        picked = _postgres_notifications(app, after, limit, until, share)
        if picked is not None:
            return to_envelopes(app, picked)
        return to_envelopes(app, app.recorder.select_notifications(start=after, limit=limit, inclusive_of_start=False))
    direct = _direct_decoder(app.mapper)
    envelopes: list[EventEnvelope] = []
    for position, originator_id, version, topic, state in rows:
        envelope = None
        if direct is not None and _UUID_HEX.fullmatch(originator_id):
            h = originator_id
            stream_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"  # str(UUID(h)), without the object
            envelope = direct(position, stream_id, version, topic, state)
        if envelope is None:
            notification = Notification(
                id=position,
                originator_id=app.recorder.convert_originator_id(originator_id),  # type: ignore[attr-defined]
                originator_version=version,
                topic=topic,
                state=state,
            )
            envelope = to_envelopes(app, [notification])[0]
        envelopes.append(envelope)
    return envelopes


_UUID_HEX = re.compile("[0-9a-f]{32}")
"""How eventsourcing's SQLite recorder stores a UUID originator id (`UUID.hex`)."""


def _sqlite_rows(
    app: ProvenanceApp, after: int, limit: int, until: int | None = None, share: Share | None = None
) -> list[tuple[int, str, int, str, bytes]] | None:
    """The recorder's own rows after a notification id, as plain tuples, when the recorder is eventsourcing's
    SQLite one with UUID ids (None otherwise): the same query as its `select_notifications`, without building
    a `Notification` and a `UUID` for each row only to take them apart again; with `until` and `share`, only
    the rows up to that id of that share's streams (their ids are stored as `UUID.hex`)."""
    recorder = _sqlite_recorder(app)
    if recorder is None:
        return None
    parameters: list[int | str] = [after]
    where = "rowid>?"
    if until is not None:
        where, parameters = f"{where} AND rowid<=?", [*parameters, until]
    if share is not None:  # `UUID.hex` sorts as the stream ids do; `+` keeps the scan in log order, by rowid
        where, parameters = f"{where} AND +originator_id >= ?", [*parameters, share.low]
        if share.high is not None:
            where, parameters = f"{where} AND +originator_id < ?", [*parameters, share.high]
    statement = (
        f"SELECT rowid, originator_id, originator_version, topic, state FROM {recorder.events_table_name} "
        f"WHERE {where} ORDER BY rowid LIMIT ?"
    )
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(statement, (*parameters, limit))
        return [tuple(row) for row in cursor.fetchall()]


def _postgres_notifications(
    app: ProvenanceApp, after: int, limit: int, until: int | None, share: Share | None
) -> list[Notification] | None:
    """With `until` or `share`, the PostgreSQL recorder's notifications after a notification id, up to `until`,
    of the share's streams (a UUID sorts as its hex digits do): None for any other store, or with neither."""
    recorder = _postgres_recorder(app)
    if recorder is None or (until is None and share is None):
        return None
    from psycopg.sql import SQL, Identifier

    statement = SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state FROM {schema}.{table} "
        "WHERE notification_id > %s"
    ).format(schema=Identifier(recorder.datastore.schema), table=Identifier(recorder.events_table_name))
    parameters: list[int | UUID] = [after]
    if until is not None:
        statement += SQL(" AND notification_id <= %s")
        parameters.append(until)
    if share is not None:
        statement += SQL(" AND originator_id >= %s")
        parameters.append(UUID(share.low.ljust(32, "0")))
        if share.high is not None:
            statement += SQL(" AND originator_id < %s")
            parameters.append(UUID(share.high.ljust(32, "0")))
    statement += SQL(" ORDER BY notification_id LIMIT %s")
    with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
        cursor.execute(statement, [*parameters, limit])
        return [
            Notification(
                id=row["notification_id"],
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            for row in cursor.fetchall()
        ]


def stream_log(app: ProvenanceApp, stream_id: UUID, stream_type: str, after_version: int = 0) -> list[EventEnvelope]:
    """One stream's events after a version, as envelopes (without log positions)."""
    events = app.repository.event_store.get(stream_id, gt=after_version or None)
    return [envelope_of(event, stream_type) for event in events]


def last_position(app: ProvenanceApp) -> int:
    return app.recorder.max_notification_id() or 0


def _shape_of(byte: int) -> int:
    character = chr(byte)
    if byte < 128 and character.isdigit():
        return ord("0")
    if character in ":,[- \t\n\r":
        return ord("|")
    return ord("a") if byte < 128 and (character.isalpha() or character == '"') else ord(" ")


_NUMBER_SHAPE = bytes(_shape_of(byte) for byte in range(256))
"""Each decimal digit as 0, each byte that may come just before a JSON number (a separator, whitespace or a
minus sign) as |, each ASCII letter and the quote as a, every other byte a space."""
_LONG_NUMBER = b"|" + b"0" * 19
"""What a number of 19 digits or more looks like after `_NUMBER_SHAPE`: it may be an integer past 64 bits,
which orjson would read as a float. (A scan through `bytes.translate` and substring search costs a tenth of
a regular expression's on a typical event.)"""
_DIGITS = re.compile(b"0*")
"""The rest of a run of digits in a shape, scanned in C: a digest of digits alone (`sha256:1212...`) would
otherwise cost a Python step per digit."""


def _may_hold_long_integer(shape: bytes) -> bool:
    """Whether a document's `_NUMBER_SHAPE` holds a run of 19 digits or more that may be an integer.

    A run that a quote or a letter ends is inside a string (`"sha256:1212..."`) or is a float's mantissa before
    its exponent, which both parsers read alike; anything else is taken for an integer.
    """
    if shape.startswith(_LONG_NUMBER[1:]):
        return True
    start = shape.find(_LONG_NUMBER)
    while start != -1:
        end = _DIGITS.match(shape, start + len(_LONG_NUMBER)).end()  # type: ignore[union-attr]  # 0* always matches
        if end == len(shape) or shape[end] != 0x61:  # "a": a letter or a quote
            return True
        start = shape.find(_LONG_NUMBER, end)
    return False


def _loads(state: bytes) -> Any:
    """The stored JSON read as the transcoder's standard library reads it, through orjson when that is the same.

    orjson refuses what only the standard library accepts (NaN and infinities, lone surrogates) and reads an
    integer past 64 bits as a float; those documents go to the standard library, so every value is the same.
    """
    if not _may_hold_long_integer(state.translate(_NUMBER_SHAPE)):
        try:
            return orjson.loads(state)
        except orjson.JSONDecodeError:
            pass
    return json.loads(state)


def _direct_decoder(mapper: Mapper[Any]) -> Callable[[int, str | None, int, str, Any], EventEnvelope | None] | None:
    """Envelopes straight from the stored JSON, without building domain event objects on the way.

    Only for the plain JSON transcoder with no cipher and no compressor, and only for stored events whose
    sole transcoded value is the timestamp and whose class needs no upcasting; anything else answers None
    and goes through the mapper, so the result is always what the mapper would have given.
    """
    if mapper.cipher is not None or mapper.compressor is not None or type(mapper.transcoder) is not JSONTranscoder:
        return None
    loads = _loads
    from_iso = datetime.fromisoformat

    def decode(position: int, stream_id: str | None, version: int, topic: str, state: Any) -> EventEnvelope | None:
        if type(state) is not bytes or stream_id is None or state.count(b'"_type_"') != 1:
            return None
        if not _plain_topic(topic):
            return None
        try:
            data = loads(state)
            stamp = data["timestamp"]
            if len(stamp) != 2 or stamp["_type_"] != "datetime_iso" or "class_version" in data:
                return None
            return EventEnvelope(
                event_id=data["event_id"],
                stream_type=stream_type_of(topic),
                stream_id=stream_id,
                stream_version=version,
                event_type=data["type"],
                schema_version=data["schema_version"],
                occurred_at=from_iso(stamp["_data_"]),
                actor=data["actor"],
                payload=data["payload"],
                command_id=data["command_id"],
                position=position,
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
