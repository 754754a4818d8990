"""The command line as a user meets it, and the demo end to end (real renderer, models, C2PA)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from provenance.cli import main
from tests.core.support import face


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROVENANCE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


def test_errors_are_one_line_with_a_meaningful_exit_code(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "person", "alice")[0] == 0
    assert run(capsys, "person", "bob")[0] == 0
    not_a_face = home.parent / "notes.txt"
    not_a_face.write_bytes(b"some text, not an image")
    assert run(capsys, "cameo", "register", str(not_a_face), "--as", "alice")[:2] == (2, "")
    face_png = home.parent / "face.png"
    face_png.write_bytes(face())
    code, cameo, _ = run(capsys, "cameo", "register", str(face_png), "--as", "alice")
    assert code == 0
    cases = [
        (("trace", "no-such-video"), 2, "not a valid id"),
        (("trace", "00000000-0000-0000-0000-000000000000"), 3, "no video"),
        (("request", "--prompt", "", "--as", "bob"), 2, "prompt"),
        (("request", "--prompt", "x", "--size", "100x101", "--as", "bob"), 2, "multiple of 2"),
        (("request", "--prompt", "x", "--cameo", cameo, "--as", "bob"), 4, "has not granted consent"),
        (("cameo", "grant", cameo, "--audience", "everyone", "--as", "bob"), 4, "only the owner"),
        (("request", "--prompt", "x", "--as", "nobody"), 3, "no person with handle 'nobody'"),
        (("cameo", "grant", cameo, "--audience", "everyone", "--expires", "soon", "--as", "alice"), 2, "--expires"),
        (("cameo", "revoke", cameo, "no-such-grant", "--reason", "r", "--as", "alice"), 3, "has no grant"),
        (("resolve", str(home.parent / "missing.mp4")), 2, "no such file"),
    ]
    for argv, expected, message in cases:
        code, _, err = run(capsys, *argv)
        assert code == expected, (argv, err)
        assert len(err.splitlines()) == 1 and message in err, err
        assert "Traceback" not in err
    code, grant, _ = run(capsys, "cameo", "grant", cameo, "--audience", "everyone", "--as", "alice")
    assert code == 0
    assert run(capsys, "cameo", "revoke", cameo, f" {grant.upper()} ", "--reason", "r", "--as", "alice")[0] == 0
    code, _, err = run(capsys, "token", "create", "alice", "--expires", "2099-01-01T00:00:00+05:00")
    assert code == 0 and "expires 2098-12-31 19:00 UTC" in err, err


def test_publishing_an_unsigned_video_is_refused(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "person", "alice")
    code, video, _ = run(capsys, "request", "--prompt", "a ball", "--as", "alice")
    assert code == 0
    code, _, err = run(capsys, "publish", video, "--as", "alice")
    assert code == 4 and "needs it to be signed" in err
    code, out, _ = run(capsys, "trace", video, "--json")
    assert code == 0 and json.loads(out)["state"] == "requested"


@pytest.mark.slow
def test_the_demo_runs_end_to_end(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    code, text, err = run(capsys, "demo", "--out", str(out))
    assert code == 0, f"{err}\n{text[-4000:]}"
    assert "carol: 'blood and gore everywhere, three balls' -> moderation block, BLOCKED" in text
    assert "mallory's cameo is held for trust and safety: the likeness matches cameo" in text
    assert (
        "mallory: 'me dancing with a ball' -> refused: cameo" in text and "held for a trust-and-safety review" in text
    )
    assert text.count("(cascade, case") == 2 and "(consent_revocation, case" in text
    assert "(found by watermark)" in text and "assertion.bmffHash.mismatch" in text
    assert "Trusted: signed by Provenance Signer" in text and "└─ origin" in text
    assert "time-stamped" in text and "by Provenance Time-Stamp Authority DEVELOPMENT ONLY (trusted)" in text
    signed = list((out / "videos").glob("*.mp4"))
    assert len(signed) == 4
    code, report, _ = run(capsys, "verify", str(signed[0]), "--json")
    # The demo's store is not this process's PROVENANCE_HOME: with no anchors configured it cannot be Trusted.
    assert json.loads(report)["state"] == "Valid" and code == 1


def test_an_error_quoting_a_huge_argument_stays_short(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "trace", "x" * 100_000)
    assert code == 2 and "is not a valid id" in err and len(err) < 1100


def _events(home: Path) -> int:
    import sqlite3

    if not (home / "events.db").exists():
        return 0
    with sqlite3.connect(home / "events.db") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0])


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
@pytest.mark.parametrize("database", ["events.db", "projections.db"])
def test_a_damaged_database_is_named_with_what_to_do(
    home: Path, capsys: pytest.CaptureFixture[str], database: str, damage: str
) -> None:
    for handle in ("alice", "bob", "carol"):
        assert run(capsys, "person", handle)[0] == 0
    assert run(capsys, "feed")[0] == 0  # the read models catch up
    path = home / database
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    if damage == "garbage":
        path.write_bytes(b"not a database, " * 4096)
    else:
        with path.open("r+b") as file:  # the first page and a few bytes of the next
            file.truncate(4200)
    for argv in (("feed",), ("person", "dave"), ("rebuild",)):
        code, _, err = run(capsys, *argv)
        assert code == 6, (argv, err)
        assert len(err.splitlines()) == 1 and str(path) in err and "backup" in err, err
        assert "internal error" not in err
    if database == "projections.db":
        assert "provenance rebuild" in err


def test_a_damaged_key_store_stops_only_what_needs_likeness_keys(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "person", "alice")[0] == 0
    (home / "keys.db").write_bytes(b"not a database, " * 4096)
    assert run(capsys, "person", "bob")[0] == 0  # no likeness key in sight
    assert run(capsys, "rebuild")[0] == 0
    face_png = home.parent / "face.png"
    face_png.write_bytes(face())
    code, _, err = run(capsys, "cameo", "register", str(face_png), "--as", "alice")
    assert code == 6 and str(home / "keys.db") in err and "backup" in err, err
    assert len(err.splitlines()) == 1


def test_read_models_ahead_of_the_event_store_are_refused_until_rebuilt(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for handle in ("alice", "bob", "carol"):
        assert run(capsys, "person", handle)[0] == 0
    assert run(capsys, "feed")[0] == 0  # the read models catch up
    recorded = _events(home)
    assert recorded >= 3
    for suffix in ("", "-wal", "-shm"):
        Path(f"{home / 'events.db'}{suffix}").unlink(missing_ok=True)
    for argv in (("person", "dave"), ("feed",), ("trace", "00000000-0000-0000-0000-000000000000")):
        code, _, err = run(capsys, *argv)
        assert code == 6, (argv, err)
        assert len(err.splitlines()) == 1, err
        assert str(home / "events.db") in err and str(home / "projections.db") in err, err
        assert f"{recorded} " in err and "provenance rebuild" in err, err
        assert _events(home) == 0  # nothing recorded into a fresh log
    code, _, err = run(capsys, "rebuild")  # the log was replaced on purpose
    assert code == 0, err
    assert run(capsys, "person", "dave")[0] == 0
    assert _events(home) == 1
    assert run(capsys, "person", "erin")[0] == 0
    assert run(capsys, "feed")[0] == 0


def test_another_process_recording_while_one_starts_is_not_taken_for_a_lost_log(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check reads the read models' position, then the log's end: another process that records and projects
    in between moves both, and read the other way round its projection looked ahead of the log (exit 6)."""
    import provenance.freshness as freshness
    from provenance.bootstrap import System
    from provenance.config import Settings

    other = System(Settings(home=home))
    other.app.register_person("alice")
    other.catch_up()
    read_position = freshness.furthest_log_checkpoint

    def meanwhile(db: Any) -> Any:
        other.app.register_person(f"p{len(other.app.recorder.select_notifications(start=1, limit=100))}")
        other.catch_up()  # the other process records and projects while this one starts
        return read_position(db)

    monkeypatch.setattr(freshness, "furthest_log_checkpoint", meanwhile)
    starting = System(Settings(home=home))
    assert starting.app.person_by_handle("alice")
    starting.close()
    other.close()
