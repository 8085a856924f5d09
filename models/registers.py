"""The IOMMU register file the models step: 48882 §3.4 "IOMMU MMIO Registers" (§3.4.1..§3.4.13).

:class:`Registers` holds the 64-bit values of the registers the command processor and the event
logger use, by name, as Python ints or backend terms. Fields are read and written only through the
register Structures of :mod:`amdvi.spec.mmio` (``regs.view(b, "status").EventOverflow``,
``regs.with_field(b, "status", "CmdBufRun", 0)``), never by hand-masked bits. Ring offsets and base
addresses are derived from the fields' ``unit_shift``. The by-name ring helpers below serve callers
that name one register (software, the state machine); the command processor and the event log
writer work on ring descriptors (:mod:`amdvi.models.rings`), which use the same arithmetic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from amdvi.spec.fields import FieldView, Structure
from amdvi.spec.mmio import (
    CMD_BUF_BAR, CMD_BUF_HEAD, CMD_BUF_TAIL, CONTROL, DEV_TAB_BAR, EVT_LOG_BAR, EVT_LOG_HEAD, EVT_LOG_TAIL,
    RING_WIDTH, STATUS, ring_bytes,
)
from amdvi.spec.records import replace as replace_record

REGISTER_STRUCTURES: Mapping[str, Structure] = {
    "dev_tab_bar": DEV_TAB_BAR,
    "cmd_buf_bar": CMD_BUF_BAR,
    "evt_log_bar": EVT_LOG_BAR,
    "control": CONTROL,
    "status": STATUS,
    "cmd_head": CMD_BUF_HEAD,
    "cmd_tail": CMD_BUF_TAIL,
    "evt_head": EVT_LOG_HEAD,
    "evt_tail": EVT_LOG_TAIL,
}
# the one field of each pointer register
POINTER_FIELD = {"cmd_head": "CmdHdPtr", "cmd_tail": "CmdTailPtr", "evt_head": "EventHdPtr", "evt_tail": "EventTailPtr"}
REGISTER_WIDTH = 64


@dataclass(frozen=True)
class Registers:
    """Register values by name (64-bit ints or 64-bit terms); unset registers read 0."""

    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = dict.fromkeys(
        ("dev_tab_bar", "cmd_buf_bar", "evt_log_bar", "control", "status", "cmd_head", "cmd_tail", "evt_head",
         "evt_tail"), REGISTER_WIDTH)

    dev_tab_bar: Any = 0
    cmd_buf_bar: Any = 0
    evt_log_bar: Any = 0
    control: Any = 0
    status: Any = 0
    cmd_head: Any = 0
    cmd_tail: Any = 0
    evt_head: Any = 0
    evt_tail: Any = 0

    def replace(self, **values: Any) -> "Registers":
        """A copy with the named registers replaced."""
        return replace_record(self, **values)

    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self))

    def view(self, b: Any, name: str) -> FieldView:
        """Field view of one register through its mmio Structure."""
        return REGISTER_STRUCTURES[name].view(getattr(self, name), b)

    def with_field(self, b: Any, name: str, field: str, value: Any) -> "Registers":
        """A copy with one field of one register replaced (``value`` is the raw field value)."""
        f = REGISTER_STRUCTURES[name].field(field)
        if f is None:
            raise KeyError(f"{name} has no field {field!r}")
        word = b.deposit(getattr(self, name), f.hi, f.lo, value, REGISTER_WIDTH)
        return self.replace(**{name: word})

    def field_value(self, b: Any, name: str, field: str) -> Any:
        """The raw value of one (plain) field of register ``name``: what ``view(b, name)[field]`` reads,
        without building a view (the command processor reads a few at every step)."""
        f = REGISTER_STRUCTURES[name].field(field)
        if f is None:
            raise KeyError(f"{name} has no field {field!r}")
        return f.read(getattr(self, name), b)

    def set_flag_when(self, b: Any, name: str, field: str, cond: Any) -> "Registers":
        """A copy whose one-bit ``field`` is set where ``cond`` holds and kept otherwise."""
        old = self.field_value(b, name, field)
        return self.with_field(b, name, field, b.ite(cond, b.const(1, 1), old, 1))

    def clear_flag_when(self, b: Any, name: str, field: str, cond: Any) -> "Registers":
        """A copy whose one-bit ``field`` is cleared where ``cond`` holds and kept otherwise."""
        old = self.field_value(b, name, field)
        return self.with_field(b, name, field, b.ite(cond, b.const(0, 1), old, 1))

    def flag(self, b: Any, name: str, field: str) -> Any:
        """Backend boolean: the one-bit ``field`` of register ``name`` is 1."""
        return b.eq(self.field_value(b, name, field), 1)


def field_address(b: Any, structure: Structure, view: FieldView, field: str, width: int = REGISTER_WIDTH) -> Any:
    """The value a field stands for, ``raw << unit_shift``, as a ``width``-bit vector."""
    f = structure.field(field)
    return b.shl(b.zext(view[field], width), f.unit_shift, width)


def base_address(b: Any, regs: Registers, bar: str, field: str) -> Any:
    """64-bit system physical address of a ring (ComBase / EventBase, 4 KiB aligned)."""
    return field_address(b, REGISTER_STRUCTURES[bar], regs.view(b, bar), field)


def ring_offset(b: Any, regs: Registers, pointer: str) -> Any:
    """Byte offset a head or tail pointer register holds (RING_WIDTH bits)."""
    return field_address(b, REGISTER_STRUCTURES[pointer], regs.view(b, pointer), POINTER_FIELD[pointer], RING_WIDTH)


def ring_size(b: Any, regs: Registers, bar: str, len_field: str) -> Any:
    """Ring size in bytes, 2^len x 16 (RING_WIDTH bits)."""
    return ring_bytes(regs.view(b, bar)[len_field], b)


def advance(b: Any, offset: Any, size: Any, step: int) -> Any:
    """``(offset + step) mod size`` for a power-of-two ``size`` (RING_WIDTH bits)."""
    return b.band(b.add(offset, b.const(step, RING_WIDTH), RING_WIDTH), b.sub(size, b.const(1, RING_WIDTH), RING_WIDTH))


def with_ring_offset(b: Any, regs: Registers, pointer: str, offset: Any) -> Registers:
    """``regs`` with a head/tail pointer register holding byte offset ``offset``."""
    f = REGISTER_STRUCTURES[pointer].field(POINTER_FIELD[pointer])
    raw = b.extract(b.lshr(offset, b.const(f.unit_shift, RING_WIDTH), RING_WIDTH), f.width - 1, 0)
    return regs.with_field(b, pointer, POINTER_FIELD[pointer], raw)
