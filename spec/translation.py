"""One DMA request through the IOMMU, from DeviceID to system address or event record.

48882 §2.2.2 (device table look-up and legality), §2.2.3 (host walk, ``host_translation``),
§2.2.6 (GCR3 table and guest walk, ``guest_translation``), §2.5.2 / §2.5.3 (the ILLEGAL_DEV_TABLE_ENTRY
and IO_PAGE_FAULT records). Written once over the backend: ``translate(INT, ...)`` replays a
request, ``translate(Z3, ...)`` gives the same outcome as formulas.

Order of the device-table checks (each a modelling choice where the reference marks it unconfirmed):

1. a DeviceID whose entry lies beyond the device table (DEV_TAB_BAR.Size) -> ILLEGAL_DEV_TABLE_ENTRY;
2. V = 0 -> the request passes untranslated (reading ``invalid-dte``; "blocked": it is aborted);
3. a broken DTE rule that concerns memory requests and logs ILLEGAL_DEV_TABLE_ENTRY (reserved bits,
   GLX = 3, a reserved GPM) -> ILLEGAL_DEV_TABLE_ENTRY with RZ = 1;
4. TV = 0 -> IO_PAGE_FAULT (a QEMU review cites 48882 Table 44 for this);
5. a DTE rule logging IO_PAGE_FAULT (Mode = 7) -> IO_PAGE_FAULT with RZ = 1;
6. a request with a PASID to a DTE with GV = 0 -> IO_PAGE_FAULT with GN = 1 (unconfirmed: it may be
   INVALID_DEVICE_REQUEST);
7. then: the guest walk when GV = 1 and (the request has a PASID, or GIoV = 1, using PASID 0);
   else the host walk when Mode != 0; else Mode 0 passes through subject to DTE.IR / IW.

DTE.SA or DTE.SE suppresses IO_PAGE_FAULT records (the SE scope is unconfirmed), never
ILLEGAL_DEV_TABLE_ENTRY. DTE bits are read from memory, 32 bytes per DeviceID.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass, field as dc_field
from typing import Any, ClassVar, Mapping

from .bitvec import INT, log2
from .device_table import DTE, ENTRY_BYTES, ILLEGAL_DTE, IO_PAGE_FAULT
from .events import ILLEGAL_DEV_TABLE_ENTRY as ILLEGAL_DTE_RECORD
from .events import IO_PAGE_FAULT as IO_PAGE_FAULT_RECORD
from .guest_translation import GuestResume, HostContext, guest_walk
from .host_translation import host_walk
from .records import remember_hash
from .levels import PAGE_SHIFT
from .mmio import DEV_TAB_BAR
from .choices import SPEC, Hardware, hardware
from .records import merge
from .walk_types import (
    DEVICE_TABLE, DIMENSION_NAMES, DIMENSION_WIDTH, GUEST, HOST, NO_FAULT, SHIFT_WIDTH, FaultState, WalkResult,
    WalkStep,
)

__all__ = ["Request", "Outcome", "WalkStep", "translate", "walk_request", "read_dte", "DIMENSION_NAMES",
           "NO_FAULT", "DEVICE_TABLE", "GUEST", "HOST"]

MEMORY_SCOPES = ("all", "memory")
DEV_TAB_BASE = DEV_TAB_BAR.field("DevTabBase")
HOST_ROOT = DTE.field("Host Page Table Root Pointer")
DTE_SHIFT = log2(ENTRY_BYTES)


@remember_hash
@dataclass(frozen=True)
class Request:
    """A device's memory request as the IOMMU sees it (ints and bools, or backend terms)."""

    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = {"device_id": 16, "address": 64, "pasid": 20}

    device_id: Any
    address: Any
    write: Any = False
    pasid: Any = 0
    has_pasid: Any = False
    user: Any = False  # privileged (supervisor) unless the PASID prefix says user
    execute: Any = False
    ats: Any = False  # a translation request (ATS): the TR flag of a fault


@dataclass(frozen=True)
class Outcome:
    """The access (``ok``: to ``spa`` with these permissions) or the event the IOMMU writes."""

    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = {"spa": 64, "page_shift": SHIFT_WIDTH, "domain_id": 16, "event": 128,
                                                 "dimension": DIMENSION_WIDTH}
    GATED_TUPLES: ClassVar[Mapping[str, str]] = {"steps": "active"}

    ok: Any
    spa: Any  # 0 when not ok
    page_shift: Any  # log2 of the translated page (64: untranslated; 0 when not ok)
    readable: Any
    writable: Any
    domain_id: Any
    logged: Any  # an event record is written to the event log
    event: Any  # the 128-bit record (0 when none)
    dimension: Any  # NO_FAULT, DEVICE_TABLE, GUEST or HOST
    steps: tuple[WalkStep, ...] = dc_field(default=())
    guest: Any = False  # the guest (GCR3 / v2) path translated it (an IOTLB tags this as GN = 1)
    walked: Any = False  # the DTE passed its checks and a table walk decided (not V = 0 or Mode 0 pass-through)

    def active_steps(self) -> list[WalkStep]:
        """The steps that happened (concrete outcomes only)."""
        return [s for s in self.steps if s.active]


def read_dte(b: Any, memory: Any, dev_tab_bar: Any, device_id: Any) -> tuple[Any, Any, Any]:
    """(the 256-bit DTE, whether it lies inside the table, its address) for ``device_id``."""
    # the register and the entry are few in a run: a staged engine specialises on them (identity elsewhere)
    bar = DEV_TAB_BAR.view(b.speculate(dev_tab_bar), b)
    base = b.shl(b.zext(bar["DevTabBase"], 64), DEV_TAB_BASE.unit_shift, 64)
    dev = b.zext(device_id, 64)
    address = b.add(base, b.shl(dev, DTE_SHIFT, 64), 64)
    words = [b.speculate(b.read64(memory, b.add(address, 8 * i, 64))) for i in range(ENTRY_BYTES // 8)]
    dte = b.concat(*[(w, 64) for w in reversed(words)])
    # (Size + 1) * 4 KiB holds (Size + 1) * 128 entries
    inside = b.ule(b.lshr(dev, PAGE_SHIFT - DTE_SHIFT, 64), b.zext(bar["Size"], 64))
    return dte, inside, address


def guest_path(b: Any, dte: Any, request: Request) -> tuple[Any, Any]:
    """``(uses_guest, pasid)``: the request goes through the GCR3 table (DTE.GV = 1 and the request has a
    PASID, or DTE.GIoV = 1 which uses PASID 0), and the PASID it is translated for (0 without one)."""
    v = DTE.view(dte, b)
    uses = b.all_of(b.eq(v.gv, 1), b.any_of(request.has_pasid, b.eq(v.giov, 1)))
    return uses, b.ite(request.has_pasid, request.pasid, b.const(0, 20))


@dataclass(frozen=True)
class CachedStart:
    """What translation caches may supply instead of reading memory (48882 §2.2 caching; each
    ``None`` means "read memory"): the DTE, the guest CR3 of the GCR3 table entry, a host (v1) walk
    resumed below a cached page-directory entry: ``(table, level, readable, writable)``, and a guest
    (v2) walk resumed below a cached guest page-directory entry (:class:`GuestResume`).
    Used only by ``models``; ``translate`` without it is the fresh walk."""

    dte: Any = None
    gcr3_entry: Any = None
    host_resume: tuple[Any, Any, Any, Any] | None = None
    guest_resume: GuestResume | None = None


def _choose(b: Any, cond: Any, then: Any, otherwise: Any) -> WalkResult:
    """``then()`` if ``cond`` else ``otherwise()``; both are built only when ``cond`` is not a constant."""
    if b.known_false(cond):
        return otherwise()
    if b.known_true(cond):
        return then()
    return merge(b, cond, then(), otherwise())


def _gate(b: Any, s: WalkStep, cond: Any) -> WalkStep:
    return WalkStep(s.table, s.dimension, s.level, s.entry_address, s.entry, s.readable, s.writable,
                    b.all_of(cond, s.active))


def _violated(b: Any, view_bits: Any, event: str, context: Mapping[str, Any] | None) -> Any:
    """Whether the DTE breaks a rule that concerns memory requests and logs ``event``.

    Rules that read registers (``EFR.GATS``, ``EFR.HATS``, ...) are checked when ``context`` gives them.
    On Python ints the answer for a DTE value is remembered: a run meets the same few DTEs again and again.
    """
    if b is INT:
        return _violated_concrete(view_bits, event, tuple(sorted((context or {}).items())))
    if getattr(b, "staged", False):
        return b.call(_violated_concrete, "bool", view_bits, event, tuple(sorted((context or {}).items())))
    return b.any_of(*[v.condition for v in DTE.check(view_bits, b, context)
                      if v.rule.event == event and v.rule.scope in MEMORY_SCOPES])


@functools.lru_cache(maxsize=1 << 14)
def _violated_concrete(dte: int, event: str, context: tuple[tuple[str, Any], ...]) -> bool:
    return INT.any_of(*[v.condition for v in DTE.check(dte, INT, dict(context))
                        if v.rule.event == event and v.rule.scope in MEMORY_SCOPES])


def translate(b: Any, memory: Any, dev_tab_bar: Any, request: Request, *, context: Mapping[str, Any] | None = None,
              choices: Hardware = SPEC, cached: CachedStart | None = None) -> Outcome:
    """Where the IOMMU sends ``request``, or the event it logs instead.

    ``context`` holds register fields (``{"EFR.GATS": 1, ...}``, see ``mmio.register_context``) for the
    DTE rules that depend on features, such as a 5-level guest table without EFR.GATS = 1;
    ``choices``: the hardware's readings and fault switches (``spec.choices``); ``cached``: parts supplied by translation caches (:class:`CachedStart`).
    On Python ints this runs the compiled form of :func:`walk_request` (``spec.staged_translation``)
    unless the reference engine is selected (``spec.staged.use_reference``).
    """
    if b is INT and _staged.enabled():
        return _staged_translation.translate(memory, dev_tab_bar, request, context=context, choices=choices,
                                             cached=cached)
    return walk_request(b, memory, dev_tab_bar, request, context=context, choices=choices, cached=cached)


def walk_request(b: Any, memory: Any, dev_tab_bar: Any, request: Request, *,
                 context: Mapping[str, Any] | None = None, choices: Hardware = SPEC,
                 cached: CachedStart | None = None) -> Outcome:
    """The semantics of :func:`translate`, on any backend (the reference engine on ``INT``)."""
    choices = hardware(choices)
    cached = cached or CachedStart()
    r = request
    dte, inside, dte_address = read_dte(b, memory, dev_tab_bar, r.device_id)
    if cached.dte is not None:
        dte = b.speculate(cached.dte)
    v = DTE.view(dte, b)
    valid, tv = b.eq(v.v, 1), b.eq(v.tv, 1)
    ir, iw = b.eq(v.ir, 1), b.eq(v.iw, 1)
    dte_step = WalkStep("DTE", DEVICE_TABLE, 0, dte_address, dte, ir, iw, inside)

    # -- the device table entry itself ---------------------------------------------------------
    untranslated = b.all_of(inside, b.lnot(valid)) if choices.invalid_dte == "untranslated" else b.false()
    illegal = b.all_of(valid, _violated(b, dte, ILLEGAL_DTE, context))
    illegal_entry = b.any_of(b.lnot(inside), illegal)
    f = FaultState.none(b)
    checked = b.all_of(inside, valid, b.lnot(illegal))
    f = f.raise_if(b, b.all_of(checked, b.lnot(tv)), DEVICE_TABLE, r.address)
    f = f.raise_if(b, b.all_of(checked, _violated(b, dte, IO_PAGE_FAULT, context)), DEVICE_TABLE, r.address, rz=True)
    gv = b.eq(v.gv, 1)
    f = f.raise_if(b, b.all_of(checked, r.has_pasid, b.lnot(gv)), DEVICE_TABLE, r.address)
    dte_fault = b.any_of(illegal_entry, f.raised)

    # -- the translation it selects ------------------------------------------------------------
    use_guest, pasid = guest_path(b, dte, r)
    nested = b.ne(v.mode, 0)
    root = b.shl(b.zext(v.host_page_table_root_pointer, 64), HOST_ROOT.unit_shift, 64)

    def guest() -> WalkResult:
        host = HostContext(nested=nested, root=root, mode=v.mode, readable=ir, writable=iw)
        g = guest_walk(b, memory, gcr3_root=b.zext(v["GCR3 Table Root Pointer"], 64), glx=v.glx, gpm=v.gpm,
                       pasid=pasid, address=r.address, write=r.write, user=r.user, execute=r.execute, host=host,
                       choices=choices, gcr3_entry=cached.gcr3_entry, resume=cached.guest_resume)
        return g

    def host() -> WalkResult:
        if cached.host_resume is not None:
            table, level, readable, writable = cached.host_resume
            return host_walk(b, memory, table, level, r.address, r.write, b.all_of(ir, readable),
                             b.all_of(iw, writable), resume=True)
        return host_walk(b, memory, root, v.mode, r.address, r.write, ir, iw)

    def passthrough() -> WalkResult:
        denied = b.lnot(b.ite(r.write, iw, ir))
        pf = FaultState.none(b).raise_if(b, denied, DEVICE_TABLE, r.address, pe=True)
        return WalkResult(b.lnot(denied), r.address, b.const(64, SHIFT_WIDTH), ir, iw, pf, ())

    translated = b.all_of(inside, valid, b.lnot(dte_fault))
    path = _choose(b, b.all_of(translated, use_guest), guest,
                   lambda: _choose(b, b.all_of(translated, nested), host, passthrough))

    # -- the outcome and the event record ------------------------------------------------------
    walk_fault = b.all_of(translated, path.fault.raised)
    ok = b.any_of(untranslated, b.all_of(translated, path.ok))
    fault = path.fault.select(b, f.raised, f)
    dimension = b.ite(illegal_entry, b.const(DEVICE_TABLE, DIMENSION_WIDTH),
                      b.ite(b.any_of(f.raised, walk_fault), fault.dimension, b.const(NO_FAULT, DIMENSION_WIDTH)))
    gn = b.all_of(r.has_pasid, b.lnot(b.eq(fault.dimension, HOST)))
    page_fault_record = IO_PAGE_FAULT_RECORD.encode({
        "DeviceID": b.zext(r.device_id, 16),
        "PASID[19:16]": b.ite(gn, b.extract(pasid, 19, 16), b.const(0, 4)),
        "DomainID or PASID[15:0]": b.ite(gn, b.extract(pasid, 15, 0), v.domainid),
        "GN": b.bit(gn), "NX": b.bit(fault.nx), "US": b.bit(fault.us), "PR": b.bit(fault.pr),
        "RW": b.bit(r.write), "PE": b.bit(fault.pe), "RZ": b.bit(fault.rz), "TR": b.bit(r.ats),
        "Address": fault.address,
    }, backend=b)
    illegal_record = ILLEGAL_DTE_RECORD.encode({
        "DeviceID": b.zext(r.device_id, 16),
        "PASID[19:16]": b.ite(r.has_pasid, b.extract(pasid, 19, 16), b.const(0, 4)),
        "PASID[15:0]": b.ite(r.has_pasid, b.extract(pasid, 15, 0), b.const(0, 16)),
        "GN": b.bit(r.has_pasid), "RW": b.bit(r.write), "RZ": 1, "TR": b.bit(r.ats), "Address": r.address,
    }, backend=b)
    page_fault = b.all_of(b.lnot(illegal_entry), b.any_of(f.raised, walk_fault))
    suppressed = b.any_of(b.eq(v.sa, 1), b.eq(v.se, 1))
    logged = b.any_of(illegal_entry, b.all_of(page_fault, b.lnot(suppressed)))
    event = b.ite(illegal_entry, illegal_record,
                  b.ite(page_fault, page_fault_record, b.const(0, 128)), width=128)
    return Outcome(
        ok=ok,
        spa=b.ite(untranslated, r.address, b.ite(ok, path.spa, b.const(0, 64)), width=64),
        page_shift=b.ite(untranslated, b.const(64, SHIFT_WIDTH), b.ite(ok, path.page_shift, b.const(0, SHIFT_WIDTH))),
        readable=b.any_of(untranslated, b.all_of(ok, path.readable)),
        writable=b.any_of(untranslated, b.all_of(ok, path.writable)),
        domain_id=v.domainid,
        logged=logged,
        event=event,
        dimension=dimension,
        steps=(dte_step,) + tuple(_gate(b, s, translated) for s in path.steps),
        guest=b.all_of(translated, use_guest),
        walked=b.all_of(translated, b.any_of(use_guest, nested)),
    )


from . import staged as _staged  # noqa: E402 - the compiled engine stages walk_request, defined above
from . import staged_translation as _staged_translation  # noqa: E402
