"""The translation caches an IOMMU may keep, as fixed slots: 48882 §2.2 (the IOMMU caches device table
entries, translations tagged by DomainID, page-directory entries and GCR3 entries, and ATS devices
cache translations in their own IOTLB), with their invalidation by the commands of §2.4.2
(INVALIDATE_DEVTAB_ENTRY), §2.4.3 (INVALIDATE_IOMMU_PAGES), §2.4.4 (INVALIDATE_IOTLB_PAGES) and §2.4.8
(INVALIDATE_IOMMU_ALL).

Each cache is one entry of :data:`CACHE_KINDS` (a :class:`CacheKind`: its slot type, its fill, its
hit predicate and its invalidate-one-slot function, each with one signature for every cache);
:data:`CACHE_NAMES`, :data:`SLOT_TYPES`, :class:`Caches`' fields, :func:`invalidate`, the IOMMU's
``fill`` and the DMA model's ``ServeChoice`` derive from it, so a new cache is one entry.

What the hardware caches, and when, is not decided here: a slot is *filled* only through
:func:`fill`, from what a walk of current memory gives (any time, any slot: a choice the caller
makes), and *evicted* through :func:`evict`. Invalidation (:func:`invalidate`) clears every slot the
command covers. All functions are pure and written once over the backend, so a slot's fields may be
symbolic; each function acts on every slot separately ("slot-local"), which is why a proof about one
arbitrary slot covers any number of them.

The caches and their tags (modelling choices where 48882 is not quoted in ``shared/reference``):

* ``dte``: DeviceID -> the 256-bit DTE.
* ``iotlb``: (DomainID, GN, PASID, page, size) -> system page and R/W, where GN = 1 marks a guest
  (GCR3 path) translation, whose PASID counts; for nested translation the combined GVA -> SPA result.
  Only supervisor, non-execute requests are cached (U/S and NX are not kept in a slot).
* ``pde``: a host (v1) page-directory entry of a DomainID, tagged by the aligned IOVA range the table
  it points to covers -> that table, its level and the R/W so far. Only pure v1 walks use it (not the
  host walks inside a nested translation: the model caches less there than hardware may).
* ``guest_pde``: a guest (v2) page-directory entry of a (DomainID, PASID), tagged by the aligned GVA
  range the table it points to covers -> that table's *system* address (already through the host
  table when nested), its level, and the W, U/S and NX gathered so far. The guest dimension's walk cache.
* ``gcr3``: (DomainID, PASID) -> the GCR3 table entry (the guest CR3, a GPA when nested).
* ``device_iotlb``: the ATS device's own cache, (DeviceID, PASID or none, page) -> system page, R/W.

Invalidation semantics (each a modelling choice pinned by tests where the reference is silent):

* INVALIDATE_IOMMU_PAGES clears IOTLB slots of the DomainID whose page overlaps the range and whose
  GN matches (and PASID, when GN = 1). A GN = 0 command also clears every GN = 1 slot of the DomainID
  (a host-table change may alter any nested GVA -> SPA result; the IOTLB cannot tell which). With
  PDE = 1 it also clears overlapping PDE slots (GN = 0), guest PDE slots of the DomainID (GN = 1:
  those of the PASID overlapping the range; GN = 0: all of them, since a host-table change may move
  any guest table a slot points to) and GCR3 slots of the DomainID: of the PASID with GN = 1, all of
  them with GN = 0 (a host-table change may move where a GCR3 entry is read).
* INVALIDATE_IOTLB_PAGES clears device-IOTLB slots of the DeviceID that overlap: with GN = 1 those of
  the PASID (PASID 0 also covering requests without a PASID, as Linux's IOMMU_NO_PASID = 0 use
  implies), with GN = 0 all of them whatever their PASID (unconfirmed reading of the PCIe ATS rule for
  an invalidation without a PASID prefix; ``Hardware.device_iotlb_gn0 = "untagged-only"`` clears only
  those without a PASID).
* INVALIDATE_IOMMU_ALL clears every IOMMU cache, not the devices' IOTLBs.
* INVALIDATE_INTERRUPT_TABLE concerns the interrupt remapping cache (not modelled); PREFETCH is a hint
  (the model's prefetch is a fill choice); COMPLETE_PPR_REQUEST changes no cache.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Mapping

from amdvi.spec.commands import (
    INVALIDATE_DEVTAB_ENTRY, INVALIDATE_IOMMU_ALL, INVALIDATE_IOMMU_PAGES, INVALIDATE_IOTLB_PAGES, OPCODE_HI,
    OPCODE_LO, _invalidation_span,
)
from amdvi.spec.device_table import DTE
from amdvi.spec.events import IO_PAGE_FAULT
from amdvi.spec.guest_page_table import GCR3_ENTRY
from amdvi.spec.bitvec import INT, mask
from amdvi.spec.records import remember_hash, replace as replace_record
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.guest_translation import GUEST_LEVELS, guest_entry
from amdvi.spec.host_translation import host_entry
from amdvi.spec.levels import PAGE_SHIFT, level_shift
from amdvi.spec.translation import Outcome, Request, guest_path
from amdvi.spec.walk_types import GUEST, HOST, SHIFT_WIDTH, by_level, low_mask

@remember_hash
@dataclass(frozen=True)
class DteSlot:
    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = {"device_id": 16, "dte": 256}

    valid: Any = False
    device_id: Any = 0
    dte: Any = 0


@remember_hash
@dataclass(frozen=True)
class TlbSlot:
    """An IOTLB slot (``owner`` = DomainID) or a device-IOTLB slot (``owner`` = DeviceID)."""

    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = {"owner": 16, "pasid": 20, "page": 64, "page_shift": SHIFT_WIDTH,
                                                 "spa": 64}

    valid: Any = False
    owner: Any = 0
    guest: Any = False  # IOTLB: GN (GCR3 path); device IOTLB: the request carried a PASID
    pasid: Any = 0
    page: Any = 0  # input address with the low page_shift bits clear
    page_shift: Any = 12
    spa: Any = 0  # system page base
    readable: Any = False
    writable: Any = False
    present: Any = True  # False: a remembered not-present fault (``Hardware.not_present_cache``)


@remember_hash
@dataclass(frozen=True)
class PdeSlot:
    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = {"domain_id": 16, "base": 64, "shift": SHIFT_WIDTH, "table": 64,
                                                 "level": 3}

    valid: Any = False
    domain_id: Any = 0
    base: Any = 0  # IOVA range covered by the table the entry points to: [base, base + 2^shift)
    shift: Any = 12
    table: Any = 0  # that table's system address
    level: Any = 1  # that table's level
    readable: Any = False
    writable: Any = False


@remember_hash
@dataclass(frozen=True)
class GuestPdeSlot:
    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = {"domain_id": 16, "pasid": 20, "base": 64, "shift": SHIFT_WIDTH,
                                                 "table": 64, "level": 8}

    valid: Any = False
    domain_id: Any = 0
    pasid: Any = 0
    base: Any = 0  # GVA range covered by the table the entry points to: [base, base + 2^shift)
    shift: Any = 12
    table: Any = 0  # that table's system address
    level: Any = 1  # that table's level
    writable: Any = False  # W, U/S ANDed and NX ORed over the entries above and including this one
    user: Any = False
    nx: Any = False


@remember_hash
@dataclass(frozen=True)
class Gcr3Slot:
    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = {"domain_id": 16, "pasid": 20, "entry": 64}

    valid: Any = False
    domain_id: Any = 0
    pasid: Any = 0
    entry: Any = 0


# ---------------------------------------------------------------------------------------------------
# fills: what a walk of current memory gives (``fresh`` is ``translate`` on current memory). One
# signature for every cache (:data:`FillFunction`): ``step`` picks a page-directory entry of the walk
# (the PDE caches), ``dte`` is the request's DTE in memory (the device IOTLB's DTE.I).


def dte_fill(b: Any, request: Request, fresh: Outcome, step: int = 0, choices: Hardware = SPEC,
             dte: Any = None) -> DteSlot:
    """The DTE a fresh request read (kept only when it lies inside the table)."""
    read = fresh.steps[0]
    return DteSlot(valid=read.active, device_id=request.device_id, dte=read.entry)


def iotlb_fill(b: Any, request: Request, fresh: Outcome, step: int = 0, choices: Hardware = SPEC,
               dte: Any = None) -> TlbSlot:
    """The translation a successful walk gave, tagged by the DTE's DomainID and the GCR3 path flag.

    Under ``not_present_cache = "iotlb"`` a pure v1 walk that faulted on a not-present entry (an
    IO_PAGE_FAULT with PR = 0) is kept too, as a 4 KiB negative entry: a hit on it faults."""
    cacheable = b.all_of(fresh.ok, fresh.walked, b.lnot(request.user), b.lnot(request.execute))
    pasid = b.ite(request.has_pasid, request.pasid, b.const(0, 20))
    negative = b.false()
    if choices.not_present_cache == "iotlb":
        fault = IO_PAGE_FAULT.view(fresh.event, b)
        negative = b.all_of(b.lnot(fresh.ok), fresh.walked, b.lnot(fresh.guest), fresh.logged,
                            b.eq(fresh.dimension, HOST), b.eq(fault["EventCode"], IO_PAGE_FAULT.field("EventCode").fixed),
                            b.eq(fault["PR"], 0), b.lnot(request.user), b.lnot(request.execute))
    shift = b.ite(negative, b.const(12, SHIFT_WIDTH), fresh.page_shift, width=SHIFT_WIDTH)
    offset = low_mask(b, shift)
    return TlbSlot(valid=b.any_of(cacheable, negative), owner=fresh.domain_id, guest=fresh.guest, pasid=pasid,
                   page=b.band(request.address, b.bnot(offset, 64)), page_shift=shift,
                   spa=b.band(fresh.spa, b.bnot(offset, 64)), readable=fresh.readable, writable=fresh.writable,
                   present=b.lnot(negative))


def device_iotlb_fill(b: Any, request: Request, fresh: Outcome, step: int = 0, choices: Hardware = SPEC,
                      dte: Any = None) -> TlbSlot:
    """The answer to an ATS translation request (the device caches it when ``dte`` has I = 1,
    48882 §2.2.2.1)."""
    if dte is None:
        raise TypeError("a device IOTLB fill needs the request's DTE (its I bit)")
    shift = fresh.page_shift
    offset = low_mask(b, shift)
    ok = b.all_of(fresh.ok, fresh.walked, b.eq(DTE.view(dte, b).i, 1), request.ats, b.lnot(request.user),
                  b.lnot(request.execute))
    return TlbSlot(valid=ok, owner=request.device_id, guest=request.has_pasid,
                   pasid=b.ite(request.has_pasid, request.pasid, b.const(0, 20)),
                   page=b.band(request.address, b.bnot(offset, 64)), page_shift=shift,
                   spa=b.band(fresh.spa, b.bnot(offset, 64)), readable=fresh.readable, writable=fresh.writable)


def pde_fill(b: Any, request: Request, fresh: Outcome, step_index: int = 0, choices: Hardware = SPEC,
             dte: Any = None) -> PdeSlot:
    """The ``step_index``-th host page-directory entry of a pure v1 walk (not nested)."""
    host_steps = [s for s in fresh.steps if s.dimension == HOST]
    if not 0 <= step_index < len(host_steps):
        return PdeSlot()
    s = host_steps[step_index]
    ent = host_entry(b, s.entry, s.level)
    # the walk went on below the entry: it did not fault there (a level skip with the skipped levels'
    # address bits set faults, 48882 §2.2.3; such an entry is not cached)
    below = host_steps[step_index + 1].active if step_index + 1 < len(host_steps) else b.false()
    if choices.pde_cache_fills_faulting_skip:
        below = b.true()
    is_pde = b.all_of(s.active, ent.present, b.lnot(ent.leaf), b.lnot(ent.reserved_set), b.lnot(ent.bad_encoding),
                      b.lnot(fresh.guest), fresh.walked, below)
    shift = _level_span(b, ent.next_level)
    return PdeSlot(valid=is_pde, domain_id=fresh.domain_id,
                   base=b.band(request.address, b.bnot(low_mask(b, shift), 64)), shift=shift,
                   table=ent.address, level=ent.next_level, readable=s.readable, writable=s.writable)


def guest_pde_fill(b: Any, request: Request, fresh: Outcome, step_index: int = 0, choices: Hardware = SPEC,
                   dte: Any = None) -> GuestPdeSlot:
    """The ``step_index``-th guest page-directory entry of a guest walk, kept when the walk went on
    below it (the entry is a usable directory and, when nested, its pointer translated)."""
    guest_steps = [s for s in fresh.steps if s.table == "GPTE"]
    if not 0 <= step_index < len(guest_steps) - 1:
        return GuestPdeSlot()
    s, below = guest_steps[step_index], guest_steps[step_index + 1]
    ent = guest_entry(b, s.entry, s.level)
    above = [guest_entry(b, t.entry, t.level) for t in guest_steps[:step_index + 1]]
    valid = b.all_of(s.active, below.active, ent.present, b.lnot(ent.leaf), b.lnot(ent.invalid), fresh.guest,
                     fresh.walked)
    shift = by_level(b, s.level, GUEST_LEVELS, level_shift, SHIFT_WIDTH)
    # a table is 4 KiB aligned: the entry read below lies in the table this entry points to
    return GuestPdeSlot(valid=valid, domain_id=fresh.domain_id,
                        pasid=b.ite(request.has_pasid, request.pasid, b.const(0, 20)),
                        base=b.band(request.address, b.bnot(low_mask(b, shift), 64)), shift=shift,
                        table=b.band(below.entry_address, b.bnot(b.const(mask(PAGE_SHIFT), 64), 64)), level=below.level,
                        writable=s.writable, user=b.all_of(*[e.user for e in above]),
                        nx=b.any_of(*[e.nx for e in above]))


def gcr3_fill(b: Any, request: Request, fresh: Outcome, step: int = 0, choices: Hardware = SPEC,
              dte: Any = None) -> Gcr3Slot:
    """The last-level GCR3 table entry a guest walk read for the request's PASID, if usable (present,
    no reserved bit set: an entry the walk faults on is not cached)."""
    last = [s for s in fresh.steps if s.table == "GCR3" and s.dimension == GUEST]
    valid, entry = b.false(), b.const(0, 64)
    for s in last:
        here = b.all_of(s.active, b.eq(s.level, 0))
        valid = b.any_of(valid, here)
        entry = b.ite(here, s.entry, entry)
    pasid = b.ite(request.has_pasid, request.pasid, b.const(0, 20))
    usable = b.all_of(b.eq(GCR3_ENTRY.field("V").read(entry, b), 1), b.eq(b.band(entry, GCR3_ENTRY.reserved_mask), 0))
    return Gcr3Slot(valid=b.all_of(valid, fresh.guest, usable),
                    domain_id=fresh.domain_id, pasid=pasid, entry=entry)


def _level_span(b: Any, level: Any) -> Any:
    """log2 of the IOVA range a level-``level`` table covers."""
    out = b.const(64, SHIFT_WIDTH)
    for n in range(1, 6):
        out = b.ite(b.eq(level, n), b.const(level_shift(n + 1), SHIFT_WIDTH), out)
    return out


def evict(b: Any, slot: Any, when: Any = True) -> Any:
    """``slot`` dropped (where ``when`` holds)."""
    if b.known_false(when):  # not covered: the slot itself (an invalidation covers few of them)
        return slot
    return replace_record(slot, valid=b.all_of(slot.valid, b.lnot(when)))


# ---------------------------------------------------------------------------------------------------
# invalidation


def _overlaps(b: Any, base: Any, shift: Any, start: Any, offset_mask: Any) -> Any:
    """Two naturally aligned power-of-two blocks overlap: they agree above the larger one's size."""
    either = b.bor(low_mask(b, shift), offset_mask)
    return b.eq(b.band(b.bxor(base, start), b.bnot(either, 64)), 0)


def _is(b: Any, command: Any, structure: Any) -> Any:
    return b.eq(b.extract(command, OPCODE_HI, OPCODE_LO), structure.field("Opcode").fixed)


@dataclass(frozen=True)
class InvalidationCommand:
    """A 128-bit command decoded once for every cache's slot function: which invalidation it is
    (backend booleans, false where ``when`` is false) and the fields each cache is tagged by. The
    hardware choices that change what the command says (a mutant ignoring S, PDE or the command) are
    applied here; those that change how a slot matches, in the slot functions."""

    devtab: Any  # INVALIDATE_DEVTAB_ENTRY (§2.4.2)
    device_id: Any
    pages: Any  # INVALIDATE_IOMMU_PAGES (§2.4.3)
    domain_id: Any
    pasid: Any
    guest: Any  # GN = 1
    directories: Any  # PDE = 1
    start: Any  # the range, as a naturally aligned block: its start and its offset mask
    span: Any
    device_pages: Any  # INVALIDATE_IOTLB_PAGES (§2.4.4)
    ats_device_id: Any
    ats_pasid: Any
    ats_guest: Any
    ats_start: Any
    ats_span: Any
    everything: Any  # INVALIDATE_IOMMU_ALL (§2.4.8)


def decode_invalidation(b: Any, command: Any, *, when: Any = True, choices: Hardware = SPEC) -> InvalidationCommand:
    """``command`` as the caches read it (every field; only the one its opcode names is meaningful). On
    Python ints the answer is remembered per command value: a run carries out the same few commands."""
    if b is INT and type(command) is int and type(when) is bool:
        return _decoded_concrete(command, when, choices)
    return _decode_invalidation(b, command, when, choices)


@functools.lru_cache(maxsize=1 << 12)
def _decoded_concrete(command: int, when: bool, choices: Hardware) -> InvalidationCommand:
    return _decode_invalidation(INT, command, when, choices)


def _decode_invalidation(b: Any, command: Any, when: Any, choices: Hardware) -> InvalidationCommand:
    dt = INVALIDATE_DEVTAB_ENTRY.view(command, b)
    pages = INVALIDATE_IOMMU_PAGES.view(command, b)
    iotlb_cmd = INVALIDATE_IOTLB_PAGES.view(command, b)
    is_dt = b.all_of(when, _is(b, command, INVALIDATE_DEVTAB_ENTRY))
    is_pages = b.all_of(when, _is(b, command, INVALIDATE_IOMMU_PAGES))
    is_iotlb = b.all_of(when, _is(b, command, INVALIDATE_IOTLB_PAGES))
    is_all = b.all_of(when, _is(b, command, INVALIDATE_IOMMU_ALL))

    if choices.devtab_invalidation_ignored:
        is_dt = b.false()
    size = b.const(0, 1) if choices.invalidate_pages_ignores_size else pages.S
    address = b.shl(b.zext(pages.Address, 64), INVALIDATE_IOMMU_PAGES.field("Address").unit_shift, 64)
    start, span = _invalidation_span(b, address, size)
    # terms made in the order they were before the registry (Z3's search can depend on that order)
    domain, gn, pde = pages.DomainID, b.eq(pages.GN, 1), b.eq(pages.PDE, 1)
    if choices.invalidate_pages_keeps_pde_cache:
        pde = b.false()

    d_address = b.shl(b.zext(iotlb_cmd.Address, 64), INVALIDATE_IOTLB_PAGES.field("Address").unit_shift, 64)
    d_start, d_span = _invalidation_span(b, d_address, iotlb_cmd.S)
    d_pasid = iotlb_cmd["PASID"]
    d_gn = b.eq(iotlb_cmd.GN, 1)
    return InvalidationCommand(
        devtab=is_dt, device_id=dt.DeviceID,
        pages=is_pages, domain_id=domain, pasid=pages.PASID, guest=gn, directories=pde,
        start=start, span=span,
        device_pages=is_iotlb, ats_device_id=iotlb_cmd.DeviceID, ats_pasid=d_pasid, ats_guest=d_gn,
        ats_start=d_start, ats_span=d_span,
        everything=is_all)


# One function per cache: the slot after the command (semantics: the module docstring).


def _invalidate_dte(b: Any, s: DteSlot, c: InvalidationCommand, choices: Hardware) -> DteSlot:
    covered = b.all_of(c.devtab, b.eq(s.device_id, c.device_id))
    if choices.devtab_invalidation_skips_invalid:
        covered = b.all_of(covered, b.eq(DTE.view(s.dte, b).v, 1))
    return evict(b, s, b.any_of(c.everything, covered))


def _invalidate_iotlb(b: Any, s: TlbSlot, c: InvalidationCommand, choices: Hardware) -> TlbSlot:
    mine = b.all_of(c.pages, b.eq(s.owner, c.domain_id))
    same_kind = b.ite(c.guest, b.all_of(s.guest, b.eq(s.pasid, c.pasid)), b.lnot(s.guest))
    hit = b.all_of(mine, same_kind, _overlaps(b, s.page, s.page_shift, c.start, c.span))
    nested = b.all_of(mine, b.lnot(c.guest), s.guest)
    return evict(b, s, b.any_of(c.everything, hit, nested))


def _invalidate_pde(b: Any, s: PdeSlot, c: InvalidationCommand, choices: Hardware) -> PdeSlot:
    hit = b.all_of(c.pages, c.directories, b.lnot(c.guest), b.eq(s.domain_id, c.domain_id),
                   _overlaps(b, s.base, s.shift, c.start, c.span))
    return evict(b, s, b.any_of(c.everything, hit))


def _invalidate_guest_pde(b: Any, s: GuestPdeSlot, c: InvalidationCommand, choices: Hardware) -> GuestPdeSlot:
    of_pasid = b.all_of(b.eq(s.pasid, c.pasid), _overlaps(b, s.base, s.shift, c.start, c.span))
    hit = b.all_of(c.pages, c.directories, b.eq(s.domain_id, c.domain_id), b.ite(c.guest, of_pasid, b.true()))
    return evict(b, s, b.any_of(c.everything, hit))


def _invalidate_gcr3(b: Any, s: Gcr3Slot, c: InvalidationCommand, choices: Hardware) -> Gcr3Slot:
    hit = b.all_of(c.pages, c.directories, b.eq(s.domain_id, c.domain_id),
                   b.any_of(b.lnot(c.guest), b.eq(s.pasid, c.pasid)))
    return evict(b, s, b.any_of(c.everything, hit))


def _invalidate_device_iotlb(b: Any, s: TlbSlot, c: InvalidationCommand, choices: Hardware) -> TlbSlot:
    # PASID 0 also stands for requests without a PASID (Linux's IOMMU_NO_PASID convention)
    of_pasid = b.any_of(b.all_of(s.guest, b.eq(s.pasid, c.ats_pasid)), b.all_of(b.lnot(s.guest), b.eq(c.ats_pasid, 0)))
    untagged = b.true() if choices.device_iotlb_gn0 == "every-pasid" else b.lnot(s.guest)
    same_kind = b.ite(c.ats_guest, of_pasid, untagged)
    hit = b.all_of(c.device_pages, b.eq(s.owner, c.ats_device_id), same_kind,
                   _overlaps(b, s.page, s.page_shift, c.ats_start, c.ats_span))
    return evict(b, s, hit)


# ---------------------------------------------------------------------------------------------------
# hits: may a slot answer a request? (the tags match; what a hit resumes is models.dma's business).
# One signature: ``dte`` is the DTE the request is translated with (cached or read), ``walk`` the
# plain walk (from that DTE; the IOTLB checks it took the same path); the DTE cache gets neither.


def _in_block(b: Any, address: Any, base: Any, shift: Any) -> Any:
    return b.eq(b.band(address, b.bnot(low_mask(b, shift), 64)), base)


def _allows(b: Any, request: Request, readable: Any, writable: Any) -> Any:
    return b.ite(request.write, writable, readable)


def _dte_hit(b: Any, s: DteSlot, r: Request, dte: Any, walk: Outcome | None, choices: Hardware) -> Any:
    return b.all_of(s.valid, b.eq(s.device_id, r.device_id))


def _iotlb_hit(b: Any, t: TlbSlot, r: Request, dte: Any, walk: Outcome, choices: Hardware) -> Any:
    """A remembered not-present fault (``present`` false) answers too: the access faults."""
    uses_guest, pasid = guest_path(b, dte, r)
    allowed = b.true() if choices.iotlb_hit_ignores_permissions else _allows(b, r, t.readable, t.writable)
    return b.all_of(
        t.valid, walk.walked, b.eq(t.owner, DTE.view(dte, b).domainid), b.eq(t.guest, walk.guest),
        b.any_of(b.lnot(t.guest), b.eq(t.pasid, pasid)), _in_block(b, r.address, t.page, t.page_shift),
        b.lnot(r.user), b.lnot(r.execute), b.any_of(b.lnot(t.present), allowed))


def _pde_hit(b: Any, p: PdeSlot, r: Request, dte: Any, walk: Outcome, choices: Hardware) -> Any:
    v = DTE.view(dte, b)
    uses_guest, _ = guest_path(b, dte, r)
    return b.all_of(p.valid, b.lnot(uses_guest), b.ne(v.mode, 0), b.eq(p.domain_id, v.domainid),
                    _in_block(b, r.address, p.base, p.shift))


def _guest_pde_hit(b: Any, q: GuestPdeSlot, r: Request, dte: Any, walk: Outcome, choices: Hardware) -> Any:
    uses_guest, pasid = guest_path(b, dte, r)
    same_pasid = b.true() if choices.guest_pde_hit_ignores_pasid else b.eq(q.pasid, pasid)
    return b.all_of(q.valid, uses_guest, b.eq(q.domain_id, DTE.view(dte, b).domainid), same_pasid,
                    _in_block(b, r.address, q.base, q.shift))


def _gcr3_hit(b: Any, g: Gcr3Slot, r: Request, dte: Any, walk: Outcome, choices: Hardware) -> Any:
    uses_guest, pasid = guest_path(b, dte, r)
    return b.all_of(g.valid, uses_guest, b.eq(g.domain_id, DTE.view(dte, b).domainid), b.eq(g.pasid, pasid))


def _device_iotlb_hit(b: Any, t: TlbSlot, r: Request, dte: Any, walk: Outcome | None, choices: Hardware) -> Any:
    """The device's own lookup, before the IOMMU sees the request (neither DTE nor walk)."""
    pasid = b.ite(r.has_pasid, r.pasid, b.const(0, 20))
    return b.all_of(t.valid, b.eq(t.owner, r.device_id), b.eq(t.guest, r.has_pasid),
                    b.any_of(b.lnot(t.guest), b.eq(t.pasid, pasid)), _in_block(b, r.address, t.page, t.page_shift),
                    b.lnot(r.user), b.lnot(r.execute), _allows(b, r, t.readable, t.writable))


# ---------------------------------------------------------------------------------------------------
# the registry: every listing of the caches derives from CACHE_KINDS

FillFunction = Callable[..., Any]  # (b, request, fresh, step, choices, dte) -> slot
InvalidateSlot = Callable[[Any, Any, InvalidationCommand, Hardware], Any]  # (b, slot, command, choices) -> slot
Hit = Callable[[Any, Any, Request, Any, Any, Hardware], Any]  # (b, slot, request, dte, walk, choices) -> boolean


@dataclass(frozen=True)
class CacheKind:
    """One cache: its slot type, how a slot is filled from a fresh walk, when a slot may answer a
    request, and how one slot is invalidated; ``section``: where 48882 says what it caches and which
    command clears it.

    ``looked_up``: an untranslated DMA may be answered from it (a :class:`~amdvi.models.dma.ServeChoice`
    field); the device IOTLB is not: an ATS device consults it itself. ``directory_of``: the dimension
    ("host" or "guest") whose page-directory entries its slots hold, where a fill's ``step`` picks which
    entry of the walk; None for the other caches."""

    name: str
    slot_type: type
    fill: FillFunction
    invalidate_slot: InvalidateSlot
    hit: Hit
    section: str
    description: str
    default_slots: int = 2
    looked_up: bool = True
    directory_of: str | None = None


CACHE_KINDS: tuple[CacheKind, ...] = (
    CacheKind("dte", DteSlot, dte_fill, _invalidate_dte, _dte_hit, "§2.2, §2.4.2",
              "device table entries by DeviceID"),
    CacheKind("iotlb", TlbSlot, iotlb_fill, _invalidate_iotlb, _iotlb_hit, "§2.2, §2.4.3",
              "translations by DomainID, GN, PASID and page", default_slots=4),
    CacheKind("pde", PdeSlot, pde_fill, _invalidate_pde, _pde_hit, "§2.2, §2.4.3",
              "host (v1) page-directory entries by DomainID and IOVA range", directory_of="host"),
    CacheKind("guest_pde", GuestPdeSlot, guest_pde_fill, _invalidate_guest_pde, _guest_pde_hit, "§2.2, §2.4.3",
              "guest (v2) page-directory entries by DomainID, PASID and GVA range", directory_of="guest"),
    CacheKind("gcr3", Gcr3Slot, gcr3_fill, _invalidate_gcr3, _gcr3_hit, "§2.2, §2.4.3",
              "GCR3 table entries by DomainID and PASID"),
    CacheKind("device_iotlb", TlbSlot, device_iotlb_fill, _invalidate_device_iotlb, _device_iotlb_hit,
              "§2.2.2.1, §2.4.4",
              "an ATS device's own translations by DeviceID, PASID and page", looked_up=False),
)
CACHES_BY_NAME: Mapping[str, CacheKind] = MappingProxyType({k.name: k for k in CACHE_KINDS})
CACHE_NAMES: tuple[str, ...] = tuple(CACHES_BY_NAME)
SLOT_TYPES: Mapping[str, type] = MappingProxyType({k.name: k.slot_type for k in CACHE_KINDS})


def cache_kind(name: str) -> CacheKind:
    """The registered cache ``name`` (``KeyError`` naming the caches otherwise)."""
    if name not in CACHES_BY_NAME:
        raise KeyError(f"unknown cache {name!r}; caches: {', '.join(CACHE_NAMES)}")
    return CACHES_BY_NAME[name]


class _CacheSlots:
    """The methods of :class:`Caches` (its fields, one per cache kind, are made from the registry)."""

    @classmethod
    def empty(cls, *counts: int, **by_name: int) -> Any:
        """Every slot invalid: ``counts`` slots per cache in registry order, or by name; the rest take
        the kind's ``default_slots``."""
        if len(counts) > len(CACHE_KINDS):
            raise TypeError(f"{len(counts)} counts for {len(CACHE_KINDS)} caches")
        sizes = {k.name: k.default_slots for k in CACHE_KINDS}
        sizes.update(zip(CACHE_NAMES, counts))
        for name, n in by_name.items():
            cache_kind(name)
            sizes[name] = n
        return cls(**{name: tuple(SLOT_TYPES[name]() for _ in range(n)) for name, n in sizes.items()})

    def slots(self, name: str) -> tuple[Any, ...]:
        cache_kind(name)
        return getattr(self, name)

    def with_slot(self, name: str, index: int, slot: Any) -> Any:
        slots = list(self.slots(name))
        if not 0 <= index < len(slots):
            raise IndexError(f"cache {name} has {len(slots)} slots, no slot {index}")
        slots[index] = slot
        return replace_record(self, **{name: tuple(slots)})

    def map_slots(self, name: str, fn: Callable[[Any], Any]) -> Any:
        old = self.slots(name)
        new = tuple(fn(s) for s in old)
        if all(a is c for a, c in zip(old, new)):
            return self
        return replace_record(self, **{name: new})


Caches = dataclasses.make_dataclass(
    "Caches", [(k.name, tuple, dataclasses.field(default=())) for k in CACHE_KINDS], bases=(_CacheSlots,),
    frozen=True, namespace={"__doc__": "Every cache as a tuple of slots (sizes fixed when built), one field per "
                                       "registered cache kind.", "__module__": __name__})


def invalidate(b: Any, caches: Any, command: Any, *, when: Any = True,
               choices: Hardware = SPEC) -> Any:
    """The caches after the 128-bit ``command`` took effect (where ``when`` holds; other commands and
    ``when`` false leave them unchanged): each cache's slot function on each of its slots."""
    c = decode_invalidation(b, command, when=when, choices=choices)
    for kind in CACHE_KINDS:
        caches = caches.map_slots(kind.name, lambda s, kind=kind: kind.invalidate_slot(b, s, c, choices))
    return caches


def dte_domain(b: Any, dte: Any) -> Any:
    return DTE.view(dte, b).domainid
