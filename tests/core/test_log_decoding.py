"""Reading the stored events straight from their JSON gives exactly what eventsourcing's transcoder gives."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from provenance.log import _loads

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
    for stored in (b'{"a": 123456789012345678901234567890}', b'{"a": NaN}', b'{"a": "\\ud800"}', b'{"a": 1e400}'):
        assert same(_loads(stored), json.loads(stored)), stored
