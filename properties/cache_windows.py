"""What the caches may hold at each point of a run, and every way a DMA may then be served.

The IOMMU model lets hardware fill any cache slot at any moment from a walk of memory as it then is,
evict any slot at any moment, and carry out an accepted invalidation at any moment of its window
(``properties.timeline_run``). For a run of software steps this freedom has an exact finite form:

* a slot value that a fill at boundary ``j`` gives may still be held at boundary ``i >= j`` unless an
  invalidation that clears it (the cache's own invalidate-slot function, ``models.caches``) was handed
  over after ``j`` and has certainly taken effect by ``i``; an invalidation handed over at or before
  ``j`` may have taken effect before the fill, so it does not remove it. A value may be filled at every
  boundary where a walk gives it (a span of boundaries while the words the walk reads stay the same),
  and the latest such boundary before ``i`` is the one most likely to survive;
* a device's own IOTLB (ATS) is filled, and used for translated requests, only while software has its
  ATS Enable set (:class:`~amdvi.models.timeline.AtsControl` steps, off until the first one, when the
  caller says software drives the bit: ``ats_control``; else it is always on); clearing it
  empties the device's IOTLB under the reading ``Hardware.atc_on_ats_disable = "discarded"``;
* a slot may always be empty (evicted), and slots are independent (each cache function is
  slot-local), so every combination of surviving values, one per cache the request looks up, is a way
  the hardware may serve the request (``models.dma.serve`` with that choice).

So :meth:`Windows.outcomes` enumerates every DMA outcome the model allows at a boundary, under every
cache choice and every timing of the command processor: an exhaustive check, not a sample. Fills and
outcomes are computed by the model's own functions (``spec.translation.translate``, the registry's
fills, hits and invalidations, ``models.dma.serve``); nothing here restates a rule.

Scope (stated where it is reported): the requests are the ones the caller lists (devices x pages x
PASIDs); a walk is evaluated again only at a boundary after a store to a word it read (its fills stay
possible at the boundaries in between); a DMA's own write is not applied to memory.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

from amdvi.models.caches import CACHE_KINDS, CACHES_BY_NAME, Caches, decode_invalidation
from amdvi.models.dma import DmaResult, ServeChoice, serve, serve_translated
from amdvi.models.timeline import AtsControl, Queue, Store, VfWrite, Wait
from amdvi.spec.bitvec import INT
from amdvi.spec.translation import CachedStart, Outcome, Request, read_dte, translate

from .read_memo import ReadMemo
from .timeline_run import Invalidation, Run

_RING_ONLY = (Queue, Wait, AtsControl, VfWrite)  # steps that change no word a walk reads
_DIRECTORY_STEPS = 6  # page-directory entries a walk may pass (5 levels, nested guest levels)
_LOOKED_UP = tuple(k.name for k in CACHE_KINDS if k.looked_up)
_KIND_NAMES = tuple(k.name for k in CACHE_KINDS)
_NO_CACHE = CachedStart()


@dataclass(frozen=True)
class Cached:
    """A value cache ``kind`` may hold, the spans of boundaries (first, last) where a fill gives it, and
    one request that does."""

    kind: str
    slot: Any
    filled_at: tuple[tuple[int, int], ...]
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


def _start(span: tuple[int, int]) -> int:
    return span[0]


class _Ways(NamedTuple):
    """The ways of serving one request at boundary ``at``: the words they read, the walk starts they
    used ((DTE, the walk from it)), the values each cache could then hold, and the ways themselves
    (enumerated at ``at`` or at an earlier boundary found the same)."""

    at: int
    reads: frozenset[int]
    starts: tuple[tuple[int, Outcome], ...]
    held: tuple[frozenset[Any], ...]
    served: tuple[Served, ...]


def _ways_at(ways: _Ways) -> int:
    return ways.at


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

    def __init__(self, run: Run, requests: Sequence[Request], *, in_flight: Sequence[Invalidation] = (),
                 ats_control: bool = False) -> None:
        self.run, self.requests, self.choices = run, tuple(requests), run.choices
        self.ats_control = ats_control
        self.bar = run.state.regs.dev_tab_bar
        # walks and serves by the words they read, shared with forks; the keys leave out the device
        # table base and the choices, which every window of one lineage shares (hashing the choices
        # on every lookup was a twentieth of a search)
        self.memo = ReadMemo()
        self._hits: dict[tuple[Any, ...], bool] = {}  # the registry's hit predicate, remembered (shared too)
        self._starts: dict[int, CachedStart] = {}  # DTE -> a walk start with only that DTE
        self._fill_memo: dict[tuple[Any, ...], list[tuple[str, Any]]] = {}  # a walk's fills (shared too)
        self.ats: dict[int, list[tuple[int, bool]]] = {}  # DeviceID -> (boundary, ATS Enable), in order
        self.cached: dict[str, dict[Any, list[int]]] = {k.name: {} for k in CACHE_KINDS}
        self._request_of: dict[tuple[str, Any], Request] = {}
        self._previous: dict[Request, tuple[Outcome, frozenset[int]]] = {}  # each request's latest walk
        self._filled = 0  # boundaries whose fills are recorded
        self._decoded: dict[int, Any] = {}  # command -> as the caches read it
        self._clears: dict[tuple[str, Any, int], bool] = {}  # (cache, slot, command) -> the command clears it
        # request -> the boundaries whose ways were enumerated (or found the same), in order
        self._enumerated: dict[Request, list[_Ways]] = {}
        self.extend(in_flight)

    def extend(self, in_flight: Sequence[Invalidation] = ()) -> "Windows":
        """Take in the boundaries and invalidations the run gained since (the run only grows)."""
        self.invalidations = tuple(self.run.invalidations) + tuple(in_flight)
        self._clearers: dict[tuple[str, Any], tuple[Invalidation, ...]] = {}
        self._held: dict[tuple[str, int], list[tuple[Cached, int]]] = {}
        self._outcomes: dict[tuple[int, Request], list[Served]] = {}
        self._held_slots: dict[int, tuple[frozenset[Any], ...]] = {}
        self._fill_from(self._filled)
        self._filled = len(self.run.boundaries)
        return self

    def fork(self, run: Run) -> "Windows":
        """A copy over ``run`` (a fork of this one's run) that can be extended on its own."""
        other = copy.copy(self)
        other.run = run
        other.cached = {k: {slot: list(spans) for slot, spans in v.items()} for k, v in self.cached.items()}
        other._request_of, other._previous = dict(self._request_of), dict(self._previous)
        other.ats = {d: list(changes) for d, changes in self.ats.items()}
        other._enumerated = {r: found[-1:] for r, found in self._enumerated.items()}  # all a later boundary asks
        return other

    # -- ATS Enable ----------------------------------------------------------------------------------

    def ats_enabled(self, device_id: int, at: int) -> bool:
        """Whether the device has ATS Enable set at boundary ``at`` (always, unless ``ats_control``)."""
        if not self.ats_control:
            return True
        enabled = False
        for j, enable in self.ats.get(device_id, ()):
            if j > at:
                break
            enabled = enable
        return enabled

    def _ats_discards(self, device_id: int, filled: int, at: int) -> bool:
        """Whether software cleared the device's ATS Enable after ``filled`` and by ``at``, emptying its
        IOTLB (under the reading that it does)."""
        return self.choices.atc_on_ats_disable == "discarded" and any(
            filled < j <= at and not enable for j, enable in self.ats.get(device_id, ()))

    # -- fills ---------------------------------------------------------------------------------------

    def fresh(self, at: int, request: Request) -> Outcome:
        """The walk of memory at boundary ``at``."""
        return self._walk(self.run.boundaries[at].memory, request, None)

    def _call(self, key: Any, memory: Any, compute: Any, reads: list[int] | None) -> Any:
        """The memo's result, noting the words it depends on in ``reads`` (when given)."""
        if reads is None:
            return self.memo.call(key, memory, compute)
        return self.memo.call_reading(key, memory, compute, reads)

    def _walk(self, memory: Any, request: Request, dte: int | None, reads: list[int] | None = None) -> Outcome:
        """The walk of ``request`` over ``memory``, from the DTE in memory (``dte`` None) or from ``dte``."""
        cached = _NO_CACHE if dte is None else self._starts.get(dte)
        if cached is None:
            cached = self._starts[dte] = dataclasses.replace(_NO_CACHE, dte=dte)
        return self._call(("walk", request, dte), memory,
                          lambda m: translate(INT, m, self.bar, request, choices=self.choices, cached=cached), reads)

    def dte_at(self, at: int, device_id: int) -> int:
        """The 256-bit DTE of ``device_id`` in memory at boundary ``at``."""
        return self._dte(self.run.boundaries[at].memory, device_id)

    def _dte(self, memory: Any, device_id: int, reads: list[int] | None = None) -> int:
        return self._call(("dte", device_id), memory, lambda m: read_dte(INT, m, self.bar, device_id)[0], reads)

    def _fill_from(self, start: int) -> None:
        previous = self._previous
        for boundary in self.run.boundaries[start:]:
            j = boundary.index
            written = (frozenset(a for a, _ in boundary.step.writes) if isinstance(boundary.step, Store)
                       else frozenset() if isinstance(boundary.step, _RING_ONLY) else None)  # None: walk again
            switched = ()
            if isinstance(boundary.step, AtsControl):
                switched = boundary.step.device_ids
                for d in switched:
                    self.ats.setdefault(d, []).append((j, boundary.step.enable))
            for r in self.requests:
                last = previous.get(r)
                if last is None or written is None or written & last[1]:
                    fresh = self.fresh(j, r)
                    dte = self._dte(boundary.memory, r.device_id)
                    last = previous[r] = (fresh, _walk_reads(fresh), dte)
                # else nothing the walk reads changed: the same fills as before, possible here too
                self._record_fills(j, r, last[0], last[2])

    def _fills(self, r: Request, fresh: Outcome, dte: int) -> list[tuple[str, Any]]:
        """Every valid slot value the walk ``fresh`` gives (the registry's fill functions), remembered by
        the walk (an object the memo keeps, so its identity names it)."""
        key = (r, id(fresh), dte)
        if key not in self._fill_memo:
            self._fill_memo[key] = [(kind.name, slot) for kind in CACHE_KINDS for step in _fill_steps(kind.name)
                                    for slot in (kind.fill(INT, r, fresh, step, self.choices, dte),) if slot.valid]
        return self._fill_memo[key]

    def _record_fills(self, at: int, r: Request, fresh: Outcome, dte: int) -> None:
        ats = self.ats_enabled(r.device_id, at)
        for kind, slot in self._fills(r, fresh, dte):
            if kind == "device_iotlb" and not ats:
                continue  # a function with ATS disabled sends no translation requests
            spans = self.cached[kind].get(slot)
            if spans is None:
                self.cached[kind][slot] = [(at, at)]
                self._request_of[(kind, slot)] = r
            elif spans[-1][1] == at - 1:
                spans[-1] = (spans[-1][0], at)
            elif spans[-1][1] != at:
                spans.append((at, at))

    # -- survival ------------------------------------------------------------------------------------

    def clears(self, kind: str, slot: Any, command: int) -> bool:
        """Whether the invalidation ``command`` clears ``slot`` of cache ``kind`` (the cache's own rule)."""
        return self._clears_slot(kind, slot, command)

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

    def survives(self, kind: str, slot: Any, filled: Sequence[tuple[int, int]], at: int) -> int | None:
        """The boundary of the fill of ``slot`` that may still be held at ``at`` (None: none may): the
        latest one at or before ``at`` (``filled``: the spans of boundaries where a fill gives it)."""
        n = bisect.bisect_right(filled, at, key=_start)
        if not n:
            return None
        j = min(filled[n - 1][1], at)
        if kind == "device_iotlb" and self._ats_discards(slot.owner, j, at):
            return None
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
            ats = request.ats and self.ats_enabled(request.device_id, at)
            reads: list[int] = []
            starts: list[tuple[int, Outcome]] = []
            self._outcomes[key] = list(self._enumerate(at, request, self.run.boundaries[at].memory, ats, reads,
                                                       starts))
            self._note(request, _Ways(at, frozenset(reads), tuple(starts), self._held_values(at),
                                      tuple(self._outcomes[key])))
        return self._outcomes[key]

    def ways(self, at: int, request: Request) -> Sequence[Served]:
        """The ways of :meth:`outcomes` as far as a checker decides on them: each way's result and
        which caches it used are those at ``at``, but they may be an earlier boundary's objects (their
        ``at`` and fill boundaries that boundary's), found the same by :meth:`_same_as_before` without
        enumerating again. Report a violation from :meth:`outcomes`, which is exact."""
        key = (at, request)
        if key in self._outcomes:
            return self._outcomes[key]
        same = self._same_as_before(at, request)
        return same.served if same is not None else self.outcomes(at, request)

    def _note(self, request: Request, ways: "_Ways") -> None:
        found = self._enumerated.setdefault(request, [])
        n = bisect.bisect_left(found, ways.at, key=_ways_at)
        if n == len(found) or found[n].at != ways.at:
            found.insert(n, ways)

    def _same_as_before(self, at: int, request: Request) -> "_Ways | None":
        """Ways of serving ``request`` found before whose results are exactly those of the ways at ``at``
        (None: none are known). They are the latest boundary's up to ``at`` whose ways were enumerated
        (or found the same in turn; ``at`` itself when a checker already asked there), when memory at
        ``at`` holds the same values at every word those ways read, every value a cache may hold at one
        of the two boundaries and not at the other is one the request cannot use (the registry's hit predicate, from each walk start those ways used; any
        device-IOTLB value for a translated request), and the device's ATS Enable is the same. Every
        way is a function of those alone: a memo result, of the words it read; a cached part, of its
        slot value."""
        found = self._enumerated.get(request)
        n = bisect.bisect_right(found, at, key=_ways_at) if found else 0  # this boundary's own too
        if not n or at >= len(self.run.boundaries):
            return None
        then = found[n - 1]
        now_memory, then_memory = self.run.boundaries[at].memory, self.run.boundaries[then.at].memory
        if now_memory is not then_memory and any(now_memory.get(a, 0) != then_memory.get(a, 0) for a in then.reads):
            return None
        if request.ats and self.ats_enabled(request.device_id, at) != self.ats_enabled(request.device_id, then.at):
            return None
        held = self._held_values(at)
        for kind, now, earlier in zip(_KIND_NAMES, held, then.held):
            if now == earlier:
                continue
            for slot in now ^ earlier:
                if kind == "dte":
                    usable = self._hit(kind, slot, request, None, None)
                elif kind == "device_iotlb":
                    usable = request.ats
                else:
                    usable = kind in _LOOKED_UP and any(self._hit(kind, slot, request, dte, plain)
                                                        for dte, plain in then.starts)
                if usable:
                    return None
        same = then._replace(at=at, held=held)
        self._note(request, same)
        return same

    def _held_values(self, at: int) -> tuple[frozenset[Any], ...]:
        """The slot values each cache may hold at ``at``."""
        found = self._held_slots.get(at)
        if found is None:
            found = self._held_slots[at] = tuple(frozenset(c.slot for c, _ in self.held(k.name, at))
                                                 for k in CACHE_KINDS)
        return found

    def _enumerate(self, at: int, request: Request, memory: Any, ats: bool, reads: list[int],
                   starts: list[tuple[int, Outcome]]) -> Iterator[Served]:
        memory_dte = self._dte(memory, request.device_id, reads)
        dtes = [(None, memory_dte)] + [((c, j), c.slot.dte) for c, j in self.held("dte", at)
                                        if self._hit("dte", c.slot, request, None, None)]
        for dte_choice, dte in dtes:
            plain = self._walk(memory, request, dte, reads)
            starts.append((dte, plain))
            options = {}
            for kind in _LOOKED_UP[1:]:
                hits = [(c, j) for c, j in self.held(kind, at) if self._hit(kind, c.slot, request, dte, plain)]
                options[kind] = [(kind, None)] + [(kind, h) for h in hits]
            # an IOTLB hit answers alone (models.dma.serve): one serve per hit, whatever the walk caches hold
            for hit in options.pop("iotlb")[1:]:
                yield self._serve(at, memory, request, dte_choice, [hit], reads)
            for combo in itertools.product(*options.values()):
                yield self._serve(at, memory, request, dte_choice, combo, reads)
            if ats:
                for c, j in self.held("device_iotlb", at):
                    yield self._serve_translated(at, memory, request, dte_choice, c, j, reads)

    def _hit(self, kind: str, slot: Any, request: Request, dte: Any, plain: Outcome | None) -> bool:
        """The registry's predicate: ``slot`` of ``kind`` may answer ``request`` (``plain``: the walk
        with that DTE, an object the memo keeps, so its identity names it)."""
        key = (kind, slot, request, dte, id(plain))
        found = self._hits.get(key)
        if found is None:
            found = self._hits[key] = bool(CACHES_BY_NAME[kind].hit(INT, slot, request, dte, plain, self.choices))
        return found

    def served_uncached(self, memory: Any, request: Request) -> Served:
        """How ``request`` is served over ``memory`` with every cache empty (a memory no boundary holds)."""
        return self._serve(-1, memory, request, None, ())

    def _serve(self, at: int, memory: Any, request: Request, dte_choice: Any, combo: Sequence[Any],
               reads: list[int] | None = None) -> Served:
        used = [("dte",) + dte_choice] if dte_choice is not None else []
        used += [(kind,) + held for kind, held in combo if held is not None]

        def compute(m: Any) -> DmaResult:
            caches = Caches.empty(*([1] * len(CACHE_KINDS)))
            for kind, c, _ in used:
                caches = caches.with_slot(kind, 0, c.slot)
            choice = ServeChoice(**{kind: 0 for kind, _, _ in used})
            return serve(INT, m, self.bar, caches, request, choice, choices=self.choices)

        key = ("serve", request, tuple((kind, c.slot) for kind, c, _ in used))
        return Served(at, request, tuple(used), self._call(key, memory, compute, reads))

    def _serve_translated(self, at: int, memory: Any, request: Request, dte_choice: Any, c: Cached, j: int,
                          reads: list[int] | None = None) -> Served:
        used = ([("dte",) + dte_choice] if dte_choice is not None else []) + [("device_iotlb", c, j)]

        def compute(m: Any) -> DmaResult:
            caches = Caches.empty(*([1] * len(CACHE_KINDS)))
            for kind, cached, _ in used:
                caches = caches.with_slot(kind, 0, cached.slot)
            return serve_translated(INT, m, self.bar, caches, request, 0, 0 if dte_choice is not None else None,
                                    choices=self.choices)

        key = ("translated", request, tuple((kind, x.slot) for kind, x, _ in used))
        return Served(at, request, tuple(used), self._call(key, memory, compute, reads))



def requests_for(device_ids: Iterable[int], pages: Iterable[int], *, pasids: Iterable[int | None] = (None,),
                 ats_ids: Iterable[int] = ()) -> list[Request]:
    """Reads and writes of every device at every page (and PASID: None is a request without one)."""
    ats = set(ats_ids)
    out = []
    for d, page, pasid, write in itertools.product(device_ids, pages, pasids, (False, True)):
        out.append(Request(device_id=d, address=page, write=write, pasid=pasid or 0, has_pasid=pasid is not None,
                           ats=d in ats))
    return out
