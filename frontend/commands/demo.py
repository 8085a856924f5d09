"""``amdvi demo``: a real AMD-Vi kernel log decoded, and why its first report happened.

The artefacts are in :mod:`amdvi.frontend.builtin_examples`; this shows what the other commands make of them.
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping

from rich.console import Console

from amdvi.frontend.builtin_examples import CONTROL_AFTER_RESUME, DEMO_LOG, EFR_WITH_EPHSUP, THINKBOOK_DTE_WORDS
from amdvi.frontend.report import Report

NAME = "demo"
HELP = "decode built-in real artefacts (a kernel log with a DTE dump and page faults)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> Report:
    """Decode the built-in log and explain the DTE field at the heart of the first report."""
    from amdvi.frontend import dmesg_report, render
    from amdvi.spec.catalog import resolve
    from amdvi.spec.device_table import DTE
    from amdvi.spec.mmio import CONTROL, EFR, register_context

    dte = sum(int(w, 16) << (64 * i) for i, w in enumerate(THINKBOOK_DTE_WORDS))
    context = {**register_context(EFR, EFR_WITH_EPHSUP), **register_context(CONTROL, CONTROL_AFTER_RESUME)}
    report = {"log": DEMO_LOG, "records": dmesg_report.decode_log(DEMO_LOG),
              "why": render.decode_report(DTE, dte, context),
              "explain": [render.member_report(m) for m in resolve("DTE.PPR")]}
    return Report(report, lambda console: _show(console, report))


def _show(console: Console, report: Mapping[str, Any]) -> None:
    from amdvi.frontend import dmesg_report, render

    console.rule("[bold]amdvi demo[/bold]: a real AMD-Vi kernel log, decoded (amdvi decode dmesg)")
    console.print(report["log"], markup=False, highlight=False)
    dmesg_report.print_log(console, report["records"])
    console.rule("[bold]why the first report happened[/bold]")
    console.print(f"amdvi decode dte {' '.join(THINKBOOK_DTE_WORDS)} --efr {EFR_WITH_EPHSUP:#x} "
                  f"--control {CONTROL_AFTER_RESUME:#x} --nonzero", markup=False)
    render.print_decode(console, report["why"], show_zero=False)
    console.rule("[bold]the field that mattered[/bold] (amdvi explain DTE.PPR)")
    for rep in report["explain"]:
        render.print_member(console, rep)
    console.print("\nNext: amdvi decode dte WORDS..., amdvi decode dmesg FILE, amdvi explain NAME, amdvi docs --out DIR")
