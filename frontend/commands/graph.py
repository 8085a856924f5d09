"""``amdvi graph SCENARIO``: who reaches which page, as a Graphviz graph of the scenario's tables.

Without ``--out``, ``--svg`` or ``--json`` the DOT text itself is the output, so it pipes into ``dot``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from amdvi.frontend.errors import InputError
from amdvi.frontend.report import Report

NAME = "graph"
HELP = "the graph of a scenario's tables and the pages each device reaches (DOT/SVG)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="scenario JSON file (see examples/)")
    parser.add_argument("--out", help="write the Graphviz DOT here (without --out/--svg/--json it goes to stdout)")
    parser.add_argument("--svg", help="also render an SVG with Graphviz 'dot', when it is installed")


def run(args: argparse.Namespace) -> Report:
    from amdvi.frontend import scenario
    from amdvi.properties import reachability as reach

    s = scenario.load(args.scenario)
    graph = reach.build_graph(s.memory, s.dev_tab_bar, s.devices)
    dot = reach.to_dot(graph, Path(s.source).stem)
    written, note = _write(args, dot)
    frames = {d: sorted(reach.reachable_frames(graph, d).items()) for d in s.devices}
    status = {d: graph.nodes[("device", d)].get("status", "") for d in s.devices}
    devices = {f"{d:#06x}": {"status": status[d],
                             "frames": [{"address": hex(a), "size": hex(size), "readable": r, "writable": w}
                                        for (a, size), (r, w) in frames[d]]} for d in s.devices}

    def show(console: Console) -> None:
        if note:
            print(f"amdvi: note: {note}", file=sys.stderr)
        if not args.out and not args.svg:
            sys.stdout.write(dot)
            return
        for d in s.devices:
            console.print(f"device {d:#06x}: {status[d]}", soft_wrap=True)
            for (a, size), (r, w) in frames[d]:
                console.print(f"  {reach.perm_str(r, w)} {a:#x} ({reach.size_str(size)})")
        for kind, path in written.items():
            if path:
                console.print(f"wrote {kind.upper()} to {path}", soft_wrap=True)

    return Report({"scenario": s.source, "devices": devices, "truncated": graph.graph["truncated"],
                   "written": written, "note": note}, show)


def _write(args: argparse.Namespace, dot: str) -> tuple[dict[str, str | None], str | None]:
    """Write the DOT and the SVG asked for; return what was written and a note when the SVG could not be."""
    import shutil
    import subprocess

    from amdvi.frontend.files import write_atomically

    written: dict[str, str | None] = {"dot": None, "svg": None}
    note = None
    try:
        if args.out:
            write_atomically(Path(args.out), dot)
            written["dot"] = args.out
        if args.svg:
            exe = shutil.which("dot")
            if exe is None:
                note = f"Graphviz 'dot' is not on PATH: {args.svg} not written (the DOT text is the same)"
            else:
                proc = subprocess.run([exe, "-Tsvg"], input=dot, capture_output=True, text=True, timeout=60)
                if proc.returncode != 0:
                    raise InputError(f"dot -Tsvg failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
                write_atomically(Path(args.svg), proc.stdout)
                written["svg"] = args.svg
    except OSError as e:
        raise InputError(f"cannot write: {e.strerror or e}") from None
    return written, note
