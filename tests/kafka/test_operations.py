"""The distributed mode as an operator configures it: logs, partitions, and a CLI that reads, not replays."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from kernel.errors import InvalidInput
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.logs import configure_logging


def test_logs_are_json_lines_at_the_configured_level_and_kafka_is_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings.from_env({"PROVENANCE_LOG_LEVEL": "warning", "PROVENANCE_LOG_FORMAT": "json"})
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(settings)
        logging.getLogger("provenance.test").info("not shown")
        logging.getLogger("provenance.test").warning("shown %s", "once")
        logging.getLogger("kafka.conn").warning("a broker hiccup")  # warnings of kafka-python still pass
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    assert [(entry["level"], entry["message"]) for entry in lines] == [
        ("WARNING", "shown once"),
        ("WARNING", "a broker hiccup"),
    ]
    assert logging.getLogger("kafka").level == logging.WARNING


def test_settings_for_operators_are_checked() -> None:
    assert Settings.from_env({"PROVENANCE_KAFKA_PARTITIONS": "12"}).kafka_partitions == 12
    for name, value in (("LOG_LEVEL", "loud"), ("LOG_FORMAT", "xml"), ("KAFKA_PARTITIONS", "0")):
        with pytest.raises(InvalidInput, match=name):
            Settings.from_env({f"PROVENANCE_{name}": value})


def test_in_the_distributed_mode_the_cli_reads_what_the_projections_service_wrote(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, event_store="sqlite", kafka_bootstrap="127.0.0.1:1")
    system = System(settings)
    system.app.register_person("alice")
    assert system.catch_up() == 0  # nothing replayed locally: a dead projections service shows as stale
    assert system.reads.feed(limit=10)["items"] == []
    system.close()
    embedded = System(Settings(home=tmp_path, event_store="sqlite"))
    assert embedded.catch_up() > 0
    embedded.close()
