"""The host (v1) page-table walk: 48882 §2.2.3 "I/O Page Tables for Host Translations".

Written once over the backend (a bounded unrolling of at most six levels). What it does, in order,
at each level L (default page size 2^level_shift(L), index = address bits index_bits(L); ``spec/levels``):

* PR = 0 -> not-present fault (PR flag 0);
* permissions: IR/IW are ANDed down the walk, starting from the DTE's;
* Next Level 0 or 7 is a leaf: NL = 0 maps the level's default size; NL = 7 encodes the size in the
  address field (the lowest 0 bit z at or above bit 12 gives 2^(z+1), Table 14). An NL = 7 size must
  exceed the level's default and not exceed the next level's (choice, unconfirmed); a leaf at level 6
  is invalid (Table 15: the top level of a 6-level table has no translation entries);
* 1 <= NL < L is a PDE: the index bits of the skipped levels must be 0; NL >= L is an invalid level
  encoding. Reserved bits (PDE 60:52, PTE 58:52), invalid encodings and sizes -> fault with RZ = 1;
* an address beyond the range of DTE.Mode -> not-present fault (flag choice unconfirmed);
* after the leaf, a write needs IW and a read needs IR, else a permission fault (PR = 1, PE = 1).

Facts: ``shared/reference/page-tables.md`` §1–§3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .host_page_table import PDE, PTE
from .levels import entry_address as entry_at, level_shift
from .walk_types import HOST, SHIFT_WIDTH, FaultState, WalkResult, WalkStep, by_level, low_mask

MAX_LEVELS = 6
LEVELS = range(1, MAX_LEVELS + 1)
# The fields the walk reads before it knows whether an entry is a PDE or a PTE: both formats place
# them at the same bits (tests/spec/test_levels_and_field_reads.py checks it).
ADDRESS_FIELD = PTE.field("Page Address")  # bits 51:12
PRESENT, NEXT_LEVEL, READABLE, WRITABLE = (PTE.field(name) for name in ("PR", "Next Level", "IR", "IW"))


@dataclass(frozen=True)
class HostEntry:
    """One v1 entry read at a level, as the walk understands it (backend values)."""

    present: Any
    leaf: Any  # Next Level 0 or 7
    next_level: Any  # the level of the table a PDE points to
    address: Any  # a PDE's next table, or a leaf's page base (low bits of its size cleared)
    page_shift: Any  # a leaf's page size (log2)
    readable: Any
    writable: Any
    reserved_set: Any  # a reserved bit of this entry's format (PDE 60:52, PTE 58:52) is set
    bad_encoding: Any  # Next Level not below the level, an illegal encoded size, or a leaf at level 6


def host_entry(b: Any, e: Any, level: Any) -> HostEntry:
    """What entry ``e`` means at ``level`` (48882 §2.2.3, Table 14 for Next Level 7)."""
    nl = NEXT_LEVEL.read(e, b)
    leaf = b.any_of(b.eq(nl, 0), b.eq(nl, 7))
    ones = b.trailing_ones(ADDRESS_FIELD.read(e, b), ADDRESS_FIELD.width)
    # the lowest 0 bit z of the address (z = the field's low bit + ones) gives a page of 2^(z+1)
    encoded = b.add(b.zext(ones, SHIFT_WIDTH), ADDRESS_FIELD.lo + 1, SHIFT_WIDTH)
    default = by_level(b, level, LEVELS, level_shift, SHIFT_WIDTH)
    next_shift = by_level(b, level, LEVELS, lambda n: level_shift(n + 1), SHIFT_WIDTH)
    shift = b.ite(b.eq(nl, 7), encoded, default)
    bad_size = b.all_of(b.eq(nl, 7), b.any_of(
        b.eq(ones, ADDRESS_FIELD.width), b.ule(encoded, default), b.ugt(encoded, next_shift)))
    bad_level = b.uge(b.zext(nl, 8), b.zext(level, 8))
    page = b.band(e, b.const(ADDRESS_FIELD.mask, 64))
    return HostEntry(
        present=b.eq(PRESENT.read(e, b), 1),
        leaf=leaf,
        next_level=nl,
        address=b.ite(leaf, b.band(page, b.bnot(low_mask(b, shift), 64)), page),
        page_shift=shift,
        readable=b.eq(READABLE.read(e, b), 1),
        writable=b.eq(WRITABLE.read(e, b), 1),
        reserved_set=b.ne(b.band(e, b.ite(leaf, b.const(PTE.reserved_mask, 64), b.const(PDE.reserved_mask, 64))), 0),
        bad_encoding=b.ite(leaf, b.any_of(bad_size, b.eq(level, MAX_LEVELS)), bad_level),
    )


def host_walk(b: Any, memory: Any, root: Any, mode: Any, address: Any, write: Any,
              readable: Any, writable: Any, *, fault_address: Any = None,
              fault: FaultState | None = None, resume: bool = False) -> WalkResult:
    """Walk the v1 table at ``root`` with ``mode`` levels (1..6) for ``address``.

    ``readable``/``writable`` are the permissions granted so far (the DTE's IR/IW). A fault is
    recorded against ``fault_address`` (default: ``address``) in the host dimension. Given a
    ``fault`` state that has already fired, the walk is inactive (a nested caller's earlier fault wins).
    """
    fault_address = address if fault_address is None else fault_address
    incoming = FaultState.none(b) if fault is None else fault
    f = FaultState.none(b)
    live = b.lnot(incoming.raised)
    too_wide = b.false() if resume else b.any_of(*[
        b.all_of(b.eq(mode, m), b.ne(b.lshr(address, level_shift(m + 1), 64), 0)) for m in range(1, MAX_LEVELS)
    ])
    f = f.raise_if(b, b.all_of(live, too_wide), HOST, fault_address)
    level, table = mode, root
    r, w = readable, writable
    done = b.false()
    spa, shift = b.const(0, 64), b.const(0, SHIFT_WIDTH)
    steps = []
    # every step goes down at least one level, so a known Mode bounds the number of entries read
    known_mode = b.constant(mode)
    known_level = known_mode if known_mode in LEVELS else None
    for _ in range(known_mode if known_mode in LEVELS else MAX_LEVELS):
        active = b.all_of(live, b.lnot(done), b.lnot(f.raised))
        entry_address = entry_at(b, table, address, level, LEVELS)
        e = b.read64(memory, entry_address)
        ent = host_entry(b, e, level)
        r = b.ite(active, b.all_of(r, ent.readable), r)
        w = b.ite(active, b.all_of(w, ent.writable), w)
        steps.append(WalkStep("PDE/PTE", HOST, level, entry_address, e, r, w, active))

        here = b.all_of(active, ent.present)
        f = f.raise_if(b, b.all_of(active, b.lnot(ent.present)), HOST, fault_address)
        leaf, pde = b.all_of(here, ent.leaf), b.all_of(here, b.lnot(ent.leaf))
        # the index bits of the levels a PDE skips must be zero
        skipped = b.sub(
            by_level(b, level, LEVELS, lambda n: 1 << level_shift(n) if n > 1 else 0, 64),
            by_level(b, ent.next_level, LEVELS, lambda n: 1 << level_shift(n + 1), 64), 64)
        bad_skip = b.all_of(pde, b.ne(b.band(address, skipped), 0))
        f = f.raise_if(b, b.all_of(here, b.any_of(ent.reserved_set, ent.bad_encoding, bad_skip)), HOST,
                       fault_address, pr=True, rz=True)

        good_leaf = b.all_of(leaf, b.lnot(f.raised))
        offset = low_mask(b, ent.page_shift)
        spa = b.ite(good_leaf, b.bor(ent.address, b.band(address, offset)), spa)
        shift = b.ite(good_leaf, ent.page_shift, shift)
        done = b.any_of(done, good_leaf)
        go_down = b.all_of(pde, b.lnot(f.raised))
        # A step that happens below a level-L directory is at a level under L (a Next Level of L or more
        # faults), so below level 2 it is at level 1: a constant there folds its index and meaning.
        known_level = 1 if known_level == 2 else None
        level = b.const(1, 3) if known_level == 1 else b.ite(go_down, ent.next_level, level)
        table = b.ite(go_down, ent.address, table)

    allowed = b.ite(write, w, r)
    f = f.raise_if(b, b.all_of(done, b.lnot(allowed)), HOST, fault_address, pr=True, pe=True)
    return WalkResult(ok=b.all_of(done, b.lnot(f.raised)), spa=spa, page_shift=shift, readable=r, writable=w,
                    fault=incoming.merge(b, f), steps=tuple(steps))
