"""The properties a driver and ioctl sequence must keep, checked at every boundary of its run.

Each check reads the run through :class:`~amdvi.properties.cache_windows.Windows` (every way the
hardware may serve a request there) and what software promised (:class:`Promise`, given by the system
model: which frames each requester may reach, when the caches must agree with the tables, which DTE
updates were in progress). Each returns :class:`Violation` records, the first of which a
counterexample replays.

* **isolation**: every access a device makes, however served, reaches a frame one of its mappings
  gives it, with that mapping's permission (during an operation: a mapping from before or after it);
* **flush completeness**: where software relies on its invalidations (an ioctl returned in strict
  mode; the flush queue drained in lazy mode), no cached part makes an access come out otherwise than
  a walk of the tables as they are;
* **no torn DTE**: while a DTE is being rewritten half by half, no access succeeds through a DTE value
  that gives it a translation neither the old nor the new DTE gives;
* **DomainID uniqueness**: one DomainID never tags two translation contexts at once, and no cached
  translation tagged with a DomainID survives from an earlier context of that DomainID.
"""

from __future__ import annotations

import bisect
import functools
from collections import ChainMap
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from amdvi.spec.bitvec import INT
from amdvi.spec.device_table import DTE
from amdvi.models.timeline import Queue, VfctrlWrite, VfWrite, Wait
from amdvi.spec.translation import CachedStart, Request, read_dte, translate

from .cache_windows import Served, Windows

ISOLATION, FLUSH, TORN_DTE, DOMAIN_IDS = "isolation", "flush-completeness", "no-torn-dte", "domain-id-uniqueness"
MAPS = "mapping-table-integrity"
GUEST_EVENTS = "guest-event-isolation"
SEQUENCE_PROPERTIES = (ISOLATION, FLUSH, TORN_DTE, DOMAIN_IDS, MAPS, GUEST_EVENTS)
PAGE = 0x1000


@dataclass(frozen=True)
class Frames:
    """System frames a requester may reach: ``(pa, length, readable, writable)`` ranges."""

    ranges: tuple[tuple[int, int, bool, bool], ...] = ()

    def allows(self, spa: int, write: bool) -> bool:
        return any(pa <= spa < pa + length and (writable if write else readable)
                   for pa, length, readable, writable in self.ranges)

    def __or__(self, other: "Frames") -> "Frames":
        return Frames(tuple(dict.fromkeys(self.ranges + other.ranges)))


@dataclass(frozen=True)
class DteUpdate:
    """Software rewrote the DTE of ``device_id`` from boundary ``start`` to ``end`` (inclusive)."""

    device_id: int
    start: int
    end: int
    what: str = ""


@dataclass
class Promise:
    """What software promised along a run: ``frames[i][device_id]`` the frames each requester may reach
    at boundary ``i`` (missing: none); ``settled``: boundaries where the caches must agree with the
    tables; ``dte_updates``: the DTE rewrites; ``requester_ids``: every DeviceID a device uses."""

    frames: list[Mapping[int, Frames]] = field(default_factory=list)
    owners: list[Mapping[int, frozenset[Any]]] = field(default_factory=list)  # DomainID -> what software meant by it
    settled: list[int] = field(default_factory=list)
    dte_updates: list[DteUpdate] = field(default_factory=list)
    requester_ids: tuple[int, ...] = ()
    # HW-vIOMMU guests: GuestID -> (host DeviceIDs, host DomainIDs) software gave it, per boundary, and the
    # guest IDs its maps cover
    guests: list[Mapping[int, tuple[frozenset[int], frozenset[int]]]] = field(default_factory=list)
    guest_ids: int = 0
    # the words each guest (by the IOAS that is its memory) wrote there and has not invalidated since,
    # and per settled boundary every guest's: a cache may still give what the guest's tables gave when it
    # was filled. One guest's invalidation leaves another's words pending (only it can flush its caches).
    pending_guest_writes: dict[int, set[int]] = field(default_factory=dict)
    guest_pending_at: dict[int, frozenset[int]] = field(default_factory=dict)
    # whose stage 2 each translate DeviceID's DTE is (DeviceID -> GuestID), from each boundary on
    translate_owners: list[tuple[int, Mapping[int, int]]] = field(default_factory=list)

    def translate_owners_at(self, at: int) -> Mapping[int, int]:
        n = bisect.bisect_right(self.translate_owners, at, key=lambda entry: entry[0])
        return self.translate_owners[n - 1][1] if n else {}


@dataclass(frozen=True)
class Violation:
    """A property broken at boundary ``at`` by ``request`` served as ``served`` (when there is one)."""

    property: str
    at: int
    request: Request | None
    what: str
    served: Served | None = None


def _result_key(served: Served) -> tuple[Any, ...]:
    r = served.result
    return (bool(r.ok), r.spa if r.ok else 0)


def access_text(request: Request) -> str:
    return f"{'write' if request.write else 'read'} of DeviceID {request.device_id:#x} at {request.address:#x}" + (
        f" PASID {request.pasid:#x}" if request.has_pasid else "") + (" (ATS)" if request.ats else "")


def _needs_check(windows: Windows, promise: Promise, i: int) -> bool:
    """Whether boundary ``i`` can show an access the one before it cannot: it follows a store (memory
    changed), or it is where a step ends or the frames changed; a step that did nothing to the hardware
    (a failed call, a DMA step) changes nothing there either. After a Queue or a Wait only the ring,
    the COMPLETION_WAIT store and the event log change, which no walk reads, and caches can only lose
    values (an invalidation completes), so what can happen there could already happen before."""
    b = windows.run.boundaries
    frames = promise.frames
    if i == 0 or i >= len(frames) or frames[i] != frames[i - 1]:
        return True
    if b[i].step is None:  # a step that did nothing to the hardware: the same memory, the same caches
        return b[i].memory is not b[i - 1].memory
    if i == len(b) - 1 or not isinstance(b[i].step, (Queue, Wait, VfWrite)):  # stores, ATS, VFCtrl, guest waits
        return True
    return i + 1 < len(b) and b[i + 1].label != b[i].label


def isolation(windows: Windows, promise: Promise, *, first: bool = True, since: int = 0,
              latest_first: bool = False) -> list[Violation]:
    out = []
    points = range(since, len(windows.run.boundaries))
    for i in (reversed(points) if latest_first else points):
        if not _needs_check(windows, promise, i):
            continue
        allowed = promise.frames[i] if i < len(promise.frames) else {}
        for r in windows.requests:
            frames = allowed.get(r.device_id, Frames())
            if all(not s.ok or frames.allows(s.result.spa, r.write) for s in windows.ways(i, r)):
                continue
            for s in windows.outcomes(i, r):
                if s.ok and not frames.allows(s.result.spa, r.write):
                    out.append(Violation(ISOLATION, i, r, f"{access_text(r)} reached {s.result.spa:#x}, which none of "
                                         f"its mappings gives it (served by {s.describe()})", s))
                    if first:
                        return out
    return out


def flush_completeness(windows: Windows, promise: Promise, *, first: bool = True, since: int = 0,
                       latest_first: bool = False) -> list[Violation]:
    out = []
    points = [i for i in promise.settled if i >= since]
    for i in (reversed(points) if latest_first else points):
        for r in windows.requests:
            ways = windows.ways(i, r)
            tables = {_result_key(s) for s in ways if not s.used}
            if len(tables) == 1 and all(_result_key(s) in tables for s in ways):
                continue  # every cached way gives what the tables give
            fresh = None
            for s in windows.outcomes(i, r):
                if not s.used:
                    fresh = _result_key(s) if fresh is None else fresh
                    continue
                if fresh is None:
                    fresh = _result_key(next(x for x in windows.outcomes(i, r) if not x.used))
                if _result_key(s) != fresh and not _before_guest_writes(windows, promise, i, r, s):
                    now = f"{s.result.spa:#x}" if s.ok else "a fault"
                    want = f"{fresh[1]:#x}" if fresh[0] else "a fault"
                    out.append(Violation(FLUSH, i, r, f"after software relied on its flushes, {access_text(r)} gives "
                                         f"{now} from {s.describe()}; the tables give {want}", s))
                    if first:
                        return out
    return out


def _before_guest_writes(windows: Windows, promise: Promise, at: int, request: Request, served: Served) -> bool:
    """Whether ``served`` is what the tables would give with the guest's own not-yet-invalidated words
    as they were when the cached parts were filled (the staleness is the guest's to remove, not the
    host's). Every other word is as it is at ``at``, so a stale host translation is still caught."""
    pending = promise.guest_pending_at.get(at)
    if not pending:
        return False
    boundaries = windows.run.boundaries
    for filled in sorted({j for _, _, j in served.used}):
        then = boundaries[filled].memory
        memory = ChainMap({a: then.get(a, 0) for a in pending}, boundaries[at].memory)
        if _result_key(served) == _result_key(windows.served_uncached(memory, request)):
            return True
    return False


def _with_dte(windows: Windows, at: int, request: Request, dte: int) -> tuple[Any, ...]:
    o = translate(INT, windows.run.boundaries[at].memory, windows.bar, request, choices=windows.choices,
                  cached=CachedStart(dte=dte))
    return (bool(o.ok), o.spa if o.ok else 0, bool(o.readable), bool(o.writable))


def torn_dte(windows: Windows, promise: Promise, *, first: bool = True, since: int = 0,
             latest_first: bool = False) -> list[Violation]:
    out = []
    memory_of = lambda i: windows.run.boundaries[i].memory  # noqa: E731
    for u in (u for u in promise.dte_updates if u.end >= since):
        old = read_dte(INT, memory_of(max(u.start - 1, 0)), windows.bar, u.device_id)[0]
        new = read_dte(INT, memory_of(u.end), windows.bar, u.device_id)[0]
        for i in range(u.start, u.end):
            mid = read_dte(INT, memory_of(i), windows.bar, u.device_id)[0]
            if mid in (old, new):
                continue
            for r in windows.requests:
                if r.device_id != u.device_id:
                    continue
                got = _with_dte(windows, i, r, mid)
                if got[0] and got not in (_with_dte(windows, i, r, old), _with_dte(windows, i, r, new)):
                    out.append(Violation(TORN_DTE, i, r, f"{access_text(r)} is translated to {got[1]:#x} by the DTE "
                                         f"{mid:#066x}, half old and half new ({u.what}); neither the old nor the new "
                                         "DTE gives that"))
                    if first:
                        return out
    return out


_CONTEXT_FIELDS = ("Mode", "Host Page Table Root Pointer", "GV", "GLX", "GCR3 Table Root Pointer", "GPM")


def context_of(dte: int) -> tuple[int, ...] | None:
    """The translation context a DTE gives its DomainID (None: it translates nothing: V, TV or both
    Mode and GV zero)."""
    v = DTE.view(dte)
    if not (v["V"] and v["TV"]) or (v["Mode"] == 0 and v["GV"] == 0):
        return None
    return tuple(v[name] for name in _CONTEXT_FIELDS)


@functools.lru_cache(maxsize=4096)
def _tagged_context(dte: int) -> tuple[int, tuple[int, ...]] | None:
    """(DomainID, context) of a DTE that translates (None otherwise), decoded once per DTE value."""
    ctx = context_of(dte)
    return None if ctx is None else (DTE.view(dte)["DomainID"], ctx)


def _contexts(windows: Windows, promise: Promise, at: int) -> dict[int, set[tuple[int, ...]]]:
    by_domain: dict[int, set[tuple[int, ...]]] = {}
    for d in promise.requester_ids:
        tagged = _tagged_context(windows.dte_at(at, d))
        if tagged is not None:
            by_domain.setdefault(tagged[0], set()).add(tagged[1])
    return by_domain


_TAGGED = {"iotlb": "owner", "pde": "domain_id", "guest_pde": "domain_id", "gcr3": "domain_id"}


def domain_ids(windows: Windows, promise: Promise, *, first: bool = True, since: int = 0,
               latest_first: bool = False) -> list[Violation]:
    out = []
    memo: dict[int, dict[int, set[tuple[int, ...]]]] = {}

    def contexts(i: int) -> dict[int, set[tuple[int, ...]]]:
        if i not in memo:
            memo[i] = _contexts(windows, promise, i)
        return memo[i]

    for i in range(since, len(windows.run.boundaries)):
        now = contexts(i)
        for domain, ctxs in sorted(now.items()):
            if len(ctxs) > 1:
                out.append(Violation(DOMAIN_IDS, i, None, f"DomainID {domain:#x} tags {len(ctxs)} different "
                                     "translation contexts at once (different tables under one tag)"))
                if first:
                    return out
        for kind, tag in _TAGGED.items():
            for cached, j in windows.held(kind, i):
                domain = getattr(cached.slot, tag)
                if promise.owners:
                    then, later = set(promise.owners[j].get(domain, ())), set(promise.owners[i].get(domain, ()))
                else:
                    then, later = contexts(j).get(domain, set()), now.get(domain, set())
                if later and then and not (then & later):
                    out.append(Violation(DOMAIN_IDS, i, cached.request, f"a {kind} entry tagged DomainID "
                                         f"{domain:#x}, filled at boundary {j} under an earlier context of that "
                                         "DomainID, is still usable: the DomainID was reused before it was flushed"))
                    if first:
                        return out
    return out


def _map_entries(windows: Windows, at: int, guest_id: int, count: int) -> Iterable[tuple[str, int, int]]:
    """Every mapped entry of a guest's two maps at ``at``, as the hardware reads them: (which map,
    guest ID, host ID)."""
    from amdvi.models import viommu
    from amdvi.models.caches import Caches
    from amdvi.models.iommu import IommuState

    run = windows.run
    state = IommuState(memory=run.boundaries[at].memory, regs=run.state.regs, caches=Caches.empty())
    space = viommu.TranslatedPrivateSpace(run.viommu)
    for which, lookup in (("DeviceID", viommu.lookup_device), ("DomainID", viommu.lookup_domain)):
        for guest_id_entry in range(count):
            found = lookup(INT, state, guest_id, guest_id_entry, space, run.choices)
            if found.mapped:
                yield which, guest_id_entry, found.host_id


def mapping_table_integrity(windows: Windows, promise: Promise, *, first: bool = True, since: int = 0,
                            latest_first: bool = False) -> list[Violation]:
    """Every HW-vIOMMU guest's maps, as the hardware would read them, name only host DeviceIDs and DomainIDs
    software gave that guest (its vDEVICEs; its nested domains' host DomainIDs and its parent's). Checked
    where a map or the ownership changes (a stale entry stays stale until rewritten)."""
    out: list[Violation] = []
    b = windows.run.boundaries
    for i in range(since, min(len(b), len(promise.guests))):
        guests = promise.guests[i]
        changed = i == since or guests != promise.guests[i - 1] or isinstance(b[i].step, VfctrlWrite)
        if not guests or not changed:
            continue
        for guest_id, (devices, domains) in sorted(guests.items()):
            for which, guest_entry, host in _map_entries(windows, i, guest_id, promise.guest_ids):
                allowed = devices if which == "DeviceID" else domains
                if host not in allowed:
                    out.append(Violation(MAPS, i, None, f"guest {guest_id}'s {which} map sends guest {which} "
                                         f"{guest_entry:#x} to host {which} {host:#x}, which is not the guest's "
                                         f"(its: {', '.join(hex(x) for x in sorted(allowed)) or 'none'})"))
                    if first:
                        return out
    return out


def guest_event_isolation(windows: Windows, promise: Promise, *, first: bool = True, since: int = 0,
                          latest_first: bool = False) -> list[Violation]:
    """Every system word a step of a guest's command buffer by the HW-vIOMMU changed (its guest event
    log's records included) is one the guest's own stage 2 gave: the rule the Z3 proof
    viommu-guest-event-isolation proves for any guest, checked on the run's own steps
    (``properties.viommu_events.stray_words``)."""
    from .viommu_events import stray_words

    out = []
    run = windows.run
    steps = [g for g in run.guest_steps if g.at >= since]
    for g in (reversed(steps) if latest_first else steps):
        owners = promise.translate_owners_at(g.at)
        stray = stray_words(g.before, g.guest_id, lambda d: owners.get(d, 0), config=run.viommu, choices=run.choices)
        if stray:
            out.append(Violation(GUEST_EVENTS, g.at, None, f"the vIOMMU, processing guest {g.guest_id}'s command "
                                 f"buffer, wrote {', '.join(f'{a:#x}' for a in stray)}, which no translation "
                                 "through the guest's stage 2 gives"))
            if first:
                return out
    return out


CHECKS: Mapping[str, Callable[..., list[Violation]]] = {
    ISOLATION: isolation, FLUSH: flush_completeness, TORN_DTE: torn_dte, DOMAIN_IDS: domain_ids,
    MAPS: mapping_table_integrity, GUEST_EVENTS: guest_event_isolation,
}


def check(windows: Windows, promise: Promise, properties: Iterable[str] = SEQUENCE_PROPERTIES, *,
          first: bool = True, since: int = 0) -> dict[str, list[Violation]]:
    """Each property's violations (the first of each when ``first``) at boundaries from ``since``
    (``latest_first``, for a search that only asks whether there is one: the latest points first)."""
    return {name: CHECKS[name](windows, promise, first=first, since=since) for name in properties}
