"""Throughput of ``amdvi diff-qemu``: generated cases per second on QEMU and the model, and where a
case's time goes. Writes bench/results/diff_qemu.json (machine, date, QEMU version included).

    .venv/bin/python bench/bench_diff_qemu.py [--cases 10000] [--workers 2] [--sample 200]

The reference, measured in the same run: the same kind of cases on one worker (``--sample`` of
them, timed per part: Hypothesis generation, the model's outcome sets, the QEMU side); the ratio is
the campaign's cases per second over the reference's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from amdvi.difftest import campaign, compare, known, model_side, qemu_side
from amdvi.difftest.machine import Machine, find_binary, version

from record import write_results  # bench/record.py: these scripts run from this folder


def parts(binary: str, qemu_version: str, sample: int, seed: int) -> dict[str, float]:
    """Milliseconds per case of each part, one process, ``sample`` cases."""
    started = time.perf_counter()
    cases = []
    for chunk in range((sample + campaign.CHUNK - 1) // campaign.CHUNK):
        cases += campaign.generate(seed, chunk, min(campaign.CHUNK, sample - chunk * campaign.CHUNK))
    generate = time.perf_counter() - started
    entries = known.load(qemu_version)
    machine = Machine(binary)
    model = qemu = judge = 0.0
    try:
        for c in cases:
            t = time.perf_counter()
            e = model_side.expect(c)
            model += time.perf_counter() - t
            t = time.perf_counter()
            o = qemu_side.run(machine, c, e)
            qemu += time.perf_counter() - t
            t = time.perf_counter()
            known.classify(known.Context(c, e, o), compare.compare(c, e, o), entries)
            judge += time.perf_counter() - t
            if o.hang is not None:
                machine.close()
                machine = Machine(binary)
    finally:
        machine.close()
    n = len(cases)
    total = generate + model + qemu + judge
    return {"cases": n, "generate_ms": round(1e3 * generate / n, 2), "model_ms": round(1e3 * model / n, 2),
            "qemu_ms": round(1e3 * qemu / n, 2), "compare_ms": round(1e3 * judge / n, 2),
            "cases_per_second": round(n / total, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--sample", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "diff_qemu.json"))
    args = p.parse_args()
    binary = find_binary()
    if binary is None:
        sys.exit("qemu-system-x86_64 not found: install qemu-system-x86")
    qemu_version = version(binary)
    load_before = os.getloadavg()[0]
    reference = parts(binary, qemu_version, args.sample, args.seed)
    print(f"reference, one process: {reference}", file=sys.stderr)
    result = campaign.run(binary, qemu_version, cases_wanted=args.cases, seed=args.seed, workers=args.workers)
    summary = campaign.summary_json(result)
    rate = len(result.results) / result.seconds
    results = {
        "qemu": qemu_version,
        "campaign": {"cases": len(result.results), "workers": args.workers, "seed": args.seed,
                     "seconds": round(result.seconds, 1), "cases_per_second": round(rate, 1),
                     "agree": summary["agree"], "known_only": summary["known_only"], "new": summary["new"],
                     "new_shapes": summary["new_shapes"], "qemu_restarts": result.restarts},
        "reference_one_process": reference,
        "ratio_campaign_over_reference": round(rate / reference["cases_per_second"], 2),
        "load_average_before_after": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "goal": "10,000 cases in under 300 s on 2 cores",
        "goal_met": len(result.results) >= 10_000 and result.seconds < 300,
    }
    write_results("diff_qemu", results, args.out)


if __name__ == "__main__":
    main()
