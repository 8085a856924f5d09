"""What the caches may hold at each point of a run, and every way a DMA may then be served.

The IOMMU model lets hardware fill any cache slot at any moment from a walk of memory as it then is,
evict any slot at any moment, and carry out an accepted invalidation at any moment of its window
(``properties.timeline_run``). For a run of software steps this freedom has an exact finite form:

* a slot value that a fill at boundary ``j`` gives may still be held at boundary ``i >= j`` unless an
  invalidation that clears it (the cache's own invalidate-slot function, ``models.caches``) was handed
  over after ``j`` and has certainly taken effect by ``i``; an invalidation handed over at or before
  ``j`` may have taken effect before the fill, so it does not remove it. For a value filled at several
  boundaries the latest one before ``i`` is the one most likely to survive;
* a slot may always be empty (evicted), and slots are independent (each cache function is
  slot-local), so every combination of surviving values, one per cache the request looks up, is a way
  the hardware may serve the request (``models.dma.serve`` with that choice).

So :meth:`Windows.outcomes` enumerates every DMA outcome the model allows at a boundary, under every
cache choice and every timing of the command processor: an exhaustive check, not a sample. Fills and
outcomes are computed by the model's own functions (``spec.translation.translate``, the registry's
fills, hits and invalidations, ``models.dma.serve``); nothing here restates a rule.

Scope (stated where it is reported): the requests are the ones the caller lists (devices x pages x
PASIDs); a fill is evaluated at each boundary after a store (ring and semaphore writes do not change a
walk); a DMA's own write is not applied to memory.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from amdvi.models.caches import CACHE_KINDS, CACHES_BY_NAME, Caches, decode_invalidation
from amdvi.models.dma import DmaResult, ServeChoice, serve, serve_translated
from amdvi.models.timeline import Store
from amdvi.spec.bitvec import INT
from amdvi.spec.translation import CachedStart, Outcome, Request, read_dte, translate

from .timeline_run import Invalidation, Run

_DIRECTORY_STEPS = 6  # page-directory entries a walk may pass (5 levels, nested guest levels)
_LOOKED_UP = tuple(k.name for k in CACHE_KINDS if k.looked_up)
_NO_CACHE = CachedStart()


@dataclass(frozen=True)
class Cached:
    """A value cache ``kind`` may hold, the boundaries whose fills give it, and one request that does."""

    kind: str
    slot: Any
    filled_at: tuple[int, ...]
    request: Request


@dataclass(frozen=True)
class Served:
    """One way a request may be served at ``at``: the cached parts used (kind -> (Cached, fill boundary))
    and the result."""

    at: int
    request: Request
    used: tuple[tuple[str, Cached, int], ...]
    result: DmaResult

    @property
    def ok(self) -> bool:
        return bool(self.result.ok)

    def describe(self) -> str:
        if not self.used:
            return "a walk of memory as it is"
        return ", ".join(f"{kind} filled at boundary {j}" for kind, _, j in self.used)


def _fill_steps(kind: str) -> range:
    return range(_DIRECTORY_STEPS) if CACHES_BY_NAME[kind].directory_of else range(1)


def _walk_reads(outcome: Outcome) -> frozenset[int]:
    """The 8-byte words a walk read (the DTE's four words and every table entry)."""
    words = set()
    for s in outcome.steps:
        if s.active:
            count = 4 if s.table == "DTE" else 1
            words.update(s.entry_address + 8 * k for k in range(count))
    return frozenset(words)


class Windows:
    """The fills of every listed request at every boundary of ``run`` (up to its current end), with
    which invalidations clear each filled value."""

    def __init__(self, run: Run, requests: Sequence[Request], *, in_flight: Sequence[Invalidation] = ()) -> None:
        self.run, self.requests, self.choices = run, tuple(requests), run.choices
        self.bar = run.state.regs.dev_tab_bar
        self.cached: dict[str, dict[Any, list[int]]] = {k.name: {} for k in CACHE_KINDS}
        self._request_of: dict[tuple[str, Any], Request] = {}
        self._previous: dict[Request, tuple[Outcome, frozenset[int]]] = {}  # each request's latest walk
        self._filled = 0  # boundaries whose fills are recorded
        self._decoded: dict[int, Any] = {}  # command -> as the caches read it
        self._clears: dict[tuple[str, Any, int], bool] = {}  # (cache, slot, command) -> the command clears it
        self.extend(in_flight)

    def extend(self, in_flight: Sequence[Invalidation] = ()) -> "Windows":
        """Take in the boundaries and invalidations the run gained since (the run only grows)."""
        self.invalidations = tuple(self.run.invalidations) + tuple(in_flight)
        self._clearers: dict[tuple[str, Any], tuple[Invalidation, ...]] = {}
        self._held: dict[tuple[str, int], list[tuple[Cached, int]]] = {}
        self._outcomes: dict[tuple[int, Request], list[Served]] = {}
        self._fill_from(self._filled)
        self._filled = len(self.run.boundaries)
        return self

    def fork(self, run: Run) -> "Windows":
        """A copy over ``run`` (a fork of this one's run) that can be extended on its own."""
        other = copy.copy(self)
        other.run = run
        other.cached = {k: {slot: list(at) for slot, at in v.items()} for k, v in self.cached.items()}
        other._request_of, other._previous = dict(self._request_of), dict(self._previous)
        return other

    # -- fills ---------------------------------------------------------------------------------------

    def fresh(self, at: int, request: Request) -> Outcome:
        """The walk of memory at boundary ``at``."""
        return translate(INT, self.run.boundaries[at].memory, self.bar, request, choices=self.choices)

    def _fill_from(self, start: int) -> None:
        previous = self._previous
        for boundary in self.run.boundaries[start:]:
            j = boundary.index
            written = (frozenset(a for a, _ in boundary.step.writes) if isinstance(boundary.step, Store)
                       else None if boundary.step is None else frozenset())
            for r in self.requests:
                last = previous.get(r)
                if last is not None and written is not None and not (written & last[1]):
                    continue  # nothing the walk reads changed: the same fills as before
                fresh = self.fresh(j, r)
                previous[r] = (fresh, _walk_reads(fresh))
                self._record_fills(j, r, fresh)

    def _record_fills(self, at: int, r: Request, fresh: Outcome) -> None:
        dte, _, _ = read_dte(INT, self.run.boundaries[at].memory, self.bar, r.device_id)
        for kind in CACHE_KINDS:
            for step in _fill_steps(kind.name):
                slot = kind.fill(INT, r, fresh, step, self.choices, dte)
                if not slot.valid:
                    continue
                at_list = self.cached[kind.name].setdefault(slot, [])
                if not at_list or at_list[-1] != at:
                    at_list.append(at)
                self._request_of.setdefault((kind.name, slot), r)

    # -- survival ------------------------------------------------------------------------------------

    def _clears_slot(self, kind: str, slot: Any, command: int) -> bool:
        key = (kind, slot, command)
        if key not in self._clears:
            if command not in self._decoded:
                self._decoded[command] = decode_invalidation(INT, command, choices=self.choices)
            k = CACHES_BY_NAME[kind]
            self._clears[key] = not k.invalidate_slot(INT, slot, self._decoded[command], self.choices).valid
        return self._clears[key]

    def _clearing(self, kind: str, slot: Any) -> tuple[Invalidation, ...]:
        """The invalidations that clear ``slot``."""
        key = (kind, slot)
        if key not in self._clearers:
            self._clearers[key] = tuple(q for q in self.invalidations if self._clears_slot(kind, slot, q.command))
        return self._clearers[key]

    def survives(self, kind: str, slot: Any, filled_at: Sequence[int], at: int) -> int | None:
        """The boundary of the fill of ``slot`` that may still be held at ``at`` (None: none may)."""
        before = [j for j in filled_at if j <= at]
        if not before:
            return None
        j = before[-1]
        for q in self._clearing(kind, slot):
            if q.queued_at > j and q.completed_at is not None and q.completed_at <= at:
                return None
        return j

    def held(self, kind: str, at: int) -> list[tuple[Cached, int]]:
        """Every value cache ``kind`` may hold at boundary ``at``, with the fill it comes from."""
        key = (kind, at)
        if key not in self._held:
            out = []
            for slot, filled in self.cached[kind].items():
                j = self.survives(kind, slot, filled, at)
                if j is not None:
                    out.append((Cached(kind, slot, tuple(filled), self._request_of[(kind, slot)]), j))
            self._held[key] = out
        return self._held[key]

    # -- serving -------------------------------------------------------------------------------------

    def outcomes(self, at: int, request: Request) -> list[Served]:
        """Every way the IOMMU may serve ``request`` at boundary ``at`` (an ATS device's translated
        requests from its own IOTLB included when ``request.ats``); remembered until :meth:`extend`."""
        key = (at, request)
        if key not in self._outcomes:
            self._outcomes[key] = list(self._enumerate(at, request))
        return self._outcomes[key]

    def _enumerate(self, at: int, request: Request) -> Iterator[Served]:
        memory = self.run.boundaries[at].memory
        memory_dte, _, _ = read_dte(INT, memory, self.bar, request.device_id)
        dtes = [(None, memory_dte)] + [((c, j), c.slot.dte) for c, j in self.held("dte", at)
                                        if CACHES_BY_NAME["dte"].hit(INT, c.slot, request, None, None, self.choices)]
        for dte_choice, dte in dtes:
            plain = translate(INT, memory, self.bar, request, choices=self.choices,
                              cached=dataclasses.replace(_NO_CACHE, dte=dte))
            options = {}
            for kind in _LOOKED_UP[1:]:
                hits = [(c, j) for c, j in self.held(kind, at)
                        if CACHES_BY_NAME[kind].hit(INT, c.slot, request, dte, plain, self.choices)]
                options[kind] = [(kind, None)] + [(kind, h) for h in hits]
            # an IOTLB hit answers alone (models.dma.serve): one serve per hit, whatever the walk caches hold
            for hit in options.pop("iotlb")[1:]:
                yield self._serve(at, memory, request, dte_choice, [hit])
            for combo in itertools.product(*options.values()):
                yield self._serve(at, memory, request, dte_choice, combo)
            if request.ats:
                for c, j in self.held("device_iotlb", at):
                    yield self._serve_translated(at, memory, request, dte_choice, c, j)

    def _serve(self, at: int, memory: Any, request: Request, dte_choice: Any, combo: Sequence[Any]) -> Served:
        caches = Caches.empty(*([1] * len(CACHE_KINDS)))
        choice, used = {}, []
        if dte_choice is not None:
            c, j = dte_choice
            caches, choice["dte"] = caches.with_slot("dte", 0, c.slot), 0
            used.append(("dte", c, j))
        for kind, held in combo:
            if held is not None:
                c, j = held
                caches, choice[kind] = caches.with_slot(kind, 0, c.slot), 0
                used.append((kind, c, j))
        result = serve(INT, memory, self.bar, caches, request, ServeChoice(**choice), choices=self.choices)
        return Served(at, request, tuple(used), result)

    def _serve_translated(self, at: int, memory: Any, request: Request, dte_choice: Any, c: Cached, j: int) -> Served:
        caches = Caches.empty(*([1] * len(CACHE_KINDS))).with_slot("device_iotlb", 0, c.slot)
        used = [("device_iotlb", c, j)]
        dte_slot = None
        if dte_choice is not None:
            d, dj = dte_choice
            caches, dte_slot = caches.with_slot("dte", 0, d.slot), 0
            used.insert(0, ("dte", d, dj))
        result = serve_translated(INT, memory, self.bar, caches, request, 0, dte_slot, choices=self.choices)
        return Served(at, request, tuple(used), result)



def requests_for(device_ids: Iterable[int], pages: Iterable[int], *, pasids: Iterable[int | None] = (None,),
                 ats_ids: Iterable[int] = ()) -> list[Request]:
    """Reads and writes of every device at every page (and PASID: None is a request without one)."""
    ats = set(ats_ids)
    out = []
    for d, page, pasid, write in itertools.product(device_ids, pages, pasids, (False, True)):
        out.append(Request(device_id=d, address=page, write=write, pasid=pasid or 0, has_pasid=pasid is not None,
                           ats=d in ats))
    return out
