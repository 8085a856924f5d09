"""Serial and ``--jobs N`` wall times of ``amdvi prove --all``, of the mutant matrix (``amdvi mutants``)
and of bounded model checking (``amdvi check --depth``), each run as the command a user types, in the
same run, with the verdicts compared (a parallel run must give the serial run's). The machine's load
average is recorded with each time: other work on the machine slows both runs. Writes
bench/results/fanout.json (machine and date), after each workload.

    .venv/bin/python bench/bench_fanout.py [--jobs 2] [--depth 6] [--skip-prove] [--skip-mutants] [--skip-bmc]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from record import write_results  # bench/record.py: these scripts run from this folder

AMDVI = str(Path(sys.executable).with_name("amdvi"))


def timed(argv: list[str]) -> tuple[float, dict[str, Any], int, tuple[float, ...]]:
    """Wall seconds, the JSON report and the exit code of ``amdvi ARGV --json``, and the load averages
    (1, 5, 15 minutes) when it ended."""
    start = time.perf_counter()
    done = subprocess.run([AMDVI, *argv, "--json"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"amdvi {' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return seconds, json.loads(done.stdout), done.returncode, tuple(round(x, 2) for x in os.getloadavg())


def verdicts(kind: str, report: dict[str, Any]) -> Any:
    """What must not depend on how the work was spread: statuses, counts and the counterexample found."""
    if kind == "prove":
        return [(p["name"], p["status"], [(q["name"], q["status"]) for q in p["parts"]]) for p in report["properties"]]
    if kind == "mutants":
        return [(r["preset"], r["checker"], r["found"]) for r in report["rows"]]
    return ([(d["depth"], d["checked"], d["states"]) for d in report["depths"]], report["holds"], report["violation"])


def compare(kind: str, argv: list[str], jobs: int) -> dict[str, Any]:
    print(f"amdvi {' '.join(argv)} (serial) ...", flush=True)
    serial, serial_report, code, serial_load = timed(argv)
    print(f"  {serial:.1f} s, load {serial_load}; with --jobs {jobs} ...", flush=True)
    parallel, parallel_report, parallel_code, parallel_load = timed([*argv, "--jobs", str(jobs)])
    same = verdicts(kind, serial_report) == verdicts(kind, parallel_report) and code == parallel_code
    print(f"  {parallel:.1f} s, load {parallel_load}: {serial / parallel:.2f}x, same verdicts: {same}", flush=True)
    return {"command": "amdvi " + " ".join(argv), "exit_code": code, "serial_seconds": round(serial, 1),
            f"jobs_{jobs}_seconds": round(parallel, 1), "speedup": round(serial / parallel, 2),
            "same_verdicts": same, "load_average_after_serial": serial_load,
            "load_average_after_parallel": parallel_load}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="worker processes of the local cluster (CI has two cores)")
    ap.add_argument("--depth", type=int, default=6, help="bounded model checking depth")
    ap.add_argument("--skip-prove", action="store_true")
    ap.add_argument("--skip-mutants", action="store_true")
    ap.add_argument("--skip-bmc", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "fanout.json"))
    args = ap.parse_args()
    results: dict[str, Any] = {"jobs": args.jobs}
    names = {"prove": "prove_all", "mutants": "mutant_matrix", "bmc": f"bmc_depth_{args.depth}"}
    if Path(args.out).exists() and (args.skip_prove or args.skip_mutants or args.skip_bmc):
        old = json.loads(Path(args.out).read_text())  # a skipped workload keeps its recording, with its date
        if old["results"].get("jobs") == args.jobs:
            results.update({k: {"recorded": old["date"], **v} for k, v in old["results"].items()
                            if k != "jobs" and v is not None})
    workloads = [("mutants", ["mutants"], args.skip_mutants),
                 ("bmc", ["check", "--depth", str(args.depth)], args.skip_bmc),
                 ("prove", ["prove", "--all"], args.skip_prove)]
    for kind, argv, skip in workloads:
        if not skip:
            results[names[kind]] = compare(kind, argv, args.jobs)
            write_results("fanout", results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
