"""``amdvi check [SEQUENCE...]``: check driver and ioctl sequences; with no file, the built-in library.

Each sequence runs on the system model (iommufd over the AMD driver over the IOMMU); every property is
checked at every point of it, under every cache choice and command timing the IOMMU model allows
(``amdvi.properties.sequence_check``). A sequence that records the violation it shows (a library
example of a bug, or a counterexample the tool wrote) passes when that violation is found and fails
when it is not: the table says so.

For a violation the counterexample is minimised (no step can be removed without losing it), printed
step by step, and with ``--trace-out`` written as a sequence file ``amdvi replay`` reproduces.

Exit codes: 0 every verdict as expected (correct sequences hold, bug examples are refuted), 1 one is
not (a correct sequence is refuted, or a bug example holds), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from amdvi.frontend import exit_codes, fanout, options, tasks
from amdvi.frontend.errors import InputError
from amdvi.frontend.report import Report

NAME = "check"
HELP = "check driver and ioctl sequences (isolation, flushes, DTE writes, DomainIDs, errnos); no file: the library"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sequences", nargs="*", metavar="SEQUENCE",
                        help="sequence files (JSON, kind \"sequence\"); none: the built-in library")
    parser.add_argument("--property", action="append", dest="properties", metavar="NAME",
                        help="check only this property (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the built-in library and the properties")
    parser.add_argument("--no-minimise", action="store_true", help="report counterexamples as found")
    parser.add_argument("--prove", action="store_true",
                        help="also prove with Z3: isolation by induction along each sequence's run, for every "
                             "address and every cache content the hardware may hold (seconds to a minute a "
                             "sequence), and, for each nested device at the end, that no guest (any memory "
                             "content, any guest DTE field) leads it outside its stage 2 (~20 s each)")
    parser.add_argument("--prove-budget", type=float, default=300.0, metavar="SECONDS",
                        help="with --prove: stop the induction of a sequence after this long and report it unknown "
                             "(default 300; nested sequences with many guest writes take minutes)")
    parser.add_argument("--choice", action="append", default=[], metavar="LAYER.NAME=VALUE",
                        help="run under a choice of a layer (hardware, driver, iommufd), e.g. "
                             "driver.unmap-skips-flush=on; repeatable; overrides the files' choices")
    g = parser.add_argument_group("bounded model checking")
    g.add_argument("--depth", type=int, metavar="K",
                   help="check every ioctl sequence of up to K steps within the scenario's bounds")
    g.add_argument("--scenario", metavar="FILE",
                   help="with --depth: the scenario (a sequence file; its steps are ignored); default: two "
                        "devices, one with ATS, one behind a bridge alias")
    options.add_trace_output(parser)
    options.add_fanout(parser)  # a task per sequence; --depth: each depth's nodes in chunks


def _library() -> list[tuple[str, Any]]:
    from amdvi.frontend import sequence_library

    return sequence_library.entries()


def _library_documents() -> list[tuple[str, Any]]:
    """(source, JSON object) of every library file, in the library's order."""
    from importlib import resources

    folder = resources.files("amdvi.examples")
    return [(source, json.loads(folder.joinpath(*source.split("/")).read_text(encoding="utf-8")))
            for source, _ in _library()]


def run(args: argparse.Namespace) -> Report:
    from amdvi.frontend import sequence_format
    from amdvi.properties import sequence_check

    props = tuple(args.properties or sequence_check.ALL_PROPERTIES)
    for p in props:
        if p not in sequence_check.ALL_PROPERTIES:
            raise InputError(f"unknown property {p!r}; properties: {', '.join(sequence_check.ALL_PROPERTIES)}")
    if args.list:
        return _listing()
    runner = fanout.runner(args)
    if args.depth is not None:
        return _bounded(args, props, runner)
    if args.sequences:
        documents = [(path, options.read_json(path)) for path in args.sequences]
    else:
        documents = _library_documents()
    for source, document in documents:  # bad files and choices: one line before any work starts
        options.with_layer_choices(sequence_format.load(document, source), args.choice)
    if not args.prove_budget > 0:
        raise InputError(f"--prove-budget {args.prove_budget:g}: give a number of seconds above 0")
    with runner:
        checked = runner.map([tasks.SequenceTask(source, json.dumps(document), tuple(args.choice), props, args.prove,
                                                 not args.no_minimise, args.prove_budget)
                              for source, document in documents],
                             "checking sequences")
    rows = [row for sequence_rows, _ in checked for row in sequence_rows]
    results = [result for _, result in checked]
    if args.trace_out:
        _write_traces(args.trace_out, results)
    ok = all(r["as_expected"] for r in results)

    def show(console: Console) -> None:
        table = Table(title="amdvi check")
        for column in ("sequence", "expected", "verdict", "time (s)"):
            table.add_column(column)
        for r in results:
            if not r["refuted"]:
                verdict = f"all {r['properties']} hold"
            else:
                first = r["expected"] if r["expected"] in r["refuted"] else r["refuted"][0]
                more = len(r["refuted"]) - 1
                verdict = f"{first} refuted" + (f" (+{more})" if more else "") + (
                    f", {r['counterexample']['steps']}-step trace" if r["counterexample"] else "")
            for p in r["proofs"]:
                verdict += f"; Z3 {p['proof']}[{p['device']}]: {p['status']} ({p['seconds']:.0f} s)"
            if not r["as_expected"]:
                verdict = "NOT AS EXPECTED: " + verdict
            table.add_row(*(escape(cell) for cell in (Path(r["source"]).stem, r["expected"], verdict,
                                                      f"{r['seconds']:.1f}")))
        console.print(table)
        for r in results:
            for p in r["proofs"]:
                console.print(f"{Path(r['source']).stem}: {p['proof']}[{p['device']}] {p['status']}: "
                              f"{p['detail']}", soft_wrap=True, markup=False)
            if r["counterexample"] and (not r["as_expected"] or args.sequences):
                console.print(f"\n{r['sequence']} ({r['source']}):", markup=False)
                for line in r["counterexample"]["lines"]:
                    console.print("  " + line, soft_wrap=True, markup=False)
        total = sum(r["seconds"] for r in results)
        good = sum(r["as_expected"] for r in results)
        console.print(f"{good} of {len(results)} sequences as expected, {total:.1f} s", markup=False)

    data = {"rows": rows, "sequences": [{k: v for k, v in r.items() if k != "counterexample"}
                                        | {"counterexample": None if not r["counterexample"] else
                                           {"steps": r["counterexample"]["steps"], "lines": r["counterexample"]["lines"]}}
                                        for r in results]}
    return Report(data, show, exit_codes.OK if ok else exit_codes.PROPERTY_FAILS)


def check_one(source: str, seq: Any, props: tuple[str, ...], *, prove: bool, minimise: bool,
              prove_budget: float = 300.0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One sequence checked: a row per property, and its result (verdicts, counterexample, proofs)."""
    from amdvi.frontend import sequence_trace
    from amdvi.properties import sequence_check

    t0 = time.perf_counter()
    try:
        ex = sequence_check.execute(seq.scenario, seq.steps, probes=seq.probes)
    except sequence_check.StepError as e:
        raise InputError(f"{source}: {e}") from None
    verdicts = sequence_check.check(ex, props)
    proofs = ((_induction_proof(ex, prove_budget) if "isolation" in props else []) + _guest_proofs(ex)) if prove else []
    failed = [v for v in verdicts if not v.holds]
    counterexample = None
    if failed:
        shown = next((v for v in failed if v.property == seq.claimed), failed[0])
        steps = sequence_check.minimise(seq.scenario, seq.steps, shown.property, seq.probes) if minimise else seq.steps
        counterexample = sequence_trace.counterexample(seq, steps, shown.property)
    expected_ok = seq.claimed is None
    as_expected = (not failed) if expected_ok else any(v.property == seq.claimed for v in failed)
    if expected_ok and any(p["status"] != "proved" for p in proofs):
        as_expected = False  # a correct sequence's guest-isolation proof must come out proved
    seconds = time.perf_counter() - t0
    rows = [{"sequence": seq.title, "source": source, "property": v.property,
             "verdict": "holds" if v.holds else "REFUTED", "checked": v.checked,
             "seconds": round(v.seconds, 3), "why": None if v.holds else v.violation.what} for v in verdicts]
    return rows, {"sequence": seq.title, "source": source, "expected": seq.claimed or "holds",
                  "as_expected": as_expected, "seconds": round(seconds, 3), "counterexample": counterexample,
                  "refuted": [v.property for v in failed], "properties": len(verdicts), "proofs": proofs}


def _write_traces(target: str, results: list[dict[str, Any]]) -> None:
    from amdvi.frontend import sequence_format
    from amdvi.frontend.files import write_atomically

    found = [r["counterexample"] for r in results if r["counterexample"]]
    if not found:
        return
    if len(found) == 1 and not os.path.isdir(target):
        write_atomically(target, sequence_format.dumps(found[0]["file"]))
        return
    os.makedirs(target, exist_ok=True)
    for n, c in enumerate(found, 1):
        write_atomically(os.path.join(target, f"counterexample-{n}.json"), sequence_format.dumps(c["file"]))


def _listing() -> Report:
    from amdvi.properties import sequence_check

    from amdvi.frontend.sequence_format import LAYERS
    from amdvi.spec.choices import cli_name

    entries = _library()
    choices = [{"choice": f"{layer}.{cli_name(name)}", "kind": option.kind,
                "values": [str(v) if not isinstance(v, bool) else ("on" if v else "off") for v in option.values],
                "default": str(getattr(cls(), name)), "doc": option.doc}
               for layer, cls in LAYERS.items() for name, option in cls.options().items()]
    data = {"library": [{"title": s.title, "source": src, "expected": s.claimed or "holds"} for src, s in entries],
            "properties": list(sequence_check.ALL_PROPERTIES), "choices": choices}

    def show(console: Console) -> None:
        for e in data["library"]:
            console.print(f"{e['source']}: {e['title']} (expected: {e['expected']})", markup=False)
        console.print("properties: " + ", ".join(data["properties"]), markup=False)
        console.print("choices (--choice LAYER.NAME=VALUE):", markup=False)
        for c in choices:
            values = "on|off" if c["kind"] == "fault" else "|".join(c["values"])
            console.print(f"  {c['choice']}={values}  ({c['kind']}) {c['doc']}", soft_wrap=True, markup=False)

    return Report(data, show, exit_codes.OK)


def _guest_proofs(ex: Any) -> list[dict[str, Any]]:
    """Z3's verdict on each nested device at the end of ``ex``: proved (the invariant holds), refuted
    (with the escaping access), or unknown / vacuous, reported as such."""
    from amdvi.properties import sequence_proof
    from amdvi.properties.sequence import access_text

    out = []
    for device in sequence_proof.nested_devices(ex):
        g = sequence_proof.guest_isolation(ex, device)
        if g.query is None:
            out.append({"proof": "guest-isolation", "device": g.device, "status": "not run", "seconds": 0.0,
                        "detail": g.why})
            continue
        result = g.query.result
        detail = sequence_proof.INVARIANT if result.status == "proved" else (
            f"a guest's memory and DTE make the {access_text(g.query.request)} escape"
            if g.query.request is not None else result.detail)
        out.append({"proof": "guest-isolation", "device": g.device, "status": result.status,
                    "seconds": round(result.seconds, 1), "detail": detail})
    return out


def _induction_proof(ex: Any, budget: float) -> list[dict[str, Any]]:
    """Isolation proved by induction along the run (``properties.sequence_induction``): proved with the
    invariant, refuted with the step and access (confirmed on ints), or unknown (a solver timeout, an
    unconfirmed access, the time budget spent), reported as such."""
    from amdvi.properties import sequence_induction

    proof = sequence_induction.prove_isolation(ex, budget_seconds=budget)
    failed = proof.failed
    if failed is None:
        status = "proved" if proof.proved else "not run"
        detail = (f"invariant at each of {len({s.at for s in proof.steps})} boundaries: {sequence_induction.INVARIANT} "
                  f"(scope: {sequence_induction.SCOPE})") if proof.proved else "no boundary to prove"
    else:
        status = failed.result.status
        who = f", DeviceID {failed.device_id:#x}" if failed.device_id >= 0 else ""
        detail = f"boundary {failed.at}{who}: {failed.result.detail}"
    return [{"proof": "isolation-induction", "device": "every requester ID", "status": status,
             "seconds": round(proof.seconds, 1), "detail": detail}]


DEFAULT_SCENARIO = "default scenario"


def bounded_sequence(document: dict[str, Any] | None, source: str, choices: tuple[str, ...]) -> Any:
    """The sequence whose scenario and bounds ``--depth`` explores: the file's (``document``) or the
    default scenario, under ``--choice``."""
    from amdvi.frontend import sequence_format
    from amdvi.models import system
    from amdvi.models.iommufd.driver_api import PciDevice

    if document is not None:
        seq = sequence_format.load(document, source)
    else:
        scenario = system.Scenario(devices=(PciDevice("nic", 0x10, ats=True), PciDevice("disk", 0x18, aliases=(0x19,))))
        seq = sequence_format.LoadedSequence(DEFAULT_SCENARIO, scenario, (), ())
    return options.with_layer_choices(seq, list(choices))


def _bounded(args: argparse.Namespace, props: tuple[str, ...], runner: fanout.Runner) -> Report:
    """Bounded model checking: every sequence of up to ``--depth`` steps within the bounds."""
    from amdvi.frontend import sequence_format, sequence_trace
    from amdvi.properties import sequence_bmc

    if args.depth < 0 or args.depth > 16:
        raise InputError(f"--depth {args.depth}: give a depth from 0 to 16")
    document = options.read_json(args.scenario) if args.scenario else None
    source = args.scenario or DEFAULT_SCENARIO
    seq = bounded_sequence(document, source, tuple(args.choice))
    bounds = getattr(seq, "bounds", None) or sequence_bmc.Bounds()

    def progress(d: Any) -> None:
        if not args.json:
            print(f"depth {d.depth}: {d.checked} sequences checked, {d.states} new states, {d.seconds:.1f} s",
                  file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    if not runner.parallel:
        result = sequence_bmc.search(seq.scenario, args.depth, bounds=bounds, properties=props, progress=progress)
    else:  # each depth's nodes in chunks, expanded by the workers; deduplicated and counted here
        text = None if document is None else json.dumps(document)

        def expand(_: Any) -> Any:
            def level(frontier: list[Any]) -> Any:
                paths = [path for path, _ in frontier]
                size = -(-len(paths) // (4 * runner.workers))  # a few chunks per worker: even finishing times
                chunks = [tuple(paths[k:k + size]) for k in range(0, len(paths), size)]
                for nodes in runner.map([tasks.BmcNodesTask(source, text, tuple(args.choice), props, chunk)
                                         for chunk in chunks], f"depth {len(paths[0]) + 1}"):
                    yield from nodes
            return level

        with runner:
            result = sequence_bmc.search(seq.scenario, args.depth, bounds=bounds, properties=props,
                                         progress=progress, expand=expand)
    seconds = time.perf_counter() - t0
    depths = [{"depth": d.depth, "checked": d.checked, "states": d.states, "seconds": round(d.seconds, 3)}
              for d in result.depths]
    counterexample = None
    if result.violation:
        prop, _, steps = result.violation
        counterexample = sequence_trace.counterexample(seq, steps, prop)
        if args.trace_out:
            from amdvi.frontend.files import write_atomically

            write_atomically(args.trace_out, sequence_format.dumps(counterexample["file"]))
    data = {"scenario": source, "depth": args.depth, "properties": list(props), "depths": depths,
            "holds": result.holds, "seconds": round(seconds, 3),
            "violation": None if not result.violation else {"property": result.violation[0],
                                                           "what": result.violation[1].what,
                                                           "steps": counterexample["steps"],
                                                           "lines": counterexample["lines"]}}

    def show(console: Console) -> None:
        table = Table(title=f"amdvi check --depth {args.depth}: {source}")
        for column in ("depth", "sequences checked", "new states", "time (s)"):
            table.add_column(column)
        for d in depths:
            table.add_row(str(d["depth"]), str(d["checked"]), str(d["states"]), f"{d['seconds']:.1f}")
        console.print(table)
        if result.holds:
            console.print(f"every property holds on every sequence of up to {args.depth} steps "
                          f"({seconds:.1f} s)", markup=False)
        else:
            for line in counterexample["lines"]:
                console.print("  " + line, soft_wrap=True, markup=False)

    return Report(data, show, exit_codes.OK if result.holds else exit_codes.PROPERTY_FAILS)
