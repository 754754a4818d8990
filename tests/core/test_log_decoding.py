"""Reading the log, straight from the stored rows and JSON or from the events this process recorded, gives
exactly what eventsourcing's mapper gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provenance.application.recent import RecentEvents
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.log import _loads, envelope_of, read_log, stream_type_of
from tests.core.support import JSON_NUMBERS, same
from tests.kafka.support import record_history

json_values = st.recursive(
    st.none() | st.booleans() | JSON_NUMBERS | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_fast_json_reads_every_document_as_the_standard_library_does(value: Any) -> None:
    stored = json.dumps({"payload": value}).encode()
    assert same(_loads(stored), json.loads(stored))


def test_the_documents_orjson_reads_differently_or_refuses() -> None:
    for stored in (
        b'{"a": 123456789012345678901234567890}',
        b'{"a":[1,-123456789012345678901234567890]}',
        b'{"a":\t123456789012345678901234567890}',
        b"123456789012345678901234567890",
        b'{"a": NaN}',
        b'{"a": "\\ud800"}',
        b'{"a": 1e400}',
        b'{"a":[123456789012345678901234567890]}',
        b'{"a":"sha256:1234567890123456789012","b":123456789012345678901234567890}',
        b'{"a":1234567890123456789012e2,"b":1234567890123456789012.5}',
    ):
        assert same(_loads(stored), json.loads(stored)), stored


def test_a_long_run_of_digits_that_ends_a_string_is_read_by_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hash of digits alone is no integer past 64 bits: no slow path for it."""
    stored = b'{"uri":"blob:sha256:12121212121212121212121212","n":7}'
    monkeypatch.setattr(json, "loads", lambda _: pytest.fail("read by the standard library"))
    assert _loads(stored) == {"uri": "blob:sha256:12121212121212121212121212", "n": 7}


def test_the_log_read_straight_from_sqlite_is_what_the_mapper_gives(tmp_path: Path) -> None:
    writer = System(Settings(home=tmp_path, event_store="sqlite"))
    record_history(writer.app, videos=3)
    writer.close()
    system = System(Settings(home=tmp_path, event_store="sqlite"))  # another process: nothing read from memory
    app = system.app
    # A stored event the direct path must leave to the mapper: an originator id that is not UUID.hex.
    with app.recorder.datastore.transaction(commit=True) as cursor:  # type: ignore[attr-defined]
        cursor.execute("UPDATE stored_events SET originator_id = upper(originator_id) WHERE rowid = 1")
    notifications = app.recorder.select_notifications(start=0, limit=10_000, inclusive_of_start=False)
    by_mapper = [envelope_of(app.mapper.to_domain_event(n), stream_type_of(n.topic), n.id) for n in notifications]
    assert read_log(app, 0, 10_000) == by_mapper
    assert [e.position for e in read_log(app, 3, 5)] == [4, 5, 6, 7, 8]
    assert [e.position for e in read_log(app, 0, 10_000)] == [n.id for n in notifications]
    system.close()


def test_the_events_this_process_recorded_are_read_from_memory_as_the_store_gives_them(tmp_path: Path) -> None:
    writer = System(Settings(home=tmp_path, event_store="sqlite"))
    record_history(writer.app, videos=3)
    reader = System(Settings(home=tmp_path, event_store="sqlite"))
    from_store = read_log(reader.app, 0, 10_000)

    assert len(writer.app.recent.after(0, 10_000)) == len(from_store) > 20
    from_memory = read_log(writer.app, 0, 10_000)
    assert from_memory == from_store
    assert all(same(a.payload, b.payload) for a, b in zip(from_memory, from_store, strict=True))
    assert [e.position for e in from_memory] == [e.position for e in from_store]
    assert [e.position for e in read_log(writer.app, 3, 5)] == [4, 5, 6, 7, 8]
    writer.close()
    reader.close()


def test_a_reader_goes_to_the_store_for_what_another_process_recorded_in_between(tmp_path: Path) -> None:
    """An event recorded elsewhere whose id falls between this process's own is never skipped."""
    settings = Settings(home=tmp_path, event_store="sqlite")
    here, elsewhere = System(settings), System(settings)
    here.app.register_person("ann")  # 1
    here.app.register_person("ben")  # 2
    elsewhere.app.register_person("cat")  # 3
    here.app.register_person("dan")  # 4

    assert [position for position, _, _ in here.app.recent.after(0, 10)] == [1, 2], "stops at what it did not record"
    assert [e.position for e in read_log(here.app, 0, 10)] == [1, 2, 3, 4]
    assert [e.payload["handle"] for e in read_log(here.app, 0, 10)] == ["ann", "ben", "cat", "dan"]
    assert [e.position for e in read_log(here.app, 0, 3)] == [1, 2, 3]
    assert [e.position for e in read_log(here.app, 3, 10)] == [4]
    here.close()
    elsewhere.close()


def test_only_the_last_events_are_kept_in_memory(tmp_path: Path) -> None:
    system = System(Settings(home=tmp_path, event_store="sqlite"))
    system.app.recent = RecentEvents(capacity=2)
    for handle in ("ann", "ben", "cat"):
        system.app.register_person(handle)

    assert system.app.recent.after(0, 10) == []
    assert [position for position, _, _ in system.app.recent.after(1, 10)] == [2, 3]
    assert [e.payload["handle"] for e in read_log(system.app, 0, 10)] == ["ann", "ben", "cat"]
    system.close()
