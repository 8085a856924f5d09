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

Run with a mutant (``spec.mutants.MODEL_MUTANTS``) a property should come out refuted; the
counterexample is replayed on the broken model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

from amdvi.spec.mutants import NONE, refuses_unknown

from . import invalidation, ordering, serving
from .counterexample import Replay, Trace, replay, serving_trace, trace_from
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


def _queries(change: str) -> list[tuple[str, str, str, bool]]:
    return [q for q in invalidation.QUERIES if q[0] == change]


@refuses_unknown
def _with_trace(result: ProofResult, mutants: frozenset[str]) -> Outcome:
    if result.status != REFUTED or result.evidence is None:
        return Outcome(result)
    trace = trace_from(result.evidence, result.model)
    return Outcome(result, trace, replay(trace, mutants=mutants))


def _completeness(change: str) -> Callable[..., Iterator[ProofResult | Outcome]]:
    @refuses_unknown
    def run(mutants: frozenset[str] = NONE, timeout_ms: int = 300_000) -> Iterator[ProofResult | Outcome]:
        parts = []
        for _, cache, profile, stale in _queries(change):
            r = invalidation.fresh_after_change(change, cache, profile, mutants=mutants, timeout_ms=timeout_ms,
                                                stale_possible=stale and not mutants, observe=bool(mutants))
            parts.append(r)
            yield r
            if r.status != PROVED:
                yield _with_trace(replace(r, name=f"{change}-invalidation"), mutants)
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
    @refuses_unknown
    def run(mutants: frozenset[str] = NONE, timeout_ms: int = 300_000) -> Iterator[ProofResult | Outcome]:
        start, parts, failures = time.perf_counter(), [], []
        for label, how in weakenings(change):
            if label in NOT_APPLICABLE.get(change, ()):
                continue
            found = None
            for _, cache, profile, stale in _queries(change):
                if not stale:
                    continue
                r = invalidation.fresh_after_change(change, cache, profile, mutants=mutants, timeout_ms=timeout_ms,
                                                    stale_possible=False, observe=True, **how)
                if r.status == REFUTED:
                    found = _with_trace(r, mutants)
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


@refuses_unknown
def _serving(mutants: frozenset[str] = NONE, timeout_ms: int = 300_000) -> Iterator[ProofResult | Outcome]:
    parts = []
    for cache, profile in serving.QUERIES:
        r = serving.serves_fresh(cache, profile, mutants=mutants, timeout_ms=timeout_ms)
        parts.append(r)
        yield r
        if r.status != PROVED:
            result = replace(r, name="fresh-slots-serve-fresh")
            if r.status == REFUTED and r.evidence is not None:
                # prefer a counterexample where the slot lets the DMA reach a wrong address
                access = serving.serves_fresh(cache, profile, mutants=mutants, timeout_ms=timeout_ms, observe=True)
                found = access if access.status == REFUTED and access.evidence is not None else r
                result = replace(found, name="fresh-slots-serve-fresh",
                                 seconds=sum(p.seconds for p in parts) + (access.seconds if found is access else 0))
                trace = serving_trace(found.evidence, found.model)
                yield Outcome(result, trace, replay(trace, mutants=mutants))
            else:
                yield Outcome(result)
            return
    yield Outcome(ProofResult("fresh-slots-serve-fresh", PROVED, sum(p.seconds for p in parts)), parts=tuple(parts))


@refuses_unknown
def _ordering(mutants: frozenset[str] = NONE, timeout_ms: int = 300_000) -> Iterator[ProofResult | Outcome]:
    r = ordering.wait_after_invalidations(mutants=mutants, timeout_ms=timeout_ms)
    yield r
    yield Outcome(r)


PROPERTIES: dict[str, Property] = {}
for _change in invalidation.CHANGES:
    PROPERTIES[f"{_change}-invalidation"] = Property(
        f"{_change}-invalidation",
        f"{invalidation.CHANGE_TITLES[_change]}: after the invalidations it requires and a COMPLETION_WAIT "
        "no cache slot is stale", _completeness(_change))
PROPERTIES["fresh-slots-serve-fresh"] = Property(
    "fresh-slots-serve-fresh", "a cache slot holding what a walk of current memory gives serves every request it "
    "matches exactly as a fresh walk does", _serving)
PROPERTIES["completion-wait-ordering"] = Property(
    "completion-wait-ordering", "a COMPLETION_WAIT store is visible only after earlier invalidations took effect",
    _ordering)
for _change in invalidation.CHANGES:
    PROPERTIES[f"{_change}-minimal"] = Property(
        f"{_change}-minimal", f"each invalidation a {_change} change requires is needed (weakenings give stale DMA)",
        _minimal(_change))

DEFAULT = tuple(n for n in PROPERTIES if not n.endswith("-minimal"))

# the properties each broken model must refute (tested in tests/properties/test_invalidation.py, timed
# by bench/bench_invalidation.py); the others it leaves holding, or they run too long to be worth it
_EVERY_CHANGE = tuple(f"{c}-invalidation" for c in invalidation.CHANGES)
MUTANT_TARGETS: dict[str, tuple[str, ...]] = {
    "invalidate-pages-ignores-size": _EVERY_CHANGE,
    "devtab-invalidation-ignored": ("dte-invalidation",),
    "devtab-invalidation-skips-invalid": ("dte-invalidation",),
    "completion-wait-early": ("completion-wait-ordering",),
    "invalidate-pages-keeps-pde-cache": _EVERY_CHANGE,
    "iotlb-hit-ignores-permissions": ("fresh-slots-serve-fresh",),
    "guest-pde-hit-ignores-pasid": ("fresh-slots-serve-fresh",),
}
STATUSES = (PROVED, REFUTED, UNKNOWN, VACUOUS)


@refuses_unknown
def run_property(name: str, mutants: frozenset[str] = NONE, timeout_ms: int = 300_000) -> Outcome:
    """Run one property to its end (no progress reporting)."""
    outcome = None
    for item in PROPERTIES[name].run(mutants=mutants, timeout_ms=timeout_ms):
        if isinstance(item, Outcome):
            outcome = item
    assert outcome is not None
    return outcome
