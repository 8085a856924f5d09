"""Software's steps (``models.timeline``) carried out on the IOMMU model, recording what a checker needs.

A :class:`Run` keeps every memory image software produced (one per *boundary*: before the first step
and after each step, the points where hardware and devices may act), and for each invalidation the
command processor accepted, the window in which it may take effect: from the boundary where software
handed it to the IOMMU (the tail write of its :class:`~amdvi.models.timeline.Queue`) to the boundary
where it has certainly taken effect (the :class:`~amdvi.models.timeline.Wait` that saw a later
COMPLETION_WAIT's store). Hardware may carry an invalidation out at any point of that window; that
freedom, and when caches fill, is what ``amdvi.properties.cache_windows`` explores.

The command processor itself is the IOMMU model's (``models.iommu.step``): commands are processed only
when software waits (as late as the model allows), and an accepted invalidation is retired only when a
COMPLETION_WAIT cannot complete without it or the in-flight queue is full, so ``completed_at`` is the
latest boundary the model allows (``None``: nothing forced it: a COMPLETION_WAIT that completed early
(the ``completion-wait-early`` fault), or no wait at all). A wait that cannot complete (the processor
stopped on an illegal command) is recorded as a hang: Linux would report "Completion-Wait loop timed
out".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from amdvi.spec.bitvec import INT
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.commands import COMMAND_BYTES

from amdvi.models import iommu, rings
from amdvi.models.iommu import CpuWrite, IommuState, ProcessCommand, Retire, SetTail
from amdvi.models.registers import ring_offset
from amdvi.models.rings import COMMAND_BUFFER
from amdvi.models.software import Layout, initial_state
from amdvi.models import viommu
from amdvi.models.timeline import AtsControl, GuestWait, Queue, Store, VfctrlWrite, VfWrite, Wait

_MAX_PROCESS = 4096  # command-processor steps a single wait may take before it is called a hang


@dataclass(frozen=True)
class Invalidation:
    """An invalidation command the IOMMU accepted: handed over at boundary ``queued_at``, certainly
    carried out by boundary ``completed_at`` (None: nothing in the run forces it)."""

    command: int
    queued_at: int
    completed_at: int | None


@dataclass(frozen=True)
class Boundary:
    """A point between two software steps: memory as it then is, and what the step before it was."""

    index: int
    memory: Any
    step: Any = None  # the timeline step that led here (None for the first boundary)
    label: str = ""  # who did it (an ioctl, a guest write ...), set by the caller


@dataclass(frozen=True)
class GuestStep:
    """One step the vIOMMU took of guest ``guest_id``'s command buffer, during the wait that ends at
    boundary ``at``: the IOMMU's state before it (a checker re-runs the step from there) and its effect
    (``effect.event``: what it logged in the guest's event log)."""

    at: int
    guest_id: int
    before: IommuState
    effect: Any


@dataclass
class Run:
    """The boundaries of a run, the invalidations with their windows, and hangs (boundary, what)."""

    layout: Layout
    choices: Hardware
    boundaries: list[Boundary] = field(default_factory=list)
    invalidations: list[Invalidation] = field(default_factory=list)
    hangs: list[tuple[int, str]] = field(default_factory=list)
    guest_hangs: list[tuple[int, str]] = field(default_factory=list)  # a HW-vIOMMU guest's own wait never ended
    guest_steps: list[GuestStep] = field(default_factory=list)  # each step the vIOMMU took of a guest's buffer
    state: IommuState | None = None
    viommu: viommu.ViommuConfig = viommu.ViommuConfig()  # where the HW-vIOMMU's private space is
    _queued: dict[int, int] = field(default_factory=dict)  # ring offset of a command -> boundary it was queued at
    _accepted: list[tuple[int, int]] = field(default_factory=list)  # in-flight: (command, queued_at), oldest first
    _doorbell: dict[int, int] = field(default_factory=dict)  # GuestID -> boundary of its last doorbell

    @property
    def now(self) -> int:
        return len(self.boundaries) - 1


def start(layout: Layout, memory: dict[int, int] | None = None, *, choices: Hardware = SPEC) -> Run:
    """A run of the IOMMU enabled with ``layout`` over ``memory``, at its first boundary."""
    state = initial_state(layout, memory)
    run = Run(layout=layout, choices=choices, state=state)
    run.boundaries.append(Boundary(0, state.memory))
    return run


def perform(run: Run, steps: Iterable[Any], label: str = "") -> Run:
    """``run`` after software performed ``steps`` (each ends at a new boundary). Mutates and returns it."""
    for s in steps:
        if isinstance(s, Store):
            _store(run, s)
        elif isinstance(s, Queue):
            _queue(run, s)
        elif isinstance(s, Wait):
            _wait(run, s)
        elif isinstance(s, AtsControl):
            pass  # a device's configuration: the IOMMU does not see it (cache_windows reads it from the step)
        elif isinstance(s, VfWrite):
            run.state = viommu.vf_write(INT, run.state, s.guest_id, s.offset, s.value,
                                        space=viommu.TranslatedPrivateSpace(run.viommu), choices=run.choices)
            run._doorbell[s.guest_id] = len(run.boundaries)  # handed over at the boundary this step ends at
        elif isinstance(s, GuestWait):
            _guest_wait(run, s)
        elif isinstance(s, VfctrlWrite):
            space = viommu.TranslatedPrivateSpace(run.viommu)
            for guest_id, offset, value in s.writes:
                run.state = viommu.vfctrl_write(INT, run.state, guest_id, offset, value, space=space,
                                                choices=run.choices)
        else:
            raise TypeError(f"not a timeline step: {s!r}")
        run.boundaries.append(Boundary(len(run.boundaries), run.state.memory, s, label))
    return run


def mark(run: Run, label: str) -> Run:
    """A boundary where software did nothing to the IOMMU (a device or guest step of the caller)."""
    run.boundaries.append(Boundary(len(run.boundaries), run.state.memory, None, label))
    return run


def write_memory(run: Run, writes: Sequence[tuple[int, int]], label: str) -> Run:
    """Someone other than the driver (a guest, a device) stored ``writes``: a new boundary."""
    return perform(run, [Store(tuple(writes), label)], label)


def _step(run: Run, move: Any) -> iommu.Outputs:
    run.state, out = iommu.step(INT, run.state, move, choices=run.choices)
    return out


def _store(run: Run, s: Store) -> None:
    for address, value in s.writes:
        _step(run, CpuWrite(address, value))


def _ring_free(run: Run) -> int:
    """Bytes the software may still write into the command ring (one entry always stays free)."""
    size = INT.value(rings.size(INT, run.state.regs, COMMAND_BUFFER))
    used = (INT.value(ring_offset(INT, run.state.regs, "cmd_tail"))
            - INT.value(ring_offset(INT, run.state.regs, "cmd_head"))) % size
    return size - used - COMMAND_BYTES


def _queue(run: Run, q: Queue) -> None:
    """Write the commands at the tail and move the tail (Linux: if the ring is too full, it waits for
    the head to move: here the processor catches up first)."""
    if len(q.commands) * COMMAND_BYTES > _ring_free(run):
        _catch_up(run, stop_when=lambda: len(q.commands) * COMMAND_BYTES <= _ring_free(run))
    tail = INT.value(ring_offset(INT, run.state.regs, "cmd_tail"))
    size = run.layout.ring_bytes
    for bits in q.commands:
        run._queued[tail] = len(run.boundaries)  # handed over at the boundary this step ends at
        _step(run, CpuWrite(run.layout.cmd_ring + tail, bits & ((1 << 64) - 1)))
        _step(run, CpuWrite(run.layout.cmd_ring + tail + 8, bits >> 64))
        tail = (tail + COMMAND_BYTES) % size
    _step(run, SetTail(tail))


def _retire_oldest(run: Run, completed_at: int) -> None:
    """Carry out the oldest in-flight invalidation (the model's slot index that holds it)."""
    command, queued_at = run._accepted.pop(0)
    for index, q in enumerate(run.state.in_flight):
        if q.valid and q.command == command:
            _step(run, Retire(index))
            break
    run.invalidations.append(Invalidation(command, queued_at, completed_at))


def _process_one(run: Run, completed_at: int) -> bool:
    """One command-processor step; False when nothing could be processed."""
    head = INT.value(ring_offset(INT, run.state.regs, "cmd_head"))
    out = _step(run, ProcessCommand())
    if out.effect is not None and out.effect.processed:
        run.state = viommu.host_command_effect(INT, run.state, out.effect, space=viommu.TranslatedPrivateSpace(run.viommu),
                                               choices=run.choices)
    if out.blocked:  # a COMPLETION_WAIT behind in-flight invalidations, or the in-flight queue full
        if not run._accepted:
            return False
        _retire_oldest(run, completed_at)
        return True
    if out.accepted:
        run._accepted.append((INT.value(out.effect.command), run._queued.get(head, 0)))
    return INT.value(ring_offset(INT, run.state.regs, "cmd_head")) != head  # the head moved on


def _catch_up(run: Run, stop_when: Any) -> None:
    completed_at = len(run.boundaries)  # the boundary the current step ends at
    for _ in range(_MAX_PROCESS):
        if stop_when() or not _process_one(run, completed_at):
            return


def _wait(run: Run, w: Wait) -> None:
    landed = lambda: run.state.memory.get(w.address, 0) == w.sequence  # noqa: E731
    _catch_up(run, landed)
    if not landed():
        run.hangs.append((len(run.boundaries), f"COMPLETION_WAIT {w.sequence:#x} never stored: {w.what}"))


def _guest_wait(run: Run, w: GuestWait) -> None:
    """The vIOMMU carries out the guest's commands (``models.viommu.process_guest_command``) until its
    COMPLETION_WAIT has stored; an accepted invalidation joins the in-flight queue with the host's, and a
    blocked COMPLETION_WAIT retires the oldest one, as for the host's buffer."""
    completed_at = len(run.boundaries)
    space = viommu.TranslatedPrivateSpace(run.viommu)
    landed = lambda: run.state.memory.get(w.address, 0) == w.sequence  # noqa: E731
    for _ in range(_MAX_PROCESS):
        if landed():
            return
        before = run.state
        run.state, effect = viommu.process_guest_command(INT, before, w.guest_id, private=space, choices=run.choices)
        run.guest_steps.append(GuestStep(completed_at, w.guest_id, before, effect))
        if effect.blocked:
            if not run._accepted:
                break
            _retire_oldest(run, completed_at)
            continue
        if effect.accepted:
            run._accepted.append((INT.value(effect.host_command), run._doorbell.get(w.guest_id, 0)))
        if not effect.processed:
            break  # refused, or nothing left
    if not landed():  # the guest's own buffer stopped (a command it may not issue): its problem, not the host's
        run.guest_hangs.append((len(run.boundaries), f"guest {w.guest_id}'s COMPLETION_WAIT {w.sequence:#x} never "
                                                     f"stored: {w.what}"))


def in_flight(run: Run) -> list[Invalidation]:
    """The invalidations accepted and not yet carried out, with no completion boundary."""
    return [Invalidation(command, queued_at, None) for command, queued_at in run._accepted]


def finish(run: Run) -> Run:
    """The end of the run: invalidations still in flight get no completion boundary."""
    for command, queued_at in run._accepted:
        run.invalidations.append(Invalidation(command, queued_at, None))
    run._accepted = []
    return run
