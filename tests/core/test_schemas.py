"""The event catalogue as a contract: exported JSON Schema, validation, and reading old versions."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from uuid import uuid4

import jsonschema
import pytest

from projections.queries import ReadModels
from projections.store import open_store
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.runner import EmbeddedRunner, ProjectionConsumer
from schemas import export
from schemas.catalogue import CURRENT_VERSION, MODELS, InvalidEvent, check, upcast_payload
from schemas.envelope import EventEnvelope
from tests.core.support import face, rendered


def test_exported_json_schemas_are_up_to_date() -> None:
    on_disk = {p.name: p.read_text() for p in export.JSON_DIR.glob("*.json")}
    assert on_disk == export.rendered(), "run `python -m schemas.export` and commit schemas/json"


def test_payloads_the_write_side_records_validate_against_the_exported_schema(tmp_path: Path) -> None:
    app = System(Settings(home=tmp_path, event_store="memory")).app
    alice = app.register_person("alice")
    cameo = app.register_cameo(alice, face())
    app.grant_consent(alice, cameo, "everyone")
    video = app.request_generation(alice, "a ball", cameo_ids=[cameo])
    app.record_render(video, rendered(), command_id="r")
    envelope_schema = json.loads((export.JSON_DIR / "envelope.schema.json").read_text())
    from provenance.log import read_log

    envelopes = read_log(app, 0, 100)
    assert {e.event_type for e in envelopes} >= {"CameoRegistered", "ConsentGranted", "VideoRendered"}
    for envelope in envelopes:
        data = json.loads(envelope.to_json())
        jsonschema.validate(data, envelope_schema)
        name = f"{envelope.event_type}.v{envelope.schema_version}.schema.json"
        jsonschema.validate(data["payload"], json.loads((export.JSON_DIR / name).read_text()))


def _v1_rendered() -> dict[str, object]:
    v2 = rendered().model_dump(mode="json")
    return {k: v for k, v in v2.items() if k in MODELS[("VideoRendered", 1)].model_fields}


def test_video_rendered_v1_events_written_before_v2_still_read(tmp_path: Path) -> None:
    """A store holding a v1 VideoRendered (recorded by an older release) loads and projects as v2."""
    settings = Settings(home=tmp_path, event_store="sqlite")
    app = System(settings).app
    creator = app.register_person("alice")
    video_id = app.request_generation(creator, "a ball")
    video = app.video(video_id)
    video.trigger_event(
        video.Recorded,
        event_id=str(uuid4()),
        actor="system:generator",
        type="VideoRendered",
        schema_version=1,
        payload=_v1_rendered(),
        command_id="old-render",
    )
    app.save(video)
    app.close()

    reopened = System(settings).app
    loaded = reopened.video(video_id)
    assert loaded.state == "rendered"
    assert loaded.rendered is not None
    assert loaded.rendered.frame_count == 48 and loaded.rendered.seed is None
    store = open_store(settings.projections_database)
    EmbeddedRunner(reopened, [ProjectionConsumer(store)]).run_once()
    trace = ReadModels(store.url).trace(str(video_id))
    assert trace["rendered"]["video_codec"] == "h264"
    assert trace["rendered"]["audio_codec"] == "aac"


def test_check_rejects_what_a_consumer_cannot_handle() -> None:
    good = EventEnvelope.from_dict(
        {
            "event_id": str(uuid4()),
            "stream_type": "video",
            "stream_id": str(uuid4()),
            "stream_version": 3,
            "event_type": "VideoRendered",
            "schema_version": 1,
            "occurred_at": "2026-01-01T00:00:00+00:00",
            "actor": "system:generator",
            "payload": _v1_rendered(),
        }
    )
    assert check(good).schema_version == CURRENT_VERSION["VideoRendered"] == 2
    with pytest.raises(InvalidEvent, match="unknown event type"):
        check(replace(good, event_type="VideoExploded"))
    with pytest.raises(InvalidEvent, match="unknown schema version 9"):
        check(good.with_payload(9, good.payload))
    with pytest.raises(InvalidEvent, match="content_sha256"):
        check(good.with_payload(1, {**good.payload, "content_sha256": 5}))
    with pytest.raises(InvalidEvent, match="does not belong"):
        check(replace(good, stream_type="cameo"))
    with pytest.raises(InvalidEvent, match="not valid JSON"):
        EventEnvelope.from_json(b"{nope")
    with pytest.raises(InvalidEvent, match="malformed"):
        EventEnvelope.from_json(b'{"event_id": "x"}')
    with pytest.raises(InvalidEvent):
        upcast_payload("VideoRendered", 0, {})
