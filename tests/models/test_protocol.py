"""The invalidation protocol (``models.protocol``): the same commands on Python ints and on Z3 terms,
the range encoding against its decoding, and the PASID packing of INVALIDATE_IOTLB_PAGES."""

import pytest
import z3
from hypothesis import given, strategies as st

from amdvi.models import protocol, software as sw
from amdvi.models.caches import Caches, TlbSlot, invalidate
from amdvi.spec import commands as C
from amdvi.spec.bitvec import INT, Z3_TERMS as Z3, mask  # terms, never folded: Z3 itself evaluates
from amdvi.spec.commands import INVALIDATE_IOMMU_PAGES, INVALIDATE_IOTLB_PAGES

SHIFTS = range(12, 65)
BLOCKS = st.sampled_from(SHIFTS).flatmap(
    lambda shift: st.tuples(st.integers(0, mask(64 - shift)).map(lambda k: k << shift), st.just(shift)))
DOMAINS, PASIDS, DEVICES = st.integers(0, mask(16)), st.integers(0, mask(20)), st.integers(0, mask(16))


def _sent(required):
    """(label, command) of each required command whose ``when`` holds, evaluated to Python ints."""
    out = []
    for r in required:
        when = r.when if isinstance(r.when, bool) else z3.is_true(z3.simplify(r.when))
        if when:
            out.append((r.label, r.command if isinstance(r.command, int) else Z3.value(r.command)))
    return out


def _terms(value, width):
    return z3.BitVecVal(value, width)


@st.composite
def changes(draw):
    """A kind of change with concrete operands: ``(fn, args on INT, args on Z3 terms, keywords)``."""
    kind = draw(st.sampled_from(("v1", "v2", "gcr3", "dte")))
    domain, pasid, block = draw(DOMAINS), draw(PASIDS), draw(BLOCKS)
    devices = draw(st.lists(st.tuples(DEVICES, st.booleans()), max_size=3))
    ats_int = [protocol.AtsDevice(d, when) for d, when in devices]
    ats_z3 = [protocol.AtsDevice(_terms(d, 16), z3.BoolVal(when)) for d, when in devices]
    z_block = (_terms(block[0], 64), _terms(block[1], 8))
    directory = draw(st.booleans())
    if kind == "v1":
        return protocol.v1_table_change, (domain, block, ats_int), (_terms(domain, 16), z_block, ats_z3), \
            {"directory": directory}
    if kind == "v2":
        return (protocol.v2_table_change, (domain, pasid, block, ats_int),
                (_terms(domain, 16), _terms(pasid, 20), z_block, ats_z3), {"directory": directory})
    if kind == "gcr3":
        return protocol.gcr3_entry_change, (domain, pasid, ats_int), (_terms(domain, 16), _terms(pasid, 20), ats_z3), {}
    device, ats = draw(DEVICES), draw(st.booleans())
    old, new = draw(DOMAINS), draw(DOMAINS)
    return (protocol.dte_change, (device, {"old DomainID": old, "new DomainID": new}),
            (_terms(device, 16), {"old DomainID": _terms(old, 16), "new DomainID": _terms(new, 16)}),
            {"ats": ats, "ats_z3": z3.BoolVal(ats)})


@given(changes())
def test_each_change_requires_the_same_commands_on_ints_and_on_z3(case):
    fn, concrete, symbolic, keywords = case
    ats_z3 = keywords.pop("ats_z3", None)
    on_ints = fn(INT, *concrete, **keywords)
    on_z3 = fn(Z3, *symbolic, **dict(keywords, **({"ats": ats_z3} if ats_z3 is not None else {})))
    assert _sent(on_z3) == _sent(on_ints)
    assert protocol.commands_to_send(on_ints) == [command for _, command in _sent(on_ints)]


@given(st.integers(0, mask(49)).map(lambda a: a << 3), st.integers(0, mask(64)), st.booleans())
def test_completion_wait_is_the_same_on_ints_and_on_z3(address, data, interrupt):
    on_ints = protocol.completion_wait(INT, address, data, interrupt=interrupt)
    assert Z3.value(protocol.completion_wait(Z3, _terms(address, 64), _terms(data, 64), interrupt=interrupt)) == on_ints
    assert C.COMPLETION_WAIT.view(on_ints)["Store Address"] << 3 == address


def test_the_proofs_labels_and_the_commands_they_stand_for():
    v1 = protocol.v1_table_change(INT, 5, (0x20_0000, 21), [protocol.AtsDevice(0x11)])
    assert [r.label for r in v1] == ["INVALIDATE_IOMMU_PAGES(DomainID, range, PDE=1)",
                                     "INVALIDATE_IOTLB_PAGES(each device of the domain, range)"]
    pages = INVALIDATE_IOMMU_PAGES.view(v1[0].command)
    assert (pages.DomainID, pages.S, pages.PDE, pages.GN) == (5, 1, 1, 0)
    assert C.invalidation_range(pages.Address << 12, pages.S) == (0x20_0000, 0x20_0000)
    leaf = protocol.v2_table_change(INT, 7, 3, (0x4000, 12), directory=False)
    assert [r.label for r in leaf] == ["INVALIDATE_IOMMU_PAGES(DomainID, range, GN=1, PASID)"]
    assert INVALIDATE_IOMMU_PAGES.view(leaf[0].command).S == 0
    dte = protocol.dte_change(INT, 0x10, {"old DomainID": 5}, ats=False)
    assert [r.label for r in dte] == ["INVALIDATE_DEVTAB_ENTRY(device)", "INVALIDATE_IOMMU_PAGES(old DomainID, all, PDE=1)"]
    assert INVALIDATE_IOMMU_PAGES.view(dte[1].command).Address << 12 == C.INV_IOMMU_ALL_PAGES_ADDRESS & ~0xFFF


def test_software_builders_are_the_protocols_commands():
    assert sw.inv_pages(5, 0x4000, 0x2000, pde=False) == protocol.invalidate_iommu_pages(INT, 5, (0x4000, 13), pde=False)
    assert sw.inv_iotlb(0x11, pasid=9) == protocol.invalidate_iotlb_pages(INT, 0x11, C.EVERY_PAGE, pasid=9)
    assert sw.inv_devtab(0x10) == protocol.invalidate_devtab_entry(INT, 0x10)


# ---- the range encoding ---------------------------------------------------------------------------

def _decoded(shift, base):
    """What the operand of the block must decode to: the block itself, or every page past 2^51."""
    return (base, 1 << shift) if shift <= C.ALL_PAGES_FIRST_ZERO else (0, 1 << 64)


@pytest.mark.parametrize("shift", SHIFTS)
def test_every_aligned_block_round_trips_through_the_decoding(shift):
    for base in {0, 1 << shift if shift < 64 else 0, mask(64) & ~mask(shift), 0x5A5A_5A5A_5A5A_5A5A & ~mask(shift)}:
        address, s = C.block_operand(INT, base, shift)
        assert C.invalidation_range(address, s) == _decoded(shift, base)
        z_address, z_s = C.block_operand(Z3, _terms(base, 64), _terms(shift, 8))
        assert (Z3.value(z_address), Z3.value(z_s)) == (address, s)


@given(BLOCKS)
def test_aligned_blocks_round_trip(block):
    base, shift = block
    assert C.invalidation_range(*C.block_operand(INT, base, shift)) == _decoded(shift, base)


def test_the_range_encoding_round_trips_for_all_blocks_with_z3():
    base, shift = z3.BitVec("base", 64), z3.BitVec("shift", 8)
    address, s = C.block_operand(Z3, base, shift)
    start, offset_mask = C._invalidation_span(Z3, address, s)
    block_mask = z3.LShR(z3.BitVecVal(mask(64), 64), 64 - z3.ZeroExt(56, shift))
    aligned = z3.And(z3.UGE(shift, 12), z3.ULE(shift, C.ALL_PAGES_FIRST_ZERO), base & block_mask == 0)
    claim = z3.And(start == base, offset_mask == block_mask)
    solver = z3.Solver()
    solver.add(aligned, z3.Not(claim))
    assert solver.check() == z3.unsat


@given(st.integers(0, 2**64 - 1).flatmap(lambda a: st.tuples(st.just(a), st.integers(1, 2**64 - a))))
def test_the_covering_block_is_the_smallest_holding_the_range(case):
    start, size = case
    base, shift = C.covering_block(start, size)
    end = start + size - 1
    assert base % (1 << shift) == 0 and base <= start and end < base + (1 << shift)
    if 12 < shift <= C.ALL_PAGES_FIRST_ZERO + 1:  # a half-size aligned block would not hold both ends
        assert start >> (shift - 1) != end >> (shift - 1)
    assert C.range_operand(start, size) == C.block_operand(INT, base, shift)


# ---- the PASID packing of INVALIDATE_IOTLB_PAGES ----------------------------------------------------

@given(PASIDS)
def test_the_iotlb_pasid_packs_and_unpacks(pasid):
    bits = INVALIDATE_IOTLB_PAGES.encode({"PASID": pasid})
    view = INVALIDATE_IOTLB_PAGES.view(bits)
    assert view["PASID"] == pasid
    assert (view["PASID[7:0]"], view["PASID[15:8]"], view["PASID[19:16]"]) == (pasid & 0xFF, pasid >> 8 & 0xFF, pasid >> 16)
    z_bits = INVALIDATE_IOTLB_PAGES.encode({"PASID": _terms(pasid, 20)}, backend=Z3)
    assert Z3.value(z_bits) == bits and Z3.value(INVALIDATE_IOTLB_PAGES.view(z_bits, Z3)["PASID"]) == pasid


def test_the_iotlb_pasid_packing_round_trips_for_every_pasid_with_z3():
    pasid = z3.BitVec("pasid", 20)
    unpacked = INVALIDATE_IOTLB_PAGES.view(INVALIDATE_IOTLB_PAGES.encode({"PASID": pasid}, backend=Z3), Z3)["PASID"]
    solver = z3.Solver()
    solver.add(unpacked != pasid)
    assert solver.check() == z3.unsat


@given(PASIDS)
def test_the_device_iotlb_reads_the_pasid_the_protocol_packs(pasid):
    slot = TlbSlot(valid=True, owner=0x11, guest=True, pasid=pasid, page=0x4000)
    caches = Caches(device_iotlb=(slot,))
    command = protocol.invalidate_iotlb_pages(INT, 0x11, (0x4000, 12), pasid=pasid)
    assert not invalidate(INT, caches, command).device_iotlb[0].valid
    other = protocol.invalidate_iotlb_pages(INT, 0x11, (0x4000, 12), pasid=pasid ^ 1)
    assert invalidate(INT, caches, other).device_iotlb[0].valid
