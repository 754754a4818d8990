"""Writes the JSON Schema of every (event type, version) and of the envelope into `schemas/json/`.

Run `python -m schemas.export` after changing the catalogue; `tests/test_schemas.py` fails while the
files in the repository differ from what this would write.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from schemas.catalogue import MODELS, STREAM_OF

JSON_DIR = Path(__file__).parent / "json"


def envelope_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "provenance/envelope.schema.json",
        "title": "EventEnvelope",
        "description": "Every event on the log: metadata plus a payload whose schema is "
        "<event_type>.v<schema_version>.schema.json.",
        "type": "object",
        "additionalProperties": False,
        "required": [
            "event_id",
            "stream_type",
            "stream_id",
            "stream_version",
            "event_type",
            "schema_version",
            "occurred_at",
            "actor",
            "payload",
        ],
        "properties": {
            "event_id": {"type": "string", "format": "uuid"},
            "stream_type": {"enum": sorted(set(STREAM_OF.values()))},
            "stream_id": {"type": "string", "format": "uuid"},
            "stream_version": {"type": "integer", "minimum": 1},
            "event_type": {"enum": sorted(STREAM_OF)},
            "schema_version": {"type": "integer", "minimum": 1},
            "occurred_at": {"type": "string", "format": "date-time"},
            "actor": {"type": "string"},
            "command_id": {"type": ["string", "null"]},
            "payload": {"type": "object"},
        },
    }


def rendered() -> dict[str, str]:
    """File name -> content, exactly as it is written to disk."""
    files = {"envelope.schema.json": envelope_schema()}
    for (event_type, version), model in sorted(MODELS.items()):
        schema = model.model_json_schema()
        schema["$id"] = f"provenance/{event_type}.v{version}.schema.json"
        schema["title"] = f"{event_type} v{version}"
        schema["x-stream-type"] = STREAM_OF[event_type]
        files[f"{event_type}.v{version}.schema.json"] = schema
    return {name: json.dumps(content, indent=2, sort_keys=True) + "\n" for name, content in files.items()}


def main() -> int:
    JSON_DIR.mkdir(exist_ok=True)
    expected = rendered()
    for stale in set(p.name for p in JSON_DIR.glob("*.json")) - set(expected):
        (JSON_DIR / stale).unlink()
    for name, text in expected.items():
        (JSON_DIR / name).write_text(text)
    print(f"wrote {len(expected)} schemas to {JSON_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
