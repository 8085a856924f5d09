"""``amdvi graph SCENARIO``: who reaches which page, as a Graphviz graph of the scenario's tables.

Without ``--out``, ``--svg`` or ``--json`` the DOT text itself is the output, so it pipes into ``dot``.
For a scenario with HW-vIOMMU guests (``"viommu"``), the guests read back from the private address space
(``properties.viommu_reach``): the host devices and domains each one's maps give, its frames, and any host
ID two guests share or a map entry that leads to no valid DTE.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from amdvi.frontend.errors import InputError
from amdvi.frontend.report import Report

NAME = "graph"
HELP = "the graph of a scenario's tables and the pages each device (and HW-vIOMMU guest) reaches (DOT/SVG)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="scenario JSON file (see examples/)")
    parser.add_argument("--out", help="write the Graphviz DOT here (without --out/--svg/--json it goes to stdout)")
    parser.add_argument("--svg", help="also render an SVG with Graphviz 'dot', when it is installed")


def run(args: argparse.Namespace) -> Report:
    from amdvi.frontend import scenario
    from amdvi.properties import reachability as reach

    s = scenario.load(args.scenario)
    if s.viommu is None:
        graph = reach.build_graph(s.memory, s.dev_tab_bar, s.devices)
    else:
        from amdvi.properties import viommu_reach

        graph = viommu_reach.build_guest_graph(s.memory, s.dev_tab_bar, s.devices, s.viommu)
    dot = reach.to_dot(graph, Path(s.source).stem)
    written, note = _write(args, dot)
    device_ids = sorted(n[1] for n in graph if n[0] == "device")  # also those only a guest's map names
    frames = {d: sorted(reach.reachable_frames(graph, d).items()) for d in device_ids}
    status = {d: graph.nodes[("device", d)].get("status", "") for d in device_ids}
    roles = {d: graph.nodes[("device", d)].get("roles", []) for d in device_ids}  # IOMMU, a guest's stage 2
    devices = {f"{d:#06x}": {"status": status[d], "roles": roles[d], "frames": _frames_json(frames[d])}
               for d in device_ids}
    guests = _guests_json(graph)

    def show(console: Console) -> None:
        if note:
            print(f"amdvi: note: {note}", file=sys.stderr)
        if not args.out and not args.svg:
            sys.stdout.write(dot)
            return
        for d in device_ids:
            role = f" ({'; '.join(roles[d])})" if roles[d] else ""
            console.print(f"device {d:#06x}{role}: {status[d]}", soft_wrap=True)
            for (a, size), (r, w) in frames[d]:
                console.print(f"  {reach.perm_str(r, w)} {a:#x} ({reach.size_str(size)})")
        _show_guests(console, guests)
        for kind, path in written.items():
            if path:
                console.print(f"wrote {kind.upper()} to {path}", soft_wrap=True)

    return Report({"scenario": s.source, "devices": devices, "guests": guests,
                   "sharing": [_sharing_json(x) for x in graph.graph.get("sharing", [])],
                   "dangling": [_dangling_json(x) for x in graph.graph.get("dangling", [])],
                   "truncated": graph.graph["truncated"], "written": written, "note": note}, show)


def _frames_json(frames: list[tuple[tuple[int, int], tuple[bool, bool]]]) -> list[dict[str, object]]:
    return [{"address": hex(a), "size": hex(size), "readable": r, "writable": w} for (a, size), (r, w) in frames]


def _id(kind: str, n: int) -> str:
    return f"{n:#06x}" if kind == "device" else hex(n)


def _sharing_json(x: dict) -> dict:
    return {"kind": x["kind"], "id": _id(x["kind"], x["id"]), "guests": x["guests"]}


def _dangling_json(x: dict) -> dict:
    return {"guest": x["guest"], "kind": x["kind"], "id": _id(x["kind"], x["id"]), "via": x["via"],
            "maps": [{"guest": _id(x["kind"], g), "host": _id(x["kind"], h)} for g, h in x["maps"]],
            "reason": x["reason"]}


def _guests_json(graph: Any) -> dict[str, dict]:
    """Per guest: its stage 2, its map entries, the frames it reaches (and by which paths), what it shares."""
    from amdvi.properties import viommu_reach as vr

    out = {}
    for gid in graph.graph.get("guests", []):
        a = graph.nodes[("guest", gid)]
        by_source = vr.guest_frames_by_source(graph, gid)
        frames = []
        for (addr, size), (r, w) in sorted(vr.guest_frames(graph, gid).items()):
            via = [src for src, fs in by_source.items() if (addr, size) in fs]
            frames.append({**_frames_json([((addr, size), (r, w))])[0], "via": via})
        t = a["translate_device_id"]
        out[str(gid)] = {
            "translate_device": None if t is None else f"{t:#06x}",
            "command_buffer_enabled": a["command_buffer_enabled"],
            "devices": [{"guest": f"{g:#06x}", "host": f"{h:#06x}"} for g, h in vr.owned(graph, gid, "device")],
            "domains": [{"guest": hex(g), "host": hex(h)} for g, h in vr.owned(graph, gid, "domain")],
            "frames": frames,
            "shared": [_sharing_json(x) for x in graph.graph["sharing"] if gid in x["guests"]],
            "dangling": [_dangling_json(x) for x in graph.graph["dangling"] if x["guest"] == gid],
        }
    return out


def _pairs(entries: list[dict[str, str]]) -> str:
    return ", ".join(f"{x['guest']} -> {x['host']}" for x in entries) or "none"


def _show_guests(console: Console, guests: dict[str, dict]) -> None:
    from amdvi.properties import reachability as reach

    for gid, g in guests.items():
        console.print(f"guest {gid}: stage 2 through DeviceID {g['translate_device'] or '(MMIO block unreadable)'}, "
                      f"command buffer {'on' if g['command_buffer_enabled'] else 'off'}", soft_wrap=True)
        console.print(f"  devices: {_pairs(g['devices'])}", soft_wrap=True)
        console.print(f"  domains: {_pairs(g['domains'])}", soft_wrap=True)
        for f in g["frames"]:
            perm = reach.perm_str(f["readable"], f["writable"])
            console.print(f"  {perm} {f['address']} ({reach.size_str(int(f['size'], 16))}) via {', '.join(f['via'])}",
                          soft_wrap=True)
        for x in g["shared"]:
            others = ", ".join(str(o) for o in x["guests"] if str(o) != gid)
            console.print(f"  [red]shared[/red]: host {x['kind']} {x['id']} with guest(s) {others}", soft_wrap=True)
        for x in g["dangling"]:
            console.print(f"  [red]dangling[/red]: {x['via']} entry to {x['kind']} {x['id']}: {x['reason']}",
                          soft_wrap=True)


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
