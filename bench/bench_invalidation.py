"""Proof time of every ``amdvi prove`` property (and of each of its queries), the time each broken model
takes to be refuted, and the Hypothesis state machine's speed (examples, rule steps and model moves per
second; time to catch each broken model). Each broken model is run on the properties it must refute
(``presets.PRESETS``). Writes bench/results/invalidation.json (machine and date).

    .venv/bin/python bench/bench_invalidation.py [--examples 100] [--skip-proofs] [--skip-mutants]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from amdvi.properties import stateful
from amdvi.properties.catalog import PROPERTIES, Outcome
from amdvi.properties.presets import IOMMU_MACHINE, PRESETS, caught_by
from amdvi.spec.choices import SPEC, Hardware

from record import write_results  # bench/record.py: these scripts run from this folder


def run_property(name: str, choices: Hardware = SPEC) -> dict[str, Any]:
    """A property's status and time, with each query (or weakening) it ran, printed as it goes."""
    parts: list[dict[str, Any]] = []
    outcome = None
    for item in PROPERTIES[name].run(choices=choices):
        if isinstance(item, Outcome):
            outcome = item
            continue
        parts.append({"query": item.name, "status": item.status, "seconds": round(item.seconds, 2)})
        print(f"    {item.name}: {item.status} in {item.seconds:.2f} s", flush=True)
    assert outcome is not None
    r = outcome.result
    row = {"status": r.status, "seconds": round(r.seconds, 2), "parts": parts}
    if outcome.replay is not None:
        row["replayed_stale"] = bool(outcome.replay.stale)
    print(f"  {name}{' with ' + choices.label() if choices.changed() else ''}: {r.status} in {r.seconds:.2f} s",
          flush=True)
    return row


class _Counting:
    """Counts the machine's rule steps and model moves (bench bookkeeping, outside the model)."""

    rules = 0
    moves = 0


def counting_machine(choices: Hardware) -> type:
    base = stateful.machine(choices)

    class Counted(base):  # type: ignore[misc, valid-type]
        def _step(self, move: Any) -> Any:
            _Counting.moves += 1
            return super()._step(move)

        def check_invariants(self, *args: Any, **kwargs: Any) -> Any:  # called once after each rule
            _Counting.rules += 1
            return super().check_invariants(*args, **kwargs)

    return Counted


def machine_speed(examples: int) -> dict[str, Any]:
    """Run the correct model's machine for ``examples`` derandomized examples, counting steps."""
    _Counting.rules = _Counting.moves = 0
    start = time.perf_counter()
    failure = stateful.run_machine(max_examples=examples, derandomize=True, machine_class=counting_machine(SPEC))
    seconds = time.perf_counter() - start
    assert failure is None, f"the correct model failed: {failure}"
    return {"examples": examples, "seconds": round(seconds, 2), "rule_steps": _Counting.rules,
            "model_moves": _Counting.moves, "examples_per_second": round(examples / seconds, 2),
            "rule_steps_per_second": round(_Counting.rules / seconds, 1),
            "model_moves_per_second": round(_Counting.moves / seconds, 1)}


def time_to_catch(preset: str, examples: int) -> dict[str, Any]:
    start = time.perf_counter()
    failure = stateful.run_machine(PRESETS[preset].choices, max_examples=examples, derandomize=True, shrink=False)
    seconds = time.perf_counter() - start
    caught = isinstance(failure, stateful.StaleTranslation)
    return {"caught": caught, "seconds": round(seconds, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=100, help="state machine examples (the default budget: 100)")
    ap.add_argument("--skip-proofs", action="store_true", help="only the state machine")
    ap.add_argument("--skip-mutants", action="store_true", help="no refutation timings")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "invalidation.json"))
    args = ap.parse_args()
    results: dict[str, Any] = {}
    if not args.skip_proofs:
        print("properties on the correct model:", flush=True)
        results["properties"] = {name: run_property(name) for name in PROPERTIES}
        if not args.skip_mutants:
            print("properties on each broken model:", flush=True)
            results["refutations"] = {p.name: {name: run_property(name, p.choices) for name in p.refuted_by}
                                      for p in PRESETS.values()}
    print(f"state machine, correct model, {args.examples} examples:", flush=True)
    results["state_machine"] = machine_speed(args.examples)
    print(f"  {results['state_machine']}", flush=True)
    results["state_machine_catches"] = {}
    for m in caught_by(IOMMU_MACHINE):
        results["state_machine_catches"][m] = time_to_catch(m, args.examples)
        print(f"  {m}: {results['state_machine_catches'][m]}", flush=True)
    write_results("invalidation", results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
