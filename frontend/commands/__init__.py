"""Every ``amdvi`` sub-command, registered here and only here.

A command is a module with ``NAME``, ``HELP``, ``add_arguments(parser)`` (its own options; shared groups
come from :mod:`amdvi.frontend.options`) and ``run(args) -> Report``. :mod:`amdvi.frontend.main` builds
the parser from :data:`COMMANDS`, adds ``--json`` to each, and prints what ``run`` returns.
"""

from __future__ import annotations

import argparse
from typing import Protocol

from amdvi.frontend.commands import (check, decode, demo, diff_qemu, docs, explain, graph, listing, mutants, prove,
                                     replay, walk)
from amdvi.frontend.report import Report


class Command(Protocol):
    NAME: str
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> Report: ...


COMMANDS: tuple[Command, ...] = (check, decode, explain, listing, docs, demo, walk, graph, prove, mutants, replay,
                                 diff_qemu)  # `amdvi --help` order
