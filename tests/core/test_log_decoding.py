"""Reading the stored events straight from their rows and JSON gives exactly what eventsourcing's mapper gives."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from provenance.bootstrap import System
from provenance.config import Settings
from provenance.log import _loads, envelope_of, read_log, stream_type_of
from tests.kafka.support import record_history

numbers = st.integers(min_value=-(2**80), max_value=2**80) | st.floats(allow_nan=True, allow_infinity=True)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    """Equal values and equal types all the way down (NaN equal to NaN; 1 and 1.0 told apart)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


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
    ):
        assert same(_loads(stored), json.loads(stored)), stored


def test_the_log_read_straight_from_sqlite_is_what_the_mapper_gives(tmp_path: Path) -> None:
    system = System(Settings(home=tmp_path, event_store="sqlite"))
    app = system.app
    record_history(app, videos=3)
    # A stored event the direct path must leave to the mapper: an originator id that is not UUID.hex.
    with app.recorder.datastore.transaction(commit=True) as cursor:  # type: ignore[attr-defined]
        cursor.execute("UPDATE stored_events SET originator_id = upper(originator_id) WHERE rowid = 1")
    notifications = app.recorder.select_notifications(start=0, limit=10_000, inclusive_of_start=False)
    by_mapper = [envelope_of(app.mapper.to_domain_event(n), stream_type_of(n.topic), n.id) for n in notifications]
    assert read_log(app, 0, 10_000) == by_mapper
    assert [e.position for e in read_log(app, 3, 5)] == [4, 5, 6, 7, 8]
    assert [e.position for e in read_log(app, 0, 10_000)] == [n.id for n in notifications]
    system.close()
