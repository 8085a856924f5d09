"""``amdvi prove``: the IOMMU model's properties run through Z3, exit 1 when one does not hold.

A broken model (``--preset``, or fault switches given by ``--choice``) must be refuted; the first counterexample is shown step by step and can be
saved with ``--trace-out``. Progress goes to standard error, so standard output stays the report.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from amdvi.frontend import exit_codes, fanout, options, tasks
from amdvi.frontend.errors import InputError
from amdvi.frontend.report import Report

NAME = "prove"
HELP = "prove the IOMMU model's properties with Z3 (invalidation completeness, command ordering); " \
       "exit 1 when one does not hold"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--property", action="append", help="run only this property (repeatable); see --list")
    parser.add_argument("--all", action="store_true", help="also the minimality properties (each required "
                                                           "invalidation is needed)")
    parser.add_argument("--timeout", type=float, default=300.0, help="solver time limit per query, seconds")
    parser.add_argument("--solver", metavar="z3|bitwuzla|cvc5|portfolio",
                        help="the solver for every query (portfolio: those installed race, the first definite "
                             "answer wins); default: per obligation the fastest that agreed in bench/bench_solvers.py, "
                             "else z3")
    parser.add_argument("--smtlib", metavar="DIR", help="also write every query as an SMT-LIB 2 file under DIR "
                                                        "(DIR/property/obligation/NN-query.smt2), while proving")
    options.add_choices(parser)
    options.add_trace_output(parser)
    parser.add_argument("--verbose", action="store_true", help="show every query as it finishes")
    parser.add_argument("--list", action="store_true", help="list the properties, readings and broken models; prove nothing")
    options.add_fanout(parser)  # a task per property


def run(args: argparse.Namespace) -> Report:
    from amdvi.properties import catalog as props
    from amdvi.properties.presets import PRESETS
    from amdvi.spec.choices import SPEC

    if args.list:
        return _listing()
    names = args.property or (list(props.PROPERTIES) if args.all else list(props.DEFAULT))
    for n in names:
        if n not in props.PROPERTIES:
            raise InputError(f"unknown property {n!r}; known: {', '.join(props.PROPERTIES)}")
    choices = options.apply_choices(args, SPEC, {p.name: p.choices for p in PRESETS.values()})
    if args.timeout <= 0:
        raise InputError("--timeout must be a positive number of seconds")
    driver = PRESETS[args.preset].driver if args.preset is not None else None  # a driver fault's preset
    from amdvi.properties import solvers

    solver = _solver(args)
    runner = fanout.runner(args)
    if runner.parallel and args.smtlib is not None:
        raise InputError("--smtlib writes the queries as they are asked: run it without --jobs or --scheduler")
    export = _smtlib_export(args)
    try:
        if runner.parallel:
            with runner:
                outcomes = runner.map([tasks.ProveTask(n, tuple(choices.as_assignments()), int(args.timeout * 1000),
                                                       solver, tuple(driver.as_assignments()) if driver else ())
                                       for n in names], "proving")
            if args.verbose:  # each query, once its property is in
                err = Console(stderr=True, highlight=False)
                for item in (p for o in outcomes for p in o.parts):
                    err.print(f"  {item.name}: {item.status} ({item.seconds:.1f} s) {item.detail}", soft_wrap=True)
        else:
            with solvers.using(solvers.Settings(solver=solver, on_script=export)):
                outcomes = [_prove(n, choices, args, export, driver) for n in names]
    except solvers.SolverDisagreement as e:
        return _disagreement(e)
    outcomes = [_recorded(o, choices) for o in outcomes]
    if args.trace_out:
        _save_first_trace(outcomes, Path(args.trace_out))
    return _report(outcomes, choices, driver)


def _solver(args: argparse.Namespace) -> str | None:
    """The solver named by ``--solver``, checked known and installed (None: the recorded choice)."""
    from amdvi.properties import solvers

    if args.solver is None:
        return None
    if args.solver not in solvers.CHOICES:
        raise InputError(f"unknown solver {args.solver!r}; known: {', '.join(solvers.CHOICES)}")
    if args.solver == solvers.PORTFOLIO:
        members = [s for s in solvers.PORTFOLIO_MEMBERS if solvers.installed(s)]
        if len(members) < 2:
            raise InputError(f"--solver portfolio needs two solvers, only {', '.join(members)} installed "
                             "(pip install 'amdvi-spec[solvers]')")
    elif not solvers.installed(args.solver):
        raise InputError(f"--solver {args.solver}: not installed (pip install 'amdvi-spec[solvers]')")
    return args.solver


def _smtlib_export(args: argparse.Namespace) -> Any:
    if args.smtlib is None:
        return None
    from amdvi.frontend.smtlib_export import SmtlibExport

    return SmtlibExport(Path(args.smtlib))


def _disagreement(e: Any) -> Report:
    """Two solvers gave different definite answers: an error naming the query, never a verdict."""
    q = e.question

    def show(console: Console) -> None:
        Console(stderr=True, highlight=False).print(f"amdvi: error: {e}", soft_wrap=True, markup=False)

    return Report({"error": "solvers disagree", "obligation": q.obligation, "query": q.label, "answers": e.answers},
                  show, exit_codes.SOLVERS_DISAGREE)


def _recorded(outcome: Any, choices: Any) -> Any:
    """``outcome`` with its trace recording the choices it was found under and the violation its replay
    showed (an escape, a stale access, or else a different result), so that ``amdvi replay`` runs it as is."""
    from dataclasses import replace

    from amdvi.properties.counterexample import DIFFERS, ESCAPE, STALE

    if outcome.trace is None:
        return outcome
    shown = outcome.replay
    violation = ESCAPE if outcome.trace.inside is not None else (
        DIFFERS if shown is not None and shown.differs and not shown.stale else STALE)
    return replace(outcome, trace=replace(outcome.trace, choices=choices, violation=violation),
                   replay=None if shown is None else replace(shown, claimed=violation))


def _listing() -> Report:
    from amdvi.properties import catalog as props
    from amdvi.properties.presets import PRESETS
    from amdvi.spec.choices import READING, SPEC, Hardware, cli_name

    readings = {cli_name(n): {"default": getattr(SPEC, n), "values": dict(o.values), "section": o.section,
                              "about": o.doc}
                for n, o in Hardware.options().items() if o.kind == READING}
    presets = {p.name: {"description": p.description, "refuted_by": list(p.refuted_by),
                        "caught_by": list(p.caught_by)} for p in PRESETS.values()}

    def show(console: Console) -> None:
        for n, p in props.PROPERTIES.items():
            console.print(f"{n}: {p.description}", soft_wrap=True)
        console.print("readings (--choice NAME=VALUE; the first value is the default):")
        for n, r in readings.items():
            console.print(f"  {n}: {' | '.join(r['values'])}  ({r['about']})", soft_wrap=True)
        console.print("broken models (--preset NAME, or --choice NAME=on):")
        for n, p in presets.items():
            console.print(f"  {n}: {p['description']} (refuted by {', '.join(p['refuted_by'])})", soft_wrap=True)

    return Report({"properties": {n: p.description for n, p in props.PROPERTIES.items()},
                   "readings": readings, "presets": presets}, show)


def _prove(name: str, choices: Any, args: argparse.Namespace, export: Any = None, driver: Any = None) -> Any:
    """Run one property, showing each query's status on standard error as it finishes; return its outcome
    (``driver``: the driver model's choices, for a property with a driver half)."""
    from amdvi.properties import catalog as props
    from amdvi.properties.proof import ProofResult

    if export is not None:
        export.property = name  # the folder its SMT-LIB files go in

    err = Console(stderr=True, highlight=False)
    outcome = None
    with err.status(f"proving {name} ...") as status:
        for item in props.PROPERTIES[name].items(choices, int(args.timeout * 1000), driver):
            if isinstance(item, ProofResult):
                status.update(f"proving {name}: {item.name} {item.status} ({item.seconds:.1f} s)")
                if args.verbose:
                    err.print(f"  {item.name}: {item.status} ({item.seconds:.1f} s) {item.detail}", soft_wrap=True)
            else:
                outcome = item
    return outcome


def _save_first_trace(outcomes: list[Any], path: Path) -> None:
    from amdvi.frontend import trace_format
    from amdvi.frontend.files import write_atomically
    from amdvi.frontend.trace import describe

    with_trace = [o for o in outcomes if o.trace is not None]
    if not with_trace:
        failing = [o.result.name for o in outcomes if o.result.status != "proved"]
        why = (f"{', '.join(failing)} gave no IOMMU trace (its counterexample is in the report: the HW-vIOMMU proofs"
               "' in words, a driver half's as its calls)" if failing else "every property holds")
        Console(stderr=True, highlight=False).print(f"note: no trace written to {path}: {why}", markup=False, soft_wrap=True)
        return
    if with_trace:
        try:
            write_atomically(path, trace_format.dumps(trace_format.to_json(with_trace[0].trace, with_trace[0].replay,
                                                                           describe)))
        except OSError as e:
            raise InputError(f"cannot write {path}: {e.strerror or e}") from None


def _report(outcomes: list[Any], choices: Any, driver: Any = None) -> Report:
    """The table (or JSON) of outcomes; ``driver``: a driver preset's choices, shown with the hardware's."""
    from rich.table import Table

    from amdvi.frontend import trace as trace_io
    from amdvi.frontend import trace_format
    from amdvi.properties.proof import PROVED

    def show(console: Console) -> None:
        shown = [choices.label()] if choices.changed() else []
        shown += [f"driver {driver.label()}"] if driver is not None and driver.changed() else []
        table = Table(title="properties" + (f" (choices: {'; '.join(shown)})" if shown else ""))
        for col in ("property", "status", "time", "detail"):
            table.add_column(col)
        for o in outcomes:
            table.add_row(o.result.name, o.result.status, f"{o.result.seconds:.1f} s", o.result.detail or "")
        console.print(table)
        for o in outcomes:
            if o.trace is not None:
                console.print("\n".join(trace_io.render(o.trace, o.replay)), soft_wrap=True, markup=False)

    failing = [o for o in outcomes if o.result.status != PROVED]
    data = {"choices": choices.changed(), "driver_choices": driver.changed() if driver is not None else {},
            "properties": [{
        "name": o.result.name, "status": o.result.status, "seconds": round(o.result.seconds, 3),
        "detail": o.result.detail,
        "parts": [{"name": p.name, "status": p.status, "seconds": round(p.seconds, 3), "detail": p.detail}
                  for p in o.parts],
        "counterexample": trace_format.to_json(o.trace, o.replay, trace_io.describe) if o.trace else None}
        for o in outcomes]}
    return Report(data, show, exit_codes.PROPERTY_FAILS if failing else exit_codes.OK)

