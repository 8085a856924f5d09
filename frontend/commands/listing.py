"""``amdvi list``: every structure the specification declares, with its width and section."""

from __future__ import annotations

import argparse

from rich.console import Console

from amdvi.frontend.report import Report
from amdvi.spec import catalog

NAME = "list"
HELP = "list every structure the specification declares"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> Report:
    rows = [{"name": s.name, "title": s.title, "width": s.width, "section": s.section,
             "fields": len(s.named_fields)} for s in catalog.STRUCTURES]

    def show(console: Console) -> None:
        from rich.table import Table

        table = Table(box=None, header_style="bold")
        for col in ("name", "title", "bits", "section", "fields"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["name"], r["title"], str(r["width"]), r["section"], str(r["fields"]))
        console.print(table)

    return Report(rows, show)
