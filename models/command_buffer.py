"""The command processor, one command at a time: 48882 §2.4 "Commands" (§2.4.1 COMPLETION_WAIT; section
numbers as in ``amdvi.spec.commands``), with the registers of §3.4.2 (CMD_BUF_BAR), §3.4.4 (CONTROL),
§3.4.9/§3.4.10 (CMD_BUF_HEAD/TAIL) and §3.4.13 (STATUS).

Every function is written once over the backend ``b`` (no Python branching on data).

* :func:`pending` -- there is a command to process: Control.CmdBufEn = 1, Status.CmdBufRun = 1 and
  head != tail. Modelling choice: Status.CmdBufRun is kept as state; it is cleared when an illegal
  command is found and only software (re-enabling CmdBufEn, not modelled here) sets it again.
* :func:`fetch_command` -- the 128-bit command at ComBase + head (Q0 at the lower address).
* :func:`check_command` -- the command is illegal (ILLEGAL_COMMAND_ERROR): an undefined opcode (00h,
  0Bh-0Fh) or any violated rule of its opcode's Structure (reserved bits, EFR feature rules whose
  ``EFR.*`` keys are in ``context``). Derived from :data:`COMMANDS_BY_OPCODE` only.
* :func:`step_command` -- process ONE command (see its docstring).

Left for the cache model: applying the invalidations and prefetches the :class:`Effect` names, the
COMPLETION_WAIT F bit, the IOTLB invalidation timeout, COMMAND_HARDWARE_ERROR on fetch failures.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping

from amdvi.spec.bitvec import INT, WORD_WIDTH
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.commands import (
    COMMANDS_BY_OPCODE, COMPLETION_WAIT, OPCODE_HI, OPCODE_LO,
)
from amdvi.spec.events import ILLEGAL_COMMAND_ERROR
from amdvi.spec.fields import Structure
from amdvi.spec.mmio import RING_WIDTH

from . import rings
from .event_log import log_event
from .registers import Registers, field_address
from .rings import COMMAND_BUFFER, EVENT_LOG, Ring

COMMAND_WIDTH = 128
OPCODE_WIDTH = OPCODE_HI - OPCODE_LO + 1


@dataclass(frozen=True)
class Effect:
    """What one step did, for the cache model to apply (backend values).

    ``processed``: a legal command was consumed (head advanced); ``illegal``: an illegal command was
    found (ILLEGAL_COMMAND_ERROR logged if the event log allowed it, CmdBufRun cleared, head kept);
    neither: nothing was pending. ``command``/``opcode``/``address`` describe the fetched command
    (meaningful when ``processed`` or ``illegal``). COMPLETION_WAIT's own effect: ``store`` (Store Data
    was written at ``store_address``) and ``interrupt`` (Status.ComWaitInt was set and
    Control.ComWaitIntEn = 1: the IOMMU raises its interrupt).
    """

    processed: Any
    illegal: Any
    opcode: Any
    command: Any
    address: Any
    store: Any
    store_address: Any
    store_data: Any
    interrupt: Any

    def is_command(self, b: Any, structure: Structure) -> Any:
        """Backend boolean: a legal ``structure`` command was processed."""
        return b.all_of(self.processed, b.eq(self.opcode, structure.field("Opcode").fixed))

    def fields(self, b: Any, structure: Structure) -> dict[str, Any]:
        """The command decoded as ``structure`` (meaningful where :meth:`is_command` holds)."""
        return structure.decode(self.command, b)

    def name(self) -> str | None:
        """Concrete only: the processed command's name, ``None`` when nothing legal was processed."""
        if not self.processed:
            return None
        return COMMANDS_BY_OPCODE[self.opcode].name


def pending(b: Any, regs: Registers, ring: Ring = COMMAND_BUFFER) -> Any:
    """Backend boolean: CmdBufEn = 1, CmdBufRun = 1 and the ring is not empty (head != tail)."""
    return b.all_of(
        regs.flag(b, "control", "CmdBufEn"),
        regs.flag(b, "status", "CmdBufRun"),
        b.ne(rings.head(b, regs, ring), rings.tail(b, regs, ring)),
    )


def fetch_command(b: Any, memory: Any, regs: Registers, ring: Ring = COMMAND_BUFFER) -> tuple[Any, Any]:
    """``(bits128, address)``: the command at the ring's base + head, Q0 at ``address``, Q1 at ``address + 8``."""
    address = rings.entry_address(b, regs, ring, rings.head(b, regs, ring))
    q0 = b.read64(memory, address)
    q1 = b.read64(memory, b.add(address, b.const(8, WORD_WIDTH), WORD_WIDTH))
    return b.concat((q1, WORD_WIDTH), (q0, WORD_WIDTH)), address


def check_command(b: Any, bits: Any, context: Mapping[str, Any] | None = None) -> Any:
    """Backend boolean: ``bits`` is an illegal command (undefined opcode or a broken rule of its Structure).

    For a symbolic opcode this is the if-then-else over :data:`COMMANDS_BY_OPCODE`, written as
    "no defined opcode matches, or the matching one has a violation". On Python ints the answer for a
    command value is remembered: a run processes the same few commands again and again, and checking
    every rule of every structure was most of a command step.
    """
    if b is INT and type(bits) is int:
        return _illegal_concrete(bits, tuple(sorted((context or {}).items())))
    return _check_command(b, bits, context)


@functools.lru_cache(maxsize=1 << 14)
def _illegal_concrete(bits: int, context: tuple[tuple[str, Any], ...]) -> Any:
    return _check_command(INT, bits, dict(context))


def _check_command(b: Any, bits: Any, context: Mapping[str, Any] | None) -> Any:
    opcode = b.extract(bits, OPCODE_HI, OPCODE_LO)
    matches, broken = [], []
    for op, structure in sorted(COMMANDS_BY_OPCODE.items()):
        is_op = b.eq(opcode, b.const(op, OPCODE_WIDTH))
        violated = b.any_of(*[v.condition for v in structure.check(bits, b, context or {})])
        matches.append(is_op)
        broken.append(b.all_of(is_op, violated))
    return b.any_of(b.lnot(b.any_of(*matches)), *broken)


def step_command(b: Any, memory: Any, regs: Registers, context: Mapping[str, Any] | None = None,
                 choices: Hardware = SPEC, ring: Ring = COMMAND_BUFFER,
                 event_log: Ring = EVENT_LOG) -> tuple[Any, Registers, Effect]:
    """Process ONE command of ``ring`` (by default the IOMMU's command buffer; a HW-vIOMMU guest's is
    another descriptor), logging into ``event_log``: ``(memory', regs', effect)``; nothing changes
    when nothing is :func:`pending`.

    * illegal (:func:`check_command`): ILLEGAL_COMMAND_ERROR with Address = the command's system
      physical address goes through :func:`log_event`; processing stops: Status.CmdBufRun is cleared
      and the head is NOT advanced, so the head still points at the bad command. That is the reading
      ``illegal_command="stop"`` (VirtualBox; the reference marks it unconfirmed); under
      ``"continue"`` (QEMU) the command is logged and skipped: the head advances, CmdBufRun stays.
    * legal: the head advances by 16 bytes modulo the ring (2^ComLen entries). A COMPLETION_WAIT also
      takes its own effect here: S = 1 writes the 64-bit Store Data at Store Address; I = 1 sets
      Status.ComWaitInt (and ``effect.interrupt`` when Control.ComWaitIntEn = 1). Other commands
      change nothing here; ``effect`` names them for the cache model.

    Ordering: COMPLETION_WAIT completes only after every earlier command has taken effect. In this
    sequential model that holds by construction (each earlier command was fully processed by an
    earlier step); a cache model that applies effects lazily or out of order must keep it.
    """
    bits, address = fetch_command(b, memory, regs, ring)
    go = pending(b, regs, ring)
    illegal = b.all_of(go, check_command(b, bits, context))
    ok = b.all_of(go, b.lnot(illegal))
    opcode = b.extract(bits, OPCODE_HI, OPCODE_LO)

    # illegal: log the event, stop the command processor
    record = ILLEGAL_COMMAND_ERROR.encode({"Address": address}, backend=b)
    memory, out = log_event(b, memory, regs, record, when=illegal, choices=choices, ring=event_log)
    stops = choices.illegal_command == "stop"
    if stops:
        out = out.clear_flag_when(b, "status", "CmdBufRun", illegal)

    # legal (or, when processing continues, illegal and skipped): advance the head
    head = rings.head(b, regs, ring)
    new_head = rings.next_offset(b, regs, ring, head)
    moves_on = ok if stops else go
    out = rings.with_head(b, out, ring, b.ite(moves_on, new_head, head, RING_WIDTH))

    # COMPLETION_WAIT's own effect
    cw = COMPLETION_WAIT.view(bits, b)
    is_cw = b.all_of(ok, b.eq(opcode, b.const(COMPLETION_WAIT.field("Opcode").fixed, OPCODE_WIDTH)))
    store = b.all_of(is_cw, b.eq(cw.S, 1))
    signal = b.all_of(is_cw, b.eq(cw.I, 1))
    store_address = field_address(b, COMPLETION_WAIT, cw, "Store Address")
    store_data = cw["Store Data"]
    if not b.known_false(store):  # (no store: memory stays, without copying it)
        memory = b.ite(store, b.write64(memory, store_address, store_data), memory)
    out = out.set_flag_when(b, "status", "ComWaitInt", signal)
    interrupt = b.all_of(signal, regs.flag(b, "control", "ComWaitIntEn"))

    effect = Effect(processed=ok, illegal=illegal, opcode=opcode, command=bits, address=address,
                    store=store, store_address=store_address, store_data=store_data, interrupt=interrupt)
    return memory, out, effect


def run_commands(b: Any, memory: Any, regs: Registers, steps: int, context: Mapping[str, Any] | None = None,
                 choices: Hardware = SPEC, ring: Ring = COMMAND_BUFFER,
                 event_log: Ring = EVENT_LOG) -> tuple[Any, Registers, list[Effect]]:
    """``steps`` applications of :func:`step_command` (a bounded run; steps past the end change nothing)."""
    effects = []
    for _ in range(steps):
        memory, regs, effect = step_command(b, memory, regs, context, choices, ring, event_log)
        effects.append(effect)
    return memory, regs, effects
