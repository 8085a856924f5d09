"""``amdvi docs --out DIR``: write the Markdown reference generated from the field tables."""

from __future__ import annotations

import argparse
from pathlib import Path

from amdvi.frontend.errors import InputError
from amdvi.frontend.report import Report

NAME = "docs"
HELP = "write the Markdown reference, one page per structure"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="directory to write into")


def run(args: argparse.Namespace) -> Report:
    from amdvi.frontend.reference_docs import write_reference

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory")
    try:
        written = write_reference(out)
    except OSError as e:
        raise InputError(f"cannot write to {out}: {e.strerror or e}") from None
    return Report({"written": [str(p) for p in written]},
                  lambda console: console.print(f"wrote {len(written)} pages to {out} (index: {out / 'index.md'})"))
