"""Published event versions are frozen: the schema the code exports today still accepts what it promised.

`tests/fixtures/published_schemas/` holds every JSON Schema as it was published to consumers in other
languages. A change to a published (type, version) must keep old payloads valid and keep what consumers
rely on; anything else needs a new version and an upcaster (see `schemas/events.py`). The current schemas
come from `schemas.export.rendered()`, so a model change fails here before anyone re-exports the files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schemas import export

PUBLISHED = Path(__file__).parents[1] / "fixtures" / "published_schemas"
FIXTURES = sorted(p.name for p in PUBLISHED.glob("*.json"))

Schema = dict[str, Any]

LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems")
UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems")
EXACT = ("pattern", "format", "multipleOf", "const")


def current() -> dict[str, Schema]:
    return {name: json.loads(text) for name, text in export.rendered().items()}


def test_the_published_fixtures_are_there() -> None:
    assert {"envelope.schema.json", "ConsentGranted.v1.schema.json", "VideoRendered.v2.schema.json"} <= set(FIXTURES)


def test_every_exported_schema_is_frozen_as_published() -> None:
    """Whatever `schemas.export` writes is public; freeze a new version by copying it into the fixtures."""
    unfrozen = set(current()) - set(FIXTURES)
    assert not unfrozen, f"copy {sorted(unfrozen)} from schemas/json to {PUBLISHED}"


@pytest.mark.parametrize("name", FIXTURES)
def test_published_schema_is_still_backward_compatible(name: str) -> None:
    published = json.loads((PUBLISHED / name).read_text())
    now = current().get(name)
    assert now is not None, f"{name} was published and must still be exported"
    for key in ("$id", "title", "x-stream-type"):
        assert now.get(key) == published.get(key), f"{name}: {key} changed"
    assert incompatibilities(published, now, published, now, name) == []


def incompatibilities(old: Schema, new: Schema, old_root: Schema, new_root: Schema, where: str) -> list[str]:
    """What `new` breaks of `old`: payloads `old` accepted that `new` refuses, or promises `new` drops."""
    old, new = resolve(old, old_root), resolve(new, new_root)
    if "anyOf" in old or "anyOf" in new:
        return [
            f"{where}: no longer accepts {branch}"
            for branch in old.get("anyOf", [old])
            if all(incompatibilities(branch, b, old_root, new_root, where) for b in new.get("anyOf", [new]))
        ]
    found: list[str] = []
    if not json_types(old) <= json_types(new) and "any" not in json_types(new):
        found.append(f"{where}: type {sorted(json_types(old))} became {sorted(json_types(new))}")
    if "enum" in new and not all(value in new["enum"] for value in old.get("enum", [object()])):
        found.append(f"{where}: enum narrowed from {old.get('enum')} to {new['enum']}")
    found += [f"{where}: {k} tightened" for k in LOWER_BOUNDS if k in new and new[k] > old.get(k, float("-inf"))]
    found += [f"{where}: {k} tightened" for k in UPPER_BOUNDS if k in new and new[k] < old.get(k, float("inf"))]
    found += [f"{where}: {k} changed" for k in EXACT if k in new and new[k] != old.get(k)]
    found += extra_properties(old, new, old_root, new_root, where)
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for prop in old_props:
        if prop not in new_props:
            found.append(f"{where}.{prop}: removed or renamed")
        else:
            found += incompatibilities(old_props[prop], new_props[prop], old_root, new_root, f"{where}.{prop}")
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    found += [f"{where}.{p}: newly required" for p in sorted(new_required - old_required)]
    found += [f"{where}.{p}: no longer required (consumers rely on it)" for p in sorted(old_required - new_required)]
    if "items" in old and "items" in new:
        found += incompatibilities(old["items"], new["items"], old_root, new_root, f"{where}[]")
    return found


def extra_properties(old: Schema, new: Schema, old_root: Schema, new_root: Schema, where: str) -> list[str]:
    """`additionalProperties` may be loosened, never tightened (absent means anything goes)."""
    before, after = old.get("additionalProperties", True), new.get("additionalProperties", True)
    if after is True or before is False:
        return []
    if before is True or after is False:
        return [f"{where}: additionalProperties tightened from {before} to {after}"]
    return incompatibilities(before, after, old_root, new_root, f"{where}{{*}}")


def resolve(node: Schema, root: Schema) -> Schema:
    while "$ref" in node:
        node = root["$defs"][node["$ref"].removeprefix("#/$defs/")]
    return node


def json_types(node: Schema) -> set[str]:
    declared = node.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return set(declared)
    if "enum" in node:
        return {_json_type(value) for value in node["enum"]}
    return {"any"}


def _json_type(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}
    return names.get(type(value), "object")
