"""``amdvi check``'s engine: run a sequence on the system model, check every property along it, and
turn a violation into a minimal sequence.

:func:`execute` applies each step (``models.system.apply``) and carries the hardware steps the driver
performed out on the IOMMU model (``properties.timeline_run``), recording at every boundary what
software promised (:class:`~amdvi.properties.sequence.Promise`): the frames each requester may reach
(``models.iommufd``'s view of each device's mappings; during a step, those before or after it), the
points where the caches must agree with the tables (after each step in strict mode; in lazy mode once
nothing waits in the flush queue), and the DTE rewrites. :func:`check` then runs the hardware
properties of ``properties.sequence`` over every way the caches may serve every listed request, and the
software properties of this module (errno conformance, object lifetime) over the steps' results.

:func:`minimise` removes steps one at a time while the same property stays violated (a sequence from
which no single step can be removed without losing the violation).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from amdvi.models import system
from amdvi.models.amd_driver.state import DriverConfig
from amdvi.models.iommufd import uapi
from amdvi.models.iommufd.isolation_view import device_mappings
from amdvi.models.iommufd.objects import Ioas, references, users
from amdvi.models.system import Call, DeviceDma, GuestCommands, GuestWrite, Scenario, StepError
from amdvi.models.timeline import Store
from amdvi.spec.device_table import ENTRY_BYTES

from . import sequence, timeline_run as tr
from .cache_windows import Windows, requests_for
from .sequence import Frames, Promise, Violation

ERRNO, LIFETIME = "errno-conformance", "object-lifetime"
SOFTWARE_PROPERTIES = (ERRNO, LIFETIME)
ALL_PROPERTIES = sequence.SEQUENCE_PROPERTIES + SOFTWARE_PROPERTIES
PAGE = 0x1000
MAX_PAGES = 32  # addresses checked per device (each area's first and last page, the page after it, probes)


@dataclass(frozen=True)
class StepRecord:
    """What one step did: its result, the boundaries it spans, and the software state it left."""

    index: int
    step: Any
    errno: int
    out: dict[str, Any]
    start: int  # the boundary before it
    end: int  # the boundary after it
    hardware: tuple[Any, ...]
    before: system.SystemState
    after: system.SystemState


@dataclass
class Execution:
    scenario: Scenario
    steps: tuple[Any, ...]
    run: tr.Run
    records: list[StepRecord] = field(default_factory=list)
    promise: Promise = field(default_factory=Promise)
    pages: set[int] = field(default_factory=set)
    state: system.SystemState | None = None  # the software state after the last step


def frames_of(scenario: Scenario, state: system.SystemState) -> dict[int, Frames]:
    """The frames each requester ID may reach in ``state`` (a device's aliases share its mappings)."""
    out: dict[int, Frames] = {}
    for device in scenario.devices:
        ranges = tuple((pa, length, r, w) for _, pa, length, r, w in device_mappings(state.iommufd, device.name))
        for rid in device.requester_ids:
            out[rid] = out.get(rid, Frames()) | Frames(ranges)
    return out


def domain_owners(driver_state: Any) -> dict[int, frozenset[Any]]:
    """What the driver means by each DomainID: the paging domain that holds it, or the (vIOMMU,
    gDomID) whose host DomainID it is (nested domains of one gDomID share it by design)."""
    from amdvi.models.amd_driver.state import PagingDomain

    owners: dict[int, set[Any]] = {}
    for handle, domain in driver_state.domains.items():
        if isinstance(domain, PagingDomain):
            owners.setdefault(domain.domain_id, set()).add(("domain", handle))
    for handle, viommu in driver_state.viommus.items():
        for gdom, (hdom, _) in viommu.gdom_ids.items():
            owners.setdefault(hdom, set()).add(("guest domain", handle, gdom))
    return {d: frozenset(o) for d, o in owners.items()}


def guest_ownership(driver_state: Any, layout: Any) -> dict[int, tuple[frozenset[int], frozenset[int]]]:
    """What the driver gave each HW-vIOMMU guest: its vDEVICEs' host DeviceIDs, and its nested domains'
    host DomainIDs with its parent's (the DomainID map's default); an RFC guest's: ``viommu_rfc``."""
    from amdvi.models.amd_driver import viommu_rfc

    out = viommu_rfc.guest_ownership(driver_state, layout)
    for viommu in driver_state.viommus.values():
        if viommu.guest_id:
            parent = driver_state.domains[viommu.parent].domain_id
            out[viommu.guest_id] = (frozenset(viommu.vdevices.values()),
                                    frozenset({h for h, _ in viommu.gdom_ids.values()} | {parent}))
    return out


def translate_owners(driver_state: Any) -> dict[int, int]:
    """Whose stage 2 each translate DeviceID's DTE is: DeviceID -> GuestID, for the HW-vIOMMU's guests and
    the RFC's (the vIOMMU reaches a guest's memory through it)."""
    out = {g.translate_device_id: gid for gid, g in driver_state.rfc_guests.items() if g.translate_device_id}
    out.update({v.translate_device_id: v.guest_id for v in driver_state.viommus.values() if v.guest_id})
    return out


def _pages_of(state: system.SystemState) -> set[int]:
    pages = set()
    fd = state.iommufd
    spans = [(a.iova, a.length) for _, ioas in fd.of_kind(Ioas) for a in ioas.areas]
    for iova, length in spans + [(p.iova, p.length) for p in fd.parked]:
        first, last = iova & ~(PAGE - 1), (iova + length - 1) & ~(PAGE - 1)
        pages.update({first, last, last + PAGE})
    return pages


def _dte_updates(scenario: Scenario, hardware: Sequence[Any], start: int) -> list[sequence.DteUpdate]:
    """The span of stores to each requester's DTE within one step's hardware steps."""
    spans: dict[int, list[int]] = {}
    for offset, s in enumerate(hardware, start=1):
        if not isinstance(s, Store):
            continue
        for address, _ in s.writes:
            for rid in scenario.requester_ids:
                base = scenario.layout.dte_address(rid)
                if base <= address < base + ENTRY_BYTES:
                    spans.setdefault(rid, []).append(start + offset)
    return [sequence.DteUpdate(rid, at[0], at[-1], f"DTE of {rid:#x}") for rid, at in spans.items()]


def start(scenario: Scenario, *, probes: Iterable[int] = ()) -> Execution:
    """An execution at boot: nothing done yet."""
    state, memory = system.boot(scenario)
    run = tr.start(scenario.layout, memory, choices=scenario.hardware)
    ex = Execution(scenario, (), run, promise=Promise(requester_ids=scenario.requester_ids), state=state)
    ex.promise.frames.append(frames_of(scenario, state))
    ex.promise.owners.append(domain_owners(state.driver))
    ex.promise.guests.append(guest_ownership(state.driver, scenario.layout))
    ex.promise.translate_owners.append((0, translate_owners(state.driver)))
    ex.promise.guest_ids = DriverConfig().viommu_ids
    ex.pages.update(p & ~(PAGE - 1) for p in probes)
    return ex


def advance(ex: Execution, step: Any) -> Execution:
    """``ex`` after one more step (mutated and returned; StepError when the step cannot be carried out)."""
    scenario, run, state, index = ex.scenario, ex.run, ex.state, len(ex.steps)
    try:
        new, result = system.apply(scenario, state, step)
    except StepError as e:
        what = step.name if isinstance(step, Call) else type(step).__name__
        raise StepError(f"step {index + 1} ({what}), {e}") from None
    begin = run.now
    if result.steps:
        tr.perform(run, result.steps, label=f"step {index + 1}")
    else:
        tr.mark(run, f"step {index + 1}")
    before, after = ex.promise.frames[-1], frames_of(scenario, new)
    during = {rid: before.get(rid, Frames()) | after.get(rid, Frames()) for rid in set(before) | set(after)}
    ex.promise.frames.extend([during] * (run.now - begin - 1) + [after])
    old, new_owners = ex.promise.owners[-1], domain_owners(new.driver)
    both = {d: old.get(d, frozenset()) | new_owners.get(d, frozenset()) for d in set(old) | set(new_owners)}
    ex.promise.owners.extend([both] * (run.now - begin - 1) + [new_owners])
    old_guests, new_guests = ex.promise.guests[-1], guest_ownership(new.driver, scenario.layout)
    during_guests = {g: tuple(a | b for a, b in zip(old_guests.get(g, (frozenset(), frozenset())),
                                                     new_guests.get(g, (frozenset(), frozenset()))))
                     for g in set(old_guests) | set(new_guests)}
    ex.promise.guests.extend([during_guests] * (run.now - begin - 1) + [new_guests])
    owners = translate_owners(new.driver)
    if owners != ex.promise.translate_owners[-1][1]:  # during the step, a DeviceID keeps its earlier guest too
        ex.promise.translate_owners.append((begin + 1, {**ex.promise.translate_owners[-1][1], **owners}))
        ex.promise.translate_owners.append((run.now, owners))
    pending = ex.promise.pending_guest_writes
    if isinstance(step, GuestWrite):
        pending.setdefault(state.names[step.ioas], set()).update(
            address for store in result.steps for address, _ in store.writes)
    elif isinstance(step, GuestCommands):  # this guest has invalidated (what it invalidated is checked from here
        pending.pop(system.guest_memory(state, step), None)  # on); the other guests' words stay theirs to flush
    if (scenario.mode == "strict" or not new.iommufd.parked) and not isinstance(step, GuestWrite):
        ex.promise.settled.append(run.now)  # a guest promises fresh caches only once it has invalidated
        words = frozenset().union(*pending.values())
        if words:
            ex.promise.guest_pending_at[run.now] = words
    ex.promise.dte_updates.extend(_dte_updates(scenario, result.steps, begin))
    ex.pages |= _pages_of(new)
    if isinstance(step, DeviceDma):
        ex.pages.add(step.address & ~(PAGE - 1))
    ex.records.append(StepRecord(index, step, result.errno, dict(result.out), begin, run.now,
                                 tuple(result.steps), state, new))
    ex.steps, ex.state = ex.steps + (step,), new
    return ex


def fork(ex: Execution) -> Execution:
    """An independent copy of ``ex`` to advance along another branch (states are immutable and shared)."""
    run = copy.copy(ex.run)
    run.boundaries, run.invalidations, run.hangs = list(run.boundaries), list(run.invalidations), list(run.hangs)
    run.guest_hangs, run.guest_steps = list(run.guest_hangs), list(run.guest_steps)
    run._queued, run._accepted, run._doorbell = dict(run._queued), list(run._accepted), dict(run._doorbell)
    p = ex.promise
    promise = Promise(list(p.frames), list(p.owners), list(p.settled), list(p.dte_updates), p.requester_ids,
                      list(p.guests), p.guest_ids, {g: set(w) for g, w in p.pending_guest_writes.items()},
                      dict(p.guest_pending_at), list(p.translate_owners))
    return Execution(ex.scenario, ex.steps, run, list(ex.records), promise, set(ex.pages), ex.state)


def execute(scenario: Scenario, steps: Sequence[Any], *, probes: Iterable[int] = ()) -> Execution:
    """Run ``steps`` (StepError on a step that cannot be carried out as written)."""
    ex = start(scenario, probes=probes)
    for step in steps:
        advance(ex, step)
    return ex


def requests(ex: Execution) -> list[Any]:
    pages = sorted(ex.pages)[:MAX_PAGES]
    out = []
    for device in ex.scenario.devices:
        pasids = (None, 0) if device.pasid else (None,)
        out += requests_for(device.requester_ids, pages, pasids=pasids,
                            ats_ids=device.requester_ids if device.ats else ())
    return out


# -- the software properties ---------------------------------------------------------------------------

# where Linux documents that a failed ioctl keeps part of its work (iommufd-errnos.md §3.3: unmap is not atomic)
_PARTIAL_ON_ERROR = {(uapi.IoasUnmap.name, 2)}  # ENOENT


def errno_conformance(ex: Execution, *, first: bool = True, since: int = 0) -> list[Violation]:
    out = []
    for rec in (r for r in ex.records if r.end >= since):
        if not isinstance(rec.step, Call):
            continue
        if rec.step.expect is not None and rec.errno != rec.step.expect:
            out.append(Violation(ERRNO, rec.end, None, f"step {rec.index + 1} {rec.step.name} returned "
                                 f"{_errno(rec.errno)}; the uAPI says {_errno(rec.step.expect)}"))
        elif rec.errno and (rec.step.name, rec.errno) not in _PARTIAL_ON_ERROR and (
                rec.hardware or rec.before.iommufd != rec.after.iommufd or rec.before.driver != rec.after.driver):
            out.append(Violation(ERRNO, rec.end, None, f"step {rec.index + 1} {rec.step.name} failed with "
                                 f"{_errno(rec.errno)} but changed "
                                 + ("the hardware" if rec.hardware else "the software state")))
        if out and first:
            return out
    return out


def object_lifetime(ex: Execution, *, first: bool = True, since: int = 0) -> list[Violation]:
    """No object refers to one that is gone, and a DESTROY refused with EBUSY had a user."""
    import errno as errnos

    out = []
    for rec in (r for r in ex.records if r.end >= since):
        fd = rec.after.iommufd
        for object_id, obj in fd.objects.items():
            for held in references(obj):
                if fd.get(held) is None:
                    out.append(Violation(LIFETIME, rec.end, None, f"after step {rec.index + 1}: {obj.kind} {object_id} "
                                         f"still refers to object {held}, which is gone"))
        if isinstance(rec.step, Call) and rec.step.name == uapi.Destroy.name and rec.errno == errnos.EBUSY:
            target = system.resolved_id(rec.before, rec.step, "id")
            if users(rec.before.iommufd, target) <= 1:
                out.append(Violation(LIFETIME, rec.end, None, f"step {rec.index + 1}: DESTROY of {target} "
                                     "refused with EBUSY though nothing uses it"))
        if out and first:
            return out
    return out


def _errno(n: int) -> str:
    import errno as errnos

    return "0" if n == 0 else f"-{errnos.errorcode.get(n, str(n))}"


# -- checking --------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """A property's verdict on a sequence: holds, or its first violation; what was checked; seconds."""

    property: str
    violation: Violation | None
    checked: str
    seconds: float

    @property
    def holds(self) -> bool:
        return self.violation is None


def windows_of(ex: Execution, reqs: Sequence[Any] | None = None) -> Windows:
    """Every way the caches may serve ``reqs`` (default: :func:`requests`) along ``ex`` so far."""
    return Windows(ex.run, requests(ex) if reqs is None else reqs, in_flight=tr.in_flight(ex.run), ats_control=True)


def check(ex: Execution, properties: Sequence[str] = ALL_PROPERTIES, *, since: int = 0,
          reqs: Sequence[Any] | None = None, latest_first: bool = False) -> list[Verdict]:
    """Each property's verdict on ``ex`` (hardware properties at boundaries from ``since``, software
    properties on the steps that end there)."""
    unknown = [p for p in properties if p not in ALL_PROPERTIES]
    if unknown:
        raise ValueError(f"unknown property {unknown[0]!r}; properties: {', '.join(ALL_PROPERTIES)}")
    t0 = time.perf_counter()
    reqs = requests(ex) if reqs is None else reqs
    windows = windows_of(ex, reqs)
    setup = time.perf_counter() - t0
    hardware_scope = (f"{len(ex.run.boundaries)} points x {len(reqs)} requests "
                      f"({len(ex.pages)} pages), every cache choice and command timing")
    verdicts = []
    for name in properties:
        t = time.perf_counter()
        if name in sequence.CHECKS:
            found = sequence.CHECKS[name](windows, ex.promise, since=since, latest_first=latest_first)
            scope = hardware_scope
        elif name == ERRNO:
            found, scope = errno_conformance(ex, since=since), f"{len(ex.records)} steps"
        else:
            found, scope = object_lifetime(ex, since=since), f"{len(ex.records)} steps"
        verdicts.append(Verdict(name, found[0] if found else None, scope, time.perf_counter() - t + setup / len(properties)))
    hangs = [(at, what) for at, what in ex.run.hangs if at >= since]
    if hangs:
        at, what = hangs[0]
        verdicts.append(Verdict("command-completion", Violation("command-completion", at, None, what), "every wait", 0.0))
    return verdicts


def violated(scenario: Scenario, steps: Sequence[Any], prop: str, probes: Iterable[int] = ()) -> Violation | None:
    """A violation of ``prop`` on ``steps``, the latest points tried first (None when it holds or a step
    cannot be carried out)."""
    try:
        ex = execute(scenario, steps, probes=probes)
    except StepError:
        return None
    [v] = [x for x in check(ex, [prop], latest_first=True) if x.property == prop]
    return v.violation


def without_faults(scenario: Scenario) -> Scenario:
    """``scenario`` with every fault switch of every layer off (its readings kept): the correct model."""
    import dataclasses

    from amdvi.spec.choices import FAULT

    def off(choices: Any) -> Any:
        return dataclasses.replace(choices, **{n: False for n, o in choices.options().items() if o.kind == FAULT})
    return dataclasses.replace(scenario, hardware=off(scenario.hardware), driver=off(scenario.driver),
                               iommufd=off(scenario.iommufd))


class _Prefixes:
    """Whether ``prop`` is violated on sequences made of ``steps`` picked by index, each prefix run and
    checked once: a candidate shares its prefix with the sequences tried before it, so only its new
    steps are run (on a fork of the prefix's execution and cache windows) and checked from where
    they start. Every candidate is checked on the same requests (those of all of ``steps``)."""

    def __init__(self, scenario: Scenario, steps: Sequence[Any], prop: str, probes: Iterable[int],
                 reqs: Sequence[Any]) -> None:
        self.scenario, self.steps, self.prop, self.reqs = scenario, tuple(steps), prop, tuple(reqs)
        root = start(scenario, probes=probes)
        windows = Windows(root.run, self.reqs, in_flight=tr.in_flight(root.run), ats_control=True)
        self.cache: dict[tuple[int, ...], tuple[Execution, Windows, bool] | None] = {
            (): (root, windows, check_with(root, windows, [prop], 0) is not None)}

    def violated(self, picked: tuple[int, ...]) -> bool:
        k = len(picked)
        while picked[:k] not in self.cache:
            k -= 1
        for n in range(k, len(picked)):
            known = self.cache[picked[:n]]
            if known is None:  # a step of this prefix cannot be carried out
                self.cache[picked[:n + 1]] = None
                continue
            ex, windows, bad = known
            child = fork(ex)
            since = child.run.now
            try:
                advance(child, self.steps[picked[n]])
            except StepError:
                self.cache[picked[:n + 1]] = None
                continue
            child_windows = windows.fork(child.run).extend(tr.in_flight(child.run))
            bad = bad or check_with(child, child_windows, [self.prop], since) is not None
            self.cache[picked[:n + 1]] = (child, child_windows, bad)
        final = self.cache[picked]
        return final is not None and final[2]


def check_with(ex: Execution, windows: Windows, props: Sequence[str], since: int) -> tuple[str, Violation] | None:
    """The first property of ``props`` violated at a boundary from ``since`` (windows already built)."""
    for name in props:
        if name in sequence.CHECKS:
            found = sequence.CHECKS[name](windows, ex.promise, since=since)
        elif name == ERRNO:
            found = errno_conformance(ex, since=since)
        elif name == LIFETIME:
            found = object_lifetime(ex, since=since)
        else:
            found = []
        if found:
            return name, found[0]
    hangs = [h for h in ex.run.hangs if h[0] >= since]
    if hangs and "command-completion" in props:
        return "command-completion", Violation("command-completion", hangs[0][0], None, hangs[0][1])
    return None


def minimise(scenario: Scenario, steps: Sequence[Any], prop: str, probes: Iterable[int] = ()) -> tuple[Any, ...]:
    """``steps`` with steps removed while ``prop`` stays violated, by the same access when the violation
    is an access's, until no single step can go: first everything after the violating step, then
    chunks of halving size, then single steps.

    When the scenario turns fault switches on, ``prop`` is a software property and the correct model keeps
    it on ``steps``, every smaller sequence must keep that: it stays a counterexample to the fault, not to the sequence (a step's
    ``expect`` is a claim about its context; without the steps that make a DESTROY busy, EBUSY is no
    longer the uAPI's answer, and the correct model "violates" it too)."""
    steps = tuple(steps)
    try:
        ex = execute(scenario, steps, probes=probes)
    except StepError:
        return steps
    reqs = requests(ex)
    [verdict] = [v for v in check(ex, [prop]) if v.property == prop]
    if verdict.violation is not None and verdict.violation.request is not None:
        reqs = [verdict.violation.request]  # the same access must still show it
    faulty = _Prefixes(scenario, steps, prop, probes, reqs)
    correct = without_faults(scenario)
    everything = tuple(range(len(steps)))
    reference = None
    if correct != scenario and prop in SOFTWARE_PROPERTIES:  # an expected errno depends on its context
        reference = _Prefixes(correct, steps, prop, probes, reqs)
        if reference.violated(everything):
            reference = None

    def keeps(candidate: tuple[int, ...]) -> bool:
        return faulty.violated(candidate) and (reference is None or not reference.violated(candidate))

    if not keeps(everything):
        return steps
    current = everything
    for end in range(1, len(current)):  # cut after the step where it is first violated
        if keeps(current[:end]):
            current = current[:end]
            break
    size = max(len(current) // 2, 1)
    while True:  # remove chunks, halving their size; then single steps until none can go
        changed = False
        end = len(current)
        while end > 0:
            begin = max(end - size, 0)
            candidate = current[:begin] + current[end:]
            if candidate != current and keeps(candidate):
                current, changed = candidate, True
            end = begin
        if size > 1:
            size //= 2
        elif not changed:
            break
    return tuple(steps[i] for i in current)
