"""The parser binds every subcommand to a handler function, and `provenance --help` lists them all."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from provenance.cli import build_parser, main


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every runnable subcommand, as the words that name it (`("cameo", "grant")`), with its parser."""
    for name, child in subparsers(parser).items():
        if subparsers(child):
            yield from leaf_commands(child, (*path, name))
        else:
            yield (*path, name)


def find(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> argparse.ArgumentParser:
    for word in words:
        parser = subparsers(parser)[word]
    return parser


def test_every_subcommand_has_a_handler_function() -> None:
    parser = build_parser()
    commands = list(leaf_commands(parser))
    assert len(commands) >= 25, commands
    for words in commands:
        handler = find(parser, words).get_default("handler")
        assert callable(handler), f"`provenance {' '.join(words)}` has no handler (got {handler!r})"
        assert handler.__module__.startswith("provenance.cli.handlers."), (words, handler)
    groups = [name for name, child in subparsers(parser).items() if subparsers(child)]
    assert sorted(groups) == ["admin", "cameo", "client", "moderation", "parked", "pki", "review", "token"]
    for name in groups:  # a group alone is not a command: argparse asks for its action
        assert find(parser, (name,)).get_default("handler") is None


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    listed = re.findall(r"^    (\S+)", text, flags=re.MULTILINE)
    assert listed == list(subparsers(build_parser())), listed


def test_no_command_prints_the_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_importing_the_cli_loads_no_heavy_dependency() -> None:
    """`provenance feed` starts fast: the models, C2PA and Kafka load only in the handlers that use them."""
    heavy = ["torch", "cv2", "c2pa", "kafka", "av", "open_clip", "onnxruntime", "moderation", "generator"]
    script = f"import sys, provenance.cli.parser\nprint(' '.join(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2]
    ).stdout
    assert loaded.strip() == ""


def test_an_argument_holding_a_nul_character_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """No file name or value can hold one; without the check, a path with one failed deep inside as an internal
    error (the command-line fuzz test found `pki init --dir NUL`)."""
    with pytest.raises(SystemExit) as exited:
        main(["pki", "init", "--dir", "\x00"])
    assert exited.value.code == 2 and "contains a NUL character" in capsys.readouterr().err
