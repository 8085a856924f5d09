"""The translation caches an IOMMU may keep, as fixed slots: 48882 §2.2 (the IOMMU caches device table
entries, translations tagged by DomainID, page-directory entries and GCR3 entries, and ATS devices
cache translations in their own IOTLB), with their invalidation by the commands of §2.4.2
(INVALIDATE_DEVTAB_ENTRY), §2.4.3 (INVALIDATE_IOMMU_PAGES), §2.4.4 (INVALIDATE_IOTLB_PAGES) and §2.4.8
(INVALIDATE_IOMMU_ALL).

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
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

from amdvi.spec.commands import (
    INVALIDATE_DEVTAB_ENTRY, INVALIDATE_IOMMU_ALL, INVALIDATE_IOMMU_PAGES, INVALIDATE_IOTLB_PAGES, OPCODE_HI,
    OPCODE_LO, _invalidation_span,
)
from amdvi.spec.device_table import DTE
from amdvi.spec.events import IO_PAGE_FAULT
from amdvi.spec.guest_page_table import GCR3_ENTRY
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.guest_translation import GUEST_LEVELS, guest_entry
from amdvi.spec.host_translation import host_entry
from amdvi.spec.levels import level_shift
from amdvi.spec.translation import Outcome, Request
from amdvi.spec.walk_types import GUEST, HOST, SHIFT_WIDTH, by_level, low_mask

CACHE_NAMES = ("dte", "iotlb", "pde", "guest_pde", "gcr3", "device_iotlb")


@dataclass(frozen=True)
class DteSlot:
    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = {"device_id": 16, "dte": 256}

    valid: Any = False
    device_id: Any = 0
    dte: Any = 0


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


@dataclass(frozen=True)
class Gcr3Slot:
    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = {"domain_id": 16, "pasid": 20, "entry": 64}

    valid: Any = False
    domain_id: Any = 0
    pasid: Any = 0
    entry: Any = 0


SLOT_TYPES = {"dte": DteSlot, "iotlb": TlbSlot, "pde": PdeSlot, "guest_pde": GuestPdeSlot, "gcr3": Gcr3Slot,
              "device_iotlb": TlbSlot}


@dataclass(frozen=True)
class Caches:
    """Every cache as a tuple of slots (sizes fixed when built)."""

    dte: tuple[DteSlot, ...] = ()
    iotlb: tuple[TlbSlot, ...] = ()
    pde: tuple[PdeSlot, ...] = ()
    guest_pde: tuple[GuestPdeSlot, ...] = ()
    gcr3: tuple[Gcr3Slot, ...] = ()
    device_iotlb: tuple[TlbSlot, ...] = ()

    @classmethod
    def empty(cls, dte: int = 2, iotlb: int = 4, pde: int = 2, guest_pde: int = 2, gcr3: int = 2,
              device_iotlb: int = 2) -> "Caches":
        sizes = {"dte": dte, "iotlb": iotlb, "pde": pde, "guest_pde": guest_pde, "gcr3": gcr3,
                 "device_iotlb": device_iotlb}
        return cls(**{name: tuple(SLOT_TYPES[name]() for _ in range(n)) for name, n in sizes.items()})

    def slots(self, name: str) -> tuple[Any, ...]:
        if name not in CACHE_NAMES:
            raise KeyError(f"unknown cache {name!r}; caches: {', '.join(CACHE_NAMES)}")
        return getattr(self, name)

    def with_slot(self, name: str, index: int, slot: Any) -> "Caches":
        slots = list(self.slots(name))
        if not 0 <= index < len(slots):
            raise IndexError(f"cache {name} has {len(slots)} slots, no slot {index}")
        slots[index] = slot
        return dataclasses.replace(self, **{name: tuple(slots)})

    def map_slots(self, name: str, fn: Callable[[Any], Any]) -> "Caches":
        return dataclasses.replace(self, **{name: tuple(fn(s) for s in self.slots(name))})


# ---------------------------------------------------------------------------------------------------
# fills: what a walk of current memory gives (``fresh`` is ``translate`` on current memory)


def dte_fill(b: Any, device_id: Any, fresh: Outcome) -> DteSlot:
    """The DTE a fresh request of ``device_id`` read (kept only when it lies inside the table)."""
    step = fresh.steps[0]
    return DteSlot(valid=step.active, device_id=device_id, dte=step.entry)


def iotlb_fill(b: Any, request: Request, fresh: Outcome, choices: Hardware = SPEC) -> TlbSlot:
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


def device_iotlb_fill(b: Any, request: Request, fresh: Outcome, dte_allows_ats: Any) -> TlbSlot:
    """The answer to an ATS translation request (the device caches it when DTE.I = 1)."""
    shift = fresh.page_shift
    offset = low_mask(b, shift)
    ok = b.all_of(fresh.ok, fresh.walked, dte_allows_ats, request.ats, b.lnot(request.user), b.lnot(request.execute))
    return TlbSlot(valid=ok, owner=request.device_id, guest=request.has_pasid,
                   pasid=b.ite(request.has_pasid, request.pasid, b.const(0, 20)),
                   page=b.band(request.address, b.bnot(offset, 64)), page_shift=shift,
                   spa=b.band(fresh.spa, b.bnot(offset, 64)), readable=fresh.readable, writable=fresh.writable)


def pde_fill(b: Any, request: Request, fresh: Outcome, step_index: int) -> PdeSlot:
    """The ``step_index``-th host page-directory entry of a pure v1 walk (not nested)."""
    host_steps = [s for s in fresh.steps if s.dimension == HOST]
    if not 0 <= step_index < len(host_steps):
        return PdeSlot()
    s = host_steps[step_index]
    ent = host_entry(b, s.entry, s.level)
    is_pde = b.all_of(s.active, ent.present, b.lnot(ent.leaf), b.lnot(ent.reserved_set), b.lnot(ent.bad_encoding),
                      b.lnot(fresh.guest), fresh.walked)
    shift = _level_span(b, ent.next_level)
    return PdeSlot(valid=is_pde, domain_id=fresh.domain_id,
                   base=b.band(request.address, b.bnot(low_mask(b, shift), 64)), shift=shift,
                   table=ent.address, level=ent.next_level, readable=s.readable, writable=s.writable)


def guest_pde_fill(b: Any, request: Request, fresh: Outcome, step_index: int) -> GuestPdeSlot:
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
                        table=b.band(below.entry_address, b.bnot(b.const(0xFFF, 64), 64)), level=below.level,
                        writable=s.writable, user=b.all_of(*[e.user for e in above]),
                        nx=b.any_of(*[e.nx for e in above]))


def gcr3_fill(b: Any, request: Request, fresh: Outcome) -> Gcr3Slot:
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
    return dataclasses.replace(slot, valid=b.all_of(slot.valid, b.lnot(when)))


# ---------------------------------------------------------------------------------------------------
# invalidation


def _overlaps(b: Any, base: Any, shift: Any, start: Any, offset_mask: Any) -> Any:
    """Two naturally aligned power-of-two blocks overlap: they agree above the larger one's size."""
    either = b.bor(low_mask(b, shift), offset_mask)
    return b.eq(b.band(b.bxor(base, start), b.bnot(either, 64)), 0)


def _is(b: Any, command: Any, structure: Any) -> Any:
    return b.eq(b.extract(command, OPCODE_HI, OPCODE_LO), structure.field("Opcode").fixed)


def invalidate(b: Any, caches: Caches, command: Any, *, when: Any = True,
               choices: Hardware = SPEC) -> Caches:
    """The caches after the 128-bit ``command`` took effect (where ``when`` holds; other commands and
    ``when`` false leave them unchanged). Semantics: the module docstring."""
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
    domain, gn, pde = pages.DomainID, b.eq(pages.GN, 1), b.eq(pages.PDE, 1)
    if choices.invalidate_pages_keeps_pde_cache:
        pde = b.false()

    def dte_slot(s: DteSlot) -> DteSlot:
        covered = b.all_of(is_dt, b.eq(s.device_id, dt.DeviceID))
        if choices.devtab_invalidation_skips_invalid:
            covered = b.all_of(covered, b.eq(DTE.view(s.dte, b).v, 1))
        return evict(b, s, b.any_of(is_all, covered))

    def iotlb_slot(s: TlbSlot) -> TlbSlot:
        mine = b.all_of(is_pages, b.eq(s.owner, domain))
        same_kind = b.ite(gn, b.all_of(s.guest, b.eq(s.pasid, pages.PASID)), b.lnot(s.guest))
        hit = b.all_of(mine, same_kind, _overlaps(b, s.page, s.page_shift, start, span))
        nested = b.all_of(mine, b.lnot(gn), s.guest)
        return evict(b, s, b.any_of(is_all, hit, nested))

    def pde_slot(s: PdeSlot) -> PdeSlot:
        hit = b.all_of(is_pages, pde, b.lnot(gn), b.eq(s.domain_id, domain), _overlaps(b, s.base, s.shift, start, span))
        return evict(b, s, b.any_of(is_all, hit))

    def guest_pde_slot(s: GuestPdeSlot) -> GuestPdeSlot:
        of_pasid = b.all_of(b.eq(s.pasid, pages.PASID), _overlaps(b, s.base, s.shift, start, span))
        hit = b.all_of(is_pages, pde, b.eq(s.domain_id, domain), b.ite(gn, of_pasid, b.true()))
        return evict(b, s, b.any_of(is_all, hit))

    def gcr3_slot(s: Gcr3Slot) -> Gcr3Slot:
        hit = b.all_of(is_pages, pde, b.eq(s.domain_id, domain), b.any_of(b.lnot(gn), b.eq(s.pasid, pages.PASID)))
        return evict(b, s, b.any_of(is_all, hit))

    d_address = b.shl(b.zext(iotlb_cmd.Address, 64), INVALIDATE_IOTLB_PAGES.field("Address").unit_shift, 64)
    d_start, d_span = _invalidation_span(b, d_address, iotlb_cmd.S)
    d_pasid = iotlb_cmd["PASID"]
    d_gn = b.eq(iotlb_cmd.GN, 1)

    def device_slot(s: TlbSlot) -> TlbSlot:
        # PASID 0 also stands for requests without a PASID (Linux's IOMMU_NO_PASID convention)
        of_pasid = b.any_of(b.all_of(s.guest, b.eq(s.pasid, d_pasid)), b.all_of(b.lnot(s.guest), b.eq(d_pasid, 0)))
        untagged = b.true() if choices.device_iotlb_gn0 == "every-pasid" else b.lnot(s.guest)
        same_kind = b.ite(d_gn, of_pasid, untagged)
        hit = b.all_of(is_iotlb, b.eq(s.owner, iotlb_cmd.DeviceID), same_kind,
                       _overlaps(b, s.page, s.page_shift, d_start, d_span))
        return evict(b, s, hit)

    return (caches.map_slots("dte", dte_slot).map_slots("iotlb", iotlb_slot).map_slots("pde", pde_slot)
            .map_slots("guest_pde", guest_pde_slot).map_slots("gcr3", gcr3_slot).map_slots("device_iotlb", device_slot))


def dte_domain(b: Any, dte: Any) -> Any:
    return DTE.view(dte, b).domainid
