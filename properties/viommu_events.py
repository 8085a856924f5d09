"""Guest event writes stay in the guest: HW-vIOMMU event-log writes, proved with Z3 against an
adversarial guest.

Claim: in a step of guest ``g``'s command buffer (``models.viommu.process_guest_command``, which logs a
refused command in ``g``'s event log) and in a host INSERT_GUEST_EVENT for guest ``h``
(``models.viommu.insert_guest_event``), every memory word the step changes is one its guest's stage 2
gave: a system address a translation through the DTE of a DeviceID that guest owns returned (the
entry's first word, or the second, 8 bytes on in the same 16-byte entry of a 4 KiB-aligned ring). The
one other word allowed is the host's own event-log entry at its tail, where GUEST_EVENT_FAULT goes when
the guest's stage 2 does not map its log.

"Whatever the guest writes": ``g`` and ``h`` are symbolic GuestIDs, the private address space (the
guests' VFCtrl registers: event-log control, base, head, tail and Status, and their command-buffer
registers) is an uninterpreted memory, system memory (the guest's ring, its commands, the host's log
and device table) another, the host's registers are symbolic, and each stage-2 translation answers
anything (``ok``, any system address). What the hypervisor guarantees is assumed at each private word
read, as ``viommu_isolation`` does: a guest's MMIO block names a translate DeviceID that guest owns.
Stage 2 itself is abstracted as there: a translation through a DeviceID ``g`` owns lands in ``g``'s
frames. A changed word is found by a symbolic probe address compared before and after the step.

Under the fault ``viommu-guest-event-log-untranslated`` (the log's base used as a system address) it is
refuted: the record lands where the guest's base says, and a replay on Python ints reproduces it.

The rule (:func:`allowed`) is written once over the backend: the proof asks it of a symbolic probe,
:func:`stray_words` of every word a concrete guest-command step changed (what the HW-vIOMMU machine
checks along a sequence run, ``tests/properties/test_viommu_machine.py``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

import z3

from amdvi.models import rings
from amdvi.models import viommu as vi
from amdvi.models.caches import Caches
from amdvi.models.command_buffer import COMMAND_WIDTH
from amdvi.models.iommu import IN_FLIGHT, IommuState, InFlight
from amdvi.models.registers import Registers
from amdvi.spec.bitvec import INT, Z3
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.events import event_structure

from .proof import ProofResult, Witness, prove
from .viommu_isolation import ID, AdversarialPrivateSpace, ConcretePrivateSpace, hypervisor_invariant


@dataclass
class RecordingGuestSpace:
    """Guest physical addresses translate anywhere (``ok`` and the system address are free, named with
    ``prefix``); each use is kept with the DeviceID whose DTE was named."""

    prefix: str
    uses: list[tuple[Any, Any, Any]] = field(default_factory=list)  # (device_id, ok, spa)
    count: itertools.count = field(default_factory=itertools.count)

    def address(self, b: Any, state: Any, device_id: Any, gpa: Any, write: bool, choices: Hardware) -> tuple[Any, Any]:
        n = next(self.count)
        ok, spa = z3.Bool(f"{self.prefix}_ok_{n}"), z3.BitVec(f"{self.prefix}_spa_{n}", 64)
        self.uses.append((device_id, ok, spa))
        return ok, spa


@dataclass(frozen=True)
class Step:
    """One symbolic step, what it may write, and its probe."""

    label: str
    guest_id: Any
    event: vi.GuestEvent
    after: IommuState
    guest: RecordingGuestSpace
    private: AdversarialPrivateSpace
    probe: Any
    allowed: Any  # the probe's word may change


@dataclass(frozen=True)
class Query:
    state: IommuState
    steps: tuple[Step, ...]
    owns_translate: Any
    insert_record_address: Any  # the host log's head entry INSERT_GUEST_EVENT reads


def _symbolic_state() -> IommuState:
    regs = Registers(**{n: z3.BitVec(f"host_{n}", 64) for n in Registers.FIELD_WIDTHS})
    in_flight = tuple(InFlight(valid=z3.Bool(f"in_flight_{i}"), command=z3.BitVec(f"in_flight_cmd_{i}", COMMAND_WIDTH))
                      for i in range(IN_FLIGHT))
    return IommuState(memory=Z3.memory_function("memory"), regs=regs, caches=Caches.empty(), in_flight=in_flight)


def allowed(b: Any, probe: Any, step_guest: Any, uses: Any, owner: Callable[[Any], Any], host_entry: Any,
            host_logged: Any) -> Any:
    """The word at ``probe`` is one guest ``step_guest``'s stage 2 gave (a translation ``(device_id, ok,
    spa)`` of ``uses`` through a DeviceID whose ``owner`` is that guest: the entry's first word or the one
    8 bytes on), or the host log's entry at ``host_entry`` (when it took GUEST_EVENT_FAULT)."""
    def near(address: Any) -> Any:
        return b.any_of(b.eq(probe, address), b.eq(probe, b.add(address, b.const(8, 64), 64)))
    given = [b.all_of(ok, b.eq(owner(d), step_guest), near(spa)) for d, ok, spa in uses]
    return b.any_of(*given, b.all_of(host_logged, near(host_entry)))


def build(guests: int, choices: Hardware = SPEC) -> tuple[list[Any], Any, Query]:
    """(assumptions, claim, query) for a guest-command step of guest ``g`` and an INSERT_GUEST_EVENT for ``h``."""
    if not 2 <= guests < 1 << 16:
        raise ValueError(f"guests: between 2 and {(1 << 16) - 1} (GuestIDs 1 to guests; 0 is never a guest's)")
    state = _symbolic_state()
    owns_device, owns_domain, owns_translate = (z3.Function(n, ID, ID) for n in
                                                ("owner_of_device", "owner_of_domain", "owner_of_translate_id"))
    host_entry = rings.entry_address(Z3, state.regs, rings.EVENT_LOG, rings.tail(Z3, state.regs, rings.EVENT_LOG))
    private_memory = Z3.memory_function("private")
    assumptions, steps = [], []
    for label, name in (("guest command", "guest_id"), ("INSERT_GUEST_EVENT", "insert_guest_id")):
        g = z3.BitVec(name, 16)
        private = AdversarialPrivateSpace(memory=private_memory)
        guest = RecordingGuestSpace(name)
        if label == "guest command":
            after, effect = vi.process_guest_command(Z3, state, g, private=private, guest=guest, choices=choices)
            event = effect.event
        else:
            after, event = vi.insert_guest_event(Z3, state, g, True, private=private, guest=guest, choices=choices)
        probe = z3.BitVec(f"{name}_probe", 64)
        allowed_here = allowed(Z3, probe, g, guest.uses, owns_translate, host_entry, event.host_logged)
        # a translation keeps the page offset, and every guest address the vIOMMU uses is 8-byte aligned
        aligned = [z3.Extract(2, 0, spa) == 0 for _, _, spa in guest.uses]
        assumptions += [z3.UGE(g, 1), z3.ULE(g, guests), *aligned,
                        *hypervisor_invariant(private.reads, owns_device, owns_domain, owns_translate)]
        steps.append(Step(label, g, event, after, guest, private, probe, allowed_here))
    claim = z3.And(*[z3.Implies(Z3.read64(s.after.memory, s.probe) != Z3.read64(state.memory, s.probe), s.allowed)
                     for s in steps])
    head = rings.entry_address(Z3, state.regs, rings.EVENT_LOG, rings.head(Z3, state.regs, rings.EVENT_LOG))
    return assumptions, claim, Query(state, tuple(steps), owns_translate, head)


def prove_event_isolation(guests: int = 8, *, choices: Hardware = SPEC, timeout_ms: int = 120_000) -> ProofResult:
    """Prove the claim for every guest of ``guests`` at once (symbolic GuestIDs)."""
    assumptions, claim, q = build(guests, choices)
    command, insert = q.steps
    witnesses = [Witness("a refused guest command is written to the guest's event log", command.event.written),
                 Witness("INSERT_GUEST_EVENT writes an event into the guest's log", insert.event.written)]
    if not choices.viommu_guest_event_log_untranslated:  # (that broken model never asks stage 2)
        witnesses.append(Witness("a guest log stage 2 does not map raises GUEST_EVENT_FAULT in the host's log",
                                 z3.And(command.event.faulted, command.event.host_logged)))
    result = prove(f"vIOMMU guest event isolation ({guests} guests)", assumptions, claim, witnesses=witnesses,
                   timeout_ms=timeout_ms, strategy="bit-blast")
    if result.model is not None:
        found = replay(result.model, q, choices)
        verdict = ("replayed on Python ints: it reproduces" if found else
                   "replay on Python ints does NOT reproduce")
        result = ProofResult(result.name, result.status, result.seconds,
                             f"{describe(result.model, q)} ({verdict})", result.model, evidence=q)
    return result


def _failing(model: z3.ModelRef, q: Query) -> Step:
    return next(s for s in q.steps if z3.is_false(model.eval(
        z3.Implies(Z3.read64(s.after.memory, s.probe) != Z3.read64(q.state.memory, s.probe), s.allowed),
        model_completion=True)))


def describe(model: z3.ModelRef, q: Query) -> str:
    """A counterexample in words: which guest, which step, where its event went and where its log is."""
    value = lambda x: model.eval(x, model_completion=True).as_long()  # noqa: E731
    s = _failing(model, q)
    record = value(s.event.record)
    kind = event_structure(record)
    return (f"{s.label} of guest {value(s.guest_id)}: its {kind.name if kind else 'event'} is written at system "
            f"address {value(s.probe):#x}, which no translation through its stage 2 gave (its log entry is at guest "
            f"physical {value(s.event.address):#x})")


class _ModelMemory(dict):
    """System memory on Python ints whose words not yet written read as the counterexample's memory."""

    def __init__(self, model: z3.ModelRef, memory: Any) -> None:
        super().__init__()
        self.model, self.memory = model, memory

    def get(self, address: int, default: int = 0) -> int:
        if address in self:
            return self[address]
        return self.model.eval(Z3.read64(self.memory, z3.BitVecVal(address, 64)), model_completion=True).as_long()


@dataclass
class _AnsweringGuest:
    """The counterexample's translations, in order; one it did not make (another model's) is not mapped."""

    answers: list[tuple[bool, int]]
    uses: list[int] = field(default_factory=list)

    def address(self, b: Any, state: Any, device_id: int, gpa: int, write: bool, choices: Hardware) -> tuple[bool, int]:
        self.uses.append(device_id)
        n = len(self.uses) - 1
        return self.answers[n] if n < len(self.answers) else (False, 0)


def replay(model: z3.ModelRef, q: Query, choices: Hardware) -> bool:
    """Run the failing step's inputs on Python ints (the same code, the other backend) and say whether it
    writes a word that no translation through its guest's stage 2 gave (nor the host log's entry)."""
    value = lambda x: model.eval(x, model_completion=True)  # noqa: E731
    number = lambda x: value(x).as_long()  # noqa: E731
    s = _failing(model, q)
    private = ConcretePrivateSpace({number(a): number(Z3.read64(s.private.memory, a)) for a, _ in s.private.reads})
    answers = [(z3.is_true(value(ok)), number(spa)) for _, ok, spa in s.guest.uses]
    guest = _AnsweringGuest(answers)
    regs = Registers(**{n: number(getattr(q.state.regs, n)) for n in Registers.FIELD_WIDTHS})
    in_flight = tuple(InFlight(valid=z3.is_true(value(e.valid)), command=number(e.command)) for e in q.state.in_flight)
    before = _ModelMemory(model, q.state.memory)
    state = IommuState(memory=before, regs=regs, caches=Caches.empty(), in_flight=in_flight)
    g = number(s.guest_id)
    if s.label == "guest command":
        after, effect = vi.process_guest_command(INT, state, g, private=private, guest=guest, choices=choices)
        event = effect.event
    else:
        after, event = vi.insert_guest_event(INT, state, g, True, private=private, guest=guest, choices=choices)
    owner = lambda d: number(q.owns_translate(z3.BitVecVal(d, 16)))  # noqa: E731
    uses = [(d, ok, spa) for (ok, spa), d in zip(guest.answers, guest.uses)]
    host = rings.entry_address(INT, regs, rings.EVENT_LOG, rings.tail(INT, regs, rings.EVENT_LOG))
    return any(not allowed(INT, a, g, uses, owner, host, event.host_logged)
               for a in after.memory if after.memory.get(a) != before.get(a))


# -- the same rule on a concrete run -------------------------------------------------------------------


@dataclass
class _Stage2Uses:
    """The guest's stage 2 as the hardware reaches it, each translation kept (``uses``)."""

    inner: Any = field(default_factory=vi.GuestSpace)
    uses: list[tuple[int, bool, int]] = field(default_factory=list)

    def address(self, b: Any, state: Any, device_id: int, gpa: int, write: bool, choices: Hardware) -> tuple[bool, int]:
        ok, spa = self.inner.address(b, state, device_id, gpa, write, choices)
        self.uses.append((device_id, ok, spa))
        return ok, spa


@dataclass
class _PrivateWrites:
    """The private address space, each system word it writes kept (``written``): the IOMMU's own state,
    which the proof keeps in a memory of its own."""

    inner: vi.TranslatedPrivateSpace
    written: set[int] = field(default_factory=set)

    def address(self, b: Any, state: Any, ipa: Any, write: bool, choices: Hardware) -> tuple[Any, Any]:
        return self.inner.address(b, state, ipa, write, choices)

    def read(self, b: Any, state: Any, ipa: Any, choices: Hardware) -> tuple[Any, Any]:
        return self.inner.read(b, state, ipa, choices)

    def write(self, b: Any, state: Any, ipa: Any, value: Any, when: Any, choices: Hardware) -> Any:
        ok, spa = self.inner.address(b, state, ipa, True, choices)
        if when and ok:
            self.written.add(spa)
        return self.inner.write(b, state, ipa, value, when, choices)


def stray_words(before: IommuState, guest_id: int, owner: Callable[[int], int], *,
                config: vi.ViommuConfig = vi.ViommuConfig(), choices: Hardware = SPEC) -> list[int]:
    """The system words one step of guest ``guest_id``'s command buffer from ``before`` (Python ints) changes
    that :func:`allowed` does not allow (``owner``: the GuestID whose stage 2 each DeviceID's DTE is), the
    private space's words aside; none when the step keeps the claim."""
    private, guest = _PrivateWrites(vi.TranslatedPrivateSpace(config)), _Stage2Uses()
    after, effect = vi.process_guest_command(INT, before, guest_id, private=private, guest=guest, choices=choices)
    host = rings.entry_address(INT, before.regs, rings.EVENT_LOG, rings.tail(INT, before.regs, rings.EVENT_LOG))
    old, new = before.memory, after.memory
    changed = {a for a in set(old) | set(new) if old.get(a, 0) != new.get(a, 0)} - private.written
    return sorted(a for a in changed
                  if not allowed(INT, a, guest_id, guest.uses, owner, host, effect.event.host_logged))
