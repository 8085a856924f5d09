"""``amdvi replay TRACE``: run a trace the tool wrote, step by step, and say whether it reproduces.

Any trace the tool writes (``amdvi prove --trace-out``, the state machine's failures) is replayed on the
IOMMU model under the choices it records; ``--preset``/``--choice`` override them, ``--defaults``
starts from the specification's defaults instead. Exit 1 when the trace ends in the violation it
claims, 0 when it does not, 2 for a bad file (one line: which step, which field, why).
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from amdvi.frontend import exit_codes, options
from amdvi.frontend.errors import InputError
from amdvi.frontend.report import Report

NAME = "replay"
HELP = "replay a counterexample trace step by step; exit 1 when it ends in the violation it records, 0 when not"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_trace_input(parser)
    options.add_choices(parser)
    parser.add_argument("--defaults", action="store_true",
                        help="start from the specification's defaults, not the choices the trace records "
                             "(--preset and --choice still apply)")


def run(args: argparse.Namespace) -> Report:
    from amdvi.frontend import trace_format
    from amdvi.frontend.trace import changes, describe, render
    from amdvi.properties.counterexample import VIOLATIONS, replay
    from amdvi.properties.presets import PRESETS
    from amdvi.spec.choices import SPEC

    from amdvi.frontend import sequence_format

    obj = options.read_trace(args)
    if sequence_format.is_sequence(obj):
        return _replay_sequence(args, sequence_format.load(obj, args.trace))
    loaded = trace_format.load(obj, args.trace)
    trace = loaded.trace
    recorded = trace.choices
    start = SPEC if args.defaults else recorded
    choices = options.apply_choices(args, start, {p.name: p.choices for p in PRESETS.values()})
    notices = list(loaded.notices)
    if choices != recorded:
        notices.append(f"replayed under {choices.label()}, not the recorded {recorded.label()} "
                       f"({'--defaults, ' if args.defaults else ''}--preset/--choice override the file)")
    try:
        result = replay(trace, choices=choices)
    except (IndexError, KeyError, ValueError) as e:  # the model refuses a move the format allowed
        raise InputError(f"{args.trace}: the model cannot run this trace: {e}") from None
    reproduces = result.reproduces
    verdict = (f"REPRODUCES: {VIOLATIONS[result.claimed]}" if reproduces
               else f"DOES NOT REPRODUCE the claimed {result.claimed}: {VIOLATIONS[result.claimed]}")
    data: dict[str, Any] = {
        "trace": args.trace, "version": loaded.version, "title": trace.title, "notices": notices,
        "choices": choices.as_assignments(), "recorded_choices": recorded.as_assignments(),
        "claimed": result.claimed, "reproduces": reproduces, "summary": result.summary(),
        "unfinished_wait": result.unfinished_wait or None,
        "steps": [{"step": i, "kind": type(s.move).__name__, "text": describe(s.move), "changes": changes(s)}
                  for i, s in enumerate(result.steps, 1)],
    }

    def show(console: Console) -> None:
        for notice in notices:
            console.print(f"note: {notice}", soft_wrap=True, markup=False)
        console.print(f"choices: {choices.label()}", soft_wrap=True, markup=False)
        console.print("\n".join(render(trace, result, show_changes=True)), soft_wrap=True, markup=False)
        console.print(verdict, soft_wrap=True, markup=False)

    return Report(data, show, exit_codes.PROPERTY_FAILS if reproduces else exit_codes.OK)


def _replay_sequence(args: argparse.Namespace, seq: Any) -> Report:
    """A driver and ioctl sequence: each step with what changed, then the claimed property's verdict."""
    import dataclasses

    from amdvi.frontend.sequence_trace import render, violation_line
    from amdvi.properties import sequence_check

    if args.preset:
        raise InputError("--preset names hardware presets of move traces; for a sequence use "
                         "--choice LAYER.NAME=VALUE (layers: hardware, driver, iommufd)")
    if args.defaults:  # every layer back to its defaults (readings and faults)
        scenario = seq.scenario
        seq = dataclasses.replace(seq, scenario=dataclasses.replace(
            scenario, hardware=type(scenario.hardware)(), driver=type(scenario.driver)(),
            iommufd=type(scenario.iommufd)()))
    seq = options.with_layer_choices(seq, [c if "." in c.partition("=")[0] else f"hardware.{c}" for c in args.choice])
    try:
        ex = sequence_check.execute(seq.scenario, seq.steps, probes=seq.probes)
    except sequence_check.StepError as e:
        raise InputError(f"{args.trace}: {e}") from None
    claimed = seq.claimed
    verdicts = sequence_check.check(ex, [claimed] if claimed else sequence_check.ALL_PROPERTIES)
    refuted = [v for v in verdicts if not v.holds]
    reproduces = bool(refuted) if claimed is None else any(v.property == claimed for v in refuted)
    lines = render(ex, windows=sequence_check.windows_of(ex))
    for v in refuted:
        lines.append(violation_line(ex, v.property, v.violation))
    verdict = (f"REPRODUCES: {claimed}" if claimed and reproduces else
               f"DOES NOT REPRODUCE the claimed {claimed}" if claimed else
               "every property holds" if not refuted else "violations found")
    data = {"trace": args.trace, "kind": "sequence", "title": seq.title, "claimed": claimed,
            "reproduces": reproduces, "steps": lines,
            "verdicts": [{"property": v.property, "holds": v.holds,
                          "why": None if v.holds else v.violation.what} for v in verdicts]}

    def show(console: Console) -> None:
        console.print(seq.title, markup=False)
        console.print("\n".join(lines), soft_wrap=True, markup=False)
        console.print(verdict, markup=False)

    return Report(data, show, exit_codes.PROPERTY_FAILS if reproduces else exit_codes.OK)
