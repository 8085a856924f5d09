"""Known answers for the event log writer (48882 §2.5; registers §3.4.3, §3.4.11-§3.4.13)."""

import z3

import amdvi.models.event_log as event_log
from amdvi.models.event_log import log_event
from amdvi.models.registers import Registers
from amdvi.spec.bitvec import INT, Z3
from amdvi.spec.events import ILLEGAL_COMMAND_ERROR
from amdvi.spec.mmio import CONTROL, EVT_LOG_BAR, EVT_LOG_HEAD, EVT_LOG_TAIL, STATUS

EVT_BASE = 0x20_0000
RING = 256 * 16  # EventLen = 8
RECORD = ILLEGAL_COMMAND_ERROR.encode(Address=0x10_0040)
Q0, Q1 = RECORD & (2**64 - 1), RECORD >> 64


def regs(tail=0, head=0, enabled=1, overflow=0):
    return Registers(
        evt_log_bar=EVT_LOG_BAR.encode(EventBase=EVT_BASE >> 12, EventLen=8),
        control=CONTROL.encode(EventLogEn=enabled),
        status=STATUS.encode(EventLogRun=enabled, EventOverflow=overflow),
        evt_head=EVT_LOG_HEAD.encode(EventHdPtr=head >> 4),
        evt_tail=EVT_LOG_TAIL.encode(EventTailPtr=tail >> 4),
    )


def status(r):
    return r.view(INT, "status")


def tail_of(r):
    return r.view(INT, "evt_tail").EventTailPtr << 4


def test_record_written_low_word_first_and_tail_advances():
    mem, r = log_event(INT, {}, regs(tail=0x40, head=0), RECORD)
    assert mem == {EVT_BASE + 0x40: Q0, EVT_BASE + 0x48: Q1}
    assert Q0 >> 60 == 0x5 and Q1 == 0x10_0040
    assert tail_of(r) == 0x50
    assert status(r).EventLogInt == 1 and status(r).EventOverflow == 0


def test_tail_wraps_to_zero():
    mem, r = log_event(INT, {}, regs(tail=RING - 16, head=0x100), RECORD)
    assert mem == {EVT_BASE + RING - 16: Q0, EVT_BASE + RING - 8: Q1}
    assert tail_of(r) == 0


def full_log_problems(log=log_event):
    """What a log writer gets wrong about a full log, an overflowed one and a disabled one."""
    problems = []
    before = {EVT_BASE + 0x30: 0xAAAA}
    # full: advancing the tail (0x30 -> 0x40) would reach the head
    mem, r = log(INT, before, regs(tail=0x30, head=0x40), RECORD)
    if mem != before or tail_of(r) != 0x30:
        problems.append("full log: record written")
    if status(r).EventOverflow != 1:
        problems.append("full log: EventOverflow not set")
    if status(r).EventLogInt != 0:
        problems.append("full log: EventLogInt set")
    # wrap-around full: tail at the last entry, head at 0
    mem, r = log(INT, {}, regs(tail=RING - 16, head=0), RECORD)
    if mem != {} or status(r).EventOverflow != 1:
        problems.append("full log at the wrap: not dropped")
    # EventOverflow already set, log not full: still nothing written
    mem, r = log(INT, {}, regs(tail=0x30, head=0x100, overflow=1), RECORD)
    if mem != {} or tail_of(r) != 0x30:
        problems.append("overflowed log: record written")
    return problems


def test_full_log_drops_record_and_sets_overflow():
    assert full_log_problems() == []


def test_broken_full_check_is_caught(monkeypatch):
    """A writer that forgets the full condition (or the overflow bit) fails the checks above."""
    real = event_log.event_log_state

    def forgets_full(b, r, *ring):
        return {**real(b, r, *ring), "full": b.false()}

    monkeypatch.setattr(event_log, "event_log_state", forgets_full)
    problems = full_log_problems(event_log.log_event)
    assert "full log: record written" in problems and "full log: EventOverflow not set" in problems

    def forgets_overflow_bit(b, r, *ring):
        return {**real(b, r, *ring), "overflowed": b.false()}

    monkeypatch.setattr(event_log, "event_log_state", forgets_overflow_bit)
    assert full_log_problems(event_log.log_event) == ["overflowed log: record written"]


def test_disabled_log_writes_nothing():
    r0 = regs(tail=0x40, head=0, enabled=0)
    mem, r = log_event(INT, {}, r0, RECORD)
    assert mem == {} and r == r0


def test_when_false_changes_nothing():
    r0 = regs(tail=0x40, head=0)
    mem, r = log_event(INT, {}, r0, RECORD, when=False)
    assert mem == {} and r == r0


def test_other_status_bits_kept():
    r0 = regs(tail=0, head=0x100).replace(status=STATUS.encode(EventLogRun=1, CmdBufRun=1, ComWaitInt=1))
    _, r = log_event(INT, {}, r0, RECORD)
    s = status(r)
    assert (s.CmdBufRun, s.ComWaitInt, s.EventLogRun, s.EventLogInt) == (1, 1, 1, 1)


def test_proof_a_write_never_empties_the_log_and_stays_in_the_ring():
    """For every head, tail and status: a written record lies inside the ring and the new tail != head."""
    head, tail, st = z3.BitVec("head", 64), z3.BitVec("tail", 64), z3.BitVec("status", 64)
    r0 = regs().replace(evt_head=head, evt_tail=tail, status=st)
    mem0 = Z3.memory_var("m")
    mem, r = log_event(Z3, mem0, r0, RECORD)
    new_tail = z3.Extract(18, 4, r.evt_tail)
    old_head = z3.Extract(18, 4, head)
    written = z3.Extract(18, 4, r.evt_tail) != z3.Extract(18, 4, tail)
    a = z3.BitVec("a", 64)
    outside = z3.Or(z3.ULT(a, EVT_BASE), z3.UGE(a, EVT_BASE + RING))
    s = z3.Solver()
    s.add(z3.Extract(18, 12, tail) == 0, z3.Extract(18, 12, head) == 0)  # pointers inside the 4 KiB ring
    s.add(z3.Or(z3.And(written, new_tail == old_head),
                z3.And(outside, z3.Select(mem, a) != z3.Select(mem0, a))))
    assert s.check() == z3.unsat
