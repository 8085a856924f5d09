"""Bounded model checking with symbolic move kinds vs enumerating the sequences of kinds.

For the completion-wait scenario (``properties/bmc.py``: an invalidation and a COMPLETION_WAIT queued,
moves ProcessCommand / Retire(0) / Retire(1)) and k = 1..4: the time of the one BMC query (build and
solve), of running every one of the 3^k sequences on Python ints, and of one Z3 query per sequence
(what checking needs once moves carry symbolic arguments and cannot be enumerated on ints). Run from
this folder: ``../.venv/bin/python bench_bmc.py [--out results/bmc.json]``.
"""

from __future__ import annotations

import argparse
import itertools
import time

import z3

from amdvi.models.iommu import step
from amdvi.properties import bmc
from amdvi.spec.bitvec import INT, Z3
from amdvi.spec.choices import SPEC, Hardware

from record import write_results  # bench/record.py: these scripts run from this folder


def enumerate_int(depth: int, choices: Hardware) -> bool:
    """Every sequence of kinds on Python ints: does one break the property?"""
    initial, holds = bmc.invalidation_then_wait(), bmc.wait_means_invalidated()
    broken = False
    for moves in itertools.product(bmc.PROCESSOR_MOVES, repeat=depth):
        state = initial
        for move in moves:
            state = step(INT, state, move, choices=choices)[0]
            broken |= not holds(INT, state)
    return broken


def enumerate_z3(depth: int, choices: Hardware) -> bool:
    """One Z3 query per sequence of kinds (each a formula of its own)."""
    initial, holds = bmc.symbolic_state(bmc.invalidation_then_wait()), bmc.wait_means_invalidated()
    broken = False
    for moves in itertools.product(bmc.PROCESSOR_MOVES, repeat=depth):
        state, fails = initial, []
        for move in moves:
            state = step(Z3, state, move, choices=choices)[0]
            fails.append(Z3.lnot(holds(Z3, state)))
        s = z3.Solver()
        s.add(z3.Or(*[z3.BoolVal(f) if isinstance(f, bool) else f for f in fails]))
        broken |= s.check() == z3.sat
    return broken


def timed(fn, *args, **kw):
    start = time.perf_counter()
    out = fn(*args, **kw)
    return out, round(time.perf_counter() - start, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    results = {}
    for name, choices in (("correct", SPEC), ("completion-wait-early", Hardware(completion_wait_early=True))):
        for depth in range(1, 5):
            result, bmc_s = timed(bmc.check_wait, depth, choices=choices, witnessed=False)
            broken_int, int_s = timed(enumerate_int, depth, choices)
            broken_z3, z3_s = timed(enumerate_z3, depth, choices)
            assert broken_int == broken_z3 == (result.status == "refuted")
            row = {"status": result.status, "bmc_s": bmc_s, "sequences": 3 ** depth, "enumerate_int_s": int_s,
                   "enumerate_z3_s": z3_s}
            results[f"{name}/k={depth}"] = row
            print(f"{name:22} k={depth}: {row}")
    if args.out:
        write_results("bmc", results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
