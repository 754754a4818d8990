"""A read command on the embedded default finds out from the databases alone that there is nothing to catch up,
and then never loads the write side: each test here breaks when either stops holding."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from projections.store import all_projections
from provenance import consent_watch
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.freshness import READ_SIDE_CONSUMERS, up_to_date_at
from tests.core.support import face, publish_new

WRITE_SIDE = {"sqlalchemy", "sqlmodel", "eventsourcing", "pydantic", "torch", "av"}
"""What a read command must not import: the write side's libraries and the renderer's."""


def test_the_read_side_consumers_are_the_projections_and_the_consent_watch() -> None:
    assert (*(p.name for p in all_projections()), consent_watch.NAME) == READ_SIDE_CONSUMERS


def _process(home: Path, now: list[datetime]) -> Callable[[], System]:
    """A new process on the same home each call (nothing remembered between them), at the shared clock."""
    return lambda: System(Settings(home=home, event_store="sqlite"), clock=lambda: now[0])


def _fresh(system: System) -> bool:
    return up_to_date_at(system.settings.events_path, system.reads.db, system.clock()) is not None


def test_nothing_to_do_only_when_every_event_is_projected_and_no_expiry_is_due(tmp_path: Path) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    process = _process(tmp_path / "home", now)
    writer = process()
    alice, bob = writer.app.register_person("alice"), writer.app.register_person("bob")
    cameo = writer.app.register_cameo(alice, face())
    writer.app.grant_consent(alice, cameo, "everyone", expires_at=now[0] + timedelta(hours=1))
    video = publish_new(writer.app, bob, cameo_ids=[cameo])

    reader = process()
    assert not _fresh(reader)  # nothing projected yet
    assert reader.catch_up() > 0
    assert _fresh(process())

    writer.app.register_person("carol")  # one more event in the log
    assert not _fresh(process())
    process().catch_up()
    assert _fresh(process())

    now[0] += timedelta(hours=2)  # the grant's expiry passed: the timer has something to record
    assert not _fresh(process())
    expired = process()
    expired.catch_up()
    assert not expired.app.video(video).is_live
    assert _fresh(process())
    for system in (writer, reader, expired):
        system.close()


def test_a_read_command_loads_neither_the_write_side_nor_sqlalchemy(tmp_path: Path) -> None:
    home = tmp_path / "home"
    writer = System(Settings(home=home, event_store="sqlite"))
    alice = writer.app.register_person("alice")
    video = publish_new(writer.app, alice)
    writer.catch_up()
    writer.close()

    for argv in (["feed", "--json"], ["trace", str(video), "--json"]):
        out, loaded = run_cli(home, argv)
        assert not loaded & WRITE_SIDE, (argv, loaded & WRITE_SIDE)
        assert str(video) in out

    writer = System(Settings(home=home, event_store="sqlite"))
    writer.app.register_person("bob")
    writer.close()
    out, loaded = run_cli(home, ["feed", "--json"])  # behind the log: the long way round, then the same answer
    assert {"sqlalchemy", "eventsourcing"} <= loaded
    assert str(video) in out


def run_cli(home: Path, argv: list[str]) -> tuple[str, set[str]]:
    """Run the CLI in a new interpreter; what it printed and the top-level packages it imported."""
    probe = (
        "import json, sys\n"
        "from provenance.cli import main\n"
        f"code = main({argv!r})\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "PROVENANCE_HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout, set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_a_reader_finds_every_table_even_while_another_process_is_still_creating_them(tmp_path: Path) -> None:
    from provenance.kafka.positions import open_engine

    def half_made(name: str, make: Callable[[str], None]) -> System:
        settings = Settings(home=tmp_path / name, event_store="sqlite")
        settings.home.mkdir()
        make(settings.projections_database)
        return System(settings)

    # What another process leaves for a moment: the file alone, then only some of the tables.
    for system in (
        half_made("empty", lambda url: sqlite3.connect(url.removeprefix("sqlite:///")).close()),
        half_made("checkpoints only", lambda url: open_engine(url).dispose()),
    ):
        assert system.reads.live_cameo_ids() == []
        assert system.reads.feed_ids() == set()
        system.close()
