"""Rings as descriptors (48882 §3.4.2/§3.4.3, §3.4.9-§3.4.12): the IOMMU's own rings are read off the
mmio Structures, and the same command processor and event log writer run a second ring kept in other
registers (as a HW-vIOMMU's per-guest command buffer and event log will be)."""

from dataclasses import dataclass
from typing import Any

import z3

from amdvi.models import rings
from amdvi.models.command_buffer import pending, step_command
from amdvi.models.event_log import log_event
from amdvi.models.registers import Registers
from amdvi.models.rings import COMMAND_BUFFER, EVENT_LOG, ring_of
from amdvi.spec.bitvec import INT, Z3, mask
from amdvi.spec.commands import COMPLETION_WAIT
from amdvi.spec.events import ILLEGAL_COMMAND_ERROR
from amdvi.spec.mmio import (
    CMD_BUF_BAR, CMD_BUF_HEAD, CMD_BUF_TAIL, CONTROL, EVT_LOG_BAR, EVT_LOG_HEAD, EVT_LOG_TAIL, STATUS,
)

HOST_CMD, GUEST_CMD, GUEST_EVT = 0x10_0000, 0x40_0000, 0x50_0000
RING = 256 * 16  # length field 8
SEM = 0x30_0008


@dataclass(frozen=True)
class WithGuestRings(Registers):
    """The IOMMU's registers and a guest's command buffer and event log registers (names of our own)."""

    guest_cmd_bar: Any = 0
    guest_cmd_head: Any = 0
    guest_cmd_tail: Any = 0
    guest_evt_bar: Any = 0
    guest_evt_head: Any = 0
    guest_evt_tail: Any = 0


GUEST_COMMANDS = ring_of("guest command buffer", "guest_cmd_bar", "guest_cmd_head", "guest_cmd_tail",
                         base=CMD_BUF_BAR, head=CMD_BUF_HEAD, tail=CMD_BUF_TAIL)
GUEST_EVENTS = ring_of("guest event log", "guest_evt_bar", "guest_evt_head", "guest_evt_tail",
                       base=EVT_LOG_BAR, head=EVT_LOG_HEAD, tail=EVT_LOG_TAIL)


def regs(guest_tail=16, host_tail=0):
    return WithGuestRings(
        cmd_buf_bar=CMD_BUF_BAR.encode(ComBase=HOST_CMD >> 12, ComLen=8),
        cmd_tail=CMD_BUF_TAIL.encode(CmdTailPtr=host_tail >> 4),
        control=CONTROL.encode(CmdBufEn=1, EventLogEn=1),
        status=STATUS.encode(CmdBufRun=1, EventLogRun=1),
        guest_cmd_bar=CMD_BUF_BAR.encode(ComBase=GUEST_CMD >> 12, ComLen=8),
        guest_cmd_tail=CMD_BUF_TAIL.encode(CmdTailPtr=guest_tail >> 4),
        guest_evt_bar=EVT_LOG_BAR.encode(EventBase=GUEST_EVT >> 12, EventLen=8),
    )


def place(base, bits, offset=0, memory=None):
    mem = dict(memory or {})
    mem[base + offset], mem[base + offset + 8] = bits & mask(64), bits >> 64
    return mem


def test_the_iommu_rings_are_read_off_the_mmio_structures():
    assert (COMMAND_BUFFER.base_field, COMMAND_BUFFER.length_field) == ("ComBase", "ComLen")
    assert (COMMAND_BUFFER.head_field, COMMAND_BUFFER.tail_field) == ("CmdHdPtr", "CmdTailPtr")
    assert (EVENT_LOG.base_field, EVENT_LOG.length_field) == ("EventBase", "EventLen")
    assert (EVENT_LOG.head_field, EVENT_LOG.tail_field) == ("EventHdPtr", "EventTailPtr")
    assert COMMAND_BUFFER.entry_bytes == EVENT_LOG.entry_bytes == 16


def test_a_guest_ring_in_other_registers_is_processed_by_the_same_code():
    cw = COMPLETION_WAIT.encode({"S": 1, "Store Address": SEM >> COMPLETION_WAIT.field("Store Address").unit_shift, "Store Data": 7})
    r0 = regs()
    assert pending(INT, r0, GUEST_COMMANDS) and not pending(INT, r0)
    mem, r, e = step_command(INT, place(GUEST_CMD, cw), r0, ring=GUEST_COMMANDS, event_log=GUEST_EVENTS)
    assert e.processed and e.address == GUEST_CMD and mem[SEM] == 7
    assert rings.head(INT, r, GUEST_COMMANDS) == 16 and rings.is_empty(INT, r, GUEST_COMMANDS)
    assert r.cmd_head == r0.cmd_head and r.cmd_tail == r0.cmd_tail  # the IOMMU's own ring untouched


def test_an_illegal_guest_command_is_logged_in_the_guest_event_log():
    r0 = regs(guest_tail=0x20).replace(guest_cmd_head=CMD_BUF_HEAD.encode(CmdHdPtr=1))
    mem, r, e = step_command(INT, place(GUEST_CMD, 0, offset=0x10), r0, ring=GUEST_COMMANDS, event_log=GUEST_EVENTS)
    assert e.illegal and rings.head(INT, r, GUEST_COMMANDS) == 0x10  # stopped at the bad command
    record = ILLEGAL_COMMAND_ERROR.encode(Address=GUEST_CMD + 0x10)
    assert mem[GUEST_EVT] == record & mask(64) and mem[GUEST_EVT + 8] == record >> 64
    assert rings.tail(INT, r, GUEST_EVENTS) == 16 and r.evt_tail == r0.evt_tail


def test_two_register_values_are_two_independent_rings():
    cw = COMPLETION_WAIT.encode({"S": 1, "Store Address": SEM >> COMPLETION_WAIT.field("Store Address").unit_shift, "Store Data": 9})
    host = regs(guest_tail=0, host_tail=16)
    mem, r, e = step_command(INT, place(HOST_CMD, cw), host)
    assert e.processed and e.address == HOST_CMD and mem[SEM] == 9
    assert rings.head(INT, r, COMMAND_BUFFER) == 16 and rings.head(INT, r, GUEST_COMMANDS) == 0


def test_ring_arithmetic_wraps_and_agrees_on_both_backends():
    r = regs(guest_tail=RING - 16)
    assert rings.next_offset(INT, r, GUEST_COMMANDS, RING - 16) == 0
    assert rings.is_full(INT, r.replace(guest_cmd_head=0), GUEST_COMMANDS)
    head, tail = z3.BitVec("head", 64), z3.BitVec("tail", 64)
    sym = r.replace(guest_cmd_head=head, guest_cmd_tail=tail)
    s = z3.Solver()
    # one entry is always left free: a full ring is never empty
    s.add(rings.is_full(Z3, sym, GUEST_COMMANDS), rings.is_empty(Z3, sym, GUEST_COMMANDS))
    assert s.check() == z3.unsat
    logged, _ = log_event(INT, {}, r.replace(evt_log_bar=EVT_LOG_BAR.encode(EventBase=0x60, EventLen=8)),
                          ILLEGAL_COMMAND_ERROR.encode(Address=0))
    assert min(logged) == 0x60 << 12
