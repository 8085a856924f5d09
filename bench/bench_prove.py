"""The wall time of ``amdvi prove`` (the default properties) and ``amdvi prove --all``, with every
obligation's (every solver query's) time, each run as the user runs it: the command line in a
subprocess, its JSON report read back. The goal (issue 15.2): every obligation under 10 s on 2 cores,
the default run under 2 minutes. A reference (one fresh v1 walk on Python ints, measured in the same
run) puts the times in machine-independent units.

Run from this folder: ``../.venv/bin/python bench_prove.py [--default-only] [--out results/prove.json]``.
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

from bench_check import walk_seconds

OBLIGATION_LIMIT = 10.0  # seconds, the bound for one obligation
DEFAULT_LIMIT = 120.0  # seconds, the bound for the default run


def amdvi() -> list[str]:
    """The command line, from the same environment as this interpreter."""
    script = Path(sys.executable).with_name("amdvi")
    return [str(script)] if script.exists() else [sys.executable, "-m", "amdvi.frontend.main"]


def run_prove(extra: list[str]) -> dict[str, Any]:
    """``amdvi prove --json`` with ``extra`` arguments: wall time, each property and each obligation."""
    start = time.perf_counter()
    done = subprocess.run([*amdvi(), "prove", "--json", *extra], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"amdvi prove {' '.join(extra)} failed ({done.returncode}): {done.stderr.strip()}")
    report = json.loads(done.stdout)
    properties = {p["name"]: {"status": p["status"], "seconds": p["seconds"],
                              "obligations": {o["name"]: {"status": o["status"], "seconds": o["seconds"]}
                                              for o in p["parts"]}}
                  for p in report["properties"]}
    obligations = [(f"{n}: {o}", v["seconds"]) for n, p in properties.items() for o, v in p["obligations"].items()]
    obligations += [(n, p["seconds"]) for n, p in properties.items() if not p["obligations"]]
    slowest = max(obligations, key=lambda x: x[1]) if obligations else ("", 0.0)
    over = sorted((n for n, s in obligations if s > OBLIGATION_LIMIT))
    return {"wall_seconds": round(wall, 2), "exit_code": done.returncode, "properties": properties,
            "slowest_obligation": {"name": slowest[0], "seconds": slowest[1]},
            "obligations_over_limit": over}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--default-only", action="store_true", help="skip the --all run")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "prove.json"))
    args = ap.parse_args()
    reference = walk_seconds()
    results: dict[str, Any] = {"reference_walk_seconds": reference, "obligation_limit_seconds": OBLIGATION_LIMIT,
                               "default_limit_seconds": DEFAULT_LIMIT,
                               # other work on the machine inflates every time: recorded to judge them by
                               "load_average_before": os.getloadavg()}
    runs = {"default": []} if args.default_only else {"default": [], "all": ["--all"]}
    for label, extra in runs.items():
        print(f"amdvi prove {' '.join(extra)} ...", flush=True)
        r = run_prove(extra)
        r["wall_in_reference_walks"] = round(r["wall_seconds"] / reference)
        r["load_average_after"] = os.getloadavg()
        results[label] = r
        print(f"  {r['wall_seconds']} s, slowest obligation {r['slowest_obligation']}, "
              f"{len(r['obligations_over_limit'])} over {OBLIGATION_LIMIT:.0f} s", flush=True)
    write_results("prove", results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
