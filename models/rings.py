"""Rings in memory shared by software and the IOMMU, as descriptors: 48882 §3.4.2/§3.4.3 (the command
buffer and event log base registers: a 4 KiB aligned base and log2 of the 16-byte entries) and
§3.4.9-§3.4.12 (their head and tail pointers).

A :class:`Ring` names where its registers are (attributes of a register file such as
:class:`~amdvi.models.registers.Registers`) and which field of each holds what; the arithmetic over
it (the entry at the head or the tail, advancing modulo the ring, empty, full) is written once here
over the backend. So the command processor and the event log writer work on any ring: the IOMMU's
own (:data:`COMMAND_BUFFER`, :data:`EVENT_LOG`), or another register set's, such as the per-guest
command buffers and logs of a HW-vIOMMU.

The producer owns the tail and the consumer the head; the ring is empty when head == tail and full
when advancing the tail would reach the head (one entry is always left free).

No PPR log ring is declared: spec/mmio.py has PPR_LOG_BAR but no PPR log head or tail register yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from amdvi.spec.bitvec import WORD_WIDTH
from amdvi.spec.commands import COMMAND_BYTES
from amdvi.spec.fields import Structure
from amdvi.spec.mmio import ENTRY_BYTES, RING_WIDTH, ring_bytes

EVENT_BYTES = ENTRY_BYTES  # an event record is 128 bits (48882 §2.5)

from .registers import REGISTER_STRUCTURES, REGISTER_WIDTH, advance


@dataclass(frozen=True)
class Ring:
    """Where a ring's base, length, head and tail are: a register (an attribute of the register file)
    and the field of its Structure that holds each."""

    name: str
    base_register: str
    base_field: str  # address >> 12 (the field's unit_shift)
    length_field: str  # log2 of the entries, in the base register
    head_register: str
    head_field: str  # byte offset >> 4
    tail_register: str
    tail_field: str
    entry_bytes: int = ENTRY_BYTES
    base_structure: Structure | None = None  # None: REGISTER_STRUCTURES[base_register]
    head_structure: Structure | None = None
    tail_structure: Structure | None = None

    def structure(self, register: str) -> Structure:
        """The Structure of one of this ring's registers."""
        return self._structures[register]

    @cached_property
    def _structures(self) -> dict[str, Structure]:
        """Each of the ring's registers' Structure (looked up at every pointer read: found once)."""
        given = {self.base_register: self.base_structure, self.head_register: self.head_structure,
                 self.tail_register: self.tail_structure}
        return {r: s if s is not None else REGISTER_STRUCTURES[r] for r, s in given.items()}


def ring_of(name: str, base_register: str, head_register: str, tail_register: str, *, entry_bytes: int = ENTRY_BYTES,
            base: Structure | None = None, head: Structure | None = None, tail: Structure | None = None) -> Ring:
    """A ring whose field names are read off its register Structures (``base``, ``head``, ``tail``;
    by default those of :data:`REGISTER_STRUCTURES`): a base register's named fields are its base
    address and its length, lowest first (spec.mmio ``_ring_register``); a pointer register has one."""
    bar = base if base is not None else REGISTER_STRUCTURES[base_register]
    head_s = head if head is not None else REGISTER_STRUCTURES[head_register]
    tail_s = tail if tail is not None else REGISTER_STRUCTURES[tail_register]
    base_field, length_field = (f.name for f in bar.named_fields)
    (head_field,), (tail_field,) = ((f.name for f in s.named_fields) for s in (head_s, tail_s))
    return Ring(name, base_register, base_field, length_field, head_register, head_field, tail_register, tail_field,
                entry_bytes, base_structure=base, head_structure=head, tail_structure=tail)


COMMAND_BUFFER = ring_of("command buffer", "cmd_buf_bar", "cmd_head", "cmd_tail", entry_bytes=COMMAND_BYTES)
EVENT_LOG = ring_of("event log", "evt_log_bar", "evt_head", "evt_tail", entry_bytes=EVENT_BYTES)


def _field(b: Any, regs: Any, ring: Ring, register: str, field: str) -> Any:
    return ring.structure(register).field(field).read(getattr(regs, register), b)


def _scaled(b: Any, ring: Ring, register: str, field: str, raw: Any, width: int) -> Any:
    """``raw << unit_shift``: the address or byte offset a field stands for."""
    return b.shl(b.zext(raw, width), ring.structure(register).field(field).unit_shift, width)


def base(b: Any, regs: Any, ring: Ring) -> Any:
    """64-bit system physical address of the ring."""
    return _scaled(b, ring, ring.base_register, ring.base_field,
                   _field(b, regs, ring, ring.base_register, ring.base_field), WORD_WIDTH)


def size(b: Any, regs: Any, ring: Ring) -> Any:
    """The ring's size in bytes, 2^len entries of 16 bytes (RING_WIDTH bits)."""
    return ring_bytes(_field(b, regs, ring, ring.base_register, ring.length_field), b)


def head(b: Any, regs: Any, ring: Ring) -> Any:
    """Byte offset of the head (RING_WIDTH bits)."""
    return _scaled(b, ring, ring.head_register, ring.head_field,
                   _field(b, regs, ring, ring.head_register, ring.head_field), RING_WIDTH)


def tail(b: Any, regs: Any, ring: Ring) -> Any:
    """Byte offset of the tail (RING_WIDTH bits)."""
    return _scaled(b, ring, ring.tail_register, ring.tail_field,
                   _field(b, regs, ring, ring.tail_register, ring.tail_field), RING_WIDTH)


def entry_address(b: Any, regs: Any, ring: Ring, offset: Any) -> Any:
    """64-bit address of the entry at byte ``offset`` of the ring."""
    return b.add(base(b, regs, ring), b.zext(offset, WORD_WIDTH), WORD_WIDTH)


def next_offset(b: Any, regs: Any, ring: Ring, offset: Any) -> Any:
    """The offset one entry past ``offset``, wrapping at the end of the ring."""
    return advance(b, offset, size(b, regs, ring), ring.entry_bytes)


def is_empty(b: Any, regs: Any, ring: Ring) -> Any:
    """Backend boolean: head == tail (nothing for the consumer)."""
    return b.eq(head(b, regs, ring), tail(b, regs, ring))


def is_full(b: Any, regs: Any, ring: Ring) -> Any:
    """Backend boolean: advancing the tail would reach the head (no room for the producer)."""
    return b.eq(next_offset(b, regs, ring, tail(b, regs, ring)), head(b, regs, ring))


def _with_pointer(b: Any, regs: Any, ring: Ring, register: str, field: str, offset: Any) -> Any:
    f = ring.structure(register).field(field)
    raw = b.extract(b.lshr(offset, b.const(f.unit_shift, RING_WIDTH), RING_WIDTH), f.width - 1, 0)
    word = b.deposit(getattr(regs, register), f.hi, f.lo, raw, REGISTER_WIDTH)
    return regs.replace(**{register: word})


def with_head(b: Any, regs: Any, ring: Ring, offset: Any) -> Any:
    """``regs`` with the ring's head at byte ``offset``."""
    return _with_pointer(b, regs, ring, ring.head_register, ring.head_field, offset)


def with_tail(b: Any, regs: Any, ring: Ring, offset: Any) -> Any:
    """``regs`` with the ring's tail at byte ``offset``."""
    return _with_pointer(b, regs, ring, ring.tail_register, ring.tail_field, offset)
