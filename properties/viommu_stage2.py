"""A stage-2 change reaches every guest: proved with Z3 against an adversarial guest (the hardware half),
and checked in every driver state a small universe reaches (the driver half, ``parent_flush_search``).

Hardware half (:func:`prove_hardware`), one query per cache and slot step of a nested translation (the
caches ``invalidation.QUERIES`` lists for a v1 change under a nested DTE), built by
``invalidation.build_query`` with the change described here (:func:`parent_entry`):

    a slot of a nested (guest v2 over host v1) translation is fresh (any memory: the guest's memory, its
    tables and GCR3 table, any guest DTE fields; the private address space another uninterpreted memory)
    and the ghost device is guest g's (1 <= g <= N, symbolic), nested under its gDomID gd (symbolic):
    its DTE is tagged with the host DomainID that g's DomainID map entry for gd gives, read as the
    hardware reads it (``models.viommu.lookup_domain``), the entry valid (the hypervisor's invariant,
    which the driver half checks)
    and a word of the parent's v1 table changes (read by the walk only as a host entry of the range:
    any DomainID's DTE may use the table)
    and the host sends INVALIDATE_IOMMU_PAGES (GN = 0, PDE = 1, the range) for every host DomainID that
    any guest's map gives (``flushed``, an uninterpreted predicate; the premise, "every mapped entry of
    every guest 1..N names a flushed ID", is used at g's entry for gd)
  => the slot is still fresh.

Only the command naming the ghost's own DomainID is applied: each invalidation acts on each slot on its
own and only clears (``models.caches.invalidate``), so a slot that survives the whole set survives that
one; proving freshness with it alone proves it with all. The witnesses show the change can make the slot
stale, and guest N's device is possible. ``Hardware.invalidate_pages_ignores_size`` and
``invalidate_pages_keeps_pde_cache`` refute it; so does a flush that names another DomainID than the
map's (a test).

Assumed, not proved here: the private address space is a memory of its own (``viommu_maps``), and
software's invalidations are followed by a COMPLETION_WAIT (``ordering``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterator

import z3

from amdvi.models import protocol
from amdvi.models import viommu as vi
from amdvi.models.amd_driver.choices import Driver
from amdvi.models.caches import Caches
from amdvi.models.iommu import IommuState
from amdvi.models.protocol import Required
from amdvi.models.registers import Registers
from amdvi.spec import viommu as V
from amdvi.spec.bitvec import Z3
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.translation import Outcome

from . import invalidation, parent_flush_search
from .invalidation import Situation, Symbols, _aligned_range, _in_range, _reads
from .proof import PROVED, REFUTED, ProofResult, Witness, prove
from .viommu_maps import FlatPrivateSpace

b = Z3
CHANGE = "parent-entry"
PROFILE = "nested"
# the caches of a nested translation a v1 change can make stale (as the host proofs query them), the
# quickest first (a broken model shows soonest)
CACHES = ("gcr3", "guest_pde", "iotlb")
assert set(CACHES) == {c for change, c, p, _ in invalidation.QUERIES if change == "v1-entry" and p == PROFILE}
ID = z3.BitVecSort(16)


def parent_entry(guests: int, choices: Hardware, *, flush_named: str = "mapped") -> Callable[[Symbols, Outcome], Situation]:
    """The change, for ``invalidation.build_query``. ``flush_named``: "mapped" (the host flushes what the
    maps give, the property's premise) or "other" (a test's broken host: it flushes the symbolic DomainID
    ``domain`` only, as a flush that misses the guests' host DomainIDs)."""
    if not 2 <= guests < V.MAX_GUESTS:
        raise ValueError(f"guests: between 2 and {V.MAX_GUESTS - 1} (GuestIDs 1 to guests; 0 is never a guest's)")

    def situation(v: Symbols, fresh: Outcome) -> Situation:
        g, gd = z3.BitVec("guest_id", 16), z3.BitVec("guest_domain_id", 16)
        private = IommuState(memory=Z3.memory_function("private"), regs=Registers(), caches=Caches.empty())
        entry = vi.lookup_domain(b, private, g, gd, FlatPrivateSpace(), choices)
        flushed = z3.Function("flushed", ID, z3.BitVecSort(1))
        is_guest = z3.And(z3.UGE(g, 1), z3.ULE(g, guests))
        tagged = (is_guest, entry.mapped, fresh.domain_id == entry.host_id)
        covers = z3.Implies(z3.And(is_guest, entry.mapped), flushed(entry.host_id) == 1)
        as_entry = b.implies(_reads(fresh, v.address, ("PDE/PTE",), dte_too=False),
                             b.any_of(fresh.guest, _in_range(v.ghost.address, v.base, v.shift)))
        owns = b.all_of(as_entry, b.lnot(_reads(fresh, v.address, ("DTE", "GCR3", "GPTE"))))
        if flush_named == "mapped":
            named, when = fresh.domain_id, flushed(fresh.domain_id) == 1
        else:
            named, when = v.domain, True
        (pages,) = protocol.v1_table_change(b, named, (v.base, v.shift))
        sent = Required(f"{pages.label} for each host DomainID the guests' maps give", pages.command, when)
        return Situation(((v.address, v.value),), (*_aligned_range(v), *tagged, covers), owns, (sent,))
    return situation


def steps(guests: int = 8, *, choices: Hardware = SPEC, timeout_ms: int = 300_000, flush_named: str = "mapped",
          caches: tuple[str, ...] = CACHES, observe: bool = False) -> Iterator[ProofResult]:
    """One obligation per cache and slot step (``parent-entry/cache/nested/k``), up to the first not proved.
    ``observe``: claim only that the DMA served from the slot reaches nothing a fresh walk would not (a
    refutation is then a stale access; ``invalidation.build_query``)."""
    for cache in caches:
        for k in invalidation.slot_steps(cache, PROFILE):
            q = invalidation.build_query(CHANGE, cache, PROFILE, k, choices=choices, observe=observe,
                                         situation_of=parent_entry(guests, choices, flush_named=flush_named))
            last = z3.BitVec("guest_id", 16) == guests
            witnesses = [Witness(f"a device of guest {guests} (the last)", last)]
            if not observe:
                witnesses = [*invalidation.stale_witnesses(q), *witnesses]
            r = prove(f"{CHANGE}/{cache}/{PROFILE}/{k}", q.assumptions, q.claim, witnesses=witnesses,
                      timeout_ms=timeout_ms, strategy="bit-blast")
            yield dataclasses.replace(r, evidence=q)
            if r.status != PROVED:
                return


def prove_hardware(guests: int = 8, *, choices: Hardware = SPEC, timeout_ms: int = 300_000,
                   flush_named: str = "mapped", observe: bool = False, caches: tuple[str, ...] = CACHES
                   ) -> ProofResult:
    """Every obligation of :func:`steps` (of ``caches``), combined."""
    parts = list(steps(guests, choices=choices, timeout_ms=timeout_ms, flush_named=flush_named, observe=observe,
                       caches=caches))
    name = f"vIOMMU stage-2 change, hardware ({guests} guests)"
    seconds = sum(p.seconds for p in parts)
    bad = next((p for p in parts if p.status != PROVED), None)
    if bad is not None:
        return ProofResult(name, bad.status, seconds, f"{bad.name}: {bad.detail}", bad.model, bad.evidence)
    return ProofResult(name, PROVED, seconds, f"{len(parts)} obligations")


# -- the driver half -------------------------------------------------------------------------------

# The readings the driver half runs under: mainline (no HW-vIOMMU) and AMD's work-in-progress HW-vIOMMU,
# each with nested attach leaving the previous paging domain (nested-attach-previous=detached). Under the
# default reading, "kept", the device stays on the parent's list and the search finds the defects of
# nested-back-to-parent.json (a freed hDomID left in the device's DTE, which no parent flush names) and of
# a parent table that grows under a nested device (its DTE rewritten as the parent's): each run reports
# the first it finds under "kept" as a finding, not as the claim.
DRIVER_READINGS = (("hw-viommu=off", {"hw_viommu": "off"}), ("hw-viommu=amd-wip", {"hw_viommu": "amd-wip"}))
SEARCH_DEPTH = 5  # calls after the prefix, about 10 s on 2 cores (the deep test goes to 6)


def _misses(missed: tuple[parent_flush_search.Miss, ...]) -> str:
    return "; ".join(f"DomainID {m.domain_id} ({m.why})" for m in missed)


def _found(r: parent_flush_search.Result) -> tuple[tuple, tuple] | None:
    """The claim's first violation: what the search stopped at, else a device DTE over the parent the flush
    missed (outside the search's own claim, part of this one under ``detached``)."""
    return r.violation or r.dte_misses


def prove_driver(driver: Driver | None = None, *, depth: int = SEARCH_DEPTH, choices: Hardware = SPEC
                 ) -> ProofResult:
    """The driver half (``parent_flush_search``) under each of :data:`DRIVER_READINGS` (with ``driver``'s
    faults, if any, and nested-attach-previous=detached): states covered, or the first violation (its
    evidence: the universe and the calls, for ``parent_flush_search.replay``); the detail ends with what
    the same search finds under the default reading, kept."""
    start, parts, covered = time.perf_counter(), [], 0
    base = driver or Driver()
    for label, reading in DRIVER_READINGS:
        u = parent_flush_search.Universe(driver=dataclasses.replace(base, nested_attach_previous="detached",
                                                                    **reading))
        r = parent_flush_search.search(u, depth, choices=choices)
        covered += r.states
        found = _found(r)
        if found is not None:
            calls, missed = found
            detail = (f"{label}, nested-attach-previous=detached: after {parent_flush_search.describe(calls)}, "
                      f"the parent's flush misses {_misses(missed)}")
            return ProofResult("vIOMMU stage-2 change, driver", REFUTED, time.perf_counter() - start, detail,
                               evidence=(u, calls))
        parts.append(f"{label}: {r.states} states")
    kept = parent_flush_search.search(parent_flush_search.Universe(
        driver=dataclasses.replace(base, nested_attach_previous="kept", hw_viommu="off")), depth, choices=choices)
    finding = _found(kept)
    under_kept = "holds too" if finding is None else (
        f"finding: after {parent_flush_search.describe(finding[0])}, the parent's flush misses {_misses(finding[1])}")
    return ProofResult("vIOMMU stage-2 change, driver", PROVED, time.perf_counter() - start,
                       f"{covered} states within {depth} steps under nested-attach-previous=detached "
                       f"({', '.join(parts)}); under the default reading, kept: {under_kept}")
