"""The properties ``amdvi prove`` knows, by name, with the broken models that must refute them.

* ``<change>-invalidation`` (one per change kind of ``invalidation.CHANGES``): after the change and
  the invalidations it requires, every cache slot is still fresh (every query of
  ``invalidation.QUERIES`` for that change).
* ``<change>-minimal``: each required invalidation is needed: leaving one out, or sending it with a
  wrong DomainID, PASID, DeviceID, S bit or PDE bit, is refuted with a stale DMA that a concrete
  replay reproduces. "proved" here means every such weakening was refuted and replayed; a weakening
  the solver cannot refute is reported (it means that part of the sequence is not needed in the model).
* ``fresh-slots-serve-fresh``: ``serving.serves_fresh`` for each cache and DTE shape (the other half:
  fresh slots give only fresh DMA).
* ``completion-wait-ordering``: ``ordering.wait_after_invalidations``.

* ``every-host-depth`` (``--all``): the two above on host tables of 1 and 3..6 levels.
* ``nested-isolation``: ``isolation.nested_isolation`` (no guest leads its device outside the v1 mapping).
* ``viommu-command-isolation``, ``viommu-invalidation-scope``, ``viommu-guest-wait-ordering``: the
  HW-vIOMMU's guest commands (``viommu_isolation``, ``viommu_invalidation``), for any GuestID;
  ``viommu-map-write-isolation``: the hypervisor's map writes (``viommu_maps``);
  ``viommu-guest-event-isolation``: the guest event log's writes (``viommu_events``);
  ``viommu-stage2-reaches-every-guest``: a nest parent's change reaches every guest (``viommu_stage2``:
  a Z3 hardware half and a driver half searched over every state of a small universe; the one property
  that also takes the driver model's choices, so a driver fault's preset can refute it).

``<change>-invalidation``, ``fresh-slots-serve-fresh`` and ``every-host-depth`` report one obligation
per cache and slot step (``change/cache/profile/k``, ``cache/profile/k``; a PDE cache's slot holds the
entry of one directory level, ``invalidation.slot_steps``): separate solver queries that together
cover every slot, each timed on its own. A serving step of ``serving.SPLIT_AT_OWN_FILL`` reports its
parts (``cache/profile/k/part``).

Run under a preset of broken choices (``presets.PRESETS``) the properties it names must come out
refuted; the counterexample is replayed under the same choices. A property always checks the same
claim, whatever the choices: a refutation of the freshness claim is followed by a separate search for
a stale *access* only to give a reader the most telling trace.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

from amdvi.spec.choices import SPEC, Hardware

from . import (bmc, invalidation, isolation, ordering, serving, viommu_events, viommu_invalidation, viommu_isolation,
               viommu_maps, viommu_stage2)
from .counterexample import Replay, Trace, isolation_trace, ordering_trace, replay, trace_of
from .proof import PROVED, REFUTED, UNKNOWN, VACUOUS, ProofResult


@dataclass(frozen=True)
class Outcome:
    """A property's result, with the trace and its replay when it was refuted."""

    result: ProofResult
    trace: Trace | None = None
    replay: Replay | None = None
    parts: tuple[ProofResult, ...] = ()


@dataclass(frozen=True)
class Property:
    name: str
    description: str
    run: Callable[..., Iterator[ProofResult | Outcome]]  # yields each query's result, then the Outcome
    takes_driver: bool = False  # run also takes ``driver=`` (the driver model's choices: a driver preset)

    def items(self, choices: Hardware = SPEC, timeout_ms: int = 300_000, driver: Any = None
              ) -> Iterator[ProofResult | Outcome]:
        """``run``, given the driver's choices when it takes them (else they do not concern it)."""
        extra = {"driver": driver} if self.takes_driver and driver is not None else {}
        return self.run(choices=choices, timeout_ms=timeout_ms, **extra)


def _queries(change: str) -> list[tuple[str, str, str, bool]]:
    return [q for q in invalidation.QUERIES if q[0] == change]


def _with_trace(result: ProofResult, choices: Hardware) -> Outcome:
    if result.status != REFUTED or result.evidence is None:
        return Outcome(result)
    trace = trace_of(result.evidence, result.model)
    return Outcome(result, trace, replay(trace, choices=choices))


def _refutation(result: ProofResult, choices: Hardware,
                access: Callable[[], ProofResult]) -> Outcome:
    """The outcome of a refuted freshness claim, with the most telling trace: ``access()`` searches the
    same situation for a DMA that reaches an address a fresh walk would not; when it finds none, the
    trace shows the stale slot the claim was refuted with."""
    if result.status != REFUTED:
        return Outcome(result)
    found = access()
    if found.status == REFUTED and found.evidence is not None:
        stale = _with_trace(found, choices)
        if stale.replay is not None and stale.replay.violated:
            return replace(stale, result=replace(result, seconds=result.seconds + found.seconds,
                                                 detail=f"{result.detail}; a stale access: {stale.replay.summary()}"))
    return _with_trace(result, choices)


def _named(r: ProofResult) -> str:
    """A step's result detail, naming the obligation (``change/cache/profile/k``) it belongs to."""
    return f"{r.name}: {r.detail}"


def _completeness(change: str) -> Callable[..., Iterator[ProofResult | Outcome]]:
    def run(choices: Hardware = SPEC, timeout_ms: int = 300_000) -> Iterator[ProofResult | Outcome]:
        parts = []
        for _, cache, profile, stale in _queries(change):
            for r in invalidation.fresh_after_change_steps(change, cache, profile, choices=choices,
                                                           timeout_ms=timeout_ms, stale_possible=stale):
                parts.append(r)
                yield r
                if r.status != PROVED:
                    yield _refutation(replace(r, name=f"{change}-invalidation", detail=_named(r)), choices, lambda: (
                        invalidation.fresh_after_change(change, cache, profile, choices=choices,
                                                        timeout_ms=timeout_ms, stale_possible=False, observe=True)))
                    return
        yield Outcome(ProofResult(f"{change}-invalidation", PROVED, sum(p.seconds for p in parts)), parts=tuple(parts))
    return run


def weakenings(change: str) -> list[tuple[str, dict[str, Any]]]:
    """Each way of weakening the required set of ``change``: a dropped command or a corrupted operand."""
    profile = next(p for c, _, p, _ in invalidation.QUERIES if c == change)
    out: list[tuple[str, dict[str, Any]]] = [(f"without {label}", {"drop": label})
                                             for label in invalidation.required_labels(change, profile)]
    out += [(name, {"corrupt": fn}) for name, fn in invalidation.CORRUPTIONS.items()]
    return out


# the weakenings that cannot matter for a change: the command or field is not in its required set
NOT_APPLICABLE = {
    "v1-entry": {"wrong PASID", "wrong DeviceID"},
    "v2-entry": {"wrong DeviceID"},
    "gcr3-entry": {"S bit clear", "wrong DeviceID"},
    "dte": {"wrong PASID", "S bit clear"},
}


def _minimal(change: str) -> Callable[..., Iterator[ProofResult | Outcome]]:
    def run(choices: Hardware = SPEC, timeout_ms: int = 300_000) -> Iterator[ProofResult | Outcome]:
        start, parts, failures = time.perf_counter(), [], []
        for label, how in weakenings(change):
            if label in NOT_APPLICABLE.get(change, ()):
                continue
            found = None
            for _, cache, profile, stale in _queries(change):
                if not stale:
                    continue
                r = invalidation.fresh_after_change(change, cache, profile, choices=choices, timeout_ms=timeout_ms,
                                                    stale_possible=False, observe=True, **how)
                if r.status == REFUTED:
                    found = _with_trace(r, choices)
                    if found.replay is not None and found.replay.stale:
                        break
                    found = None
            name = f"{change}: {label}"
            if found is None:
                failures.append(name)
                parts.append(ProofResult(name, UNKNOWN, 0.0, "no replayable stale DMA found"))
            else:
                parts.append(replace(found.result, name=name, detail=found.replay.summary()))
            yield parts[-1]
        status = PROVED if not failures else UNKNOWN
        detail = "" if not failures else "not shown needed: " + "; ".join(failures)
        yield Outcome(ProofResult(f"{change}-minimal", status, time.perf_counter() - start, detail), parts=tuple(parts))
    return run


def _serving(choices: Hardware = SPEC, timeout_ms: int = 300_000) -> Iterator[ProofResult | Outcome]:
    parts = []
    for cache, profile in serving.QUERIES:
        for r in serving.serves_fresh_steps(cache, profile, choices=choices, timeout_ms=timeout_ms):
            parts.append(r)
            yield r
            if r.status != PROVED:
                yield _refutation(replace(r, name="fresh-slots-serve-fresh", seconds=sum(p.seconds for p in parts),
                                          detail=_named(r)),
                                  choices, lambda: serving.serves_fresh(cache, profile, choices=choices,
                                                                        timeout_ms=timeout_ms, observe=True))
                return
    yield Outcome(ProofResult("fresh-slots-serve-fresh", PROVED, sum(p.seconds for p in parts)), parts=tuple(parts))


def _host_depths(choices: Hardware = SPEC, timeout_ms: int = 300_000) -> Iterator[ProofResult | Outcome]:
    """``fresh-slots-serve-fresh`` and ``v1-entry-invalidation``'s v1 queries again, on host tables of
    every other depth (``invalidation.HOST_DEPTHS``): together with Mode 2 in those two properties,
    every depth 1..6. Serving first: a broken cache fill shows there soonest."""
    name, parts = "every-host-depth", []
    for cache, profile in serving.DEPTH_QUERIES:
        for r in serving.serves_fresh_steps(cache, profile, choices=choices, timeout_ms=timeout_ms):
            parts.append(r)
            yield r
            if r.status != PROVED:
                yield _refutation(replace(r, name=name, seconds=sum(p.seconds for p in parts), detail=_named(r)),
                                  choices,
                                  lambda: serving.serves_fresh(cache, profile, choices=choices, timeout_ms=timeout_ms,
                                                               observe=True))
                return
    for change, cache, profile, stale in invalidation.DEPTH_QUERIES:
        for r in invalidation.fresh_after_change_steps(change, cache, profile, choices=choices,
                                                       timeout_ms=timeout_ms, stale_possible=stale):
            parts.append(r)
            yield r
            if r.status != PROVED:
                yield _refutation(replace(r, name=name, seconds=sum(p.seconds for p in parts), detail=_named(r)),
                                  choices, lambda: (
                    invalidation.fresh_after_change(change, cache, profile, choices=choices, timeout_ms=timeout_ms,
                                                    stale_possible=False, observe=True)))
                return
    yield Outcome(ProofResult(name, PROVED, sum(p.seconds for p in parts)), parts=tuple(parts))


def _isolation(choices: Hardware = SPEC, timeout_ms: int = 300_000) -> Iterator[ProofResult | Outcome]:
    q = isolation.nested_isolation(choices, timeout_ms)
    yield q.result
    if q.image is None or q.request is None:
        yield Outcome(q.result)
        return
    trace = isolation_trace(q)
    yield Outcome(replace(q.result, name="nested-isolation"), trace, replay(trace, choices=choices))


def _ordering(choices: Hardware = SPEC, timeout_ms: int = 300_000) -> Iterator[ProofResult | Outcome]:
    r = ordering.wait_after_invalidations(choices=choices, timeout_ms=timeout_ms)
    yield r
    if r.status != REFUTED:
        yield Outcome(r)
        return
    # the refutation is of one symbolic step; bounded model checking finds the concrete moves that lead
    # to it from a detach, and the trace ends with the stale DMA they allow
    found = bmc.check_wait(4, choices=choices, timeout_ms=timeout_ms, witnessed=False)
    if found.status != REFUTED:
        yield Outcome(r)
        return
    trace = ordering_trace(found.moves, choices)
    yield Outcome(replace(r, detail=f"{r.detail}; {len(found.moves)} moves of the command processor show it"),
                  trace, replay(trace))


VIOMMU_GUESTS = 8  # the GuestIDs the vIOMMU proofs range over (they are parametric: bench/ times 2 to 64)


def _viommu(prove_one: Callable[..., ProofResult], name: str) -> Callable[..., Iterator[ProofResult | Outcome]]:
    def run(choices: Hardware = SPEC, timeout_ms: int = 300_000) -> Iterator[ProofResult | Outcome]:
        r = prove_one(VIOMMU_GUESTS, choices=choices, timeout_ms=timeout_ms)
        yield r
        yield Outcome(replace(r, name=name))
    return run


STAGE_2 = "viommu-stage2-reaches-every-guest"


def _stage_2(choices: Hardware = SPEC, timeout_ms: int = 300_000, driver: Any = None
             ) -> Iterator[ProofResult | Outcome]:
    """The hardware half for ``VIOMMU_GUESTS`` guests and the driver half (``viommu_stage2``); under a driver
    fault the driver half first (it shows within a few calls)."""
    parts: list[ProofResult] = []

    def driver_half() -> Iterator[ProofResult | Outcome]:
        parts.append(viommu_stage2.prove_driver(driver, choices=choices))
        yield parts[-1]
        if parts[-1].status != PROVED:
            yield Outcome(replace(parts[-1], name=STAGE_2, seconds=sum(p.seconds for p in parts),
                                  detail=f"driver half: {parts[-1].detail}"), parts=tuple(parts))

    def hardware_half() -> Iterator[ProofResult | Outcome]:
        for r in viommu_stage2.steps(VIOMMU_GUESTS, choices=choices, timeout_ms=timeout_ms):
            parts.append(r)
            yield r
            if r.status != PROVED:
                cache = r.name.split("/")[1]  # parent-entry/cache/nested/k: the stale access is searched there
                yield _refutation(replace(r, name=STAGE_2, seconds=sum(p.seconds for p in parts), detail=_named(r)),
                                  choices, lambda: viommu_stage2.prove_hardware(VIOMMU_GUESTS, choices=choices,
                                                                                timeout_ms=timeout_ms, observe=True,
                                                                                caches=(cache,)))
                return

    halves = (driver_half, hardware_half) if driver is not None and driver.faults() else (hardware_half, driver_half)
    for half in halves:
        for item in half():
            yield item
            if isinstance(item, Outcome):
                return
    hardware = sum(1 for p in parts if p.name.startswith(viommu_stage2.CHANGE))
    yield Outcome(ProofResult(STAGE_2, PROVED, sum(p.seconds for p in parts),
                              f"hardware: {hardware} obligations, {VIOMMU_GUESTS} guests; driver: "
                              f"{next(p.detail for p in parts if not p.name.startswith(viommu_stage2.CHANGE))}"),
                  parts=tuple(parts))


PROPERTIES: dict[str, Property] = {}
for _change in invalidation.CHANGES:
    PROPERTIES[f"{_change}-invalidation"] = Property(
        f"{_change}-invalidation",
        f"{invalidation.CHANGE_TITLES[_change]}: after the invalidations it requires and a COMPLETION_WAIT "
        "no cache slot is stale", _completeness(_change))
PROPERTIES["fresh-slots-serve-fresh"] = Property(
    "fresh-slots-serve-fresh", "a cache slot holding what a walk of current memory gives serves every request it "
    "matches exactly as a fresh walk does", _serving)
PROPERTIES["nested-isolation"] = Property(
    "nested-isolation", "a nested (guest v2 over host v1) device reaches only frames its host table maps, whatever "
    "its guest writes in the GCR3 table, the guest tables and the guest DTE fields", _isolation)
PROPERTIES["completion-wait-ordering"] = Property(
    "completion-wait-ordering", "a COMPLETION_WAIT store is visible only after earlier invalidations took effect",
    _ordering)
PROPERTIES["viommu-command-isolation"] = Property(
    "viommu-command-isolation", "a HW-vIOMMU guest's commands take effect only on the host DeviceIDs and DomainIDs "
    "its maps give it, and reach guest memory only through its own stage 2, whatever it writes",
    _viommu(viommu_isolation.prove_command_isolation, "viommu-command-isolation"))
PROPERTIES["viommu-invalidation-scope"] = Property(
    "viommu-invalidation-scope", "a HW-vIOMMU guest's invalidation takes effect as the host's own command with the "
    "guest's map entries for its IDs, every other field kept",
    _viommu(viommu_invalidation.prove_scope, "viommu-invalidation-scope"))
PROPERTIES["viommu-guest-wait-ordering"] = Property(
    "viommu-guest-wait-ordering", "a HW-vIOMMU guest's COMPLETION_WAIT stores only once no invalidation is in flight",
    _viommu(viommu_invalidation.prove_wait_ordering, "viommu-guest-wait-ordering"))
PROPERTIES["viommu-map-write-isolation"] = Property(
    "viommu-map-write-isolation", "a hypervisor's HW-vIOMMU map write for one guest installs exactly that entry "
    "and changes no other guest's DeviceID or DomainID map",
    _viommu(viommu_maps.prove_map_write_isolation, "viommu-map-write-isolation"))
PROPERTIES["viommu-guest-event-isolation"] = Property(
    "viommu-guest-event-isolation", "a HW-vIOMMU guest's event-log writes (a refused command's event, an "
    "INSERT_GUEST_EVENT) land only in frames its own stage 2 gives, whatever it writes to its registers and tables",
    _viommu(viommu_events.prove_event_isolation, "viommu-guest-event-isolation"))
PROPERTIES[STAGE_2] = Property(
    STAGE_2, "a change of a nest parent's (v1) table, flushed for every host DomainID the guests' DomainID maps "
    "give, leaves no slot of any guest's nested translation stale (Z3, any guest); the driver's parent flush "
    "names every such DomainID and every DTE's over the parent (every state of a small universe)",
    _stage_2, takes_driver=True)
PROPERTIES["every-host-depth"] = Property(
    "every-host-depth", "fresh slots serve fresh and a v1 entry change with its invalidations leaves no slot stale, "
    "on host tables of 1 and 3 to 6 levels (the other properties use 2)", _host_depths)
for _change in invalidation.CHANGES:
    PROPERTIES[f"{_change}-minimal"] = Property(
        f"{_change}-minimal", f"each invalidation a {_change} change requires is needed (weakenings give stale DMA)",
        _minimal(_change))

# --all only: the minimality properties, and the host tables of the other depths (minutes on 2 cores)
EXTENDED = ("every-host-depth",)
DEFAULT = tuple(n for n in PROPERTIES if not n.endswith("-minimal") and n not in EXTENDED)

STATUSES = (PROVED, REFUTED, UNKNOWN, VACUOUS)


def run_property(name: str, choices: Hardware = SPEC, timeout_ms: int = 300_000, driver: Any = None) -> Outcome:
    """Run one property to its end (no progress reporting); ``driver``: the driver model's choices, for a
    property with a driver half."""
    outcome = None
    for item in PROPERTIES[name].items(choices, timeout_ms, driver):
        if isinstance(item, Outcome):
            outcome = item
    assert outcome is not None
    return outcome
