"""Requests are bounded by what the system can hold and render: a clear refusal, nothing recorded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from generator.pipeline import clean_stale_renders
from kernel.errors import InvalidInput
from provenance.application import ProvenanceApp
from provenance.config import Settings
from tests.core.support import face, publish_new


def test_a_request_above_the_render_budget_is_refused(app: ProvenanceApp, people: dict) -> None:
    before = app.recorder.max_notification_id()
    huge = {"width": 2160, "height": 2160, "fps": 60, "duration_s": 60}
    with pytest.raises(InvalidInput, match="pixel-frames"):
        app.request_generation(people["bob"], "everything, everywhere", parameters=huge)
    assert app.recorder.max_notification_id() == before
    app.request_generation(
        people["bob"], "a ball", parameters={"width": 576, "height": 1024, "fps": 24, "duration_s": 30}
    )


def test_the_render_budget_is_configuration() -> None:
    assert Settings.from_env({"PROVENANCE_MAX_RENDER_COST": "1000"}).max_render_cost == 1000
    with pytest.raises(InvalidInput, match="positive whole number"):
        Settings.from_env({"PROVENANCE_MAX_RENDER_COST": "-5"})


def test_a_kafka_topic_and_brokers_are_refused_at_start_unless_kafka_would_take_them() -> None:
    good = {"PROVENANCE_KAFKA_BOOTSTRAP": "10.0.0.5:9092, kafka-2:9093", "PROVENANCE_KAFKA_TOPIC": "prov.events_1"}
    assert Settings.from_env(good).kafka_topic == "prov.events_1"
    with pytest.raises(InvalidInput, match="PROVENANCE_KAFKA_TOPIC"):  # a broker refuses it; roles waited for ever
        Settings.from_env({"PROVENANCE_KAFKA_TOPIC": "provenance events"})
    with pytest.raises(InvalidInput, match="'localhost:notaport' is not"):
        Settings.from_env({"PROVENANCE_KAFKA_BOOTSTRAP": "localhost:notaport"})


def test_the_read_models_live_in_a_database_both_sides_can_use() -> None:
    url = "postgresql+psycopg://provenance@127.0.0.1:5432/projections"
    assert Settings.from_env({"PROVENANCE_PROJECTIONS_URL": url}).projections_database == url
    with pytest.raises(InvalidInput, match=r"sqlite:///PATH or postgresql:// URL, not 'mysql'://\.\.\."):
        Settings.from_env({"PROVENANCE_PROJECTIONS_URL": "mysql://user:secret@db/projections"})


def test_a_worker_removes_only_the_renders_its_host_left_behind(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    left = tmp_path / f".render-{host}-{dead.stdout.strip()}-abc123.mp4"
    running = tmp_path / f".render-{host}-{os.getpid()}-def456.mp4"
    elsewhere = tmp_path / ".render-another-host-1-ghi789.mp4"
    for path in (left, running, elsewhere):
        path.write_bytes(b"half a video")
    assert clean_stale_renders(tmp_path) == [left]
    assert not left.exists() and running.exists() and elsewhere.exists()


def test_a_request_the_renderer_could_not_render_is_refused_before_anything_is_recorded(
    app: ProvenanceApp, people: dict
) -> None:
    from generator import spec
    from provenance.application import videos

    assert (videos.MAX_CAMEOS, videos.FRAMES_PER_CAMEO) == (spec.MAX_CAMEOS, 2)  # the renderer's own limits
    alice = people["alice"]
    eight = [app.register_cameo(alice, face(n)) for n in range(8)]
    parent = publish_new(app, alice, "all of me", cameo_ids=eight)
    ninth = app.register_cameo(alice, face(8))
    before = app.recorder.max_notification_id()
    with pytest.raises(InvalidInput, match="at most 8 cameos; this one would hold 9, 8 of them from the video"):
        app.request_generation(alice, "one more", remix_of=parent, cameo_ids=[ninth])
    with pytest.raises(InvalidInput, match="1 cameos need at least 2 frames"):
        app.request_generation(alice, "me", cameo_ids=[ninth], parameters={"duration_s": 0.5, "fps": 1})
    assert app.recorder.max_notification_id() == before


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_RENDER_COST", "²"),
        ("API_RATE", "¹⁰"),
        ("API_MAX_UPLOAD", "٣"),  # an Arabic-Indic digit
        ("KAFKA_PARTITIONS", "9" * 5000),  # past int()'s limit for a string
        ("MAX_RENDER_COST", "1" * 19),
    ],
)
def test_a_number_in_the_environment_is_ascii_digits_of_a_bounded_length(name: str, value: str) -> None:
    with pytest.raises(InvalidInput, match=f"PROVENANCE_{name} must be a positive whole number") as raised:
        Settings.from_env({f"PROVENANCE_{name}": value})
    assert len(str(raised.value)) < 200


@pytest.mark.parametrize("port", ["¹", "٩٠٩٢", "9" * 5000])
def test_a_kafka_port_is_ascii_digits(port: str) -> None:
    with pytest.raises(InvalidInput, match="PROVENANCE_KAFKA_BOOTSTRAP must be host:port"):
        Settings.from_env({"PROVENANCE_KAFKA_BOOTSTRAP": f"broker:{port}"})


def test_the_key_store_url_is_checked_as_the_read_models_one() -> None:
    url = "postgresql+psycopg://provenance@127.0.0.1:5432/keys"
    assert Settings.from_env({"PROVENANCE_KEYS_URL": url}).keys_database == url
    for value, scheme in (("garbage", "garbage"), ("mysql://x/y", "mysql")):
        with pytest.raises(
            InvalidInput, match=rf"PROVENANCE_KEYS_URL must be a sqlite:///PATH or postgresql:// URL, not '{scheme}'"
        ):
            Settings.from_env({"PROVENANCE_KEYS_URL": value})
