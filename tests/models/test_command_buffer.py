"""Known answers and an INT/Z3 differential test for the command processor (48882 §2.4, §3.4)."""

import pytest
import z3
from hypothesis import event, example, given, settings, strategies as st

from amdvi.models.command_buffer import check_command, fetch_command, pending, run_commands, step_command
from amdvi.models.registers import Registers
from amdvi.spec.bitvec import INT, Z3, Z3_TERMS, mask
from amdvi.spec.commands import (
    COMMANDS, COMPLETION_WAIT, INVALIDATE_DEVTAB_ENTRY, INVALIDATE_IOMMU_ALL,
)
from amdvi.spec.events import ILLEGAL_COMMAND_ERROR
from amdvi.spec.mmio import (
    CMD_BUF_BAR, CMD_BUF_HEAD, CMD_BUF_TAIL, CONTROL, EFR, EVT_LOG_BAR, EVT_LOG_HEAD, EVT_LOG_TAIL, STATUS,
    efr_context,
)

CMD_BASE, EVT_BASE = 0x10_0000, 0x20_0000
RING = 256 * 16  # ComLen = EventLen = 8
SEM = 0x30_0008  # a COMPLETION_WAIT semaphore, 8-byte aligned
UNDEFINED = (0x0, 0xB, 0xC, 0xD, 0xE, 0xF)  # 09h is INSERT_GUEST_EVENT


def regs(head=0, tail=0, evt_head=0, evt_tail=0, control=None, status=None):
    return Registers(
        cmd_buf_bar=CMD_BUF_BAR.encode(ComBase=CMD_BASE >> 12, ComLen=8),
        evt_log_bar=EVT_LOG_BAR.encode(EventBase=EVT_BASE >> 12, EventLen=8),
        control=CONTROL.encode(CmdBufEn=1, EventLogEn=1) if control is None else control,
        status=STATUS.encode(CmdBufRun=1, EventLogRun=1) if status is None else status,
        cmd_head=CMD_BUF_HEAD.encode(CmdHdPtr=head >> 4),
        cmd_tail=CMD_BUF_TAIL.encode(CmdTailPtr=tail >> 4),
        evt_head=EVT_LOG_HEAD.encode(EventHdPtr=evt_head >> 4),
        evt_tail=EVT_LOG_TAIL.encode(EventTailPtr=evt_tail >> 4),
    )


def place(commands, head=0, memory=None):
    """Memory holding 128-bit ``commands`` in the ring from ``head`` (Q0 at the lower address)."""
    mem = dict(memory or {})
    for i, bits in enumerate(commands):
        at = CMD_BASE + (head + 16 * i) % RING
        mem[at], mem[at + 8] = bits & mask(64), bits >> 64
    return mem


def head_of(r):
    return r.view(INT, "cmd_head").CmdHdPtr << 4


def status(r):
    return r.view(INT, "status")


# Commands as Linux lays them out (dword 0/1 = Q0, 2/3 = Q1; the type in dword 1 bits 31:28).
LINUX_INV_DTE = 0x0010 | 0x2 << 60  # build_inv_dte: DeviceID 0x10
LINUX_COMPL_WAIT = (SEM | 0x1 | 0x1 << 60) | 7 << 64  # build_completion_wait: store mask, address, data 7


def test_linux_sequence_in_order():
    mem = place([LINUX_INV_DTE, LINUX_COMPL_WAIT])
    r = regs(head=0, tail=32)
    mem, r, e1 = step_command(INT, mem, r)
    assert head_of(r) == 16 and e1.name() == "INVALIDATE_DEVTAB_ENTRY" and not e1.store
    assert e1.fields(INT, INVALIDATE_DEVTAB_ENTRY)["DeviceID"] == 0x10
    assert e1.is_command(INT, INVALIDATE_DEVTAB_ENTRY) and not e1.is_command(INT, COMPLETION_WAIT)
    assert SEM not in mem
    mem, r, e2 = step_command(INT, mem, r)
    assert head_of(r) == 32 and e2.name() == "COMPLETION_WAIT"
    assert e2.store and e2.store_address == SEM and mem[SEM] == 7
    assert status(r).ComWaitInt == 0 and not e2.interrupt
    # ring empty: nothing more happens
    mem2, r2, e3 = step_command(INT, mem, r)
    assert (mem2, r2) == (mem, r) and not e3.processed and not e3.illegal and e3.name() is None


def test_ring_wraps_around():
    mem = place([LINUX_INV_DTE, LINUX_COMPL_WAIT], head=RING - 16)
    assert CMD_BASE + RING - 16 in mem and CMD_BASE in mem
    mem, r, effects = run_commands(INT, mem, regs(head=RING - 16, tail=16), 3)
    assert [e.name() for e in effects] == ["INVALIDATE_DEVTAB_ENTRY", "COMPLETION_WAIT", None]
    assert head_of(r) == 16 and mem[SEM] == 7


def illegal_command_outcome(bits):
    mem0 = place([bits, LINUX_COMPL_WAIT], head=0x40)
    r0 = regs(head=0x40, tail=0x60, evt_head=0, evt_tail=0)
    mem, r, e = step_command(INT, mem0, r0)
    return mem0, mem, r, e


@pytest.mark.parametrize("opcode", UNDEFINED)
def test_undefined_opcode_logs_illegal_command(opcode):
    mem0, mem, r, e = illegal_command_outcome(opcode << 60)
    assert e.illegal and not e.processed
    q0, q1 = mem[EVT_BASE], mem[EVT_BASE + 8]
    assert q0 >> 60 == 0x5 and q1 == CMD_BASE + 0x40 == e.address
    assert ILLEGAL_COMMAND_ERROR.decode(q1 << 64 | q0)["Address"] == CMD_BASE + 0x40
    assert r.view(INT, "evt_tail").EventTailPtr << 4 == 16 and status(r).EventLogInt == 1
    assert status(r).CmdBufRun == 0 and head_of(r) == 0x40


def test_reserved_bit_in_completion_wait_is_illegal():
    bits = LINUX_COMPL_WAIT | 1 << 52
    assert COMPLETION_WAIT.validate(bits)
    mem0, mem, r, e = illegal_command_outcome(bits)
    assert e.illegal and SEM not in mem and not e.store
    assert mem[EVT_BASE + 8] == CMD_BASE + 0x40 and status(r).CmdBufRun == 0 and head_of(r) == 0x40


def test_illegal_command_stops_processing_virtualbox_choice():
    """Pinned choice: after an illegal command later commands are not processed (QEMU would go on)."""
    mem0, mem, r, _ = illegal_command_outcome(0xB << 60)
    mem2, r2, effects = run_commands(INT, mem, r, 3)
    assert (mem2, r2) == (mem, r) and not any(e.processed or e.illegal for e in effects)
    assert SEM not in mem2 and not pending(INT, r2)


def test_illegal_command_with_full_event_log():
    mem0 = place([0xB << 60], head=0)
    mem, r, e = step_command(INT, mem0, regs(head=0, tail=16, evt_head=0x10, evt_tail=0))
    assert e.illegal and mem == mem0 and status(r).EventOverflow == 1 and status(r).CmdBufRun == 0


def test_completion_wait_interrupt():
    cw = COMPLETION_WAIT.encode(I=1)
    for enable in (0, 1):
        control = CONTROL.encode(CmdBufEn=1, ComWaitIntEn=enable)
        mem, r, e = step_command(INT, place([cw]), regs(tail=16, control=control))
        assert status(r).ComWaitInt == 1 and e.interrupt == bool(enable) and not e.store


def test_every_opcode_classified_from_the_tables():
    for op in range(16):
        assert check_command(INT, op << 60) == (op in UNDEFINED)
    for s in COMMANDS:
        legal = s.encode()
        assert not check_command(INT, legal)
        if s.reserved_mask:
            low = s.reserved_mask & -s.reserved_mask
            assert check_command(INT, legal | low)


def test_feature_rules_use_the_context():
    bits = INVALIDATE_IOMMU_ALL.encode()
    assert check_command(INT, bits, efr_context(EFR.encode(IASup=0)))
    assert not check_command(INT, bits, efr_context(EFR.encode(IASup=1)))
    assert not check_command(INT, bits)


def test_not_pending_when_disabled_or_empty():
    assert not pending(INT, regs(head=0x20, tail=0x20))
    assert not pending(INT, regs(tail=0x20, control=CONTROL.encode(CmdBufEn=0)))
    assert not pending(INT, regs(tail=0x20, status=STATUS.encode(CmdBufRun=0)))
    assert pending(INT, regs(tail=0x20))


def test_fetch_reads_q0_low():
    bits, address = fetch_command(INT, place([LINUX_COMPL_WAIT], head=0x30), regs(head=0x30))
    assert bits == LINUX_COMPL_WAIT and address == CMD_BASE + 0x30


def test_symbolic_check_command_matches_concrete():
    """check_command over a symbolic command equals the concrete classification (Z3 proof)."""
    x = z3.BitVec("cmd", 128)
    sym = check_command(Z3, x)
    s = z3.Solver()
    for bits in [LINUX_INV_DTE, LINUX_COMPL_WAIT, LINUX_COMPL_WAIT | 1 << 52, 0xB << 60, 0]:
        s.push()
        s.add(x == bits, sym != check_command(INT, bits))
        assert s.check() == z3.unsat
        s.pop()


# ---- differential: INT and Z3_TERMS give the same run ---------------------------------------

@st.composite
def commands(draw):
    kind = draw(st.sampled_from(["legal"] * 6 + ["reserved", "undefined", "raw"]))
    if kind == "raw":
        return draw(st.integers(0, mask(128)))
    if kind == "undefined":
        return draw(st.sampled_from(UNDEFINED)) << 60 | draw(st.integers(0, mask(60)))
    s = draw(st.sampled_from(COMMANDS + (COMPLETION_WAIT,) * 3))
    values = {f.name: draw(st.integers(0, mask(f.width))) for f in s.named_fields if f.fixed is None}
    if s is COMPLETION_WAIT:  # keep stores near the rings so they sometimes hit them
        values["S"] = draw(st.sampled_from([1, 1, 0]))
        values["Store Address"] = draw(st.sampled_from([SEM, CMD_BASE + 0x10, EVT_BASE, 0x40_0000])) >> 3
    bits = s.encode(values)
    if kind == "reserved" and s.reserved_mask:
        bit = draw(st.sampled_from([i for i in range(128) if s.reserved_mask >> i & 1]))
        bits |= 1 << bit
    return bits


def concrete(x):
    """Z3_TERMS.value of a term, which must evaluate to a constant."""
    v = Z3_TERMS.value(x)
    assert isinstance(v, (int, bool)), v
    return v


def to_terms(r):
    return Registers(**{n: z3.BitVecVal(getattr(r, n), 64) for n in r.names()})


@settings(max_examples=30)
@given(
    cmds=st.lists(commands(), min_size=1, max_size=4),
    head=st.integers(0, 255).map(lambda i: i * 16),
    evt_tail=st.integers(0, 255).map(lambda i: i * 16),
    evt_gap=st.sampled_from([16, 32, 48, 0x800]),
    control=st.fixed_dictionaries({"CmdBufEn": st.sampled_from([1, 1, 1, 1, 0]), "EventLogEn": st.integers(0, 1),
                                   "ComWaitIntEn": st.integers(0, 1)}),
    stat=st.fixed_dictionaries({"CmdBufRun": st.sampled_from([1, 1, 1, 1, 0]), "EventOverflow": st.integers(0, 1),
                                "ComWaitInt": st.integers(0, 1)}),
    efr=st.fixed_dictionaries({"IASup": st.integers(0, 1), "PreFSup": st.integers(0, 1),
                               "vIommuSup": st.integers(0, 1), "InvIotlbTypeSup": st.integers(0, 1)}),
)
@example(cmds=[LINUX_INV_DTE, LINUX_COMPL_WAIT, 0xB << 60, LINUX_COMPL_WAIT], head=RING - 16, evt_tail=0,
         evt_gap=0x800, control={"CmdBufEn": 1, "EventLogEn": 1, "ComWaitIntEn": 1},
         stat={"CmdBufRun": 1, "EventOverflow": 0, "ComWaitInt": 0},
         efr={"IASup": 1, "PreFSup": 1, "vIommuSup": 1, "InvIotlbTypeSup": 1})
def test_int_and_z3_agree(cmds, head, evt_tail, evt_gap, control, stat, efr):
    mem0 = place(cmds, head=head)
    r0 = regs(head=head, tail=(head + 16 * len(cmds)) % RING, evt_tail=evt_tail,
              evt_head=(evt_tail + evt_gap) % RING, control=CONTROL.encode(control), status=STATUS.encode(stat))
    efr_bits = EFR.encode(efr)
    steps = len(cmds) + 1
    mem_i, r_i, eff_i = run_commands(INT, mem0, r0, steps, efr_context(efr_bits, INT))
    b = Z3_TERMS
    mem_z, r_z, eff_z = run_commands(b, b.memory_from(mem0), to_terms(r0), steps,
                                     efr_context(z3.BitVecVal(efr_bits, 64), b))
    for e in eff_i:
        event("illegal" if e.illegal else e.name() or "idle")
        event("store" if e.store else "no store")
    event(f"EventOverflow={status(r_i).EventOverflow}")
    for n in r0.names():
        assert concrete(getattr(r_z, n)) == getattr(r_i, n), n
    touched = set(mem_i) | {EVT_BASE + o for o in range(0, RING, 8)} | {SEM, 0x40_0000}
    for a in sorted(touched):
        assert concrete(b.read64(mem_z, a)) == INT.read64(mem_i, a), hex(a)
    for ei, ez in zip(eff_i, eff_z):
        assert tuple(concrete(x) for x in (ez.processed, ez.illegal, ez.store, ez.interrupt)) == \
            (ei.processed, ei.illegal, ei.store, ei.interrupt)
        if ei.store:
            assert concrete(ez.store_address) == ei.store_address


def test_the_remembered_command_check_is_the_check():
    """On Python ints ``check_command`` remembers its answer per command value and context: the same
    answer as checking every rule again (the same function on the same arguments)."""
    from amdvi.models.command_buffer import _check_command
    commands = [COMPLETION_WAIT.encode({"S": 1, "Store Address": 0x1000 >> 3, "Store Data": 7}),
                COMPLETION_WAIT.encode({"S": 1, "Store Address": 0x1000 >> 3}) | (1 << 52), 1, 0]  # reserved bit 52
    for bits in commands * 2:  # the second round is answered from memory
        assert check_command(INT, bits) == _check_command(INT, bits, None)
    assert check_command(INT, commands[1]) and not check_command(INT, commands[0])
