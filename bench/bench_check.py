"""``amdvi check``: the built-in library, each bug example's counterexample, and bounded model checking.

Measured in one run, in one process, on this machine:

* the whole library as ``amdvi check`` runs it (execute, check every property, minimise and render
  each counterexample), and per sequence;
* each bug example's counterexample alone (check, minimise, render), the issue's bar being 10 s;
* bounded model checking on the default scenario (two devices: ATS, and a bridge alias), time per
  depth up to ``--depth`` or until a depth takes more than ``--budget`` seconds;
* the Z3 guest-isolation proof (``amdvi check --prove``) at the end of the correct nested sequence
  (proved) and of the sequence whose driver takes the guest's stage 2 (refuted);
* the Z3 isolation proof by induction along the run (``amdvi check --prove``) on two correct sequences
  (proved at every point) and two bug examples (refuted at the first point that breaks it);
* the reference in the same run: one fresh v1 4-level translation on Python ints (``translate``),
  so every time is also given as a number of walks, which stays comparable across machines.

Run from this folder: ``../.venv/bin/python bench_check.py [--out results/check.json]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from amdvi.frontend import sequence_library, sequence_trace
from amdvi.models import software as sw
from amdvi.models.iommufd.driver_api import PciDevice
from amdvi.models.system import Scenario
from amdvi.properties import sequence_bmc, sequence_check, sequence_induction, sequence_proof
from amdvi.spec.bitvec import INT
from amdvi.spec.translation import Request, translate

from record import write_results  # bench/record.py: these scripts run from this folder


def walk_seconds(n: int = 2000) -> float:
    """Seconds per fresh v1 4-level walk on Python ints (the reference)."""
    root = 0x50_0000
    mapped = sw.v1_map({}, root, 4, 0x1000, 0x90_0000, root + 0x1000)
    memory = sw.write_dte(mapped.memory, sw.Layout(), 1, sw.v1_dte(5, root, 4))
    bar = sw.registers(sw.Layout()).dev_tab_bar
    request = Request(device_id=1, address=0x1000)
    start = time.perf_counter()
    for _ in range(n):
        translate(INT, memory, bar, request)
    return (time.perf_counter() - start) / n


def check_one(entry: sequence_library.Entry) -> dict:
    seq = entry.loaded()
    start = time.perf_counter()
    ex = sequence_check.execute(seq.scenario, seq.steps)
    verdicts = sequence_check.check(ex)
    checked = time.perf_counter() - start
    failed = [v for v in verdicts if not v.holds]
    out = {"sequence": entry.file, "claims": entry.claims, "check_seconds": round(checked, 3),
           "refuted": [v.property for v in failed], "points": len(ex.run.boundaries)}
    if failed:
        prop = entry.claims if entry.claims in out["refuted"] else failed[0].property
        steps = sequence_check.minimise(seq.scenario, seq.steps, prop)
        sequence_trace.counterexample(seq, steps, prop)
        out.update(counterexample_seconds=round(time.perf_counter() - start, 3), steps=len(seq.steps),
                   minimised_steps=len(steps))
    out["seconds"] = round(time.perf_counter() - start, 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "check.json"))
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--budget", type=float, default=60.0, help="stop deepening after a depth this slow")
    args = parser.parse_args()

    walk = walk_seconds()
    print(f"reference: {walk * 1e6:.0f} us per fresh v1 4-level walk")
    # bounded model checking first, in a process that has run nothing else: as `amdvi check --depth K`
    # runs (after the library, the same search took a quarter longer in one run)
    scenario = Scenario(devices=(PciDevice("nic", 0x10, ats=True), PciDevice("disk", 0x18, aliases=(0x19,))))
    depths = []

    def progress(d) -> None:
        depths.append({"depth": d.depth, "checked": d.checked, "new_states": d.states, "seconds": round(d.seconds, 3)})
        print(depths[-1], flush=True)
        if d.seconds > args.budget:
            raise StopIteration

    bmc_start = time.perf_counter()
    try:
        result = sequence_bmc.search(scenario, args.depth, progress=progress)
        bmc_verdict = "holds" if result.holds else result.violation[0]
    except StopIteration:
        bmc_verdict = f"stopped after depth {depths[-1]['depth']} (over the {args.budget:.0f} s budget)"
    bmc_seconds = time.perf_counter() - bmc_start
    start = time.perf_counter()
    sequences = []
    for entry in sequence_library.ENTRIES:
        sequences.append(check_one(entry))
        print(sequences[-1])
    library = time.perf_counter() - start

    cumulative, total = [], 0.0
    for d in depths:
        total += d["seconds"]
        cumulative.append({**d, "cumulative_seconds": round(total, 3), "in_walks": round(d["seconds"] / walk)})

    proofs = []
    for file in ("nested-device.json", "bug-gdte-not-validated.json"):
        entry = next(e for e in sequence_library.ENTRIES if e.file == file)
        seq = entry.loaded()
        ex = sequence_check.execute(seq.scenario, seq.steps, probes=seq.probes)
        for device in sequence_proof.nested_devices(ex):
            g = sequence_proof.guest_isolation(ex, device)
            proofs.append({"sequence": file, "device": device.name, "status": g.query.result.status,
                           "seconds": round(g.query.result.seconds, 3)})
            print(proofs[-1])

    induction = []
    for file in ("plain-device.json", "ats-device.json", "bug-flush-too-small.json", "bug-ats-iotlb-not-flushed.json"):
        entry = next(e for e in sequence_library.ENTRIES if e.file == file)
        ex = sequence_check.execute(entry.scenario, entry.steps, probes=entry.probes)
        proof = sequence_induction.prove_isolation(ex)
        failed = proof.failed
        induction.append({"sequence": file, "status": "proved" if proof.proved else failed.result.status,
                          "points": len({s.at for s in proof.steps}), "queries_seconds": round(
                              sum(s.result.seconds for s in proof.steps), 3), "seconds": round(proof.seconds, 3)})
        print(induction[-1])

    bugs = [s for s in sequences if s["claims"]]
    write_results("amdvi check", {
        "reference_walk_seconds": walk,
        "library": {"sequences": len(sequences), "seconds": round(library, 3), "in_walks": round(library / walk),
                    "all_as_expected": all((not s["refuted"]) if not s["claims"] else s["claims"] in s["refuted"]
                                           for s in sequences)},
        "per_sequence": sequences,
        "slowest_counterexample_seconds": max(s["counterexample_seconds"] for s in bugs),
        "bmc": {"scenario": "nic (ATS) + disk (alias 0x19), bounds " + repr(sequence_bmc.Bounds()),
                "verdict": bmc_verdict, "seconds": round(bmc_seconds, 3), "depths": cumulative},
        "guest_isolation_proofs": proofs,  # Z3, at the sequence's end; the invariant: properties/sequence_proof.py
        "isolation_induction_proofs": induction,  # Z3, every point, every address: properties/sequence_induction.py
    }, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
