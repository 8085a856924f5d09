"""Isolation of a sequence proved by induction over its run, for every address, with Z3
(``amdvi check --prove``).

``amdvi check`` enumerates the accesses a scenario lists (devices x a bounded set of pages) under every
cache choice. This module proves the same property for **every** address a device may send, by
induction along the run over an abstract cache that may hold any number of slots of every kind.

The abstract state at boundary ``i`` is, per cache kind, the set of slot values that may be held: a
value a walk of memory gave at a boundary ``j <= i`` (for any request of any device, at any address),
unless an invalidation that clears it was handed over after ``j`` and certainly carried out by ``i``
(the rule of ``properties.cache_windows``, here over symbolic slots). The invariant:

    **I(i)**: for every requester ID, every address, read or write, and every choice of held slots
    (none, or one per cache it looks up), the access the IOMMU then serves reaches a frame the
    software's promise gives the requester at ``i`` (``Promise.frames[i]``), with its permission.

Base: at the first boundary nothing is cached but what the prefix's memory gives, which is the same
question. Step ``i-1 -> i``: the held set at ``i`` is the held set at ``i-1`` less the values cleared by
the invalidations completed by ``i``, plus the fills of memory at ``i``; so I(i) is exactly the query
below with the slots ranging over that set. Each step is one Z3 query per requester ID and access kind,
over a symbolic address, symbolic fill requests and a symbolic choice of fill boundary per cache: the
fills, hits, invalidations and serving are the model's own functions (``models.caches``,
``models.dma``) run on the Z3 backend; nothing here restates a rule.

Sound over-approximation: any value may be filled at any boundary by any device (ATS fills only
while the device's ATS Enable is set, as the run says). A counterexample is therefore confirmed on
Python ints through ``cache_windows`` at the address Z3 found before it is reported as a refutation;
one that the exact enumeration does not confirm is reported as "not proved" with the reason.

Scope (stated where it is reported): a guest's own memory is as the run wrote it (the adversarial guest
is ``properties.sequence_proof``'s); requests without PASID, and with a symbolic PASID for devices
that use PASIDs; fills are by the scenario's requester IDs and every other DeviceID with a valid DTE in
some memory (no other DeviceID can fill a cache); memories that differ only in the IOMMU's rings and
COMPLETION_WAIT store give the same fills (no table lies there: the driver's tables come from its page
pool); a device's own IOTLB is filled only where its ATS Enable is set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import z3

from amdvi.models.caches import CACHE_KINDS, Caches, DteSlot, decode_invalidation
from amdvi.models.dma import ServeChoice, serve, serve_translated
from amdvi.spec.bitvec import INT, Z3, OverlayMemory
from amdvi.spec.device_table import DTE, ENTRY_BYTES
from amdvi.spec.records import merge
from amdvi.spec.translation import Request, read_dte, translate

from .cache_windows import Windows, _fill_steps
from .proof import PROVED, REFUTED, UNKNOWN, ProofResult, Witness, prove
from .sequence import Frames, _needs_check
from .sequence_check import Execution

INVARIANT = ("for every requester ID, every address, read or write, and every choice of cached slots the "
             "hardware may hold (filled by any walk since, not cleared by a completed invalidation), the "
             "access reaches a frame its mappings give it, with their permission")
SCOPE = ("guest memory as the run wrote it; requests without PASID (and with any PASID for PASID devices); "
         "any fill by any DeviceID with a valid DTE at any boundary; no table in the rings")
_WHOLE = ((0, (1 << 64) - 1),)  # every word (an end of 2^64 would wrap to 0 in 64 bits)
_ABSENT = z3.Function("unwritten", z3.BitVecSort(64), z3.BitVecSort(64))  # never read: every address is a word


@dataclass(frozen=True)
class StepProof:
    """I(``at``) for requester ``device_id``: ``result`` (proved, refuted, unknown, or not proved with why)."""

    device_id: int
    at: int
    result: ProofResult
    confirmed: Request | None = None  # a refutation's access, confirmed on ints


@dataclass(frozen=True)
class InductionProof:
    """The invariant over a whole run: every step's verdict."""

    steps: tuple[StepProof, ...]
    seconds: float

    @property
    def proved(self) -> bool:
        return bool(self.steps) and all(s.result.proved for s in self.steps)

    @property
    def failed(self) -> StepProof | None:
        return next((s for s in self.steps if not s.result.proved), None)


def _memory(memory: Any) -> OverlayMemory:
    """A run's memory (a dict of words, absent ones 0) as a Z3 memory: reads at symbolic addresses are
    one if-then-else over the written words."""
    return OverlayMemory(_ABSENT, _WHOLE, dict(memory))


def _allows(frames: Frames, spa: Any, write: bool) -> Any:
    return z3.Or([z3.And(z3.UGE(spa, pa), z3.ULT(spa, pa + length)) for pa, length, r, w in frames.ranges
                  if (w if write else r)] or [z3.BoolVal(False)])


def _ring_words(ex: Execution) -> tuple[tuple[int, int], ...]:
    """The IOMMU's rings and the COMPLETION_WAIT store: written at every command, read by no walk."""
    layout = ex.scenario.layout
    return ((layout.cmd_ring, layout.cmd_ring + layout.ring_bytes),
            (layout.event_log, layout.event_log + (16 << layout.event_len)),
            (layout.semaphore, layout.semaphore + 0x1000))


def _versions(ex: Execution, at: int) -> list[tuple[list[int], Any]]:
    """The memories up to boundary ``at`` that differ outside the rings, each with the boundaries that
    have it (a fill of the same value may come at any of them; the latest one a cache may fill at
    survives at least as long as the others)."""
    rings = _ring_words(ex)
    latest: dict[Any, tuple[list[int], Any]] = {}
    seen: dict[int, Any] = {}
    for b in ex.run.boundaries[:at + 1]:
        key = seen.get(id(b.memory))
        if key is None:
            key = seen[id(b.memory)] = frozenset((a, v) for a, v in b.memory.items()
                                                 if not any(lo <= a < hi for lo, hi in rings))
        indices = latest.pop(key, ([], None))[0]
        latest[key] = (indices + [b.index], b.memory)
    return list(latest.values())


class _Fills:
    """Every slot a walk of one memory gives, per cache kind, filling device and PASID use: built once per
    run and shared by its steps (the fill requests' variables are the same in every step's query)."""

    def __init__(self, bar: int, choices: Any) -> None:
        self.bar, self.choices = bar, choices
        self._slots: dict[tuple[Any, ...], list[Any]] = {}
        self._kept: dict[tuple[Any, ...], Any] = {}
        self._memories: dict[int, OverlayMemory] = {}
        self._clears: dict[tuple[int, int], Any] = {}

    def slots(self, kind: Any, filler: int, has_pasid: bool, memory: Any) -> list[Any]:
        key = (kind.name, filler, has_pasid, id(memory))
        if key not in self._slots:
            self._kept[key] = memory  # keeps id(memory) unique while it is a key
            if id(memory) not in self._memories:
                self._memories[id(memory)] = _memory(memory)
            m = self._memories[id(memory)]
            request = Request(device_id=filler, address=z3.BitVec(f"fill_{kind.name}_addr", 64),
                              write=z3.Bool(f"fill_{kind.name}_w"),
                              pasid=z3.BitVec(f"fill_{kind.name}_pasid", 20) if has_pasid else 0,
                              has_pasid=has_pasid, user=z3.Bool(f"fill_{kind.name}_user") if has_pasid else False,
                              ats=kind.name == "device_iotlb")  # only a translation request fills it
            fresh = translate(Z3, m, self.bar, request, choices=self.choices)
            dte = read_dte(Z3, m, self.bar, filler)[0]
            out = []
            for step in _fill_steps(kind.name):
                slot = kind.fill(Z3, request, fresh, step, self.choices, dte)
                if not z3.is_false(z3.simplify(_bool(slot.valid))):
                    out.append(slot)
            self._slots[key] = out
        return self._slots[key]

    def kept(self, kind: Any, slot: Any, command: int, decoded: Any) -> Any:
        """Whether invalidation ``command`` leaves ``slot`` valid (the cache's own rule)."""
        key = (id(slot), command)
        if key not in self._clears:
            self._clears[key] = _bool(kind.invalidate_slot(Z3, slot, decoded, self.choices).valid)
        return self._clears[key]


def _fillers(ex: Execution, versions: list[tuple[list[int], Any]], bar: int) -> list[tuple[int, bool]]:
    """Every DeviceID whose walks may fill a cache, and whether it may send PASIDs: the scenario's
    requester IDs, and any other DeviceID with a valid DTE in one of the memories (the IOMMU's own, for
    its private space under the HW-vIOMMU), taken to send anything."""
    out = {rid: bool(d.pasid) for d in ex.scenario.devices for rid in d.requester_ids}
    table = ex.scenario.layout
    for _, memory in versions:
        for device_id in range(table.dev_tab_pages * 0x1000 // ENTRY_BYTES):
            if device_id not in out and table.dte_address(device_id) in memory:
                if DTE.view(read_dte(INT, memory, bar, device_id)[0])["V"]:
                    out[device_id] = True
    return sorted(out.items())


class _Step:
    """The symbolic cache of one step: per cache kind, one slot that is empty or a fill of one of the
    memories since the start (``_Fills``), held only if no invalidation completed by then that was
    handed over after that memory clears it."""

    def __init__(self, ex: Execution, windows: Windows, at: int, device_id: int, tag: str, fills: _Fills) -> None:
        self.ex, self.at, self.choices = ex, at, ex.run.choices
        self.bar = ex.run.state.regs.dev_tab_bar
        self.assumptions: list[Any] = []
        completed = [(q, decode_invalidation(INT, q.command, choices=self.choices)) for q in ex.run.invalidations
                     if q.completed_at is not None and q.completed_at <= at]
        versions = _versions(ex, at)
        self.slots: dict[str, Any] = {}
        self.dte_options: list[Any] = []  # the device's DTE values a DTE-cache slot may hold
        self.selectors: list[Any] = []  # per cache: 0 empty, n the n-th fill
        requesters = _fillers(ex, versions, self.bar)
        for kind in CACHE_KINDS:
            own = kind.name in ("device_iotlb", "dte")  # slots that only the device's own requests fill or hit
            candidates = []
            for indices, memory in versions:
                if kind.name == "device_iotlb":  # filled only while the device has ATS Enable set
                    indices = [j for j in indices if windows.ats_enabled(device_id, j)
                               and not windows._ats_discards(device_id, j, at)]
                if not indices:
                    continue
                j = indices[-1]
                for filler, pasids in requesters:
                    if own and filler != device_id:
                        continue
                    for has_pasid in ((False, True) if pasids else (False,)):
                        for slot in fills.slots(kind, filler, has_pasid, memory):
                            alive = [_bool(slot.valid)] + [fills.kept(kind, slot, q.command, decoded)
                                                           for q, decoded in completed if q.queued_at > j]
                            candidates.append((slot, z3.And(alive)))
            if kind.name == "dte":  # concrete (the device's own entry): each held value is a case of its own
                self.dte_options = list(dict.fromkeys(
                    slot for slot, alive in candidates if not z3.is_false(z3.simplify(alive))))  # concrete: decided
                continue
            chosen = z3.BitVec(f"{tag}_{kind.name}_fill", 16)  # a bit-vector: the query stays pure QF_BV
            self.selectors.append(chosen)
            slot = kind.slot_type()  # none: an empty slot
            for n, (candidate, alive) in enumerate(candidates):
                slot = merge(Z3, chosen == n + 1, candidate, slot)
                self.assumptions.append(z3.Implies(chosen == n + 1, alive))
            self.assumptions.append(z3.ULE(chosen, len(candidates)))
            self.slots[kind.name] = slot

    def caches(self, dte: Any) -> Any:
        """The caches with ``dte`` (a held DTE value, or an empty slot) in the DTE cache."""
        return Caches(**{name: (slot,) for name, slot in self.slots.items()}, dte=(dte,))


def _bool(x: Any) -> Any:
    return z3.BoolVal(x) if isinstance(x, bool) else x


def _requests(device_id: int, ats: bool, pasid: bool, tag: str) -> list[tuple[str, Request]]:
    address = z3.BitVec(f"{tag}_address", 64)
    out = []
    for write in (False, True):
        kinds = [("untranslated", False)] + ([("translated", True)] if ats else [])
        for how, translated in kinds:
            out.append((f"{'write' if write else 'read'} {how}",
                        Request(device_id=device_id, address=address, write=write, ats=translated)))
            if pasid:
                out.append((f"{'write' if write else 'read'} {how} with PASID",
                            Request(device_id=device_id, address=address, write=write,
                                    pasid=z3.BitVec(f"{tag}_pasid", 20), has_pasid=True,
                                    user=z3.Bool(f"{tag}_user"), ats=translated)))
    return out


def prove_step(ex: Execution, windows: Windows, at: int, device_id: int, *, ats: bool = False, pasid: bool = False,
               timeout_ms: int = 60_000, strategy: str = "bit-blast", fills: _Fills | None = None) -> StepProof:
    """I(``at``) for one requester ID: every access kind, one query each; the first failure is kept."""
    frames = ex.promise.frames[at].get(device_id, Frames()) if at < len(ex.promise.frames) else Frames()
    memory = _memory(ex.run.boundaries[at].memory)
    spent = 0.0
    fills = fills or _Fills(ex.run.state.regs.dev_tab_bar, ex.run.choices)
    step = _Step(ex, windows, at, device_id, f"i{at}_d{device_id}", fills)
    looked_up = {k.name: 0 for k in CACHE_KINDS if k.looked_up and k.name != "dte"}
    for label, request, dte in [(label + (f", cached DTE {n}" if n else ""), request, dte)
                                for label, request in _requests(device_id, ats, pasid, f"i{at}_d{device_id}")
                                for n, dte in enumerate([None] + step.dte_options)]:
        translated = label.split()[1] == "translated"
        caches = step.caches(dte or DteSlot())
        dte_choice = None if dte is None else 0
        if translated:
            result = serve_translated(Z3, memory, step.bar, caches, request, 0, dte_choice, choices=step.choices)
        else:
            result = serve(Z3, memory, step.bar, caches, request, ServeChoice(dte=dte_choice, **looked_up),
                           choices=step.choices)
        ok, spa = _bool(result.ok), result.spa
        claim = z3.Implies(ok, _allows(frames, spa, bool(request.write)))
        # not vacuous: the assumptions (which fills may still be held) are satisfiable; shown by the
        # assignment "every cache empty", checked by evaluation
        witnesses = [Witness("a possible choice of cached slots", z3.BoolVal(True),
                             assignment=tuple((c, z3.BitVecVal(0, 16)) for c in step.selectors))]
        name = f"isolation induction at boundary {at}, DeviceID {device_id:#x}, {label}"
        proof = prove(name, step.assumptions, claim, witnesses=witnesses, timeout_ms=timeout_ms, strategy=strategy)
        spent += proof.seconds
        if proof.status == REFUTED:
            return _confirm(ex, windows, at, request, proof, spa)
        if proof.status != PROVED:
            return StepProof(device_id, at, proof)
    return StepProof(device_id, at, ProofResult(f"isolation induction at boundary {at}, DeviceID {device_id:#x}",
                                                PROVED, spent))


def _confirm(ex: Execution, windows: Windows, at: int, request: Request, proof: ProofResult, spa: Any) -> StepProof:
    """A counterexample is reported as refuted only if the exact enumeration shows it on ints."""
    model = proof.model
    concrete = Request(device_id=request.device_id,
                       address=model.eval(request.address, model_completion=True).as_long(),
                       write=bool(request.write),
                       pasid=(model.eval(request.pasid, model_completion=True).as_long()
                              if request.has_pasid is True else 0),
                       has_pasid=request.has_pasid is True,
                       user=bool(z3.is_true(model.eval(_bool(request.user), model_completion=True))),
                       ats=bool(request.ats))
    # the fills the model used may come from walks of other addresses (a directory entry covers a range):
    # the exact enumeration gets every requester's reads and writes at those addresses too
    fill_pages = {model.eval(z3.BitVec(f"fill_{k.name}_addr", 64), model_completion=True).as_long() & ~0xFFF
                  for k in CACHE_KINDS}
    fillers = [Request(device_id=rid, address=page, write=write, ats=bool(d.ats))
               for d in ex.scenario.devices for rid in d.requester_ids
               for page in sorted(fill_pages - {concrete.address & ~0xFFF}) for write in (False, True)]
    exact = Windows(ex.run, [concrete] + fillers, in_flight=windows.invalidations[len(ex.run.invalidations):],
                    ats_control=windows.ats_control)
    frames = ex.promise.frames[at].get(request.device_id, Frames())
    bad = [s for s in exact.outcomes(at, concrete) if s.ok and not frames.allows(s.result.spa, concrete.write)]
    if bad:
        return StepProof(request.device_id, at, ProofResult(
            proof.name, REFUTED, proof.seconds,
            f"{'write' if concrete.write else 'read'} at {concrete.address:#x} reached {bad[0].result.spa:#x} "
            f"(served by {bad[0].describe()})", proof.model), concrete)
    found = model.eval(spa, model_completion=True)
    return StepProof(request.device_id, at, ProofResult(
        proof.name, UNKNOWN, proof.seconds,
        f"not proved: the abstract cache allows an access at {concrete.address:#x} to {found} that the exact "
        f"enumeration of the run does not confirm (the abstraction is coarser than the run there)"))


def prove_isolation(ex: Execution, *, timeout_ms: int = 60_000, boundaries: Sequence[int] | None = None,
                    progress: Any = None, budget_seconds: float | None = None) -> InductionProof:
    """I(i) at every boundary where a new access can appear (``sequence._needs_check``), for every
    requester ID of the scenario; stops at the first step not proved, or, once ``budget_seconds`` are
    spent, with an unknown step that says which points were not reached."""
    start = time.perf_counter()
    windows = Windows(ex.run, (), in_flight=(), ats_control=True)
    points = [i for i in range(len(ex.run.boundaries)) if _needs_check(windows, ex.promise, i)] \
        if boundaries is None else list(boundaries)
    steps: list[StepProof] = []
    fills = _Fills(ex.run.state.regs.dev_tab_bar, ex.run.choices)
    for n, i in enumerate(points):
        spent = time.perf_counter() - start
        if budget_seconds is not None and spent > budget_seconds:
            steps.append(StepProof(-1, i, ProofResult(
                f"isolation induction from boundary {i}", UNKNOWN, spent,
                f"not proved: the budget of {budget_seconds:g} s was spent after {n} of {len(points)} points "
                f"(boundaries {i}..{points[-1]} not reached)")))
            break
        for device in ex.scenario.devices:
            for rid in device.requester_ids:
                s = prove_step(ex, windows, i, rid, ats=bool(device.ats), pasid=bool(device.pasid),
                               timeout_ms=timeout_ms, fills=fills)
                steps.append(s)
                if progress:
                    progress(s)
                if not s.result.proved:
                    return InductionProof(tuple(steps), time.perf_counter() - start)
    return InductionProof(tuple(steps), time.perf_counter() - start)
