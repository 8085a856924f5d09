"""What the specification allows a case to show: the model's side of the comparison.

The case's stores and command batches are software steps of ``properties.timeline_run`` (a CPU
:class:`~amdvi.models.timeline.Store`, a :class:`~amdvi.models.timeline.Queue` per batch, and a
:class:`~amdvi.models.timeline.Wait` on the batch's last COMPLETION_WAIT with S = 1, because the harness
reads that store). Each DMA is then served in every way ``properties.cache_windows`` allows at its
point: a walk of memory as it is, or any combination of cached values that may survive (so between a
table change and its invalidation the old and the new translation are both allowed; after the
invalidation and a completed COMPLETION_WAIT only the new one; a flush wider than required is simply
one of the allowed timings). Nothing here restates a rule: walks, fills, hits and invalidations are the
model's.

Per command batch the expectation is the quiescent state: QEMU runs commands synchronously at the
tail write, and an IOMMU that follows the spec reaches the state the model's command processor
reaches once it has taken every command it can (in-flight invalidations carried out). Per register
write, the value a read gives back. At the end, the event records every allowed serving logs
(certain) and those some serving may log (possible).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from amdvi.models import iommu
from amdvi.models.command_buffer import pending
from amdvi.models.iommu import IommuState, ProcessCommand, Retire, SetTail
from amdvi.models.registers import ring_offset, with_ring_offset
from amdvi.models.timeline import Queue, Store as TimelineStore, Wait
from amdvi.properties import timeline_run
from amdvi.properties.cache_windows import Windows
from amdvi.spec.bitvec import INT
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.commands import COMPLETION_WAIT, command_structure
from amdvi.spec.mmio import EXCL_BASE, STATUS, status_after_write
from amdvi.spec.translation import Outcome, Request

from .case import Case, Commands, CpuStore, EduDma, RegisterWrite
from .layout import LAYOUT, device_id

COMPARED_STATUS = ("EventOverflow", "EventLogInt", "ComWaitInt", "EventLogRun", "CmdBufRun")
_DRAIN_LIMIT = 4 * (1 << LAYOUT.cmd_len)  # command-processor steps before the ring is called endless


@dataclass(frozen=True)
class Allowed:
    """One way the spec lets the IOMMU serve a DMA."""

    ok: bool
    spa: int  # the system address reached (0 when blocked)
    logged: bool
    event: int
    how: str  # which cached parts served it


@dataclass(frozen=True)
class DmaExpected:
    step: int
    device: int
    address: int
    write: bool
    allowed: tuple[Allowed, ...]  # distinct outcomes
    fresh: Outcome  # the walk of memory as it is at the DMA
    memory: Mapping[int, int]  # memory at the DMA (the model's, harness pages included)

    def reachable(self) -> set[int]:
        return {a.spa for a in self.allowed if a.ok}

    def may_block(self) -> bool:
        return any(not a.ok for a in self.allowed)


@dataclass(frozen=True)
class BatchExpected:
    step: int
    head: int | None  # byte offset once quiescent (None: the processor never reaches the tail)
    status: Mapping[str, int]
    stores: Mapping[int, int]  # every COMPLETION_WAIT store word of the case so far -> its value
    events: tuple[int, ...]  # records the batch logs (ILLEGAL_COMMAND_ERROR)


@dataclass(frozen=True)
class RegisterExpected:
    step: int
    name: str
    value: int


@dataclass
class Expectation:
    case: Case
    choices: Hardware
    dmas: dict[int, DmaExpected] = field(default_factory=dict)
    batches: dict[int, BatchExpected] = field(default_factory=dict)
    registers: dict[int, RegisterExpected] = field(default_factory=dict)
    certain_events: set[int] = field(default_factory=set)
    possible_events: set[int] = field(default_factory=set)
    stopped_at: int | None = None  # a step after which the model cannot go on (the ring never drains)


def _wait_for(commands: tuple[int, ...]) -> Wait | None:
    """The wait software does after a batch: on its last COMPLETION_WAIT with S = 1."""
    for bits in reversed(commands):
        if command_structure(bits) is COMPLETION_WAIT:
            f = COMPLETION_WAIT.decode(bits)
            if f["S"]:
                return Wait(f["Store Data"], f["Store Address"] << 3, "the harness reads the store")
    return None


def store_words(case: Case) -> list[int]:
    """Every COMPLETION_WAIT store address of the case (S = 1), in order of first use."""
    out: list[int] = []
    for s in case.steps:
        if isinstance(s, Commands):
            for bits in s.commands:
                if command_structure(bits) is COMPLETION_WAIT:
                    f = COMPLETION_WAIT.decode(bits)
                    if f["S"] and (f["Store Address"] << 3) not in out:
                        out.append(f["Store Address"] << 3)
    return out


def _events_in(memory: Mapping[int, int]) -> list[int]:
    base, size = LAYOUT.event_log, 16 << LAYOUT.event_len
    records = [memory.get(a, 0) | memory.get(a + 8, 0) << 64 for a in range(base, base + size, 16)]
    return [r for r in records if r]


def drain(state: IommuState, choices: Hardware) -> tuple[IommuState, bool]:
    """The state once the command processor has taken every command it can (in-flight invalidations
    carried out when a wait needs it, and at the end); False when it never reaches the tail."""
    for _ in range(_DRAIN_LIMIT):
        if not INT.value(pending(INT, state.regs)) and not any(q.valid for q in state.in_flight):
            break
        nxt, out = iommu.step(INT, state, ProcessCommand(), choices=choices)
        if out.blocked:
            index = next(i for i, q in enumerate(state.in_flight) if q.valid)
            state, _ = iommu.step(INT, state, Retire(index), choices=choices)
            continue
        if not (out.effect.processed or out.effect.illegal):
            break
        state = nxt
    else:
        return state, False
    for index, q in enumerate(state.in_flight):
        if q.valid:
            state, _ = iommu.step(INT, state, Retire(index), choices=choices)
    return state, True


def _status(regs: Any) -> dict[str, int]:
    fields = STATUS.decode(regs.status)
    return {name: fields[name] for name in COMPARED_STATUS}


def expect(case: Case, choices: Hardware = SPEC) -> Expectation:
    """The outcomes the model allows for every observation of ``case`` (see the module docstring)."""
    out = Expectation(case, choices)
    run = timeline_run.start(LAYOUT, case.words(), choices=choices)
    regs = with_ring_offset(INT, with_ring_offset(INT, run.state.regs, "cmd_head", case.ring_start), "cmd_tail",
                            case.ring_start)
    run.state = run.state.replace(regs=regs)
    stores = store_words(case)
    dma_at: list[tuple[int, EduDma, int]] = []
    for i, s in enumerate(case.steps):
        if isinstance(s, CpuStore):
            timeline_run.perform(run, [TimelineStore(((s.address, s.value),))])
        elif isinstance(s, EduDma):
            dma_at.append((i, s, run.now))
        elif isinstance(s, Commands):
            before = _events_in(run.state.memory)
            steps: list[Any] = [Queue(s.commands)]
            wait = _wait_for(s.commands)
            if wait is not None:
                steps.append(wait)
            timeline_run.perform(run, steps)
            drained, drains = drain(run.state, choices)
            after = _events_in(drained.memory)
            out.batches[i] = BatchExpected(
                i, INT.value(ring_offset(INT, drained.regs, "cmd_head")) if drains else None, _status(drained.regs),
                {a: drained.memory.get(a, 0) for a in stores}, tuple(r for r in after if r not in before))
            out.certain_events.update(out.batches[i].events)
            out.possible_events.update(out.batches[i].events)
            if not drains:
                out.stopped_at = i
                break
        elif isinstance(s, RegisterWrite):
            if s.name == "STATUS":
                regs = run.state.regs
                run.state = run.state.replace(regs=regs.replace(status=status_after_write(regs.status, s.value)))
                out.registers[i] = RegisterExpected(i, s.name, run.state.regs.status)
            elif s.name == "CMD_BUF_TAIL":
                run.state, _ = iommu.step(INT, run.state, SetTail(s.value & 0x7FFF0), choices=choices)
                drained, drains = drain(run.state, choices)
                out.registers[i] = RegisterExpected(i, s.name, s.value & 0x7FFF0)
                if not drains:
                    out.stopped_at = i
                    break
            else:  # EXCL_BASE, EXCL_LIMIT: read/write registers, reserved bits read 0 (§3.4.5, §3.4.6)
                structure = EXCL_BASE if s.name == "EXCL_BASE" else _excl_limit()
                out.registers[i] = RegisterExpected(i, s.name, s.value & ~structure.reserved_mask)
            timeline_run.mark(run, f"register {s.name}")
    _serve_dmas(out, run, dma_at)
    return out


def _excl_limit() -> Any:
    from amdvi.spec.mmio import EXCL_LIMIT
    return EXCL_LIMIT


def requests_of(case: Case) -> list[Request]:
    """The requests the windows track: every DMA's, as a read and as a write. Hardware may fill a slot
    for either kind: a read-only translation cached from a read is hit by a later write, which then
    faults on the cached permissions."""
    seen: dict[Request, None] = {}
    for s in case.steps:
        if isinstance(s, EduDma):
            for write in (False, True):
                seen.setdefault(Request(device_id=device_id(s.device), address=s.address, write=write))
    return list(seen)


def _serve_dmas(out: Expectation, run: timeline_run.Run, dma_at: list[tuple[int, EduDma, int]]) -> None:
    timeline_run.finish(run)
    windows = Windows(run, requests_of(out.case))
    for i, s, at in dma_at:
        if out.stopped_at is not None and i > out.stopped_at:
            continue
        request = Request(device_id=device_id(s.device), address=s.address, write=s.write)
        allowed: dict[tuple[bool, int], Allowed] = {}
        events = []
        for served in windows.outcomes(at, request):
            r = served.result
            events.append(int(r.event) if r.logged else None)
            key = (bool(r.ok), int(r.spa) if r.ok else 0)
            if key not in allowed:
                allowed[key] = Allowed(key[0], key[1], bool(r.logged), int(r.event), served.describe())
        allowed_tuple = tuple(allowed.values())
        out.dmas[i] = DmaExpected(i, s.device, s.address, s.write, allowed_tuple, windows.fresh(at, request),
                                  run.boundaries[at].memory)
        out.possible_events.update(e for e in events if e is not None)
        if len(set(events)) == 1 and events[0] is not None:  # every serving logs this one record
            out.certain_events.add(events[0])
