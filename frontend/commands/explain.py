"""``amdvi explain NAME``: a structure, field or command as 48882 declares it, with its sources."""

from __future__ import annotations

import argparse
import difflib

from rich.console import Console

from amdvi.frontend.errors import InputError
from amdvi.frontend.report import Report
from amdvi.spec import catalog

NAME = "explain"
HELP = "explain a structure, field or command, e.g. DTE.GV or INVALIDATE_IOMMU_PAGES"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name")


def run(args: argparse.Namespace) -> Report:
    from amdvi.frontend import render

    matches = catalog.resolve(args.name)
    if not matches:
        near = difflib.get_close_matches(args.name, catalog.all_names(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(near)}?" if near else "; try 'amdvi list'"
        raise InputError(f"unknown structure or field {args.name!r}{hint}")
    reports = [render.member_report(m) for m in matches]

    def show(console: Console) -> None:
        for rep in reports:
            render.print_member(console, rep)

    return Report(reports if len(reports) > 1 else reports[0], show)
