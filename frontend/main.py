"""The ``amdvi`` command: build the parser from the registered commands, run one, print its report.

Every way out is decided here: a report's own exit code, bad input as one line ``amdvi: error: ...``
with exit 2, a closed pipe quietly, Ctrl-C with 130 (:mod:`amdvi.frontend.exit_codes`).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from rich.console import Console

from amdvi.frontend import exit_codes, options
from amdvi.frontend.commands import COMMANDS
from amdvi.frontend.errors import InputError
from amdvi.frontend.report import print_report


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="amdvi", description="Executable AMD IOMMU specification (48882): decode, explain, document.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        sp = sub.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        options.add_json(sp)
        command.add_arguments(sp)
        sp.set_defaults(run=command.run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    console = Console(highlight=False, soft_wrap=False)
    try:
        args = build_parser().parse_args(argv)
        code = print_report(args.run(args), console, as_json=args.json)
        sys.stdout.flush()
        return code
    except InputError as e:
        print(f"amdvi: error: {e}", file=sys.stderr)
        return exit_codes.BAD_INPUT
    except BrokenPipeError:  # the reader (e.g. `| head`) went away: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exit_codes.OK
    except KeyboardInterrupt:
        print("amdvi: interrupted", file=sys.stderr)
        return exit_codes.INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
