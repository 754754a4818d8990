"""`provenance`: the command line of the system.

Errors a user can act on are printed as one line on stderr with a non-zero exit status (2: bad input,
3: unknown id, 4: a rule refused the command, 5: a missing optional dependency); anything else is a bug
and keeps its traceback.

`parser` declares the subcommands and binds each to its handler, `handlers/` holds the handlers by area
(thin: arguments in, a call on the `System`, a renderer out), and `render` turns what the system returns
into the lines it prints.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from kernel.errors import ProvenanceError
from provenance.bootstrap import System
from provenance.cli.parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    system: System | None = None
    try:
        system = System()
        status: int = args.handler(system, args)
        return status
    except ProvenanceError as exc:
        print(f"provenance: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("provenance: interrupted", file=sys.stderr)
        return 130
    finally:
        if system is not None:
            system.close()


__all__ = ["build_parser", "main"]
