"""Running a case on QEMU and reading back what happened.

Before the steps (IOMMU off, so ``edu``'s DMA is untranslated): the case's memory image is stored, every
candidate data word (below) gets :func:`~amdvi.difftest.layout.pattern` of its own address, and each
device's buffer gets the token of each of its DMA writes and an EMPTY word for each of its reads. Then
the IOMMU is turned on with the model's register values and the steps run:

* a read DMA lands in its buffer word; at the end (IOMMU off again) the buffers are copied out, and the
  value names the word reached (a pattern, or a table word), 0 when QEMU aborted the read;
* a write DMA stores its token; the candidate words are read at once, the one holding the token is
  where it went, and its old value is put back (so later walks and reads see the case's memory: a DMA's
  own write is not part of the comparison);
* a command batch is written at the tail and handed over with CMD_BUF_TAIL (QEMU runs it before the
  write returns); then CMD_BUF_HEAD, STATUS and every COMPLETION_WAIT store word are read;
* a register write is followed by a read of the register.

Candidate words of a DMA: each system address the model allows, the address itself (untranslated),
the address cut to each paging mode's range, and the address's offset in every 4 KiB, 2 MiB and
1 GiB frame an entry of the case (present or not) points into the data regions. A QEMU that reaches a word outside
them reads 0 or writes where nobody looks: reported as blocked.

A hang (no reply within the watchdog), a refused command or QEMU exiting ends the case: it is recorded
with its step (``Observation.hang``) and the caller starts a new QEMU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from amdvi.spec.commands import COMMAND_BYTES
from amdvi.spec.levels import level_shift
from amdvi.spec.mmio import STATUS

from .case import Case, Commands, CpuStore, EduDma, RegisterWrite
from .layout import (
    DATA, EMPTY, GIANT_DATA, LARGE_DATA, LAYOUT, RAM_BYTES, pattern, token,
)
from .machine import Machine
from .model_side import COMPARED_STATUS, Expectation, store_words
from .qtest import QemuError

PAGE_MASK = ((1 << 52) - 1) & ~0xFFF
FRAME_SIZES = (1 << 12, 1 << 21, 1 << 30)
DATA_REGIONS = ((DATA, LARGE_DATA), (LARGE_DATA, GIANT_DATA), (GIANT_DATA, RAM_BYTES))


@dataclass(frozen=True)
class DmaSeen:
    step: int
    write: bool
    value: int | None = None  # read: the word the device got (None: the case ended before it was read)
    landed: int | None = None  # write: the word that took the token (None: none of the candidates)


@dataclass(frozen=True)
class BatchSeen:
    step: int
    head: int
    status: dict[str, int]
    stores: dict[int, int]


@dataclass(frozen=True)
class RegisterSeen:
    step: int
    name: str
    value: int


@dataclass
class Observation:
    dmas: dict[int, DmaSeen] = field(default_factory=dict)
    batches: dict[int, BatchSeen] = field(default_factory=dict)
    registers: dict[int, RegisterSeen] = field(default_factory=dict)
    events: list[int] | None = None  # records in the event log at the end (None: not read)
    sticky_status: frozenset[str] = frozenset()  # Status bits already set when the case began (not comparable)
    hang: tuple[int, str] | None = None


def _in_data(address: int) -> bool:
    return any(lo <= address < hi for lo, hi in DATA_REGIONS)


def candidates(case: Case, expectation: Expectation, step: int) -> list[int]:
    """The words a DMA step may reach that the harness watches (see the module docstring)."""
    dma = case.steps[step]
    assert isinstance(dma, EduDma)
    out: dict[int, None] = {}
    expected = expectation.dmas.get(step)
    if expected is not None:
        for spa in sorted(expected.reachable()):
            out.setdefault(spa & ~7)
    out.setdefault(dma.address & ~7)
    for mode in range(1, 6):
        out.setdefault(dma.address & ((1 << level_shift(mode + 1)) - 1) & ~7)
    values = [v for _, v in case.memory] + [s.value for s in case.steps if isinstance(s, CpuStore)]
    for v in values:  # present or not: QEMU may use an entry the spec would not
        if _in_data(v & PAGE_MASK):
            for size in FRAME_SIZES:
                out.setdefault(((v & PAGE_MASK) & ~(size - 1)) + (dma.address & (size - 1) & ~7))
    return [a for a in out if a < RAM_BYTES]


def run(machine: Machine, case: Case, expectation: Expectation) -> Observation:
    """The observation of ``case`` on ``machine`` (reset first)."""
    seen = Observation()
    try:
        _run(machine, case, expectation, seen)
    except QemuError as e:  # a hang (the watchdog), or QEMU refused a command or exited: the case ends here
        seen.hang = (getattr(e, "step", None), f"{type(e).__name__}: {e}")
    return seen


def _owned_words(case: Case) -> set[int]:
    return {a for a, _ in case.memory} | {s.address for s in case.steps if isinstance(s, CpuStore)}


def _run(machine: Machine, case: Case, expectation: Expectation, seen: Observation) -> None:
    machine.reset()
    memory = case.words()
    machine.store_words(sorted(memory.items()))
    owned = _owned_words(case)
    watched = {i: candidates(case, expectation, i) for i, s in enumerate(case.steps) if isinstance(s, EduDma)}
    patterns = sorted({a for words in watched.values() for a in words if a not in owned and _in_data(a)})
    machine.store_words((a, pattern(a)) for a in patterns)

    # each device's buffer: one word per DMA, a token for a write, EMPTY for a read
    slots: dict[int, int] = {}
    per_device: dict[int, list[int]] = {}
    for i, s in enumerate(case.steps):
        if isinstance(s, EduDma):
            words = per_device.setdefault(s.device, [])
            slots[i] = len(words)
            words.append(token(i) if s.write else EMPTY)
    for device, words in sorted(per_device.items()):
        machine.load_buffer(device, words)

    machine.enable(case.ring_start)
    start = STATUS.decode(machine.read_registers(["STATUS"])["STATUS"])
    seen.sticky_status = frozenset(n for n in COMPARED_STATUS if start[n] and STATUS.field(n) is not None
                                   and n not in ("EventLogRun", "CmdBufRun"))
    semaphores = store_words(case)
    tail = case.ring_start
    for i, s in enumerate(case.steps):
        if expectation.stopped_at is not None and i > expectation.stopped_at:
            break
        try:
            if isinstance(s, CpuStore):
                machine.store_words([(s.address, s.value)])
                memory[s.address] = s.value
            elif isinstance(s, EduDma) and not s.write:
                machine.device_read(s.device, s.address, slots[i])
            elif isinstance(s, EduDma):
                machine.device_write(s.device, s.address, slots[i])
                words = watched[i]
                values = machine.read_words(words)
                hit = [a for a, v in zip(words, values) if v == token(i)]
                seen.dmas[i] = DmaSeen(i, True, landed=hit[0] if hit else None)
                machine.store_words((a, memory.get(a, pattern(a) if a not in owned and _in_data(a) else 0))
                                    for a in hit)
            elif isinstance(s, Commands):
                tail = _queue(machine, tail, s.commands)
                regs = machine.read_registers(["CMD_BUF_HEAD", "STATUS"])
                status = STATUS.decode(regs["STATUS"])
                stores = dict(zip(semaphores, machine.read_words(semaphores)))
                seen.batches[i] = BatchSeen(i, regs["CMD_BUF_HEAD"], {n: status[n] for n in COMPARED_STATUS}, stores)
            elif isinstance(s, RegisterWrite):
                machine.write_register(s.name, s.value)
                seen.registers[i] = RegisterSeen(i, s.name, machine.read_registers([s.name])[s.name])
        except QemuError as e:
            e.step = i  # type: ignore[attr-defined]
            raise
    log = machine.read_bytes(LAYOUT.event_log, 16 << LAYOUT.event_len)
    records = [int.from_bytes(log[k:k + 16], "little") for k in range(0, len(log), 16)]
    seen.events = [r for r in records if r]
    machine.disable()
    for device, words in sorted(per_device.items()):
        got = machine.unload_buffer(device, len(words))
        for i, s in enumerate(case.steps):
            if isinstance(s, EduDma) and s.device == device and not s.write and i not in seen.dmas:
                if expectation.stopped_at is None or i <= expectation.stopped_at:
                    seen.dmas[i] = DmaSeen(i, False, value=got[slots[i]])


def _queue(machine: Machine, tail: int, commands: Iterable[int]) -> int:
    """Write ``commands`` at ``tail`` (wrapping) and hand them over; the new tail."""
    words = []
    for bits in commands:
        words += [(LAYOUT.cmd_ring + tail, bits & ((1 << 64) - 1)), (LAYOUT.cmd_ring + tail + 8, bits >> 64)]
        tail = (tail + COMMAND_BYTES) % LAYOUT.ring_bytes
    machine.qt.batch([machine.qt.writeq(a, v) for a, v in words])
    machine.write_register("CMD_BUF_TAIL", tail)
    return tail


__all__ = ["Observation", "DmaSeen", "BatchSeen", "RegisterSeen", "run", "candidates", "QemuError"]
