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
from typing import Any

import z3

from amdvi.models.caches import CACHE_NAMES, Caches
from amdvi.models.dma import ServeChoice, serve, serve_translated
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.translation import Request, translate

from .coherence import agrees, filled_slot, reaches_only_fresh
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
    """A slot of ``cache`` filled on memory M serves every request as the fresh walk on M does.

    ``observe``: claim only that the served DMA reaches nothing the fresh walk would not (weaker; a
    refutation is then a stale *access*, the counterexample a reader wants from a broken model)."""
    if cache not in CACHE_NAMES:
        raise KeyError(f"unknown cache {cache!r}")
    v = symbols(PROFILES[profile])
    r = _served_request()
    fresh = translate(b, v.memory, REGS.dev_tab_bar, r)
    ghost_walk = translate(b, v.memory, REGS.dev_tab_bar, v.ghost)
    results = []
    for k in slot_steps(cache, profile):
        slot = filled_slot(b, v.memory, REGS, cache, v.ghost, k, choices=choices)
        caches = Caches(**{n: (slot,) if n == cache else () for n in CACHE_NAMES})
        request = dataclasses.replace(r, ats=True) if cache == "device_iotlb" else r
        if cache == "device_iotlb":
            served = serve_translated(b, v.memory, REGS.dev_tab_bar, caches, request, 0)
        else:
            served = serve(b, v.memory, REGS.dev_tab_bar, caches, r, ServeChoice(**{cache: 0}), choices=choices)
        assumptions = (slot.valid, *(_same_entries(ghost_walk, fresh) if cache in FINAL_TRANSLATIONS else ()))
        different = b.lnot(b.eq(r.address, v.ghost.address))
        witnesses = [Witness("the slot is filled and serves another address", b.all_of(slot.valid, different))]
        claim = reaches_only_fresh(b, served, fresh) if observe else agrees(b, served, fresh)
        result = prove(f"{cache}/{profile}/{k}", assumptions, claim, witnesses=witnesses,
                       timeout_ms=timeout_ms, strategy="bit-blast")
        results.append(dataclasses.replace(result, evidence=ServingQuery(cache, profile, k, v, request, served.outcome)))
        if result.status != PROVED:
            break
    seconds = sum(x.seconds for x in results)
    for x in results:
        if x.status != PROVED:
            return ProofResult(f"{cache}/{profile}", x.status, seconds, f"{x.name}: {x.detail}", x.model, x.evidence)
    return ProofResult(f"{cache}/{profile}", PROVED, seconds)
