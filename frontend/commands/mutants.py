"""``amdvi mutants``: the mutant matrix, every broken model against every checker that must catch it.

A property is believed only when it fails on a broken model; ``properties/presets.py`` registers, for
each broken model, the ``amdvi prove`` properties that must refute it and the Hypothesis state machines
that must catch it (the same examples on every run, each machine's default budget: 100 examples for the
IOMMU machines, ``viommu_machine.EXAMPLES`` for the HW-vIOMMU one; caught means the machine's own property
exception, not any failure). Each pair is an independent task, so ``--jobs`` / ``--scheduler`` spread the
matrix over processes or machines. Exit 0 when every broken model is refuted or caught by every checker it
names, 1 when one escapes, 2 on bad input.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from amdvi.frontend import exit_codes, fanout, options, tasks
from amdvi.frontend.errors import InputError
from amdvi.frontend.report import Report

NAME = "mutants"
HELP = "run every broken model (prove --list) against the properties and state machines that must catch it; " \
       "exit 1 when one escapes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", action="append", metavar="NAME", help="only this broken model (repeatable)")
    parser.add_argument("--no-machines", action="store_true", help="only the Z3 properties, not the state machines")
    parser.add_argument("--timeout", type=float, default=300.0, help="solver time limit per query, seconds")
    options.add_fanout(parser)  # a task per (broken model, checker)


def matrix(presets: list[str], machines: bool, timeout_ms: int) -> list[tuple[str, str, Any]]:
    """(broken model, kind, task) for every checker each of ``presets`` must be caught by, in table order."""
    from amdvi.properties.presets import PRESETS

    out: list[tuple[str, str, Any]] = []
    for name in presets:
        p = PRESETS[name]
        choices = tuple(p.choices.as_assignments())
        driver = tuple(p.driver.as_assignments())
        out += [(name, "property", tasks.ProveTask(prop, choices, timeout_ms, driver=driver)) for prop in p.refuted_by]
        if machines:
            out += [(name, "machine", tasks.MachineTask(m, choices)) for m in p.caught_by]
    return out


def rows(cells: list[tuple[str, str, Any]], results: list[Any]) -> list[dict[str, Any]]:
    """A row per (broken model, checker): what it should find, what it found."""
    from amdvi.properties.proof import REFUTED

    out = []
    for (preset, kind, task), result in zip(cells, results):
        if kind == "property":
            found, detail, ok = result.result.status, result.result.detail, result.result.status == REFUTED
        else:
            found, detail, ok = ("caught" if result["caught"] else "escaped"), result["failure"] or "", result["caught"]
        out.append({"preset": preset, "kind": kind, "checker": task.property if kind == "property" else task.machine,
                    "expected": "refuted" if kind == "property" else "caught", "found": found, "as_expected": ok,
                    "detail": detail})
    return out


def run(args: argparse.Namespace) -> Report:
    from amdvi.properties.presets import PRESETS

    presets = args.preset or list(PRESETS)
    for name in presets:
        if name not in PRESETS:
            raise InputError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    if args.timeout <= 0:
        raise InputError("--timeout must be a positive number of seconds")
    cells = matrix(list(dict.fromkeys(presets)), not args.no_machines, int(args.timeout * 1000))
    with fanout.runner(args) as runner:
        results = runner.map([task for _, _, task in cells], "mutant matrix")
    table_rows = rows(cells, results)
    escaped = [r for r in table_rows if not r["as_expected"]]

    def show(console: Console) -> None:
        table = Table(title="mutant matrix: every broken model against what must catch it")
        for column in ("broken model", "checker", "expected", "found"):
            table.add_column(column)
        for r in table_rows:
            found = r["found"] if r["as_expected"] else f"ESCAPED: {r['found']}"
            table.add_row(*(escape(c) for c in (r["preset"], r["checker"], r["expected"], found)))
        console.print(table)
        console.print(f"{len(table_rows) - len(escaped)} of {len(table_rows)} caught", markup=False)

    return Report({"rows": table_rows, "all_caught": not escaped}, show,
                  exit_codes.PROPERTY_FAILS if escaped else exit_codes.OK)
