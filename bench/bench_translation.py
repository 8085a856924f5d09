"""Walks per second on Python ints (v1 4-level, v2 4-level, nested 4x4) and the Z3 time of the
adversarial-guest isolation query. Writes bench/results/translation.json (machine and date included).

    .venv/bin/python bench/bench_translation.py [--seconds 3] [--skip-z3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from amdvi.spec.choices import Hardware
from amdvi.properties.isolation import nested_isolation
from amdvi.spec.bitvec import INT
from amdvi.spec.device_table import DTE
from amdvi.spec.guest_page_table import GCR3_ENTRY, GPTE
from amdvi.spec.host_page_table import PDE, PTE
from amdvi.spec.mmio import DEV_TAB_BAR
from amdvi.spec.translation import Request, translate

from record import write_results  # bench/record.py: these scripts run from this folder

DT = 0x100000
BAR = DEV_TAB_BAR.encode(DevTabBase=DT >> 12, Size=0)
RW = {"IR": 1, "IW": 1}


def put_dte(mem: dict, device: int, **fields) -> None:
    bits = DTE.encode(fields)
    for i in range(4):
        mem[DT + device * 32 + 8 * i] = (bits >> (64 * i)) & ((1 << 64) - 1)


def identity_host_table(mem: dict, root: int, pages: int, spa_base: int) -> None:
    """A 4-level v1 table mapping GPA/IOVA i*4K -> spa_base + i*4K for i < pages (pages <= 512)."""
    l4, l3, l2, l1 = root, root + 0x1000, root + 0x2000, root + 0x3000
    mem[l4] = PDE.encode({"PR": 1, "Next Level": 3, "Next Table Address": l3 >> 12, **RW})
    mem[l3] = PDE.encode({"PR": 1, "Next Level": 2, "Next Table Address": l2 >> 12, **RW})
    mem[l2] = PDE.encode({"PR": 1, "Next Level": 1, "Next Table Address": l1 >> 12, **RW})
    for i in range(pages):
        mem[l1 + 8 * i] = PTE.encode({"PR": 1, "Page Address": (spa_base >> 12) + i, **RW})


def guest_tables(mem: dict, spa_of, gcr3: int, cr3: int) -> None:
    """GCR3 (1 level) entry for PASID 0 -> a 4-level guest table mapping GVA 0 -> GPA 0x9000 (addresses as GPAs)."""
    mem[spa_of(gcr3)] = GCR3_ENTRY.encode(V=1, GCR3=cr3 >> 12)
    for k in range(4):
        mem[spa_of(cr3 + 0x1000 * k)] = GPTE.encode({"P": 1, "R/W": 1, "U/S": 1, "Address": (cr3 >> 12) + k + 1})


def images() -> dict[str, tuple[dict, Request]]:
    v1: dict = {}
    put_dte(v1, 1, V=1, TV=1, Mode=4, host_page_table_root_pointer=0x200, DomainID=1, **RW)
    identity_host_table(v1, 0x200000, 16, 0x4000_0000)
    v2: dict = {}
    put_dte(v2, 2, V=1, TV=1, Mode=0, GV=1, GIoV=1, DomainID=2, **RW, **_gcr3(0x300000))
    guest_tables(v2, lambda a: a, 0x300000, 0x310000)
    nested: dict = {}
    put_dte(nested, 3, V=1, TV=1, Mode=4, host_page_table_root_pointer=0x200, GV=1, GIoV=1, DomainID=3, **RW,
            **_gcr3(0x1000))
    identity_host_table(nested, 0x200000, 512, 0x4000_0000)
    guest_tables(nested, lambda gpa: 0x4000_0000 + gpa, 0x1000, 0x2000)
    return {
        "v1_4level": (v1, Request(1, 0x5123, False)),
        "v2_4level": (v2, Request(2, 0x123, False)),
        "nested_4x4": (nested, Request(3, 0x123, False)),
    }


def _gcr3(address: int) -> dict:
    return {"GCR3 Table Root Pointer": address}


def walks_per_second(mem: dict, req: Request, seconds: float) -> float:
    assert translate(INT, mem, BAR, req).ok, "benchmark image must translate"
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            translate(INT, mem, BAR, req)
        n += 50
    return n / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--skip-z3", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "translation.json"))
    args = ap.parse_args()
    results: dict = {"walks_per_second": {}}
    for name, (mem, req) in images().items():
        results["walks_per_second"][name] = round(walks_per_second(mem, req, args.seconds), 1)
        print(f"{name}: {results['walks_per_second'][name]} walks/s", flush=True)
    if not args.skip_z3:
        for label, choices in (("correct", Hardware()), ("mutant", Hardware(guest_table_pointer_untranslated=True))):
            q = nested_isolation(choices)
            results[f"z3_nested_isolation_{label}"] = {"status": q.result.status, "seconds": round(q.result.seconds, 1),
                                                       "detail": q.result.detail}
            print(f"nested isolation ({label}): {q.result.status} in {q.result.seconds:.1f} s", flush=True)
    write_results("translation", results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
