"""What a command hands back, and the one place that prints it.

A command computes; it does not decide between JSON and a table. It returns a :class:`Report` holding
the JSON-ready data and its own layout for people; :func:`print_report` picks one of the two.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, Callable

from rich.console import Console

from amdvi.frontend import exit_codes


@dataclass(frozen=True)
class Report:
    data: Any  # what ``--json`` prints: dicts, lists, strings, numbers
    show: Callable[[Console], None]  # the layout for people (rich), usually built from ``data``
    exit_code: int = exit_codes.OK


def print_report(report: Report, console: Console, *, as_json: bool) -> int:
    """Print ``report`` as JSON on standard output or through ``console``; return its exit code."""
    if as_json:
        sys.stdout.write(json.dumps(report.data, indent=2) + "\n")
    else:
        report.show(console)
    return report.exit_code
