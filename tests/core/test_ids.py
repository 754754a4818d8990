"""Derived ids are the name-based UUIDs (version 5) of what they name, as text: stable across releases."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from hypothesis import given
from hypothesis import strategies as st

from provenance.domain.ids import derived_id

NAMESPACE = uuid5(NAMESPACE_URL, "provenance:ids")


@given(st.text(), st.lists(st.text() | st.integers() | st.uuids(), max_size=3))
def test_a_derived_id_is_the_uuid5_of_its_parts(kind: str, parts: list[object]) -> None:
    expected = uuid5(NAMESPACE, ":".join([kind, *map(str, parts)]))
    assert derived_id(kind, *parts) == str(expected)
    assert UUID(derived_id(kind, *parts)).version == 5


def test_ids_recorded_before_stay_the_same() -> None:
    assert derived_id("video", "cmd-1") == "b7ca24db-e9ab-59ce-b367-3c65a98dc521"
