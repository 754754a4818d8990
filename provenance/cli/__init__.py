"""`provenance`: the command line of the system.

Every error is one line on stderr (and, with `--json`, a JSON object on stdout) with a documented exit
status: 2 bad input (a file that cannot be used included), 3 unknown id, 4 a rule refused the command, 5 a
missing optional dependency, 6 a stage failed (or a database is damaged), 7 a database or broker cannot be
reached; 1 is a bug (its traceback with PROVENANCE_DEBUG=1).

`parser` declares the subcommands and binds each to its handler, `handlers/` holds the handlers by area
(thin: arguments in, a call on the `System`, a renderer out), and `render` turns what the system returns
into the lines it prints.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kernel.errors import ProvenanceError
from provenance.bootstrap import System
from provenance.cli.parser import build_parser
from provenance.cli.render import safe, to_json

if TYPE_CHECKING:
    from provenance.config import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = sys.argv[1:] if argv is None else list(argv)
    if any("\x00" in argument for argument in arguments):  # no file name or value can hold one
        parser.error("an argument contains a NUL character")
    args = parser.parse_args(arguments)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    system: System | None = None
    try:
        system = System()
        status: int = args.handler(system, args)
        return status
    except ProvenanceError as exc:
        return _fail(args, str(exc), exc.exit_code)
    except KeyboardInterrupt:
        print("provenance: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`provenance feed | head`): nothing more to say, to no one
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        message, code = _describe(exc, system.settings if system is not None else None)
        if os.environ.get("PROVENANCE_DEBUG"):
            traceback.print_exc()
        return _fail(args, message, code)
    finally:
        if system is not None:
            with contextlib.suppress(Exception):
                system.close()


MAX_ERROR = 1000
"""The most of an error message shown (one that quotes a 100 kB argument back is cut short)."""


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    """One line on stderr (control characters escaped); with `--json`, the same as a JSON object on stdout."""
    if len(message) > MAX_ERROR:
        message = message[: MAX_ERROR - 1] + "…"
    print(f"provenance: error: {safe(message)}", file=sys.stderr)
    if getattr(args, "json", False):
        print(to_json({"error": message, "exit_code": code}))
    return code


def _describe(exc: Exception, settings: Settings | None) -> tuple[str, int]:
    """What an error from outside the domain means for the user, and its exit status."""
    from pydantic import ValidationError

    from provenance.damage import describe_damage, is_damaged
    from provenance.domain.payloads import invalid_input
    from provenance.kafka.errors import is_transient, storage_failure

    if settings is not None and is_damaged(exc):  # before a damaged file is taken for an outage
        damaged = describe_damage(settings, exc)
        return str(damaged), damaged.exit_code
    home = settings.home if settings is not None else None
    if (storage := storage_failure(exc, home)) is not None:  # the disk, not a server: nothing to reach
        return f"{storage} ({one_line(exc)})", 6
    if is_transient(exc):
        return f"a database cannot be reached or is busy ({one_line(exc)}); check its settings and the server", 7
    if isinstance(exc, ValidationError):  # a value that does not fit the event catalogue
        return str(invalid_input(exc)), 2
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return f"cannot use{where}: {exc.strerror or exc}", 2
    return f"internal error ({type(exc).__name__}: {one_line(exc)}); set PROVENANCE_DEBUG=1 for the traceback", 1


def one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


__all__ = ["build_parser", "main"]
