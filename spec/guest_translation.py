"""The guest (v2) walk: the GCR3 table and the x86-64 page table, 48882 §2.2.6
"I/O Page Tables for Guest Translations", nested over the host (v1) walk when DTE.Mode != 0.

Written once over the backend as a bounded unrolling (at most 3 GCR3 levels and 5 guest levels).

* GCR3 table: DTE.GLX + 1 levels, 512 entries each, indexed by PASID bits (PASID[19:18] / [17:9] /
  [8:0], top level first). V = 0 -> guest-dimension fault; reserved bits -> RZ. The last level gives
  the guest CR3, the root of that PASID's guest table.
* Guest table: 4 levels (DTE.GPM = 0) or 5 (GPM = 1); the address must be canonical for that depth
  (choice: sign-extended from bit 47 / 56; the rule for requests without PASID is unconfirmed).
  P = 0 -> not present; R/W and U/S are ANDed down the walk, NX ORed; PS = 1 makes a 1 GiB (level 3)
  or 2 MiB (level 2) leaf, PS at level 4 or 5 is reserved (RZ), a PS leaf with address bits below its
  size set is RZ; level 1 is always a leaf (its bit 7 is PAT, ignored).
* A/D bits are read and never written: the model leaves hardware A/D updates out.
* Nested (DTE.Mode != 0): the GCR3 root, every GCR3 entry, every guest table pointer and the final
  GPA are guest physical and go through the host walk (table reads need host read permission; the
  final GPA needs the request's access). A host fault there is a host-dimension fault logged against
  that GPA (modelling choice, unconfirmed).

Facts: ``shared/reference/page-tables.md`` §4–§6.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .bitvec import ADDRESS_WIDTH, mask
from .guest_page_table import GCR3_ENTRY, GPTE
from .host_translation import host_walk
from .choices import SPEC, Hardware
from .levels import ENTRY_SHIFT, entry_address as entry_at, gcr3_index_bits, index_bits, level_shift
from .walk_types import GUEST, SHIFT_WIDTH, FaultState, WalkResult, WalkStep, by_level, low_mask

GCR3_LEVELS = 3
GUEST_LEVELS = range(1, 6)
ADDRESS_FIELD = GPTE.field("Address")
PRESENT, WRITABLE, USER, PAGE_SIZE, NO_EXECUTE = (GPTE.field(name) for name in ("P", "R/W", "U/S", "PS", "NX"))
GCR3_VALID, GCR3_ADDRESS = GCR3_ENTRY.field("V"), GCR3_ENTRY.field("GCR3")


@dataclass(frozen=True)
class HostContext:
    """What a nested walk needs to translate guest-physical pointers: the DTE's host table."""

    nested: Any  # DTE.Mode != 0
    root: Any
    mode: Any
    readable: Any  # DTE.IR / IW
    writable: Any


def _to_system(b: Any, memory: Any, host: HostContext, gpa: Any, write: Any, fault: FaultState,
               steps: list[WalkStep], when: Any = True) -> tuple[Any, WalkResult | None, FaultState]:
    """A guest-physical address as a system address (through the host walk when nested).

    ``when`` says whether the caller really uses this pointer; the host steps count only then.
    """
    if b.known_false(host.nested) or b.known_false(when):
        return gpa, None, fault
    walk = host_walk(b, memory, host.root, host.mode, gpa, write, host.readable, host.writable, fault=fault)
    steps.extend(WalkStep(s.table, s.dimension, s.level, s.entry_address, s.entry, s.readable, s.writable,
                          b.all_of(host.nested, when, s.active)) for s in walk.steps)
    return b.ite(host.nested, walk.spa, gpa), walk, fault.select(b, host.nested, walk.fault)


@dataclass(frozen=True)
class GuestResume:
    """A guest walk picked up below a cached guest page-directory entry: the system address of the
    table that entry points to, that table's level, and the permissions gathered above it."""

    table: Any
    level: Any
    writable: Any
    user: Any
    nx: Any


@dataclass(frozen=True)
class GuestEntry:
    """One guest (x86-64 format) entry read at a level, as the walk understands it (backend values)."""

    present: Any
    leaf: Any  # level 1, or PS = 1 at level 2 (2 MiB) or 3 (1 GiB)
    address: Any  # the next table, or the page base
    page_shift: Any  # a leaf's page size (log2)
    writable: Any
    user: Any
    nx: Any
    invalid: Any  # PS = 1 at level 4 or 5, or a large page whose address has bits below its size


def guest_entry(b: Any, e: Any, level: Any) -> GuestEntry:
    """What guest entry ``e`` means at ``level`` (48882 §2.2.6; level 1's bit 7 is PAT, ignored)."""
    ps = b.eq(PAGE_SIZE.read(e, b), 1)
    big = b.all_of(ps, b.any_of(b.eq(level, 2), b.eq(level, 3)))
    shift = by_level(b, level, GUEST_LEVELS, level_shift, SHIFT_WIDTH)
    page = b.band(e, b.const(ADDRESS_FIELD.mask, 64))
    return GuestEntry(
        present=b.eq(PRESENT.read(e, b), 1),
        leaf=b.any_of(b.eq(level, 1), big),
        address=page,
        page_shift=shift,
        writable=b.eq(WRITABLE.read(e, b), 1),
        user=b.eq(USER.read(e, b), 1),
        nx=b.eq(NO_EXECUTE.read(e, b), 1),
        invalid=b.any_of(b.all_of(big, b.ne(b.band(page, low_mask(b, shift)), 0)), b.all_of(ps, b.uge(level, 4))),
    )


def guest_walk(b: Any, memory: Any, *, gcr3_root: Any, glx: Any, gpm: Any, pasid: Any, address: Any,
               write: Any, user: Any, execute: Any, host: HostContext, fault_address: Any = None,
               choices: Hardware = SPEC, gcr3_entry: Any = None,
               resume: GuestResume | None = None) -> WalkResult:
    """Translate ``address`` (a GVA of ``pasid``) through the GCR3 table and the guest page table.

    ``gcr3_entry``: the PASID's GCR3 table entry as a GCR3 cache holds it; the GCR3 table is then not read.
    ``resume``: the walk starts below a cached guest page-directory entry (neither the GCR3 table nor
    the guest levels above it are read).
    """
    fault_address = address if fault_address is None else fault_address
    f = FaultState.none(b)
    steps: list[WalkStep] = []
    read = b.false()

    # -- the GCR3 table -----------------------------------------------------------------------
    if resume is not None:
        table = resume.table
    elif gcr3_entry is None:
        table, _, f = _to_system(b, memory, host, gcr3_root, read, f, steps)
    else:  # the cached entry is the last level's: its guest CR3 goes through the host table
        table, _, f = _to_system(b, memory, host, b.band(gcr3_entry, b.const(GCR3_ADDRESS.mask, 64)),
                                 read, f, steps)
    known_glx = b.constant(glx)
    gcr3_levels = 0 if (gcr3_entry is not None or resume is not None) else (GCR3_LEVELS if known_glx is None else min(known_glx + 1, GCR3_LEVELS))
    for k in range(gcr3_levels):
        level = b.sub(b.zext(glx, 8), k, 8)  # GCR3 level counting down to 0
        active = b.all_of(b.ule(k, b.zext(glx, 8)), b.lnot(f.raised))
        index = by_level(b, level, range(0, GCR3_LEVELS), lambda n: b.zext(b.extract(pasid, *gcr3_index_bits(n)), 64), 64)
        entry_address = b.add(table, b.shl(index, ENTRY_SHIFT, 64), 64)
        e = b.read64(memory, entry_address)
        steps.append(WalkStep("GCR3", GUEST, level, entry_address, e, b.true(), b.true(), active))
        f = f.raise_if(b, b.all_of(active, b.eq(GCR3_VALID.read(e, b), 0)), GUEST, fault_address)
        f = f.raise_if(b, b.all_of(active, b.ne(b.band(e, GCR3_ENTRY.reserved_mask), 0)), GUEST, fault_address,
                       pr=True, rz=True)
        nxt = b.band(e, b.const(GCR3_ADDRESS.mask, 64))
        nxt_spa, _, f2 = _to_system(b, memory, host, nxt, read, f, steps, when=active)
        f = f.select(b, active, f2)  # only an active level moves on (its host walk's fault counts only then)
        table = b.ite(active, nxt_spa, table)

    # -- the guest page table -----------------------------------------------------------------
    depth = b.ite(b.eq(gpm, 1), b.const(5, 8), b.const(4, 8))
    # canonical: the bits from the top one the root table's index uses up to bit 63 are all equal
    top4, top5 = index_bits(4)[0], index_bits(5)[0]
    sign4 = b.extract(address, ADDRESS_WIDTH - 1, top4)
    sign5 = b.extract(address, ADDRESS_WIDTH - 1, top5)
    canonical = b.ite(b.eq(depth, 5),
                      b.any_of(b.eq(sign5, 0), b.eq(sign5, mask(ADDRESS_WIDTH - top5))),
                      b.any_of(b.eq(sign4, 0), b.eq(sign4, mask(ADDRESS_WIDTH - top4))))
    f = f.raise_if(b, b.lnot(canonical), GUEST, fault_address)
    level = depth
    writable, user_ok, nx = b.true(), b.true(), b.false()
    if resume is not None:
        level, writable, user_ok, nx = b.zext(resume.level, 8), resume.writable, resume.user, resume.nx
    done = b.false()
    gpa, shift = b.const(0, 64), b.const(0, SHIFT_WIDTH)
    known_depth = b.constant(depth)  # each step goes down a level: a known depth bounds the entries read
    # Each step that happens is one level below the one before, so from a known first level every step's
    # level is known: a constant there (rather than the level the steps before left) folds the entry's
    # index and meaning, and the walk stops at level 1 (always a leaf). A step that does not happen
    # counts for nothing, whatever level it is given.
    first = b.constant(level)
    known_first = first if first in GUEST_LEVELS else None
    for k in GUEST_LEVELS if known_depth is None else range(1, known_depth + 1):
        if known_first is not None:
            if known_first - (k - 1) < 1:
                break
            level = b.const(known_first - (k - 1), 8)
        active = b.all_of(b.lnot(done), b.lnot(f.raised))
        entry_address = entry_at(b, table, address, level, GUEST_LEVELS)
        e = b.read64(memory, entry_address)
        ent = guest_entry(b, e, level)
        writable = b.ite(active, b.all_of(writable, ent.writable), writable)
        user_ok = b.ite(active, b.all_of(user_ok, ent.user), user_ok)
        nx = b.ite(active, b.any_of(nx, ent.nx), nx)
        steps.append(WalkStep("GPTE", GUEST, level, entry_address, e, b.true(), writable, active))
        f = f.raise_if(b, b.all_of(active, b.lnot(ent.present)), GUEST, fault_address)
        here = b.all_of(active, ent.present)
        leaf = b.all_of(here, ent.leaf)
        page, level_shift = ent.address, ent.page_shift
        offset = low_mask(b, level_shift)
        f = f.raise_if(b, b.all_of(here, ent.invalid), GUEST, fault_address, pr=True, rz=True)
        good_leaf = b.all_of(leaf, b.lnot(f.raised))
        gpa = b.ite(good_leaf, b.bor(page, b.band(address, offset)), gpa)
        shift = b.ite(good_leaf, level_shift, shift)
        done = b.any_of(done, good_leaf)
        go_down = b.all_of(here, b.lnot(ent.leaf), b.lnot(f.raised))  # false at a known level 1
        if k < len(GUEST_LEVELS):
            if choices.guest_table_pointer_untranslated:
                next_table, f2 = page, f
            else:
                next_table, _, f2 = _to_system(b, memory, host, page, read, f, steps, when=go_down)
            f = f.select(b, go_down, f2)
            table = b.ite(go_down, next_table, table)
        level = b.ite(go_down, b.sub(level, 1, 8), level)

    # -- guest permissions, then the final GPA through the host table --------------------------
    denied_write = b.all_of(write, b.lnot(writable))
    denied_user = b.all_of(user, b.lnot(user_ok))
    denied_exec = b.all_of(execute, nx)
    f = f.raise_if(b, b.all_of(done, b.any_of(denied_write, denied_user, denied_exec)), GUEST, fault_address,
                   pr=True, pe=True, us=denied_user, nx=denied_exec)
    if b.known_false(host.nested):
        final = WalkResult(ok=b.false(), spa=gpa, page_shift=shift, readable=host.readable, writable=host.writable,
                         fault=f, steps=())
    else:
        final = host_walk(b, memory, host.root, host.mode, gpa, write, host.readable, host.writable, fault=f)
    steps.extend(WalkStep(s.table, s.dimension, s.level, s.entry_address, s.entry, s.readable, s.writable,
                          b.all_of(host.nested, done, s.active)) for s in final.steps)
    nested = host.nested
    spa = b.ite(nested, final.spa, gpa)
    host_r = b.ite(nested, final.readable, host.readable)
    host_w = b.ite(nested, final.writable, host.writable)
    # Mode 0: the DTE's IR/IW still apply to the guest-translated access
    dte_denied = b.all_of(b.lnot(nested), done, b.lnot(b.ite(write, host.writable, host.readable)))
    f_final = f.select(b, nested, final.fault).raise_if(b, dte_denied, GUEST, fault_address, pr=True, pe=True)
    final_shift = b.ite(b.all_of(nested, b.ult(final.page_shift, shift)), final.page_shift, shift)
    return WalkResult(
        ok=b.all_of(done, b.lnot(f_final.raised)),
        spa=spa,
        page_shift=final_shift,
        readable=host_r,
        writable=b.all_of(writable, host_w),
        fault=f_final,
        steps=tuple(steps),
    )
