"""Loading many aggregates in one query from the SQLite event store (the revocation cascade needs thousands).

An adapter behind `provenance.application.service.BatchLoader`: it reads the stored events of up to 500
streams per query and projects them onto what the repository's cache already holds, exactly as the
repository would have one by one. It reaches into `eventsourcing`'s SQLite recorder, so the composition
root installs it only for that store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from eventsourcing.application import Application, project_aggregate
from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteAggregateRecorder

from provenance.domain.stream import EventStream

_CHUNK = 500


class SQLiteBatchLoader:
    def __init__(self, app: Application[UUID]) -> None:
        recorder = app.recorder
        if not isinstance(recorder, SQLiteAggregateRecorder):
            raise TypeError("the batch loader reads eventsourcing's SQLite recorder only")
        self.app = app
        self.recorder = recorder

    def load(self, ids: list[UUID], known: Mapping[UUID, EventStream]) -> list[EventStream]:
        """Current versions of the aggregates not in `known`; unknown ids are left out (`_get` says so)."""
        repository = self.app.repository
        cache = repository.cache
        if cache is None or repository.deepcopy_from_cache or self.app.snapshots is not None:
            return []
        wanted = [uid for uid in ids if uid not in known]
        out: list[EventStream] = []
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows = self._stored_events(chunk)
            for uid in chunk:
                try:
                    aggregate: Any = cache.get(uid)
                except KeyError:
                    aggregate = None
                if aggregate is None or repository.fastforward:
                    after = aggregate.version if aggregate is not None else 0
                    events = [
                        self.app.mapper.to_domain_event(
                            StoredEvent(originator_id=uid, originator_version=version, topic=topic, state=state)
                        )
                        for _, version, topic, state in rows.get(uid.hex, [])
                        if version > after
                    ]
                    if aggregate is None and not events:
                        continue
                    fresh = aggregate is None
                    aggregate = project_aggregate(aggregate, events)
                    if aggregate is None:
                        continue
                    if fresh:
                        cache.put(uid, aggregate)
                if isinstance(aggregate, EventStream):
                    out.append(aggregate)
        return out

    def _stored_events(self, ids: list[UUID]) -> dict[str, list[Any]]:
        rows: dict[str, list[Any]] = {}
        marks = ",".join("?" * len(ids))
        statement = (
            "SELECT originator_id, originator_version, topic, state "
            f"FROM {self.recorder.events_table_name} WHERE originator_id IN ({marks}) "
            "ORDER BY originator_id, originator_version"
        )
        with self.recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, [uid.hex for uid in ids])
            for row in cursor.fetchall():
                rows.setdefault(row[0], []).append(row)
        return rows
