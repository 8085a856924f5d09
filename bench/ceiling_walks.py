"""BENCHMARK-ONLY ceilings: hand-written, abstraction-free walks over a dict memory (never used by the tool).

They measure what plain CPython can do for the two walks the engine is judged on (issue 15.1): a v1
4-level translation and a nested 4x4 one (a guest table of 4 levels over a 4-level host table). Each
makes the same reads and checks the semantics makes on these paths (DTE V/TV/Mode/GV, device-table
bounds, present bits, Next Level, reserved bits, IR/IW and guest R/W down the walk) and returns the
same information an Outcome carries, as plain tuples: (ok, spa, page_shift, readable, writable,
domain_id, logged, event, dimension, steps) with each step (table, level, entry_address, entry, r, w).
Any fault returns at once; the fault records themselves are not built (the engine's are). So they are
upper bounds for the walks they cover, not implementations of 48882: correctness lives in ``spec/``.
"""

from __future__ import annotations

M52 = 0x000F_FFFF_FFFF_F000  # address bits 51:12 of an entry
PDE_RESERVED = 0x1FF << 52  # PDE 60:52
PTE_RESERVED = 0x7F << 52  # PTE 58:52
GCR3_RESERVED = (0xFFF << 52) | 0xFFE


def _dte(mem: dict, bar: int, device_id: int):
    base = (bar >> 12 & 0xFF_FFFF_FFFF) << 12
    if device_id >> 7 > bar & 0x1FF:
        return None
    at = base + (device_id << 5)
    return at, mem.get(at, 0), mem.get(at + 8, 0), mem.get(at + 16, 0), mem.get(at + 24, 0)


def _host(mem: dict, root: int, levels: int, address: int, r: bool, w: bool, steps: list):
    """A v1 walk of ``levels`` levels of 4 KiB pages: (spa, r, w) or None on a fault."""
    if address >> (12 + 9 * levels):
        return None
    table, level = root, levels
    while True:
        at = table + ((address >> (12 + 9 * (level - 1)) & 0x1FF) << 3)
        e = mem.get(at, 0)
        r, w = r and bool(e >> 61 & 1), w and bool(e >> 62 & 1)
        steps.append(("PDE/PTE", level, at, e, r, w))
        if not e & 1:
            return None
        nl = e >> 9 & 7
        if nl == 0:
            if e & PTE_RESERVED or level != 1:
                return None
            return (e & M52) | (address & 0xFFF), r, w
        if e & PDE_RESERVED or nl != level - 1:
            return None
        table, level = e & M52, nl


def v1_walk(mem: dict, bar: int, device_id: int, address: int, write: bool):
    """A v1 translation: DTE, then the host table of DTE.Mode levels."""
    dte = _dte(mem, bar, device_id)
    if dte is None:
        return None
    at, q0, q1, q2, q3 = dte
    if q0 & 0x8000_0000_0000_007C or not q0 & 3 or q0 >> 55 & 1:
        return None
    mode = q0 >> 9 & 7
    r, w = bool(q0 >> 61 & 1), bool(q0 >> 62 & 1)
    steps = [("DTE", 0, at, q0 | q1 << 64 | q2 << 128 | q3 << 192, r, w)]
    page = _host(mem, q0 & M52, mode, address, r, w, steps)
    if page is None or not (page[2] if write else page[1]):
        return None
    return True, page[0], 12, page[1], page[2], q1 & 0xFFFF, False, 0, 0, steps


def nested_walk(mem: dict, bar: int, device_id: int, address: int, write: bool):
    """A nested translation: DTE, the 1-level GCR3 table (PASID 0), a 4-level guest table whose every
    pointer and the final GPA go through the 4-level host table."""
    dte = _dte(mem, bar, device_id)
    if dte is None:
        return None
    at, q0, q1, q2, q3 = dte
    if q0 & 0x8000_0000_0000_007C or not q0 & 3 or not q0 >> 55 & 1:
        return None
    mode = q0 >> 9 & 7
    root = q0 & M52
    r, w = bool(q0 >> 61 & 1), bool(q0 >> 62 & 1)
    steps = [("DTE", 0, at, q0 | q1 << 64 | q2 << 128 | q3 << 192, r, w)]
    gcr3 = ((q0 >> 58 & 7) << 12) | ((q1 >> 16 & 0xFFFF) << 15) | ((q1 >> 43 & 0x1F_FFFF) << 31)
    table = _host(mem, root, mode, gcr3, r, w, steps)
    if table is None:
        return None
    e = mem.get(table[0], 0)
    steps.append(("GCR3", 0, table[0], e, True, True))
    if not e & 1 or e & GCR3_RESERVED:
        return None
    cr3 = _host(mem, root, mode, e & M52, r, w, steps)
    if cr3 is None:
        return None
    if address >> 47 not in (0, 0x1FFFF):
        return None
    table, gw = cr3[0], True
    for level in (4, 3, 2, 1):
        at = table + ((address >> (12 + 9 * (level - 1)) & 0x1FF) << 3)
        e = mem.get(at, 0)
        gw = gw and bool(e >> 1 & 1)
        steps.append(("GPTE", level, at, e, True, gw))
        if not e & 1 or e >> 7 & 1:
            return None
        gpa = e & M52
        if level > 1:
            nxt = _host(mem, root, mode, gpa, r, w, steps)
            if nxt is None:
                return None
            table = nxt[0]
    page = _host(mem, root, mode, gpa | (address & 0xFFF), r, w, steps)
    if page is None or not (page[2] and gw if write else page[1]):
        return None
    return True, page[0], 12, page[1], gw and page[2], q1 & 0xFFFF, False, 0, 0, steps
