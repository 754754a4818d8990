"""The driver-level writes store every JSON document with the meaning SQLAlchemy's own conversion gives it."""

from __future__ import annotations

import json
import math
from typing import Any

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from projections.bulk import _converter
from projections.tables import AuditEntry
from tests.core.support import JSON_NUMBERS, same

documents = st.recursive(
    st.none() | st.booleans() | JSON_NUMBERS | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(documents)
def test_a_json_column_stores_what_sqlalchemy_would_store(value: Any) -> None:
    dialect = sqlite.dialect()
    column: sa.Column[Any] = AuditEntry.__table__.c.payload  # type: ignore[attr-defined]
    ours = _converter(dialect, column)
    theirs = column.type.dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None and theirs is not None
    assert same(json.loads(ours(value)), json.loads(theirs(value)))


def test_non_finite_floats_beside_a_null_keep_their_value() -> None:
    dialect = sqlite.dialect()
    column: sa.Column[Any] = AuditEntry.__table__.c.payload  # type: ignore[attr-defined]
    ours = _converter(dialect, column)
    assert ours is not None
    stored = json.loads(ours({"score": math.nan, "limit": math.inf, "note": None}))
    assert math.isnan(stored["score"]) and stored["limit"] == math.inf and stored["note"] is None
