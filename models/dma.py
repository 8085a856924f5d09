"""A device's DMA through the IOMMU and its caches: which cached parts answer, and the result.

48882 §2.2 (translation and its caches). The spec's ``translate`` is the fresh walk of current
memory; here the same function is run with the parts the caller *chose* to take from cache slots
(:class:`ServeChoice`; a chosen slot is used only if it matches the request, which is what hardware
is allowed to do), and the IOTLB can answer alone. Written once over the backend.

Served results are compared with the fresh walk by the properties (``amdvi.properties.coherence``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from amdvi.spec.device_table import DTE
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.guest_translation import GuestResume
from amdvi.spec.records import fast_init, merge
from amdvi.spec.translation import CachedStart, Outcome, Request, read_dte, translate
from amdvi.spec.walk_types import DIMENSION_WIDTH, NO_FAULT, SHIFT_WIDTH, low_mask

from .caches import CACHE_KINDS, CACHES_BY_NAME, Caches


@dataclass(frozen=True)
class ServeChoice:
    """Which slot of each IOMMU cache the hardware looks at (``None``: it reads memory)."""

    dte: int | None = None
    iotlb: int | None = None
    pde: int | None = None
    guest_pde: int | None = None
    gcr3: int | None = None

    def describe(self) -> str:
        used = [f"{name} slot {i}" for name, i in vars(self).items() if i is not None]
        return ", ".join(used) or "no cache"


# one field per cache an untranslated DMA looks up, in the registry's order
_LOOKED_UP = tuple(k.name for k in CACHE_KINDS if k.looked_up)
if tuple(f.name for f in dataclasses.fields(ServeChoice)) != _LOOKED_UP:
    raise TypeError(f"ServeChoice's fields must be the looked-up caches of the registry: {', '.join(_LOOKED_UP)}")


@fast_init
@dataclass(frozen=True)
class DmaResult:
    """Where the access went (``ok``: to ``spa``), and what the IOMMU logged instead."""

    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = {"spa": 64, "event": 128}

    ok: Any
    spa: Any
    logged: Any
    event: Any
    from_iotlb: Any  # the IOTLB answered (no walk)
    from_device_iotlb: Any  # a translated (ATS) request from the device's own IOTLB
    outcome: Outcome  # the walk (with the chosen cached parts)

    @classmethod
    def none(cls, b: Any) -> "DmaResult":
        """No access was made (the output of a move that is not a DMA)."""
        zero = lambda width: b.const(0, width)  # noqa: E731
        walk = Outcome(ok=b.false(), spa=zero(64), page_shift=zero(SHIFT_WIDTH), readable=b.false(),
                       writable=b.false(), domain_id=zero(16), logged=b.false(), event=zero(128),
                       dimension=b.const(NO_FAULT, DIMENSION_WIDTH), steps=(), guest=b.false(), walked=b.false())
        return cls(ok=b.false(), spa=zero(64), logged=b.false(), event=zero(128), from_iotlb=b.false(),
                   from_device_iotlb=b.false(), outcome=walk)


def _hit(name: str, b: Any, slot: Any, request: Request, dte: Any, walk: Outcome | None, choices: Hardware) -> Any:
    """Backend boolean: ``slot`` of cache ``name`` may answer ``request`` (the registry's predicate)."""
    return CACHES_BY_NAME[name].hit(b, slot, request, dte, walk, choices)


NO_SLOTS = ServeChoice()  # the hardware reads memory for every part


def serve(b: Any, memory: Any, dev_tab_bar: Any, caches: Caches, request: Request,
          choice: ServeChoice = NO_SLOTS, *, context: Any = None, choices: Hardware = SPEC) -> DmaResult:
    """An untranslated request through the IOMMU, using the chosen cache slots where they match."""
    r = request
    if choice is NO_SLOTS or choice == NO_SLOTS:  # no slot chosen: the walk reads the DTE itself
        dte = None
        plain = translate(b, memory, dev_tab_bar, r, context=context, choices=choices)
    else:
        dte, _, _ = read_dte(b, memory, dev_tab_bar, r.device_id)
        if choice.dte is not None:
            s = caches.dte[choice.dte]
            dte = b.ite(_hit("dte", b, s, r, None, None, choices), s.dte, dte, width=256)
        plain = translate(b, memory, dev_tab_bar, r, context=context, choices=choices, cached=CachedStart(dte=dte))
    walk = plain
    if choice.gcr3 is not None:
        g = caches.gcr3[choice.gcr3]
        hit = _hit("gcr3", b, g, r, dte, plain, choices)
        if not b.known_false(hit):  # (a slot that cannot answer: no resumed walk to build)
            walk = merge(b, hit, translate(b, memory, dev_tab_bar, r, context=context, choices=choices,
                                             cached=CachedStart(dte=dte, gcr3_entry=g.entry)), walk)
    if choice.guest_pde is not None:  # below the GCR3 table: it takes precedence over a GCR3 slot
        q = caches.guest_pde[choice.guest_pde]
        hit = _hit("guest_pde", b, q, r, dte, plain, choices)
        if not b.known_false(hit):
            resume = GuestResume(table=q.table, level=q.level, writable=q.writable, user=q.user, nx=q.nx)
            walk = merge(b, hit, translate(b, memory, dev_tab_bar, r, context=context, choices=choices,
                                             cached=CachedStart(dte=dte, guest_resume=resume)), walk)
    if choice.pde is not None:
        p = caches.pde[choice.pde]
        hit = _hit("pde", b, p, r, dte, plain, choices)
        if not b.known_false(hit):
            resumed = translate(b, memory, dev_tab_bar, r, context=context, choices=choices,
                                cached=CachedStart(dte=dte, host_resume=(p.table, p.level, p.readable, p.writable)))
            walk = merge(b, hit, resumed, walk)

    from_iotlb = b.false()
    spa = walk.spa
    if choice.iotlb is not None:
        t = caches.iotlb[choice.iotlb]
        # a remembered not-present fault (``present`` false) answers too: the access faults (what it
        # logs is not modelled)
        from_iotlb = _hit("iotlb", b, t, r, dte, plain, choices)
        spa = b.ite(from_iotlb, b.bor(t.spa, b.band(r.address, low_mask(b, t.page_shift))), spa, width=64)
        negative = b.all_of(from_iotlb, b.lnot(t.present))
    ok = b.any_of(from_iotlb, walk.ok)
    if choice.iotlb is not None and not b.known_false(negative):
        ok = b.all_of(ok, b.lnot(negative))
    return DmaResult(ok=ok, spa=spa, logged=b.all_of(b.lnot(from_iotlb), walk.logged), event=walk.event,
                     from_iotlb=from_iotlb, from_device_iotlb=b.false(), outcome=walk)


def serve_translated(b: Any, memory: Any, dev_tab_bar: Any, caches: Caches, request: Request, slot: int,
                     dte_slot: int | None = None, *, context: Any = None, choices: Hardware = SPEC) -> DmaResult:
    """A request from an ATS device that first looks in its own IOTLB (``slot``).

    On a hit the device sends a translated request to the cached system address, which the IOMMU
    lets through when the DTE (cached or in memory) has V = 1 and I = 1 (48882 §2.2.2.1 DTE.I); on a
    miss it asks the IOMMU for the translation, i.e. the fresh walk.
    """
    r = request
    memory_dte, _, _ = read_dte(b, memory, dev_tab_bar, r.device_id)
    dte = memory_dte
    if dte_slot is not None:
        s = caches.dte[dte_slot]
        dte = b.ite(_hit("dte", b, s, r, None, None, choices), s.dte, memory_dte, width=256)
    v = DTE.view(dte, b)
    t = caches.device_iotlb[slot]
    hit = _hit("device_iotlb", b, t, r, None, None, choices)
    passes = b.all_of(hit, b.eq(v.v, 1), b.eq(v.i, 1))
    walk = translate(b, memory, dev_tab_bar, r, context=context, choices=choices, cached=CachedStart(dte=dte))
    ok = b.ite(hit, passes, walk.ok)
    spa = b.ite(hit, b.bor(t.spa, b.band(r.address, low_mask(b, t.page_shift))), walk.spa, width=64)
    return DmaResult(ok=ok, spa=spa, logged=b.all_of(b.lnot(hit), walk.logged), event=walk.event,
                     from_iotlb=b.false(), from_device_iotlb=hit, outcome=walk)
