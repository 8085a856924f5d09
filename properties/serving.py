"""Fresh slots serve fresh results: the other half of invalidation completeness.

The inductive step (``invalidation``) shows that the required invalidations leave every slot *fresh*
(holding what a fill from its ghost request gives on current memory). This module proves that a fresh
slot never makes a DMA differ from the fresh walk: for one slot filled from the ghost request on
symbolic memory, and *any* request of the same device served with that slot (``models.dma.serve``, or
the device's own IOTLB for ``device_iotlb``), the result equals ``translate`` on the same memory
(success and system address: ``coherence.agrees``). Together: after the required invalidations and a
completed COMPLETION_WAIT, every DMA equals the fresh walk, whatever the caches hold.

The served request belongs to the ghost's device, so it sees the same DTE: sharing a DomainID between
devices with different tables is software's error, outside this property. For the caches that answer
with a whole translation (IOTLB, device IOTLB) the served request's walk is assumed to read the same
entry values as the ghost's: a large page's replicated PTEs are identical (48882 Table 14 usage, as
Linux writes them), which the walk itself cannot check.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator

import z3

from amdvi.models.caches import CACHE_NAMES, Caches, cache_kind
from amdvi.models.dma import ServeChoice, serve, serve_translated
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.translation import CachedStart, Request, read_dte, translate

from .coherence import agrees, filled_slot, reaches_only_fresh, same_slot
from .invalidation import DEVICE, HOST_DEPTHS, PROFILES, REGS, b, slot_steps, symbols
from .proof import PROVED, ProofResult, Witness, prove


@dataclass(frozen=True)
class ServingQuery:
    """A serving query, kept so that a refutation can be replayed (``counterexample.serving_trace``)."""

    cache: str
    profile: str
    step: int
    symbols: Any
    served: Request  # the request served from the slot (for ``device_iotlb``: the translated one)
    walk: Any = None  # the served DMA's walk (with the slot's cached parts): the words it reads

# (cache, profile) pairs: each cache with each DTE shape it can hold something for
QUERIES: tuple[tuple[str, str], ...] = (
    ("dte", "v1"), ("iotlb", "v1"), ("pde", "v1"), ("device_iotlb", "v1"),
    ("iotlb", "v2"), ("guest_pde", "v2"), ("gcr3", "v2"), ("device_iotlb", "v2"),
    ("iotlb", "nested"), ("guest_pde", "nested"), ("gcr3", "nested"),
)

# the same on host tables of every other depth (``invalidation.HOST_DEPTHS``; Mode 2 is "v1" above)
DEPTH_QUERIES: tuple[tuple[str, str], ...] = tuple(
    (cache, f"v1-mode{m}") for m in HOST_DEPTHS for cache in ("iotlb", "pde", "device_iotlb")
    if not (cache == "pde" and m == 1))


FINAL_TRANSLATIONS = ("iotlb", "device_iotlb")  # caches whose slot answers without any walk


def _same_entries(ghost_walk: Any, served_walk: Any) -> tuple[Any, ...]:
    """The two walks read the same entry values, step by step (software's duty for a large page: the
    PTE of a Next Level 7 page is replicated, identical, in every entry the page spans)."""
    assert len(ghost_walk.steps) == len(served_walk.steps), "walks of one DTE shape have one structure"
    return tuple(b.all_of(b.implies(g.active, s.active), b.implies(s.active, g.active),
                          b.implies(g.active, b.eq(g.entry, s.entry)))
                 for g, s in zip(ghost_walk.steps, served_walk.steps))


def _served_request() -> Request:
    v = lambda name, width: z3.BitVec(name, width)  # noqa: E731
    return Request(device_id=b.const(DEVICE, 16), address=v("served_address", 64), write=z3.Bool("served_write"),
                   pasid=v("served_pasid", 20), has_pasid=z3.Bool("served_has_pasid"), user=z3.Bool("served_user"),
                   execute=z3.Bool("served_execute"), ats=z3.BoolVal(False))


def serves_fresh(cache: str, profile: str, *, choices: Hardware = SPEC,
                 timeout_ms: int = 300_000, observe: bool = False) -> ProofResult:
    """A slot of ``cache`` filled on memory M serves every request as the fresh walk on M does: every
    slot step of :func:`serves_fresh_steps`, combined.

    ``observe``: claim only that the served DMA reaches nothing the fresh walk would not (weaker; a
    refutation is then a stale *access*, the counterexample a reader wants from a broken model)."""
    results = list(serves_fresh_steps(cache, profile, choices=choices, timeout_ms=timeout_ms, observe=observe))
    seconds = sum(x.seconds for x in results)
    for x in results:
        if x.status != PROVED:
            return ProofResult(f"{cache}/{profile}", x.status, seconds, f"{x.name}: {x.detail}", x.model, x.evidence)
    return ProofResult(f"{cache}/{profile}", PROVED, seconds)


def serves_fresh_steps(cache: str, profile: str, *, choices: Hardware = SPEC, timeout_ms: int = 300_000,
                       observe: bool = False) -> Iterator[ProofResult]:
    """:func:`serves_fresh` one slot step at a time (``cache/profile/k``, an obligation of its own), up
    to the first that is not proved: a slot holds the entry of one step (``slot_steps``), so together
    they are every slot of the cache. A step of :data:`SPLIT_AT_OWN_FILL` is proved in the parts
    :meth:`ServingStep.own_fill_parts` gives (each an obligation, ``cache/profile/k/part``), or else
    whole."""
    if cache not in CACHE_NAMES:
        raise KeyError(f"unknown cache {cache!r}")
    built = _built(profile)
    v, r = built[0], built[1]
    for k in slot_steps(cache, profile):
        q = serving_step(cache, profile, k, choices=choices, observe=observe, built=built)
        witnesses = [Witness("the slot is filled and serves another address",
                             b.all_of(q.slot.valid, b.lnot(b.eq(r.address, v.ghost.address))))]
        if (cache, profile) in SPLIT_AT_OWN_FILL and not observe:
            # the parts have no witness of their own: this shows the step's premises can hold
            shown = prove(q.name, q.assumptions, b.true(), witnesses=witnesses, timeout_ms=timeout_ms,
                          strategy="bit-blast")
            if shown.status != PROVED:
                yield dataclasses.replace(shown, evidence=q.evidence)
                return
            parts: list[ProofResult] = []
            for name, premises, claim in q.own_fill_parts(choices):
                parts.append(prove(name, premises, claim, timeout_ms=timeout_ms, strategy="bit-blast"))
                if parts[-1].status != PROVED:
                    break
            if all(p.status == PROVED for p in parts):
                parts[0] = dataclasses.replace(parts[0], seconds=parts[0].seconds + shown.seconds)
                yield from parts
                continue
            witnesses = []  # shown above; the whole question decides (a refutation is one of it)
            spent = shown.seconds + sum(p.seconds for p in parts)
        else:
            spent = 0.0
        result = prove(q.name, q.assumptions, q.claim, witnesses=witnesses, timeout_ms=timeout_ms,
                       strategy="bit-blast")
        yield dataclasses.replace(result, seconds=result.seconds + spent, evidence=q.evidence)
        if result.status != PROVED:
            return


# Steps proved in parts (:meth:`ServingStep.own_fill_parts`). A guest directory slot of a nested walk
# makes the serving question compare two nested walks and the ghost's besides; in parts each question
# has about half the reads (2 cores, quiet: 4.5-6.7 s a step whole, at most 3 s a part). The nested
# IOTLB and GCR3 steps gain little (their hit-is-own-fill, resp. own-fill, part takes most of the
# whole's time), so they stay whole.
SPLIT_AT_OWN_FILL = frozenset({("guest_pde", "nested")})


@dataclass(frozen=True)
class ServingStep:
    """One serving question: ``assumptions`` (the slot, filled from the ghost, is valid; for a final
    translation, the two walks read the same entries) => ``claim`` (``served``, the DMA of ``request``
    with the slot, agrees with ``fresh``, its walk on the same memory)."""

    name: str
    cache: str
    step: int
    symbols: Any
    request: Request
    fresh: Any
    slot: Any
    served: Any
    assumptions: tuple[Any, ...]
    claim: Any
    evidence: ServingQuery

    def own_fill(self, choices: Hardware = SPEC) -> tuple[Any, Any]:
        """The slot the request's own walk fills at the same step, and its DMA served with that slot."""
        v, r = self.symbols, self.request
        own = filled_slot(b, v.memory, REGS, self.cache, r, self.step, walk=self.fresh, choices=choices)
        caches = Caches(**{n: (own,) if n == self.cache else () for n in CACHE_NAMES})
        return own, serve(b, v.memory, REGS.dev_tab_bar, caches, r, ServeChoice(**{self.cache: 0}), choices=choices)

    def hit(self, choices: Hardware = SPEC) -> Any:
        """Whether the slot may answer the request in ``serve``: its cache's hit predicate on the DTE in
        memory and the walk from it, as ``serve`` builds them."""
        memory, r = self.symbols.memory, self.request
        dte, _, _ = read_dte(b, memory, REGS.dev_tab_bar, r.device_id)
        plain = translate(b, memory, REGS.dev_tab_bar, r, choices=choices, cached=CachedStart(dte=dte))
        return cache_kind(self.cache).hit(b, self.slot, r, dte, plain, choices)

    def own_fill_parts(self, choices: Hardware = SPEC) -> list[tuple[str, tuple[Any, ...], Any]]:
        """The question as three (name, premises, claim) questions that together imply it:

        * ``miss``: when the slot does not hit the request, its DMA is served as without the slot;
        * ``hit-is-own-fill``: when it hits, the slot equals, field by field, the slot the request's own
          walk fills at the same step (the ghost and the request share the tags the hit compares, so
          their walks agree down to the cached entry);
        * ``own-fill``: a slot filled from the request's own walk serves it as the fresh walk does.

        Why they imply it: hit or miss covers every case (a test checks the two premises' union is the
        question's). On a hit, the served DMA is ``serve`` applied to the slot's fields and to what does
        not depend on the slot: written once over the backend, it gives equal results for equal fields
        (a test checks that the served terms with the slot's fields replaced by the own fill's are the
        own fill's served terms), so it is the DMA served with the own fill, which ``own-fill`` shows
        fresh (its premise, the own fill is valid, holds: the slots agree on validity too). The ghost's
        walk is gone from ``own-fill`` and the cached walk from ``hit-is-own-fill``: about half the
        reads of the whole question each."""
        own, own_served = self.own_fill(choices)
        hit = self.hit(choices)
        return [(f"{self.name}/miss", (*self.assumptions, b.lnot(hit)), self.claim),
                (f"{self.name}/hit-is-own-fill", (*self.assumptions, hit), same_slot(b, self.slot, own)),
                (f"{self.name}/own-fill", (own.valid,), agrees(b, own_served, self.fresh))]


def serving_step(cache: str, profile: str, step: int, *, choices: Hardware = SPEC, observe: bool = False,
                 built: tuple[Any, Any, Any, Any] | None = None) -> ServingStep:
    """The serving question of one slot step (``built``: the symbols, served request and the two walks,
    when already made for another step)."""
    v, r, fresh, ghost_walk = built or _built(profile)
    slot = filled_slot(b, v.memory, REGS, cache, v.ghost, step, choices=choices)
    caches = Caches(**{n: (slot,) if n == cache else () for n in CACHE_NAMES})
    request = dataclasses.replace(r, ats=True) if cache == "device_iotlb" else r
    if cache == "device_iotlb":
        served = serve_translated(b, v.memory, REGS.dev_tab_bar, caches, request, 0)
    else:
        served = serve(b, v.memory, REGS.dev_tab_bar, caches, r, ServeChoice(**{cache: 0}), choices=choices)
    assumptions = (slot.valid, *(_same_entries(ghost_walk, fresh) if cache in FINAL_TRANSLATIONS else ()))
    claim = reaches_only_fresh(b, served, fresh) if observe else agrees(b, served, fresh)
    return ServingStep(f"{cache}/{profile}/{step}", cache, step, v, r, fresh, slot, served, assumptions, claim,
                       ServingQuery(cache, profile, step, v, request, served.outcome))


def _built(profile: str) -> tuple[Any, Any, Any, Any]:
    v = symbols(PROFILES[profile])
    r = _served_request()
    return v, r, translate(b, v.memory, REGS.dev_tab_bar, r), translate(b, v.memory, REGS.dev_tab_bar, v.ghost)
