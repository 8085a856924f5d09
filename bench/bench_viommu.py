"""The HW-vIOMMU proofs against the number of guests: each property's proof time with 2, 8, 64 and
65535 GuestIDs, the correct model and each broken one that must refute it.

The proofs are parametric (a symbolic GuestID, uninterpreted maps and owners), so the time should not
grow with the guests; the ratio of the largest to the smallest is recorded per property. A reference
(one fresh v1 walk on Python ints, measured in the same run) puts the times in machine-independent
units.

Run from this folder: ``../.venv/bin/python bench_viommu.py [--out results/viommu.json]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from record import write_results  # bench/record.py: these scripts run from this folder

from amdvi.properties import viommu_events, viommu_invalidation, viommu_isolation, viommu_maps, viommu_stage2
from amdvi.spec.choices import Hardware

from bench_check import walk_seconds

GUESTS = (2, 8, 64, 65535)
PROOFS = {
    "viommu-command-isolation": (viommu_isolation.prove_command_isolation,
                                 ("viommu-domain-map-shared", "viommu-device-id-untranslated")),
    "viommu-invalidation-scope": (viommu_invalidation.prove_scope,
                                  ("viommu-domain-map-shared", "viommu-device-id-untranslated")),
    "viommu-guest-wait-ordering": (viommu_invalidation.prove_wait_ordering, ("completion-wait-early",)),
    "viommu-map-write-isolation": (viommu_maps.prove_map_write_isolation, ("viommu-domain-map-shared",)),
    "viommu-guest-event-isolation": (viommu_events.prove_event_isolation, ("viommu-guest-event-log-untranslated",)),
    # the hardware half (its driver half does not depend on the number of guests: ``amdvi prove`` reports
    # the states it covers)
    "viommu-stage2-reaches-every-guest": (viommu_stage2.prove_hardware,
                                          ("invalidate-pages-ignores-size", "invalidate-pages-keeps-pde-cache")),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "viommu.json"))
    parser.add_argument("--repeat", type=int, default=3, help="runs per point (the median is kept)")
    args = parser.parse_args()
    walk = walk_seconds()
    rows = []
    for name, (prove_one, broken) in PROOFS.items():
        for preset in (None, *broken):
            choices = Hardware().assign([f"{preset}=on"]) if preset else Hardware()
            times = {}
            for guests in GUESTS:
                runs = []
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    result = prove_one(guests, choices=choices)
                    runs.append(time.perf_counter() - start)
                times[guests] = sorted(runs)[len(runs) // 2]
                expected = "refuted" if preset else "proved"
                if result.status != expected:
                    raise SystemExit(f"{name} under {preset or 'the correct model'} with {guests} guests: "
                                     f"{result.status}, expected {expected}")
            row = {"property": name, "model": preset or "correct", "status": result.status,
                   "seconds": {str(g): round(t, 4) for g, t in times.items()},
                   "in_walks": {str(g): round(t / walk) for g, t in times.items()},
                   "largest_over_smallest": round(times[GUESTS[-1]] / times[GUESTS[0]], 2)}
            rows.append(row)
            print(row, flush=True)
    write_results("HW-vIOMMU proofs against guests", {"reference_walk_seconds": walk, "guests": list(GUESTS),
                                                       "proofs": rows}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
