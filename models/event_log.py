"""The event log writer: 48882 §2.5 "Event Logging" (subsection numbers: see ``amdvi.spec.events``),
with the registers of §3.4.3 (EVT_LOG_BAR), §3.4.4 (CONTROL), §3.4.11/§3.4.12 (EVT_LOG_HEAD/TAIL)
and §3.4.13 (STATUS).

:func:`log_event` is a pure function over the backend ``b``: it never branches in Python on a
register or memory value, so ``log_event(INT, ...)`` replays one event and ``log_event(Z3, ...)``
gives the same step as formulas.

Behaviour (facts from ``shared/reference/commands-and-events.md`` §3):

* the 128-bit record is written at ``EventBase + tail`` as two 64-bit words, Q0 (bits 63:0) at the
  lower address; the tail then advances by 16 bytes modulo the ring (2^EventLen entries of 16 bytes)
  and Status.EventLogInt is set (the interrupt itself, when Control.EventIntEn, is not modelled here);
* the log is full when advancing the tail would make it equal to the head: the record is dropped,
  nothing is written, the tail stays and Status.EventOverflow is set (QEMU ``amdvi_log_event``);
* while Status.EventOverflow is set no record is written at all, whether or not the log is still
  full (48882's EventOverflow description, quoted in Linux commit "iommu/amd: Recover from event log
  overflow": "No new event log entries are written while this bit is set"; QEMU returns early too);
* when Control.EventLogEn = 0 nothing happens: no write, no tail change, no Status bit.
  Status.EventLogRun is not consulted (it follows EventLogEn; register writes are not modelled).

Reading (``Hardware.event_overflow``): by default a full log sets EventOverflow regardless (older
QEMU and the reference's description); under ``"with-interrupt"`` only when Control.EventIntEn is set
(recent QEMU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amdvi.spec.bitvec import WORD_WIDTH
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.mmio import RING_WIDTH

from . import rings
from .registers import Registers
from .rings import EVENT_LOG, Ring


def event_log_state(b: Any, regs: Registers, ring: Ring = EVENT_LOG) -> dict[str, Any]:
    """The derived quantities :func:`log_event` decides on (backend values), for tests and proofs."""
    tail = rings.tail(b, regs, ring)
    nxt = rings.next_offset(b, regs, ring, tail)
    return {
        "enabled": regs.flag(b, "control", "EventLogEn"),
        "overflowed": regs.flag(b, "status", "EventOverflow"),
        "full": b.eq(nxt, rings.head(b, regs, ring)),
        "tail": tail,
        "next_tail": nxt,
        "address": rings.entry_address(b, regs, ring, tail),
    }


@dataclass(frozen=True)
class Attempt:
    """What the writer decided for one record (backend values): ``write`` it at ``address`` (the ring's
    base + tail), or ``drop`` it (the log is full: EventOverflow is set)."""

    write: Any
    drop: Any
    address: Any
    tail: Any
    next_tail: Any


def attempt(b: Any, regs: Any, when: Any = True, choices: Hardware = SPEC, ring: Ring = EVENT_LOG) -> Attempt:
    """The decision of :func:`log_event`, before anything is written (``regs``: any register file with
    ``control`` and ``status`` registers holding the §3.4.4/§3.4.13 event bits, and ``ring``'s registers)."""
    s = event_log_state(b, regs, ring)
    tried = b.all_of(when, s["enabled"], b.lnot(s["overflowed"]))
    drop = b.all_of(tried, s["full"])
    if choices.event_overflow == "with-interrupt":
        drop = b.all_of(drop, regs.flag(b, "control", "EventIntEn"))
    return Attempt(b.all_of(tried, b.lnot(s["full"])), drop, s["address"], s["tail"], s["next_tail"])


def settle(b: Any, regs: Any, a: Attempt, written: Any, ring: Ring = EVENT_LOG) -> Any:
    """The registers after an attempt whose record was ``written``: the tail past it and EventLogInt
    set; EventOverflow set where it was dropped."""
    out = rings.with_tail(b, regs, ring, b.ite(written, a.next_tail, a.tail, RING_WIDTH))
    out = out.set_flag_when(b, "status", "EventLogInt", written)
    return out.set_flag_when(b, "status", "EventOverflow", a.drop)


def log_event(b: Any, memory: Any, regs: Registers, record: Any, when: Any = True,
              choices: Hardware = SPEC, ring: Ring = EVENT_LOG) -> tuple[Any, Registers]:
    """Log the 128-bit ``record`` into ``ring`` (when ``when`` holds): ``(memory', regs')``.

    ``when`` lets a caller log conditionally without branching (the command processor logs
    ILLEGAL_COMMAND_ERROR only for an illegal command); where it is false nothing changes. ``ring``:
    by default the IOMMU's event log at system addresses (a HW-vIOMMU guest's log, at guest physical
    addresses, is written by ``models.viommu`` from :func:`attempt` and :func:`settle`).
    """
    if b.known_false(when):  # nothing to log: what the steps below give, without copying memory twice
        return memory, regs
    a = attempt(b, regs, when, choices, ring)
    if b.known_false(a.write):  # full, overflowed or disabled: memory stays (no copies on Python ints)
        memory_out = memory
    else:
        memory_out = b.ite(a.write, write_record(b, memory, a.address, record), memory)
    return memory_out, settle(b, regs, a, a.write, ring)


def write_record(b: Any, memory: Any, address: Any, record: Any) -> Any:
    """``memory`` with the 128-bit ``record`` at ``address``: Q0 (bits 63:0) at the lower word."""
    written = b.write64(memory, address, b.extract(record, WORD_WIDTH - 1, 0))
    return b.write64(written, b.add(address, b.const(8, WORD_WIDTH), WORD_WIDTH),
                     b.extract(record, 2 * WORD_WIDTH - 1, WORD_WIDTH))
