"""Cross-guest isolation of HW-vIOMMU guest commands, proved with Z3 against an adversarial guest.

Claim: whatever a guest writes into its command buffer (any 128 bits at its head, any head and tail,
any memory), a command the vIOMMU carries out for guest ``g`` (``models.viommu.process_guest_command``)
names only host DeviceIDs and DomainIDs the hypervisor mapped for ``g``, and reaches guest memory only
through ``g``'s own stage 2 (the DTE of ``g``'s translate DeviceID).

The query is **parametric**: ``g`` is a symbolic GuestID (1 <= g < the number of guests), the private
address space is an uninterpreted memory, and ownership is three uninterpreted functions (which guest
owns a host DeviceID, a host DomainID, a translate DeviceID). What the hypervisor guarantees is the
invariant, assumed at every private word the step reads (each an instance of a universal statement,
so no quantifier reaches the solver):

* a valid DeviceID (DomainID) map entry in guest ``h``'s table names a host ID that ``h`` owns (the
  table's owner is read off the entry's private address); a DeviceID entry naming host 0 is a cleared
  one (``Hardware.viommu_devid_zero``) and is not assumed owned;
* guest ``h``'s MMIO block names a translate DeviceID that ``h`` owns.

It rests on the private address space being a memory of its own (distinct private pages on distinct
system pages, which ``models.viommu_host.private_pages_distinct`` checks for a concrete set-up) and on
the guest having no store into it (it is not in any guest's stage 2).

Each broken model of ``Hardware`` (``viommu_domain_map_shared``, ``viommu_device_id_untranslated``)
refutes it, with the GuestID, the command and the host ID reached.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import z3

from amdvi.models import viommu as vi
from amdvi.models.command_buffer import COMMAND_WIDTH
from amdvi.models.iommu import IN_FLIGHT, IommuState, InFlight, any_in_flight
from amdvi.models.registers import Registers
from amdvi.spec import viommu as V
from amdvi.spec.bitvec import INT, Z3
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.commands import COMMANDS_BY_OPCODE, OPCODE_HI, OPCODE_LO
from amdvi.models.caches import Caches

from .proof import ProofResult, Witness, prove

ID = z3.BitVecSort(16)


@dataclass
class AdversarialPrivateSpace:
    """The private address space as any memory (an uninterpreted function of the private address);
    each read is noted so the hypervisor's invariant can be assumed there. A step's own writes are not
    kept: the claim is about what the step reads and does."""

    memory: Any = field(default_factory=lambda: Z3.memory_function("private"))
    reads: list[tuple[Any, Any]] = field(default_factory=list)

    def read(self, b: Any, state: Any, ipa: Any, choices: Hardware) -> tuple[Any, Any]:
        value = b.read64(self.memory, ipa)
        self.reads.append((ipa, value))
        return b.true(), value

    def write(self, b: Any, state: Any, ipa: Any, value: Any, when: Any, choices: Hardware) -> Any:
        return state


@dataclass
class AdversarialGuestSpace:
    """Guest physical addresses translate anywhere, through the DTE of whichever DeviceID is named;
    each use is noted (the DeviceID), so the claim can say whose stage 2 it was."""

    uses: list[Any] = field(default_factory=list)
    count: itertools.count = field(default_factory=itertools.count)

    def address(self, b: Any, state: Any, device_id: Any, gpa: Any, write: bool, choices: Hardware) -> tuple[Any, Any]:
        n = next(self.count)
        self.uses.append(device_id)
        return z3.Bool(f"gpa_ok_{n}"), z3.BitVec(f"gpa_spa_{n}", 64)


def _owner_of_entry(address: Any, region: V.Region) -> tuple[Any, Any]:
    """(the address is in ``region``'s tables, the GuestID whose table it is)."""
    span = V.MAX_GUESTS * region.per_guest
    inside = z3.And(z3.UGE(address, region.base), z3.ULT(address, region.base + span))
    owner = z3.Extract(15, 0, z3.LShR(address - region.base, region.per_guest.bit_length() - 1))
    return inside, owner


def hypervisor_invariant(reads: list[tuple[Any, Any]], owns_device: Any, owns_domain: Any,
                         owns_translate: Any) -> list[Any]:
    """The hypervisor's invariant at each private word read (see the module docstring)."""
    out = []
    for ipa, value in reads:
        for region, entry, host, owns in ((V.DEVID_MAP, V.DEVID_MAP_ENTRY, "HostDeviceID", owns_device),
                                          (V.DOMID_MAP, V.DOMID_MAP_ENTRY, "HostDomainID", owns_domain)):
            inside, owner = _owner_of_entry(ipa, region)
            view = entry.view(z3.ZeroExt(entry.width - 64, value) if entry.width > 64 else value, Z3)
            named = view[host] != 0 if entry is V.DEVID_MAP_ENTRY else z3.BoolVal(True)  # 0: cleared (a reading)
            out.append(z3.Implies(z3.And(inside, view.V == 1, named), owns(view[host]) == owner))
        block_inside = z3.ULT(ipa, V.GUEST_MMIO.base + V.MAX_GUESTS * V.VFCTRL_BLOCK_BYTES)
        block_owner = z3.Extract(15, 0, z3.LShR(ipa - V.GUEST_MMIO.base, 6))
        is_misc = (z3.Extract(5, 0, ipa) == 0x10)
        translate = V.MISC_CONTROL.view(value, Z3).TranslateDeviceID
        out.append(z3.Implies(z3.And(block_inside, is_misc), owns_translate(translate) == block_owner))
    return out


@dataclass(frozen=True)
class Query:
    """The symbolic step and what the result refers to (for reading a counterexample)."""

    guest_id: Any
    effect: vi.GuestEffect
    guest_uses: tuple[Any, ...]
    owns_device: Any
    owns_domain: Any
    owns_translate: Any
    private_memory: Any  # the private address space the step read
    in_flight_before: Any  # an invalidation was in flight when the step began
    private_reads: tuple[Any, ...] = ()  # the private addresses the step read
    state: Any = None  # the symbolic state the step began in


def build(guests: int, choices: Hardware = SPEC) -> tuple[list[Any], Any, Query]:
    """(assumptions, claim, query) for a step of any guest 1..guests (see the module docstring)."""
    if not 2 <= guests < V.MAX_GUESTS:
        raise ValueError(f"guests: between 2 and {V.MAX_GUESTS - 1} (GuestIDs 1 to guests; 0 is never a guest's)")
    g = z3.BitVec("guest_id", 16)
    owns_device, owns_domain, owns_translate = (z3.Function(n, ID, ID) for n in
                                                ("owner_of_device", "owner_of_domain", "owner_of_translate_id"))
    in_flight = tuple(InFlight(valid=z3.Bool(f"in_flight_{i}"), command=z3.BitVec(f"in_flight_cmd_{i}", COMMAND_WIDTH))
                      for i in range(IN_FLIGHT))
    state = IommuState(memory=Z3.memory_function("memory"), regs=Registers(), caches=Caches.empty(),
                       in_flight=in_flight)
    private, guest = AdversarialPrivateSpace(), AdversarialGuestSpace()
    _, effect = vi.process_guest_command(Z3, state, g, private=private, guest=guest, choices=choices)
    assumptions = [z3.UGE(g, 1), z3.ULE(g, guests)] + hypervisor_invariant(private.reads, owns_device, owns_domain,
                                                                           owns_translate)
    carried = z3.Or(effect.processed, effect.blocked)
    claim = z3.And(
        z3.Implies(z3.And(carried, effect.names_device), owns_device(effect.device) == g),
        z3.Implies(z3.And(carried, effect.names_domain), owns_domain(effect.domain) == g),
        *[z3.Implies(carried, owns_translate(d) == g) for d in guest.uses],
    )
    return assumptions, claim, Query(g, effect, tuple(guest.uses), owns_device, owns_domain, owns_translate,
                                     private.memory, any_in_flight(Z3, state), tuple(a for a, _ in private.reads), state)


def prove_command_isolation(guests: int = 8, *, choices: Hardware = SPEC, timeout_ms: int = 120_000) -> ProofResult:
    """Prove the claim for every guest of ``guests`` at once (a symbolic GuestID)."""
    assumptions, claim, q = build(guests, choices)
    e = q.effect
    witnesses = [Witness("a guest invalidation naming a mapped domain is carried out",
                         z3.And(e.accepted, e.names_domain)),
                 Witness("a guest invalidation naming a mapped device is carried out",
                         z3.And(e.accepted, e.names_device)),
                 Witness("a guest COMPLETION_WAIT stores into guest memory", e.store)]
    result = prove(f"vIOMMU cross-guest command isolation ({guests} guests)", assumptions, claim,
                   witnesses=witnesses, timeout_ms=timeout_ms)
    if result.model is not None:
        replayed = replay(result.model, q, choices)
        verdict = "replayed on Python ints: it reproduces" if replayed else "replay on Python ints does NOT reproduce"
        result = ProofResult(result.name, result.status, result.seconds, f"{describe(result.model, q)} ({verdict})",
                             result.model, evidence=q)
    return result


@dataclass
class ConcretePrivateSpace:
    words: dict[int, int]

    def read(self, b: Any, state: Any, ipa: int, choices: Hardware) -> tuple[bool, int]:
        return True, self.words.get(ipa, 0)

    def write(self, b: Any, state: Any, ipa: int, value: int, when: Any, choices: Hardware) -> Any:
        return state


@dataclass
class ConcreteGuestSpace:
    answers: list[tuple[bool, int]]
    uses: list[int] = field(default_factory=list)

    def address(self, b: Any, state: Any, device_id: int, gpa: int, write: bool, choices: Hardware) -> tuple[bool, int]:
        self.uses.append(device_id)
        return self.answers[len(self.uses) - 1]


def replay(model: z3.ModelRef, q: Query, choices: Hardware) -> bool:
    """Run the counterexample's inputs through ``process_guest_command`` on Python ints (the same code,
    the other backend) and say whether the claim fails there too."""
    value = lambda x: model.eval(x, model_completion=True)  # noqa: E731
    number = lambda x: value(x).as_long()  # noqa: E731
    private = ConcretePrivateSpace({number(a): number(Z3.read64(q.private_memory, a)) for a in q.private_reads})
    answers = [(z3.is_true(value(z3.Bool(f"gpa_ok_{n}"))), number(z3.BitVec(f"gpa_spa_{n}", 64)))
               for n in range(len(q.guest_uses))]
    guest = ConcreteGuestSpace(answers)
    spa = answers[0][1]
    memory = {a: number(Z3.read64(q.state.memory, z3.BitVecVal(a, 64))) for a in (spa, (spa + 8) % (1 << 64))}
    in_flight = tuple(InFlight(valid=z3.is_true(value(e.valid)), command=number(e.command)) for e in q.state.in_flight)
    state = IommuState(memory=memory, regs=Registers(), caches=Caches.empty(), in_flight=in_flight)
    g = number(q.guest_id)
    _, e = vi.process_guest_command(INT, state, g, private=private, guest=guest, choices=choices)
    owner = lambda f, x: number(f(z3.BitVecVal(x, 16)))  # noqa: E731
    carried = e.processed or e.blocked
    return carried and ((e.names_device and owner(q.owns_device, e.device) != g)
                        or (e.names_domain and owner(q.owns_domain, e.domain) != g)
                        or any(owner(q.owns_translate, d) != g for d in guest.uses))


def describe(model: z3.ModelRef, q: Query) -> str:
    """A counterexample in words: which guest, which command, which host ID it reached, whose it is."""
    value = lambda x: model.eval(x, model_completion=True).as_long()  # noqa: E731
    g = value(q.guest_id)
    command = value(q.effect.guest_command)
    opcode = (command >> OPCODE_LO) & ((1 << (OPCODE_HI - OPCODE_LO + 1)) - 1)
    name = COMMANDS_BY_OPCODE[opcode].name if opcode in COMMANDS_BY_OPCODE else f"opcode {opcode:#x}"
    parts = [f"guest {g} issues {name} ({command:#034x})"]
    if z3.is_true(model.eval(q.effect.names_device, model_completion=True)):
        d = value(q.effect.device)
        parts.append(f"it takes effect on host DeviceID {d:#06x}, which guest {value(q.owns_device(d))} owns")
    if z3.is_true(model.eval(q.effect.names_domain, model_completion=True)):
        d = value(q.effect.domain)
        parts.append(f"it takes effect on host DomainID {d:#06x}, which guest {value(q.owns_domain(d))} owns")
    return "; ".join(parts)
