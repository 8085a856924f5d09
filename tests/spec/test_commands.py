"""The command tables against how Linux builds commands, the dispatch by opcode, the validator,
the S-bit range decoding, and the pinned choices where the sources disagree."""

import pytest
import z3
from hypothesis import given, strategies as st

from amdvi.spec import commands as C
from amdvi.spec.bitvec import INT, Z3_TERMS as Z3  # terms, never folded: Z3 itself evaluates
from amdvi.spec.commands import COMMANDS, COMMANDS_BY_OPCODE, command_structure, invalidation_range

IDS = [s.name for s in COMMANDS]
ALL_FEATURES = {"EFR.IASup": 1, "EFR.PreFSup": 1, "EFR.InvIotlbTypeSup": 1, "EFR.vIommuSup": 1}
NO_FEATURES = {k: 0 for k in ALL_FEATURES}


# ---- helpers: Linux's view of a command (struct iommu_cmd { u32 data[4]; }) ------------------------

def linux_cmd(d0=0, d1=0, d2=0, d3=0, opcode=0):
    """The 128-bit command from Linux's four dwords; ``opcode`` as CMD_SET_TYPE puts it (data[1] << 28)."""
    d1 |= (opcode & 0xF) << 28
    return d0 | d1 << 32 | d2 << 64 | d3 << 96


def lo32(x):
    return x & 0xFFFF_FFFF


def hi32(x):
    return x >> 32


def linux_build_inv_address(address, size):
    """Linux build_inv_address, restated: one page -> the page; else set every bit below the highest
    bit that differs between start and end, and S; past bit 51 -> the all-pages address."""
    pages = ((address & 0xFFF) + size + 0xFFF) >> 12
    if pages == 1:
        return address & ~0xFFF
    end = address + size - 1
    msb_diff = (end ^ address).bit_length() - 1
    if msb_diff > 51:
        address = C.INV_IOMMU_ALL_PAGES_ADDRESS
    else:
        address |= (1 << msb_diff) - 1
    return (address & ~0xFFF & (2**64 - 1)) | 1


def names(rules):
    return sorted(r.name for r in rules)


def field_values(s):
    return st.fixed_dictionaries({
        f.name: (st.just(f.fixed) if f.fixed is not None else st.integers(0, (1 << f.width) - 1))
        for f in s.named_fields
    })


def with_opcode(s, bits):
    op = s.field("Opcode")
    return INT.deposit(bits, op.hi, op.lo, op.fixed, 128)


# ---- the declarations ----------------------------------------------------------------------------

def test_ten_commands_each_named_by_its_fixed_opcode():
    assert [(s.field("Opcode").fixed, s.name) for s in COMMANDS] == [
        (0x1, "COMPLETION_WAIT"), (0x2, "INVALIDATE_DEVTAB_ENTRY"), (0x3, "INVALIDATE_IOMMU_PAGES"),
        (0x4, "INVALIDATE_IOTLB_PAGES"), (0x5, "INVALIDATE_INTERRUPT_TABLE"), (0x6, "PREFETCH_IOMMU_PAGES"),
        (0x7, "COMPLETE_PPR_REQUEST"), (0x8, "INVALIDATE_IOMMU_ALL"), (0x9, "INSERT_GUEST_EVENT"),
        (0xA, "RESET_VMMIO")]
    for s in COMMANDS:
        op = s.field("Opcode")
        assert (op.hi, op.lo, s.width) == (63, 60, 128)
        assert op.values == {op.fixed: s.name}
        assert s.reserved_event == "ILLEGAL_COMMAND_ERROR"
        assert "revision 3.11" in s.note
        assert s.section == f"§2.4.{op.fixed}"  # NOVA cites §2.4.1..§2.4.10, one per opcode
    assert sum(len(s.named_fields) for s in COMMANDS) == 48


def test_field_names_and_places_as_the_sources_give_them():
    def where(s, name):
        f = s.field(name)
        return (f.hi, f.lo)

    assert where(C.COMPLETION_WAIT, "Store Address") == (51, 3)
    assert C.COMPLETION_WAIT.field("Store Address").unit_shift == 3
    assert where(C.COMPLETION_WAIT, "Store Data") == (127, 64)
    assert where(C.INVALIDATE_IOMMU_PAGES, "DomainID") == (47, 32)
    assert where(C.INVALIDATE_IOMMU_PAGES, "PASID") == (19, 0)
    for s in (C.INVALIDATE_IOMMU_PAGES, C.INVALIDATE_IOTLB_PAGES, C.PREFETCH_IOMMU_PAGES):
        assert where(s, "Address") == (127, 76) and s.field("Address").unit_shift == 12
        assert where(s, "S") == (64, 64) and where(s, "GN") == (66, 66)
    assert where(C.INVALIDATE_IOMMU_PAGES, "PDE") == (65, 65)
    assert where(C.INVALIDATE_IOTLB_PAGES, "MaxPend") == (31, 24)
    assert where(C.INVALIDATE_IOTLB_PAGES, "QueueID") == (47, 32)
    assert where(C.INVALIDATE_IOTLB_PAGES, "Type") == (69, 68)
    assert where(C.COMPLETE_PPR_REQUEST, "PASID") == (51, 32)


# ---- known answers: commands as the Linux driver builds them -------------------------------------

def test_build_inv_dte():
    # Linux build_inv_dte(cmd, 0x0010): data[0] = devid, CMD_SET_TYPE(CMD_INV_DEV_ENTRY = 0x02).
    bits = linux_cmd(0x0010, opcode=0x02)
    assert bits & (2**64 - 1) == 0x2000_0000_0000_0010 and bits >> 64 == 0
    assert command_structure(bits) is C.INVALIDATE_DEVTAB_ENTRY
    assert C.INVALIDATE_DEVTAB_ENTRY.decode(bits) == {"DeviceID": 0x0010, "Opcode": 2}
    assert C.INVALIDATE_DEVTAB_ENTRY.encode(DeviceID=0x0010) == bits
    assert C.INVALIDATE_DEVTAB_ENTRY.validate(bits) == []


def test_build_completion_wait():
    # Linux build_completion_wait: data[0..1] = semaphore address | CMD_COMPL_WAIT_STORE_MASK,
    # data[2..3] = the sequence number, CMD_SET_TYPE(CMD_COMPL_WAIT = 0x01).
    sem, seq = 0x0000_0001_2345_6788, 0x2A
    bits = linux_cmd(lo32(sem) | 1, hi32(sem), lo32(seq), hi32(seq), opcode=0x01)
    v = C.COMPLETION_WAIT.view(bits)
    assert (v.s, v.i, v.f, v.store_data) == (1, 0, 0, seq)
    assert v.store_address << C.COMPLETION_WAIT.field("Store Address").unit_shift == sem
    assert C.COMPLETION_WAIT.encode(S=1, store_address=sem >> 3, store_data=seq) == bits
    assert C.COMPLETION_WAIT.validate(bits) == []


def test_build_inv_iommu_pages_flush_whole_domain():
    # Linux amd_iommu_domain_flush_all -> build_inv_iommu_pages(address 0, size = the all-pages
    # constant, domid): build_inv_address falls back to CMD_INV_IOMMU_ALL_PAGES_ADDRESS | S; PDE set.
    inv = linux_build_inv_address(0, C.INV_IOMMU_ALL_PAGES_ADDRESS)
    assert inv == 0x7FFF_FFFF_FFFF_F001
    bits = linux_cmd(0, 0x2A, lo32(inv) | 0x2, hi32(inv), opcode=0x03)
    assert bits == 0x7FFF_FFFF_FFFF_F003 << 64 | 0x3000_002A_0000_0000
    d = C.INVALIDATE_IOMMU_PAGES.decode(bits)
    assert (d["DomainID"], d["S"], d["PDE"], d["GN"], d["PASID"]) == (0x2A, 1, 1, 0, 0)
    assert invalidation_range(d["Address"] << 12, d["S"]) == (0, 2**64)
    assert C.INVALIDATE_IOMMU_PAGES.validate(bits) == []


def test_build_inv_iommu_pages_for_a_pasid():
    # Linux build_inv_iommu_pages with gn: data[0] |= pasid, data[2] |= CMD_INV_IOMMU_PAGES_GN_MASK.
    inv = linux_build_inv_address(0x7F00_0020_0000, 0x20_0000)
    bits = linux_cmd(0x12345, 0x7, lo32(inv) | 0x2 | 0x4, hi32(inv), opcode=0x03)
    v = C.INVALIDATE_IOMMU_PAGES.view(bits)
    assert (v.pasid, v.domainid, v.gn, v.pde, v.s) == (0x12345, 7, 1, 1, 1)
    assert invalidation_range(v.address << 12, v.s) == (0x7F00_0020_0000, 0x20_0000)


def test_build_inv_iotlb_pages_with_pasid_uses_linux_byte_placement():
    # Linux build_inv_iotlb_pages(devid, qdep, address, size, pasid, gn):
    # data[0] = devid | (qdep & 0xff) << 24 | ((pasid >> 8) & 0xff) << 16
    # data[1] = devid | (pasid & 0xff) << 16, data[2] |= GN.
    devid, qdep, pasid = 0x0A08, 32, 0xABCD
    inv = linux_build_inv_address(0x20_0000, 0x20_0000)
    bits = linux_cmd(devid | qdep << 24 | (pasid >> 8 & 0xFF) << 16, devid | (pasid & 0xFF) << 16,
                     lo32(inv) | 0x4, hi32(inv), opcode=0x04)
    v = C.INVALIDATE_IOTLB_PAGES.view(bits)
    assert (v.deviceid, v.maxpend, v.queueid, v.gn, v.s) == (devid, qdep, devid, 1, 1)
    assert v["PASID"] == pasid
    assert (v["PASID[15:8]"], v["PASID[7:0]"], v["PASID[19:16]"]) == (0xAB, 0xCD, 0)
    assert C.INVALIDATE_IOTLB_PAGES.validate(bits, ALL_FEATURES) == []


def test_build_complete_ppr():
    # Linux build_complete_ppr(devid, pasid, status, tag, gn): data[0] = devid; with gn data[1] = pasid,
    # data[2] = GN; data[3] = tag & 0x1ff | (status & 0xf) << 12 (PPR_STATUS_SHIFT).
    bits = linux_cmd(0x0100, 0x54321, 0x4, 0x1A5 | 0x1 << 12, opcode=0x07)
    d = C.COMPLETE_PPR_REQUEST.decode(bits)
    assert d == {"DeviceID": 0x0100, "PASID": 0x54321, "Opcode": 7, "GN": 1, "Completion Tag": 0x11A5}
    assert C.linux_ppr_reading(d["Completion Tag"]) == {"tag": 0x1A5, "status": 1, "unused": 0}
    assert C.LINUX_PPR_STATUS[1] == "invalid request"
    assert C.COMPLETE_PPR_REQUEST.validate(bits) == []


def test_build_inv_all_and_build_inv_irt():
    # Linux build_inv_all: only CMD_SET_TYPE(CMD_INV_ALL = 0x08); build_inv_irt: devid, CMD_INV_IRT = 0x05.
    assert linux_cmd(opcode=0x08) == 0x8000_0000_0000_0000 == C.INVALIDATE_IOMMU_ALL.encode()
    assert C.INVALIDATE_IOMMU_ALL.validate(linux_cmd(opcode=0x08), ALL_FEATURES) == []
    irt = linux_cmd(0x00A0, opcode=0x05)
    assert irt == 0x5000_0000_0000_00A0 and C.INVALIDATE_INTERRUPT_TABLE.view(irt).deviceid == 0xA0


def test_build_reset_vmmio():
    # HW-vIOMMU RFC build_reset_vmmio(gid, vcmd, all): data[0] = gid | all << 28 | vcmd << 31, type 0x0A.
    bits = linux_cmd(0x0005 | 1 << 28 | 1 << 31, opcode=0x0A)
    assert command_structure(bits) is C.RESET_VMMIO
    assert C.RESET_VMMIO.decode(bits) == {"GuestID": 5, "All": 1, "VCmd": 1, "Opcode": 0xA}
    assert C.RESET_VMMIO.validate(bits, ALL_FEATURES) == []


def test_prefetch_layout_agrees_with_amds_unmerged_linux_patch():
    # build_pf_iommu_pages (2020 patch, never merged): data[0] = devid | (pfcnt & 0xff) << 24,
    # data[2..3] = address & PAGE_MASK, S at bit 0 and INV (0x10) of data[2], type 0x06.
    address = 0x1234_5000
    bits = linux_cmd(0x0018 | 8 << 24, 0, lo32(address) | 0x1 | 0x10, hi32(address), opcode=0x06)
    d = C.PREFETCH_IOMMU_PAGES.decode(bits)
    assert (d["DeviceID"], d["PFCount"], d["S"], d["Inval"], d["GN"], d["PASID"]) == (0x18, 8, 1, 1, 0, 0)
    assert d["Address"] << 12 == address
    assert C.PREFETCH_IOMMU_PAGES.validate(bits, ALL_FEATURES) == []


# ---- dispatch ------------------------------------------------------------------------------------

@pytest.mark.parametrize("opcode", range(16))
def test_dispatch_by_opcode(opcode):
    bits = opcode << 60 | 0xFFFF
    s = command_structure(bits)
    if opcode == 0x0 or opcode >= 0xB:
        assert s is None
    else:
        assert s is COMMANDS_BY_OPCODE[opcode] and s.field("Opcode").fixed == opcode


@given(st.integers(0, 2**128 - 1))
def test_dispatch_looks_only_at_q0_bits_63_60(bits):
    s = command_structure(bits)
    assert s is COMMANDS_BY_OPCODE.get((bits >> 60) & 0xF)
    if s is not None:
        assert s.decode(bits)["Opcode"] == (bits >> 60) & 0xF


# ---- the validator -------------------------------------------------------------------------------

@pytest.mark.parametrize("s", COMMANDS, ids=IDS)
def test_every_reserved_bit_is_an_illegal_command(s):
    legal = s.encode()
    assert s.validate(legal, ALL_FEATURES) == []
    for bit in range(128):
        if (s.reserved_mask >> bit) & 1:
            rules = s.validate(legal | 1 << bit, ALL_FEATURES)
            assert len(rules) == 1 and rules[0].event == "ILLEGAL_COMMAND_ERROR", (s.name, bit)


def test_completion_wait_reserved_bits_59_52():
    assert C.COMPLETION_WAIT.reserved_mask == 0xFF << 52
    assert names(C.COMPLETION_WAIT.validate(C.COMPLETION_WAIT.encode(S=1) | 1 << 52)) == ["reserved[59:52]"]


def test_feature_gated_commands():
    assert names(C.INVALIDATE_IOMMU_ALL.validate(C.INVALIDATE_IOMMU_ALL.encode(), {"EFR.IASup": 0})) == [
        "INVALIDATE_IOMMU_ALL-without-IASup"]
    assert C.INVALIDATE_IOMMU_ALL.validate(C.INVALIDATE_IOMMU_ALL.encode(), {"EFR.IASup": 1}) == []
    assert C.INVALIDATE_IOMMU_ALL.validate(C.INVALIDATE_IOMMU_ALL.encode()) == []  # feature unknown: not checked
    pf = C.PREFETCH_IOMMU_PAGES.encode(DeviceID=1, PFCount=1)
    assert names(C.PREFETCH_IOMMU_PAGES.validate(pf, NO_FEATURES)) == ["PREFETCH_IOMMU_PAGES-without-PreFSup"]
    assert names(C.RESET_VMMIO.validate(C.RESET_VMMIO.encode(), NO_FEATURES)) == ["RESET_VMMIO-without-vIommuSup"]
    assert names(C.INSERT_GUEST_EVENT.validate(C.INSERT_GUEST_EVENT.encode(GuestID=3), NO_FEATURES)) == [
        "INSERT_GUEST_EVENT-without-vIommuSup"]
    typed = C.INVALIDATE_IOTLB_PAGES.encode(DeviceID=1, Type=1)
    assert names(C.INVALIDATE_IOTLB_PAGES.validate(typed, NO_FEATURES)) == ["Type-without-InvIotlbTypeSup"]
    assert C.INVALIDATE_IOTLB_PAGES.validate(typed, ALL_FEATURES) == []
    assert C.INVALIDATE_IOTLB_PAGES.validate(C.INVALIDATE_IOTLB_PAGES.encode(DeviceID=1), NO_FEATURES) == []
    for rule in (r for s in COMMANDS for r in s.rules):
        assert rule.event == "ILLEGAL_COMMAND_ERROR" and rule.needs


# ---- pinned choices where the sources disagree ---------------------------------------------------

def test_pin_iotlb_pasid_split_follows_current_linux_and_freebsd():
    # Current Linux and FreeBSD: PASID[15:8] at Q0[23:16], PASID[7:0] at Q0[55:48], FreeBSD PASID[19:16] at
    # Q0[59:56]. Xen, VirtualBox and older Linux: PASID[7:0] at 23:16, PASID[19:8] at 59:48.
    s = C.INVALIDATE_IOTLB_PAGES
    assert [(s.field(n).hi, s.field(n).lo) for n in ("PASID[7:0]", "PASID[15:8]", "PASID[19:16]")] == [
        (55, 48), (23, 16), (59, 56)]
    assert s.encode({"PASID[7:0]": 0x01, "PASID[15:8]": 0x02, "PASID[19:16]": 0x3}) >> 16 & 0xFF == 0x02
    assert s.view(s.encode({"PASID[7:0]": 0x01, "PASID[15:8]": 0x02, "PASID[19:16]": 0x3}))["PASID"] == 0x30201
    for n in ("PASID[7:0]", "PASID[15:8]", "PASID[19:16]"):
        f = s.field(n)
        assert all(src in f.conflict for src in ("Linux", "FreeBSD", "Xen", "VirtualBox"))
        assert "FreeBSD" in f.sources and "VirtualBox" not in f.sources


def test_pin_ppr_completion_tag_is_16_bits_as_three_sources_have_it():
    # VirtualBox (u16CompletionTag) and FreeBSD (compltag:16) declare 111:96 as one tag and QEMU leaves it
    # unreserved; only Linux splits it (9-bit tag, 4-bit status at 111:108). What three accept is legal.
    s = C.COMPLETE_PPR_REQUEST
    tag = s.field("Completion Tag")
    assert (tag.hi, tag.lo) == (111, 96) and s.field("Status") is None
    assert set(tag.sources) == {"VirtualBox", "FreeBSD"} and "Linux" in tag.conflict and "QEMU" in tag.conflict
    assert "111:108" in tag.note and "104:96" in tag.note  # Linux's reading stays visible
    wide = s.encode({"DeviceID": 1, "Completion Tag": 0b1111 << 9})  # tag bits 12:9 = Q1 bits 108:105
    assert all((wide >> b) & 1 for b in range(105, 109))
    assert s.validate(wide) == []
    assert C.linux_ppr_reading(0xF000 | 0x0E00 | 0x1FF) == {"tag": 0x1FF, "status": 0xF, "unused": 0b111}
    assert names(s.validate(s.encode(DeviceID=1) | 1 << 112)) == ["reserved[127:112]"]


def test_insert_guest_event_from_freebsd():
    # FreeBSD struct amdiommu_cmd_insert_guest_event: GuestID at 47:32, the rest reserved; opcode 09h in
    # FreeBSD, NOVA (§2.4.9) and OSDev.
    s = C.INSERT_GUEST_EVENT
    assert command_structure(0x9 << 60) is s
    assert [(f.name, f.hi, f.lo) for f in s.named_fields] == [("GuestID", 47, 32), ("Opcode", 63, 60)]
    assert s.reserved_mask == (2**128 - 1) & ~(0xFFFF << 32 | 0xF << 60)
    assert s.validate(s.encode(GuestID=0x1234), ALL_FEATURES) == []
    assert names(s.validate(s.encode(GuestID=1) | 1 << 48, ALL_FEATURES)) == ["reserved[59:48]"]
    assert s.field("Opcode").sources == ("FreeBSD", "NOVA", "OSDev") and s.field("GuestID").sources == ("FreeBSD",)


def test_pin_prefetch_layout_from_virtualbox():
    s = C.PREFETCH_IOMMU_PAGES
    assert [(f.name, f.hi, f.lo) for f in s.named_fields if f.name != "Opcode"] == [
        ("DeviceID", 15, 0), ("PFCount", 31, 24), ("PASID", 51, 32), ("S", 64, 64), ("GN", 66, 66),
        ("Inval", 68, 68), ("Address", 127, 76)]
    assert "VirtualBox" in s.note


# ---- the S-bit range encoding --------------------------------------------------------------------

def test_s0_is_one_4k_page():
    assert invalidation_range(0x1234_5678, 0) == (0x1234_5000, 0x1000)
    assert invalidation_range(C.INV_IOMMU_ALL_PAGES_ADDRESS, 0) == (0x7FFF_FFFF_FFFF_F000, 0x1000)


def test_large_ranges_follow_linux_and_qemu():
    """Linux sends the all-pages address once the highest differing bit passes 51; QEMU decodes a first
    clear bit at 51 or above as every page (48882 Table 14). Both at the boundary."""
    # encoding: aligned blocks of 2^51, 2^52, 2^53 and 2^63 bytes
    assert C.range_operand(0, 2**51) == ((1 << 50) - 1 & ~0xFFF, 1)  # first zero at 50
    assert C.range_operand(0, 2**52) == ((1 << 51) - 1 & ~0xFFF, 1)  # first zero at 51
    assert C.range_operand(0, 2**53) == (C.INV_IOMMU_ALL_PAGES_ADDRESS & ~0xFFF, 1)
    assert C.range_operand(2**63, 2**63) == (C.INV_IOMMU_ALL_PAGES_ADDRESS & ~0xFFF, 1)
    for start, size in ((0, 2**51), (0, 2**52), (0, 2**53), (2**63, 2**63), (2**52, 2**52), (0x1000, 2**51)):
        assert C.range_operand(start, size) == (linux_build_inv_address(start, size) & ~1,
                                                linux_build_inv_address(start, size) & 1)
    # decoding: first clear bit at 50, 51, 52
    first_zero = lambda z: ((1 << z) - 1) & ~0xFFF
    assert invalidation_range(first_zero(50), 1) == (0, 2**51)
    assert invalidation_range(first_zero(50) | 1 << 51, 1) == (2**51, 2**51)
    assert invalidation_range(first_zero(51), 1) == (0, 2**64)
    assert invalidation_range(first_zero(51) | 1 << 60, 1) == (0, 2**64)
    assert invalidation_range(first_zero(52), 1) == (0, 2**64)
    # so the 2^51 block decodes to itself, and 2^52 and up to every page
    assert invalidation_range(*C.range_operand(2**51, 2**51)) == (2**51, 2**51)
    assert invalidation_range(*C.range_operand(0, 2**52)) == (0, 2**64)
    assert invalidation_range(*C.range_operand(2**63, 2**63)) == (0, 2**64)


def test_linux_all_pages_constant_is_the_whole_space():
    assert C.INV_IOMMU_ALL_PAGES_ADDRESS == 0x7FFF_FFFF_FFFF_FFFF
    assert invalidation_range(C.INV_IOMMU_ALL_PAGES_ADDRESS, 1) == (0, 2**64)
    assert invalidation_range(2**64 - 1, 1) == (0, 2**64)  # no clear bit at all: also everything


def test_s1_ranges():
    assert invalidation_range(0x2000, 1) == (0x2000, 0x2000)  # bit 12 clear: z = 12, 8 KiB
    assert invalidation_range(0x1000, 1) == (0x0000, 0x4000)  # bit 12 set, 13 clear: z = 13, 16 KiB
    assert invalidation_range(0x3000, 1) == (0x0000, 0x8000)  # bits 13:12 set, 14 clear: 32 KiB
    assert invalidation_range(0x2FF000, 1) == (0x20_0000, 0x20_0000)  # bits 19:12 set, 20 clear: 2 MiB
    assert invalidation_range(0x2FF000 | 0xABC, 1) == (0x20_0000, 0x20_0000)  # bits 11:0 ignored


def test_linux_builds_the_2m_and_8k_ranges_this_way():
    assert linux_build_inv_address(0x20_0000, 0x20_0000) == 0x2F_F001
    assert linux_build_inv_address(0x2000, 0x2000) == 0x2001
    assert invalidation_range(0x2F_F000, 1) == (0x20_0000, 0x20_0000)
    assert invalidation_range(0x2000, 1) == (0x2000, 0x2000)


@given(st.integers(0, 2**64 - 1).flatmap(lambda a: st.tuples(st.just(a), st.integers(1, 2**64 - a))))
def test_linux_encoding_covers_exactly_the_smallest_aligned_block(case):
    address, size = case
    inv = linux_build_inv_address(address, size)
    start, length = invalidation_range(inv, inv & 1)
    end = address + size - 1
    assert start <= address and end < start + length
    assert start % length == 0
    if length > 0x1000 and length < 2**64:
        half = length // 2
        assert address // half != end // half  # a half-size aligned block would not hold both ends


@given(st.integers(0, 2**64 - 1), st.integers(0, 1))
def test_range_decoding_is_the_same_over_z3(address, s):
    start, offset_mask = C._invalidation_span(Z3, z3.BitVecVal(address, 64), z3.BitVecVal(s, 1))
    assert (Z3.value(start), Z3.value(offset_mask) + 1) == invalidation_range(address, s)


# ---- round trips and the INT/Z3 differential -----------------------------------------------------

@pytest.mark.parametrize("s", COMMANDS, ids=IDS)
@given(data=st.data())
def test_decode_of_encode_is_identity(s, data):
    values = data.draw(field_values(s))
    bits = s.encode(values)
    assert s.decode(bits) == values
    assert command_structure(bits) is s


@pytest.mark.parametrize("s", COMMANDS, ids=IDS)
@given(data=st.data())
def test_encode_of_decode_gives_back_the_bits(s, data):
    bits = with_opcode(s, data.draw(st.integers(0, 2**128 - 1)))
    assert s.encode(s.decode(bits)) == bits & ~s.reserved_mask
    legal = bits & ~s.reserved_mask
    assert s.encode(s.decode(legal)) == legal


@pytest.mark.parametrize("s", COMMANDS, ids=IDS)
@given(data=st.data())
def test_int_and_z3_agree_on_decode_and_check(s, data):
    bits = data.draw(st.one_of(st.integers(0, 2**128 - 1), st.integers(0, 2**128 - 1).map(lambda b: with_opcode(s, b))))
    features = {k: data.draw(st.integers(0, 1)) for k in ALL_FEATURES}
    sym = z3.BitVecVal(bits, 128)
    assert {k: Z3.value(v) for k, v in s.decode(sym, Z3).items()} == s.decode(bits)
    for comp in s.composites:
        assert Z3.value(s.view(sym, Z3)[comp.name]) == s.view(bits)[comp.name]
    concrete = s.check(bits, INT, features)
    symbolic = s.check(sym, Z3, {k: z3.BitVecVal(v, 1) for k, v in features.items()})
    assert [v.rule.name for v in concrete] == [v.rule.name for v in symbolic]
    for cv, zv in zip(concrete, symbolic):
        assert bool(cv.condition) == Z3.value(z3.simplify(zv.condition)), cv.rule.name
