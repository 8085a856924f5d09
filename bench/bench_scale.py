"""Proof time against scale (issue 15.5): devices, DomainIDs, PASIDs and guests 2 to 64, host depth 1 to 6.

Each axis's proofs at 2, 4, 8, 16 and 64 devices, DomainIDs, PASIDs and guests, and on host tables of
1 to 6 levels, under the correct model and under a broken one that must refute them. The proofs are
parametric, so the goal is at most 1.5x from 2 to 64; the ratio of the time at the largest size to the
time at the smallest is recorded per proof and per axis (the axis's correct-model proofs summed). A reference (one fresh v1 walk on Python ints, measured in the
same run) puts the times in machine-independent units.

What each axis varies (``invalidation.Sizes`` for the first three; the queries are otherwise the
catalog's, ``amdvi prove``):

* devices: the device table holds N DTEs (DeviceIDs 0x10 onwards), each with its own free fields. The
  DTE change rewrites any one of them (a symbolic DeviceID: four stores at its DTE's address, its old
  DomainID read there); a v1 table change's DomainID may tag any of them, so software sends one
  INVALIDATE_IOTLB_PAGES per device (N commands: that query builds one per device). The table is a
  shaped memory (``invalidation.device_table``): the other DTEs' free fields are the free memory's
  bits at their words, so a read at a symbolic address is one read and a mask whatever N is (it was a
  choice among the table's 4N DTE words: 4-5x from 2 to 64, and minutes at 64 devices for the DTE
  change's IOTLB query, whose walks before and after the change read at symbolic addresses).
* DomainIDs: every DTE's DomainID (before and after a DTE change) and the changed DomainID lie in
  1..N (symbolic: the curve shows whether the bound costs anything).
* PASIDs: the ghost request's PASID and the change's lie in 0..N-1, so the guest walk reads one of N
  GCR3 table entries (symbolic, likewise).
* guests: the HW-vIOMMU proofs (``bench_viommu.py``'s; of "a stage-2 change reaches every guest", its
  Z3 hardware half) with GuestIDs 1..N (a symbolic GuestID).
* host depth: the serving and v1-entry IOTLB queries on host tables of 1..6 levels (``every-host-depth``
  and Mode 2); the walk grows with the depth, so this curve is not expected to be flat.

A broken model is a preset of hardware faults (``properties.presets``) or a software weakening of the
invalidations sent (``invalidation.CORRUPTIONS``, as ``<change>-minimal`` uses them). A point whose
verdict is not the expected one (proved, refuted) is recorded with its status and fails the run (exit 1).

Run: ``.venv/bin/python bench/bench_scale.py [--axis devices ...] [--repeat 3] [--timeout 300]
[--out bench/results/scale.json]``; ``--quick`` runs each axis at its two smallest sizes
once and writes only when ``--out`` is given (a check that the bench works, not a measurement).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from record import write_results  # bench/record.py: these scripts run from this folder

from amdvi.properties import (invalidation, presets, serving, viommu_invalidation, viommu_isolation, viommu_maps,
                              viommu_stage2)
from amdvi.properties.proof import PROVED, REFUTED, ProofResult
from amdvi.spec.choices import SPEC, Hardware

from bench_check import walk_seconds

SIZES = (2, 4, 8, 16, 64)
DEPTHS = (1, 2, 3, 4, 5, 6)
GOAL = 1.5  # the bound on time at 64 over time at 2


@dataclass(frozen=True)
class Broken:
    """A broken model that must refute a proof: a preset's hardware faults, or a software weakening."""

    preset: str | None = None
    weakening: str | None = None

    def label(self) -> str:
        return self.preset or f"software: {self.weakening}"

    def choices(self) -> Hardware:
        return presets.preset(self.preset).choices if self.preset else SPEC

    def corrupt(self) -> Any:
        return invalidation.CORRUPTIONS[self.weakening] if self.weakening else None


@dataclass(frozen=True)
class Proof:
    """One proof on one axis: ``run(n, choices, corrupt, timeout_ms)`` at size ``n``, and what breaks it."""

    run: Callable[[int, Hardware, Any, int], ProofResult]
    broken: Broken


def _stale(change: str, cache: str, profile: str) -> bool:
    return next(s for c, k, p, s in (*invalidation.QUERIES, *invalidation.DEPTH_QUERIES)
                if (c, k, p) == (change, cache, profile))


def _invalidation(change: str, cache: str, profile: str, size: str, broken: Broken) -> Proof:
    def run(n: int, choices: Hardware, corrupt: Any, timeout_ms: int) -> ProofResult:
        return invalidation.fresh_after_change(change, cache, profile, choices=choices, corrupt=corrupt,
                                               timeout_ms=timeout_ms, stale_possible=_stale(change, cache, profile),
                                               sizes=invalidation.Sizes(**{size: n}))
    return Proof(run, broken)


def _viommu(prove_one: Callable[..., ProofResult], broken: Broken) -> Proof:
    def run(n: int, choices: Hardware, corrupt: Any, timeout_ms: int) -> ProofResult:
        assert corrupt is None, "the vIOMMU proofs are broken by presets only"
        return prove_one(n, choices=choices, timeout_ms=timeout_ms)
    return Proof(run, broken)


def _host_profile(depth: int) -> str:
    return "v1" if depth == 2 else f"v1-mode{depth}"  # "v1" is Mode 2 (invalidation.PROFILES)


def _serving_at_depth(cache: str, broken: Broken) -> Proof:
    def run(n: int, choices: Hardware, corrupt: Any, timeout_ms: int) -> ProofResult:
        assert corrupt is None, "the serving proofs are broken by presets only"
        return serving.serves_fresh(cache, _host_profile(n), choices=choices, timeout_ms=timeout_ms)
    return Proof(run, broken)


def _v1_change_at_depth(cache: str, broken: Broken) -> Proof:
    def run(n: int, choices: Hardware, corrupt: Any, timeout_ms: int) -> ProofResult:
        profile = _host_profile(n)
        return invalidation.fresh_after_change("v1-entry", cache, profile, choices=choices, corrupt=corrupt,
                                               timeout_ms=timeout_ms, stale_possible=_stale("v1-entry", cache, profile))
    return Proof(run, broken)


AXES: dict[str, tuple[tuple[int, ...], dict[str, Proof]]] = {
    "devices": (SIZES, {
        "dte-invalidation/dte": _invalidation("dte", "dte", "v1", "devices", Broken("devtab-invalidation-ignored")),
        "dte-invalidation/iotlb": _invalidation("dte", "iotlb", "v1", "devices", Broken(weakening="wrong DomainID")),
        "v1-entry-invalidation/device_iotlb": _invalidation("v1-entry", "device_iotlb", "v1", "devices",
                                                            Broken(weakening="wrong DeviceID")),
    }),
    "domains": (SIZES, {
        "v1-entry-invalidation/iotlb": _invalidation("v1-entry", "iotlb", "v1", "domains",
                                                     Broken(weakening="wrong DomainID")),
        "v1-entry-invalidation/pde": _invalidation("v1-entry", "pde", "v1", "domains",
                                                   Broken("invalidate-pages-keeps-pde-cache")),
        "dte-invalidation/iotlb": _invalidation("dte", "iotlb", "v1", "domains", Broken(weakening="wrong DomainID")),
    }),
    "pasids": (SIZES, {
        "v2-entry-invalidation/iotlb": _invalidation("v2-entry", "iotlb", "v2", "pasids",
                                                     Broken(weakening="wrong PASID")),
        "gcr3-entry-invalidation/gcr3": _invalidation("gcr3-entry", "gcr3", "v2", "pasids",
                                                      Broken(weakening="wrong PASID")),
    }),
    "guests": (SIZES, {
        "viommu-command-isolation": _viommu(viommu_isolation.prove_command_isolation,
                                            Broken("viommu-domain-map-shared")),
        "viommu-invalidation-scope": _viommu(viommu_invalidation.prove_scope, Broken("viommu-device-id-untranslated")),
        "viommu-guest-wait-ordering": _viommu(viommu_invalidation.prove_wait_ordering, Broken("completion-wait-early")),
        "viommu-map-write-isolation": _viommu(viommu_maps.prove_map_write_isolation,
                                              Broken("viommu-domain-map-shared")),
        "viommu-stage2-reaches-every-guest": _viommu(viommu_stage2.prove_hardware,
                                                     Broken("invalidate-pages-keeps-pde-cache")),
    }),
    "host-depth": (DEPTHS, {
        "fresh-slots-serve-fresh/iotlb": _serving_at_depth("iotlb", Broken("iotlb-hit-ignores-permissions")),
        "v1-entry-invalidation/iotlb": _v1_change_at_depth("iotlb", Broken(weakening="wrong DomainID")),
    }),
}


def point(axis: str, proof: str, n: int, broken: bool = False, timeout_ms: int = 300_000) -> ProofResult:
    """One point of the bench: ``proof`` of ``axis`` at size ``n``, on the correct model or (``broken``)
    on the model that must refute it."""
    p = AXES[axis][1][proof]
    model = p.broken if broken else Broken()
    return p.run(n, model.choices(), model.corrupt(), timeout_ms)


def _median_run(axis: str, proof: str, n: int, broken: bool, repeat: int, timeout_ms: int) -> tuple[str, float]:
    runs, status = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        status = point(axis, proof, n, broken, timeout_ms).status
        runs.append(time.perf_counter() - start)
    return status, sorted(runs)[len(runs) // 2]


def measure(axes: list[str], quick: bool, repeat: int, timeout_ms: int, walk: float) -> tuple[dict[str, Any], bool]:
    """Every point of ``axes``: (the results, whether every verdict was the expected one)."""
    out: dict[str, Any] = {}
    all_expected = True
    for axis in axes:
        sizes, proofs = AXES[axis]
        sizes = sizes[:2] if quick else sizes
        rows, totals = [], {n: 0.0 for n in sizes}
        for name, p in proofs.items():
            for broken in (False, True):
                expected = REFUTED if broken else PROVED
                times, statuses = {}, {}
                for n in sizes:
                    statuses[n], times[n] = _median_run(axis, name, n, broken, repeat, timeout_ms)
                    if not broken:
                        totals[n] += times[n]
                unexpected = {str(n): s for n, s in statuses.items() if s != expected}
                all_expected &= not unexpected
                row = {"proof": name, "model": p.broken.label() if broken else "correct", "expected": expected,
                       "unexpected_statuses": unexpected,
                       "seconds": {str(n): round(t, 4) for n, t in times.items()},
                       "in_walks": {str(n): round(t / walk) for n, t in times.items()},
                       "largest_over_smallest": round(times[sizes[-1]] / times[sizes[0]], 2)}
                rows.append(row)
                print(axis, row, flush=True)
        ratio = round(totals[sizes[-1]] / totals[sizes[0]], 2)
        flat = AXES[axis][0] == SIZES  # the host depth changes the walk itself: no flat curve is expected
        out[axis] = {"sizes": list(sizes), "proofs": rows, "correct_total_seconds": {str(n): round(t, 4)
                                                                                     for n, t in totals.items()},
                     "largest_over_smallest": ratio, "within_goal": ratio <= GOAL if flat else None}
        print(f"{axis}: {sizes[-1]} over {sizes[0]}: {ratio}x" + (f" (goal {GOAL}x)" if flat else ""), flush=True)
    return out, all_expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--axis", action="append", choices=list(AXES), help="only these axes (repeatable)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per point (the median is kept)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per solver query")
    parser.add_argument("--quick", action="store_true", help="two smallest sizes, one run, no file unless --out")
    parser.add_argument("--out", default=None, help="default results/scale.json (none with --quick)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat: at least 1")
    if args.timeout <= 0:
        parser.error("--timeout: seconds, more than 0")
    out = args.out if args.out or args.quick else str(Path(__file__).parent / "results" / "scale.json")
    repeat = 1 if args.quick else args.repeat
    axes = args.axis or list(AXES)
    load_before = os.getloadavg()  # other work on the machine inflates every time: recorded to judge them by
    walk = walk_seconds()
    results, all_expected = measure(axes, args.quick, repeat, int(args.timeout * 1000), walk)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for axis in results.values():  # each axis carries its own recording (--axis re-records only some)
        axis.update({"recorded": now, "repeat": repeat, "reference_walk_seconds": walk,
                     "load_average_before": load_before, "load_average_after": os.getloadavg()})
    if out:
        if args.axis and not args.quick and Path(out).exists():  # the axes not re-run keep their recording
            old = json.loads(Path(out).read_text())
            recorded = {"recorded": old["date"], **{k: v for k, v in old["results"].items() if k in (
                "repeat", "reference_walk_seconds", "load_average_before", "load_average_after")}}
            kept = {a: {**recorded, **r} for a, r in old["results"]["axes"].items() if a not in results}
            results = {**kept, **results}
        write_results("proof time against scale", {
            "goal_largest_over_smallest": GOAL, "quick": args.quick, "axes": results}, out)
    if not all_expected:
        print("some points did not give the expected verdict (see unexpected_statuses)", file=sys.stderr)
    return 0 if all_expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
