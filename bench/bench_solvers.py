"""Every query of the default ``amdvi prove`` on Z3, Bitwuzla and cvc5: each one's time, answer, and
whether the answers agree; from them, the solver each obligation uses by default.

1. The default properties run under Z3 (the correct model, so every claim should be proved); the
   solver layer hands over each query, its SMT-LIB 2 script and Z3's answer and time.
2. Each script goes to Bitwuzla and to cvc5, each in its own process with the time limit (killed past
   it). The two run side by side on the machine's two cores, while Z3 ran alone: if anything, their
   times are pessimistic. A solver reading SMT-LIB is also charged the export (Z3's simplifier and
   printer), which ``--solver bitwuzla`` pays too.
3. Per query, the definite answers (sat / unsat) must agree: a disagreement is recorded and the script
   exits 1 naming it. Per obligation (a proof's name; it may ask several queries), each solver's total
   time; a solver whose every answer was definite and agreed is eligible, and the fastest eligible one
   is written to ``properties/solver_choice.json`` when it beats Z3 by the margin (timing noise on
   the quick queries must not flip the default back and forth).

A reference (one fresh v1 walk on Python ints, measured in the same run) puts times in walk units.

Run from this folder: ``../.venv/bin/python bench_solvers.py [--timeout 120] [--out results/solvers.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from record import write_results  # bench/record.py: these scripts run from this folder
from rich.console import Console

from amdvi.frontend.files import write_atomically
from amdvi.properties import catalog, solvers

from bench_check import walk_seconds

OTHERS = (solvers.BITWUZLA, solvers.CVC5)
MARGIN = 0.8  # another solver becomes an obligation's default when its time is under MARGIN x Z3's
MIN_SAVING = 0.25  # ... and saves at least this many seconds
CHOICE_FILE = Path(__file__).resolve().parent.parent / "properties" / "solver_choice.json"


def collect(names: list[str], timeout_ms: int, status: Any, outcomes: dict[str, Any]) -> list[dict[str, Any]]:
    """Run ``names`` under Z3; each query with its script and Z3's answer (each property's result into
    ``outcomes``)."""
    queries: list[dict[str, Any]] = []

    def on_answer(question: solvers.Question, answer: solvers.Answer) -> None:
        start = time.perf_counter()
        script = solvers.smtlib(question.assertions)
        export = time.perf_counter() - start
        queries.append({"property": current[0], "obligation": question.obligation, "query": question.label,
                        "strategy": question.strategy, "want_model": question.want_model, "script": script,
                        "export_seconds": export,
                        "answers": {solvers.Z3: {"verdict": answer.verdict, "seconds": answer.seconds,
                                                 "reason": answer.reason}}})
        status.update(f"Z3: {current[0]}: {len(queries)} queries")

    current = [""]
    with solvers.using(solvers.Settings(solver=solvers.Z3, on_answer=on_answer)):
        for name in names:
            current[0] = name
            outcome = catalog.run_property(name, timeout_ms=timeout_ms)
            # an unknown ends the property (its later queries are not asked): visible in the results
            outcomes[name] = {"status": outcome.result.status, "seconds": round(outcome.result.seconds, 2),
                              "detail": outcome.result.detail}
            print(f"{name}: {outcome.result.status} under Z3 ({outcome.result.seconds:.1f} s)", flush=True)
    return queries


def run_others(queries: list[dict[str, Any]], timeout_ms: int, status: Any, save: Any,
               others: tuple[str, ...] = OTHERS) -> None:
    for i, q in enumerate(queries, 1):
        if i % 10 == 0:
            save(partial=True)  # a long run leaves its results so far
        status.update(f"{'/'.join(others)}: query {i}/{len(queries)} ({q['obligation']}, {q['query']})")
        question = solvers.Question(q["obligation"], q["query"], (), q["strategy"], q["want_model"])
        members = [s for s in others if solvers.installed(s)]
        for solver, verdict, reason, _, seconds in solvers.race(question, q["script"], members, timeout_ms,
                                                                first_definite=False):
            q["answers"][solver] = {"verdict": verdict, "seconds": seconds + q["export_seconds"], "reason": reason}
        print(f"{q['obligation']} ({q['query']}): " + ", ".join(
            f"{s} {a['verdict']} {a['seconds']:.2f} s" for s, a in q["answers"].items()), flush=True)


def disagreement(q: dict[str, Any]) -> str | None:
    definite = {s: a["verdict"] for s, a in q["answers"].items() if a["verdict"] != solvers.UNKNOWN}
    if len(set(definite.values())) > 1:
        return f"{q['obligation']} ({q['query']}): " + ", ".join(f"{s} {v}" for s, v in definite.items())
    return None


def by_obligation(queries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per obligation: each solver's total time and whether it answered every query, agreeing."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for q in queries:
        grouped[q["obligation"]].append(q)
    out = {}
    for obligation, qs in grouped.items():
        solvers_seen = sorted({s for q in qs for s in q["answers"]}, key=solvers.SOLVERS.index)
        agreed = all(disagreement(q) is None for q in qs)
        rows = {s: {"seconds": round(sum(q["answers"][s]["seconds"] for q in qs if s in q["answers"]), 4),
                    "definite": all(s in q["answers"] and q["answers"][s]["verdict"] != solvers.UNKNOWN for q in qs)}
                for s in solvers_seen}
        eligible = [s for s in solvers_seen if agreed and rows[s]["definite"]]
        fastest = min(eligible, key=lambda s: rows[s]["seconds"], default=None)
        z3_time = rows[solvers.Z3]["seconds"]
        chosen = solvers.Z3
        if fastest not in (None, solvers.Z3) and rows[fastest]["definite"] and (
                not rows[solvers.Z3]["definite"]
                or (rows[fastest]["seconds"] < MARGIN * z3_time and z3_time - rows[fastest]["seconds"] >= MIN_SAVING)):
            chosen = fastest
        out[obligation] = {"property": qs[0]["property"], "queries": len(qs), "agree": agreed, "solvers": rows,
                           "fastest_agreeing": fastest, "default": chosen}
    return out


def summary(queries: list[dict[str, Any]], walk: float, timeout: float, names: list[str], outcomes: dict[str, Any],
            walls: dict[str, float], load: dict[str, Any], partial: bool) -> dict[str, Any]:
    obligations = by_obligation(queries)
    totals = {s: round(sum(q["answers"][s]["seconds"] for q in queries if s in q["answers"]), 2)
              for s in solvers.SOLVERS}
    unknown = {s: sum(1 for q in queries if q["answers"].get(s, {}).get("verdict") == solvers.UNKNOWN)
               for s in solvers.SOLVERS}
    return {
        "partial": partial, "reference_walk_seconds": walk, "timeout_seconds": timeout, "properties": names,
        "z3_outcomes": outcomes, "versions": _versions(), "wall_seconds": walls,
        "load_average": load,  # the machine is shared: times are only comparable within one run
        "total_seconds": totals, "total_in_walks": {s: round(t / walk) for s, t in totals.items()},
        "unknown_queries": unknown, "disagreements": [d for q in queries if (d := disagreement(q))],
        "defaults": {o: r["default"] for o, r in obligations.items() if r["default"] != solvers.Z3},
        "obligations": obligations,
        "queries": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in q.items() if k != "script"}
                    | {"answers": {s: {"verdict": a["verdict"], "seconds": round(a["seconds"], 4), "reason": a["reason"]}
                                   for s, a in q["answers"].items()}} for q in queries],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "solvers.json"))
    parser.add_argument("--timeout", type=float, default=120.0, help="time limit per query per solver, seconds")
    parser.add_argument("--property", action="append", help="only this property (repeatable; default: amdvi prove's)")
    parser.add_argument("--no-choice", action="store_true", help="do not rewrite properties/solver_choice.json")
    parser.add_argument("--other", action="append", choices=OTHERS,
                        help="only this solver besides Z3 (repeatable; default: every other)")
    parser.add_argument("--choose-from", metavar="RESULTS", action="append",
                        help="run nothing: rewrite properties/solver_choice.json from the queries of earlier runs' "
                             "results (repeatable: e.g. the default properties' run and one property's)")
    args = parser.parse_args()
    if args.choose_from:
        queries = [q for f in args.choose_from for q in json.loads(Path(f).read_text())["results"]["queries"]]
        return choose(queries, ", ".join(args.choose_from))
    timeout_ms = int(args.timeout * 1000)
    names = args.property or list(catalog.DEFAULT)
    walk = walk_seconds()
    outcomes: dict[str, Any] = {}
    walls: dict[str, float] = {}
    load = {"start": os.getloadavg()}
    queries: list[dict[str, Any]] = []

    def save(partial: bool = False) -> dict[str, Any]:
        results = summary(queries, walk, args.timeout, names, outcomes, walls, load, partial)
        write_results("every amdvi prove query on each solver", results, args.out)
        return results

    with Console(stderr=True).status("Z3 ...") as status:
        start = time.perf_counter()
        queries = collect(names, timeout_ms, status, outcomes)
        walls["z3"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        run_others(queries, timeout_ms, status, save, tuple(args.other or OTHERS))
        walls["others"] = round(time.perf_counter() - start, 1)
    load["end"] = os.getloadavg()
    results = save()
    if args.no_choice or args.property is not None:
        return _report(results["disagreements"])
    return choose(queries, args.out)


def choose(queries: list[dict[str, Any]], measured: str) -> int:
    """Write each obligation's default solver (none while any query has a disagreement); exit 1 on one."""
    disagreements = [d for q in queries if (d := disagreement(q))]
    if not disagreements:
        defaults = {o: r["default"] for o, r in by_obligation(queries).items() if r["default"] != solvers.Z3}
        choice = {"about": json.loads(CHOICE_FILE.read_text())["about"], "measured": measured,
                  "margin": MARGIN, "min_saving_seconds": MIN_SAVING, "obligations": defaults}
        write_atomically(CHOICE_FILE, json.dumps(choice, indent=2) + "\n")
        print(f"wrote {CHOICE_FILE}")
    return _report(disagreements)


def _report(disagreements: list[str]) -> int:
    for d in disagreements:
        print(f"DISAGREEMENT: {d}")
    return 1 if disagreements else 0


def _versions() -> dict[str, str]:
    import z3

    out = {"z3": z3.get_version_string()}
    if solvers.installed(solvers.BITWUZLA):
        import bitwuzla
        out["bitwuzla"] = bitwuzla.version()
    if solvers.installed(solvers.CVC5):
        import cvc5
        out["cvc5"] = cvc5.__version__
    return out


if __name__ == "__main__":
    raise SystemExit(main())
