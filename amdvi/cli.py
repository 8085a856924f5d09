"""The ``amdvi`` command: decode, explain and document 48882 structures.

Every sub-command takes ``--json``. Bad input prints one line on standard error and exits 2.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console

from amdvi.errors import InputError
from amdvi.hexparse import parse_structure_hex
from amdvi.spec import catalog
from amdvi.spec.mmio import CONTROL, EFR, register_context

EXIT_OK = 0
EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{message} (see '{self.prog} --help')")


def _emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _read_text(source: str) -> str:
    if source == "-":
        return sys.stdin.buffer.read().decode("utf-8", errors="replace")
    try:
        return Path(source).read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise InputError(f"cannot read {source}: {e.strerror or e}") from None


def _context(args: argparse.Namespace) -> dict[str, Any] | None:
    """Register values given on the command line, as the context feature-dependent rules read."""
    ctx: dict[str, Any] = {}
    for option, register in (("efr", EFR), ("control", CONTROL)):
        text = getattr(args, option, None)
        if text is not None:
            ctx.update(register_context(register, parse_structure_hex(text, 64, register.title)))
    return ctx or None


def _structure_for(kind: str, words: list[str]) -> tuple[Any, int]:
    k = kind.lower()
    if k in catalog.DECODE_KINDS:
        s = catalog.DECODE_KINDS[k]
        return s, parse_structure_hex(words, s.width, s.title)
    if k in catalog.VARIANT_KINDS:
        what = "command" if k == "cmd" else "event record"
        bits = parse_structure_hex(words, catalog.VARIANT_KINDS[k], what)
        s = catalog.command_or_event(k, bits)
        if s is None:
            code = bits >> 60 & 0xF
            label = "command opcode" if k == "cmd" else "event code"
            raise InputError(f"unknown {label} {code:#x}")
        return s, bits
    s = catalog.find_structure(kind)
    if s is None:
        kinds = ", ".join([*catalog.DECODE_KINDS, *catalog.VARIANT_KINDS, "dmesg"])
        raise InputError(f"unknown structure {kind!r}: use one of {kinds}, or a register name such as EFR")
    return s, parse_structure_hex(words, s.width, s.title)


def cmd_decode(args: argparse.Namespace, console: Console) -> int:
    from amdvi import dmesg_report, render

    if args.kind.lower() == "dmesg":
        return cmd_decode_dmesg(args, console)
    if not args.value:
        raise InputError(f"give the {args.kind} value to decode")
    short = dmesg_report.short_dte_words(args.value) if args.kind.lower() == "dte" else None
    if short is not None:  # a DTE dump cut short: missing words are unknown, not zero
        report = render.partial_decode_report(catalog.DECODE_KINDS["dte"], *short, _context(args))
    else:
        s, bits = _structure_for(args.kind, args.value)
        report = render.decode_report(s, bits, _context(args))
    if args.json:
        _emit_json(report)
    else:
        render.print_decode(console, report, show_zero=not args.nonzero)
    return EXIT_OK


def cmd_decode_dmesg(args: argparse.Namespace, console: Console) -> int:
    from amdvi import dmesg_report

    sources = args.value or ["-"]
    if len(sources) > 1:
        raise InputError("decode dmesg takes one FILE (or - for standard input)")
    text = _read_text(sources[0])
    records = dmesg_report.decode_log(text, _context(args))
    if args.json:
        _emit_json(records)
    else:
        dmesg_report.print_log(console, records)
    return EXIT_OK


def cmd_explain(args: argparse.Namespace, console: Console) -> int:
    from amdvi import render

    matches = catalog.resolve(args.name)
    if not matches:
        near = difflib.get_close_matches(args.name, catalog.all_names(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(near)}?" if near else "; try 'amdvi list'"
        raise InputError(f"unknown structure or field {args.name!r}{hint}")
    reports = [render.member_report(m) for m in matches]
    if args.json:
        _emit_json(reports if len(reports) > 1 else reports[0])
    else:
        for rep in reports:
            render.print_member(console, rep)
    return EXIT_OK


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    rows = [{"name": s.name, "title": s.title, "width": s.width, "section": s.section,
             "fields": len(s.named_fields)} for s in catalog.STRUCTURES]
    if args.json:
        _emit_json(rows)
        return EXIT_OK
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("name", "title", "bits", "section", "fields"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["title"], str(r["width"]), r["section"], str(r["fields"]))
    console.print(table)
    return EXIT_OK


def cmd_docs(args: argparse.Namespace, console: Console) -> int:
    from amdvi.reference_docs import write_reference

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory")
    try:
        written = write_reference(out)
    except OSError as e:
        raise InputError(f"cannot write to {out}: {e.strerror or e}") from None
    if args.json:
        _emit_json({"written": [str(p) for p in written]})
    else:
        console.print(f"wrote {len(written)} pages to {out} (index: {out / 'index.md'})")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from amdvi import builtin_examples

    return builtin_examples.run_demo(console, as_json=args.json)


def _parse_number(text: str, what: str, bits: int) -> int:
    try:
        n = int(text.strip(), 0)
    except ValueError:
        raise InputError(f"{what} {text!r} is not a number (write 0x1000 or 4096)") from None
    if n < 0 or n >> bits:
        raise InputError(f"{what} {text!r} does not fit in {bits} bits")
    return n


ACCESSES = {"r": (False,), "read": (False,), "w": (True,), "write": (True,), "rw": (False, True)}


def cmd_walk(args: argparse.Namespace, console: Console) -> int:
    from amdvi import scenario

    device = scenario.parse_device_id(args.device, "--device")
    address = _parse_number(args.addr, "--addr", 64)
    access = ACCESSES.get(args.access.lower())
    if access is None:
        raise InputError(f"--access {args.access!r}: use r, w or rw")
    pasid = None if args.pasid is None else _parse_number(args.pasid, "--pasid", 20)
    s = scenario.load(args.scenario)
    reports = [scenario.walk_report(s, device, address, write, pasid=pasid, ats=args.ats, user=args.user,
                                    context=_context(args),
                                    execute=args.exec) for write in access]
    if args.json:
        _emit_json({"scenario": s.source, "walks": reports})
    else:
        for rep in reports:
            scenario.print_walk(console, s, rep)
    return EXIT_OK


def cmd_graph(args: argparse.Namespace, console: Console) -> int:
    import shutil
    import subprocess

    from amdvi import scenario
    from amdvi.properties import reachability as reach
    from amdvi.reference_docs import write_atomically

    s = scenario.load(args.scenario)
    graph = reach.build_graph(s.memory, s.dev_tab_bar, s.devices)
    dot = reach.to_dot(graph, Path(s.source).stem)
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
                run = subprocess.run([exe, "-Tsvg"], input=dot, capture_output=True, text=True, timeout=60)
                if run.returncode != 0:
                    raise InputError(f"dot -Tsvg failed: {(run.stderr.strip().splitlines() or ['?'])[-1]}")
                write_atomically(Path(args.svg), run.stdout)
                written["svg"] = args.svg
    except OSError as e:
        raise InputError(f"cannot write: {e.strerror or e}") from None
    if args.json:
        devices = {}
        for d in s.devices:
            frames = reach.reachable_frames(graph, d)
            devices[f"{d:#06x}"] = {
                "status": graph.nodes[("device", d)].get("status", ""),
                "frames": [{"address": hex(a), "size": hex(size), "readable": r, "writable": w}
                           for (a, size), (r, w) in sorted(frames.items())],
            }
        _emit_json({"scenario": s.source, "devices": devices, "truncated": graph.graph["truncated"],
                    "written": written, "note": note})
        return EXIT_OK
    if note:
        print(f"amdvi: note: {note}", file=sys.stderr)
    if not args.out and not args.svg:
        sys.stdout.write(dot)
        return EXIT_OK
    for d in s.devices:
        frames = reach.reachable_frames(graph, d)
        console.print(f"device {d:#06x}: {graph.nodes[('device', d)].get('status', '')}", soft_wrap=True)
        for (a, size), (r, w) in sorted(frames.items()):
            console.print(f"  {reach.perm_str(r, w)} {a:#x} ({reach.size_str(size)})")
    for kind, path in written.items():
        if path:
            console.print(f"wrote {kind.upper()} to {path}", soft_wrap=True)
    return EXIT_OK


EXIT_PROPERTY_FAILS = 1


def cmd_prove(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from amdvi import trace as trace_io
    from amdvi.properties import catalog as props
    from amdvi.properties.proof import PROVED, ProofResult
    from amdvi.reference_docs import write_atomically
    from amdvi.properties.presets import PRESETS, preset
    from amdvi.spec.choices import READING, SPEC, Hardware

    if args.list:
        readings = {n.replace("_", "-"): {"default": getattr(SPEC, n), "values": dict(o.values), "section": o.section}
                    for n, o in Hardware.options().items() if o.kind == READING}
        presets = {p.name: {"description": p.description, "refuted_by": list(p.refuted_by)} for p in PRESETS.values()}
        if args.json:
            _emit_json({"properties": {n: p.description for n, p in props.PROPERTIES.items()},
                        "readings": readings, "presets": presets})
            return EXIT_OK
        for n, p in props.PROPERTIES.items():
            console.print(f"{n}: {p.description}", soft_wrap=True)
        console.print("readings (--choice NAME=VALUE; the first is the default):")
        for n, r in readings.items():
            console.print(f"  {n}: {', '.join(r['values'])}", soft_wrap=True)
        console.print("broken models (--preset NAME, or --choice NAME=on):")
        for n, p in presets.items():
            console.print(f"  {n}: {p['description']} (refuted by {', '.join(p['refuted_by'])})", soft_wrap=True)
        return EXIT_OK
    names = args.property or (list(props.PROPERTIES) if args.all else list(props.DEFAULT))
    for n in names:
        if n not in props.PROPERTIES:
            raise InputError(f"unknown property {n!r}; known: {', '.join(props.PROPERTIES)}")
    try:
        choices = SPEC
        for name in args.preset or ():
            choices = choices.assign(f"{fault}=on" for fault in preset(name).choices.faults())
        choices = choices.assign(args.choice or ())
    except ValueError as e:
        raise InputError(str(e)) from None
    if args.timeout <= 0:
        raise InputError("--timeout must be a positive number of seconds")
    outcomes = []
    err = Console(stderr=True, highlight=False)
    for n in names:
        outcome = None
        with err.status(f"proving {n} ...") as status:
            for item in props.PROPERTIES[n].run(choices=choices, timeout_ms=int(args.timeout * 1000)):
                if isinstance(item, ProofResult):
                    status.update(f"proving {n}: {item.name} {item.status} ({item.seconds:.1f} s)")
                    if args.verbose:
                        err.print(f"  {item.name}: {item.status} ({item.seconds:.1f} s) {item.detail}", soft_wrap=True)
                else:
                    outcome = item
        outcomes.append(outcome)
    failing = [o for o in outcomes if o.result.status != PROVED]
    if args.trace_out:
        with_trace = [o for o in outcomes if o.trace is not None]
        if with_trace:
            try:
                write_atomically(Path(args.trace_out), trace_io.dumps(trace_io.to_json(with_trace[0].trace,
                                                                                     with_trace[0].replay)))
            except OSError as e:
                raise InputError(f"cannot write {args.trace_out}: {e.strerror or e}") from None
    if args.json:
        _emit_json({"choices": choices.changed(), "properties": [{
            "name": o.result.name, "status": o.result.status, "seconds": round(o.result.seconds, 3),
            "detail": o.result.detail,
            "parts": [{"name": p.name, "status": p.status, "seconds": round(p.seconds, 3), "detail": p.detail}
                      for p in o.parts],
            "counterexample": trace_io.to_json(o.trace, o.replay) if o.trace else None} for o in outcomes]})
        return EXIT_PROPERTY_FAILS if failing else EXIT_OK
    table = Table(title="properties" + (f" (choices: {choices.label()})" if choices.changed() else ""))
    for col in ("property", "status", "time", "detail"):
        table.add_column(col)
    for o in outcomes:
        table.add_row(o.result.name, o.result.status, f"{o.result.seconds:.1f} s", o.result.detail or "")
    console.print(table)
    for o in outcomes:
        if o.trace is not None:
            console.print("\n".join(trace_io.render(o.trace, o.replay)), soft_wrap=True, markup=False)
    return EXIT_PROPERTY_FAILS if failing else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="amdvi", description="Executable AMD IOMMU specification (48882): decode, explain, document.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.set_defaults(func=func)
        return sp

    d = add("decode", cmd_decode, "decode a DTE, page-table entry, GCR3 entry, command, event, register, or a kernel log")
    d.add_argument("kind", help="dte | pde | pte | gpte | gcr3 | cmd | event | dmesg | a register name (EFR, CONTROL, ...)")
    d.add_argument("value", nargs="*", help="hex: one number, or 64-bit words / 32-bit dwords lowest first; "
                                            "for dmesg a FILE or - (standard input, the default)")
    d.add_argument("--efr", help="Extended Feature Register value, to check feature-dependent rules")
    d.add_argument("--control", help="Control register value, to check rules that depend on what is enabled")
    d.add_argument("--nonzero", action="store_true", help="show only fields that are not zero")

    e = add("explain", cmd_explain, "explain a structure, field or command, e.g. DTE.GV or INVALIDATE_IOMMU_PAGES")
    e.add_argument("name")

    add("list", cmd_list, "list every structure the specification declares")

    g = add("docs", cmd_docs, "write the Markdown reference, one page per structure")
    g.add_argument("--out", required=True, help="directory to write into")

    add("demo", cmd_demo, "decode built-in real artefacts (a kernel log with a DTE dump and page faults)")

    w = add("walk", cmd_walk, "translate one DMA request through a scenario's tables, step by step")
    w.add_argument("scenario", help="scenario JSON file (see examples/)")
    w.add_argument("--device", required=True, help="DeviceID: 0x10, 16 or bus:dev.fn such as 00:02.0")
    w.add_argument("--addr", required=True, help="the request's address (IOVA or GVA)")
    w.add_argument("--access", required=True, help="r, w, or rw (a read and a write, both shown)")
    w.add_argument("--pasid", help="the request carries this PASID (20 bits)")
    w.add_argument("--ats", action="store_true", help="an ATS translation request")
    w.add_argument("--user", action="store_true", help="a user-level request")
    w.add_argument("--exec", action="store_true", help="an execute request")
    w.add_argument("--efr", help="Extended Feature Register value: also check feature-dependent DTE rules")
    w.add_argument("--control", help="Control register value, for rules that depend on what is enabled")

    gr = add("graph", cmd_graph, "the graph of a scenario's tables and the pages each device reaches (DOT/SVG)")
    gr.add_argument("scenario", help="scenario JSON file (see examples/)")
    gr.add_argument("--out", help="write the Graphviz DOT here (without --out/--svg/--json it goes to stdout)")
    gr.add_argument("--svg", help="also render an SVG with Graphviz 'dot', when it is installed")

    pr = add("prove", cmd_prove, "prove the IOMMU model's properties with Z3 (invalidation completeness, "
                                 "command ordering); exit 1 when one does not hold")
    pr.add_argument("--property", action="append", help="run only this property (repeatable); see --list")
    pr.add_argument("--preset", action="append", help="run against a named broken model (repeatable); see --list")
    pr.add_argument("--choice", action="append", metavar="NAME=VALUE",
                    help="a reading or fault switch, e.g. illegal-command=continue (repeatable); see --list")
    pr.add_argument("--all", action="store_true", help="also the minimality properties (each required "
                                                       "invalidation is needed)")
    pr.add_argument("--timeout", type=float, default=300.0, help="solver time limit per query, seconds")
    pr.add_argument("--trace-out", help="write the first counterexample trace here as JSON")
    pr.add_argument("--verbose", action="store_true", help="show every query as it finishes")
    pr.add_argument("--list", action="store_true", help="list the properties, readings and broken models; prove nothing")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    console = Console(highlight=False, soft_wrap=False)
    try:
        args = build_parser().parse_args(argv)
        code = args.func(args, console)
        sys.stdout.flush()
        return code
    except InputError as e:
        print(f"amdvi: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # the reader (e.g. `| head`) went away: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("amdvi: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
