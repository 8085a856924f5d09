"""The MMIO register tables against Linux, Xen and VirtualBox facts, the derived helpers, and the pinned choices."""

import pytest
import z3
from hypothesis import given, strategies as st

from amdvi.spec import mmio
from amdvi.spec.bitvec import Z3_TERMS as Z3  # terms, never folded: Z3 itself evaluates
from amdvi.spec.device_table import DTE
from amdvi.spec.mmio import (
    CMD_BUF_BAR, CMD_BUF_HEAD, CONTROL, DEV_TAB_BAR, EFR, EFR2, EVT_LOG_BAR, EXCL_BASE, EXCL_LIMIT,
    OFFSETS, REGISTERS, REGISTERS_BY_OFFSET, STATUS, STATUS_RW1C_MASK, guest_levels_supported,
)

IDS = [r.name for r in REGISTERS]
U64 = st.integers(0, (1 << 64) - 1)


def named_mask(s):
    return sum(f.mask for f in s.named_fields)


def bits_of(mask):
    return {i for i in range(64) if mask >> i & 1}


def layout(pairs):
    """``[(name or None, width), ...]`` from bit 0 up -> ``{name: (hi, lo)}`` (a C bit-field's layout)."""
    out, lo = {}, 0
    for name, width in pairs:
        if name is not None:
            out[name] = (lo + width - 1, lo)
        lo += width
    assert lo == 64
    return out


# ---- the map ----------------------------------------------------------------------------------
def test_the_fourteen_registers_and_their_offsets():
    assert IDS == ["DEV_TAB_BAR", "CMD_BUF_BAR", "EVT_LOG_BAR", "CONTROL", "EXCL_BASE", "EXCL_LIMIT", "EFR",
                   "PPR_LOG_BAR", "EFR2", "CMD_BUF_HEAD", "CMD_BUF_TAIL", "EVT_LOG_HEAD", "EVT_LOG_TAIL", "STATUS"]
    assert len(REGISTERS_BY_OFFSET) == len(REGISTERS) == len(OFFSETS) == 14  # offsets unique
    for r in REGISTERS:
        assert r.width == 64 and r.reserved_event == ""
        assert REGISTERS_BY_OFFSET[OFFSETS[r.name]] is r
        assert OFFSETS[r.name] % 8 == 0
        assert r.title in r.aliases
        assert "revision 3.11" in r.note


# Linux amd_iommu_types.h MMIO_*_OFFSET / MMIO_EXT_FEATURES* (also VirtualBox IOMMU_MMIO_OFF_*).
LINUX_OFFSETS = {
    "MMIO_DEV_TABLE_OFFSET": 0x0000, "MMIO_CMD_BUF_OFFSET": 0x0008, "MMIO_EVT_BUF_OFFSET": 0x0010,
    "MMIO_CONTROL_OFFSET": 0x0018, "MMIO_EXCL_BASE_OFFSET": 0x0020, "MMIO_EXCL_LIMIT_OFFSET": 0x0028,
    "MMIO_EXT_FEATURES": 0x0030, "MMIO_PPR_LOG_OFFSET": 0x0038, "MMIO_EXT_FEATURES2": 0x01A0,
    "MMIO_CMD_HEAD_OFFSET": 0x2000, "MMIO_CMD_TAIL_OFFSET": 0x2008, "MMIO_EVT_HEAD_OFFSET": 0x2010,
    "MMIO_EVT_TAIL_OFFSET": 0x2018, "MMIO_STATUS_OFFSET": 0x2020,
}


def test_offsets_match_linux_macro_named_in_each_alias():
    seen = set()
    for r in REGISTERS:
        (macro,) = [a for a in r.aliases if a.startswith("MMIO_")]
        assert LINUX_OFFSETS[macro] == OFFSETS[r.name], r.name
        seen.add(macro)
    assert seen == set(LINUX_OFFSETS)


# ---- round trips and the reserved-bit validator -----------------------------------------------
@pytest.mark.parametrize("reg", REGISTERS, ids=IDS)
@given(data=st.data())
def test_round_trip(reg, data):
    values = data.draw(st.fixed_dictionaries({f.name: st.integers(0, (1 << f.width) - 1) for f in reg.named_fields}))
    assert reg.decode(reg.encode(values)) == values
    bits = data.draw(U64)
    assert reg.encode(reg.decode(bits)) == bits & named_mask(reg)


@pytest.mark.parametrize("reg", REGISTERS, ids=IDS)
@given(bits=U64)
def test_reserved_rules_fire_exactly_on_reserved_bits(reg, bits):
    fired = [r for r in reg.validate(bits) if r.name.startswith("reserved")]
    assert bool(fired) == bool(bits & reg.reserved_mask)


# ---- layouts against the sources --------------------------------------------------------------
# VirtualBox include/VBox/iommu-amd.h *_VALID_MASK values.
VBOX_VALID = {
    "DEV_TAB_BAR": 0x000FFFFFFFFFF1FF, "CMD_BUF_BAR": 0x0F0FFFFFFFFFF000, "EVT_LOG_BAR": 0x0F0FFFFFFFFFF000,
    "PPR_LOG_BAR": 0x0F0FFFFFFFFFF000, "EXCL_BASE": 0x000FFFFFFFFFF003, "CMD_BUF_HEAD": 0x7FFF0,
    "CMD_BUF_TAIL": 0x7FFF0, "EVT_LOG_HEAD": 0x7FFF0, "EVT_LOG_TAIL": 0x7FFF0, "STATUS": 0x79FFF,
}


@pytest.mark.parametrize("name", sorted(VBOX_VALID))
def test_named_bits_equal_virtualbox_valid_masks(name):
    reg = mmio.REGISTERS_BY_OFFSET[OFFSETS[name]]
    assert named_mask(reg) == VBOX_VALID[name]


def test_exclusion_limit_low_bits_are_ignored_not_reserved():
    # VirtualBox valid mask 0x000fffffffffffff covers 11:0, which read as ones: not an error to see them set.
    assert named_mask(EXCL_LIMIT) | 0xFFF == 0x000FFFFFFFFFFFFF
    assert EXCL_LIMIT.validate(0xFFF) == []
    assert EXCL_BASE.encode(ExEn=1, Allow=1) == 0x3  # Linux MMIO_EXCL_ENABLE_MASK | MMIO_EXCL_ALLOW_MASK


# Linux amd_iommu_types.h CONTROL_* bit numbers (the RFC adds vCmdEn/vIommuEn/Dual*/PprAutoRspEn/BlkStopMrkEn).
LINUX_CONTROL = {
    "IommuEn": 0, "HtTunEn": 1, "EventLogEn": 2, "EventIntEn": 3, "ComWaitIntEn": 4, "InvTimeOut": 5,
    "PassPW": 8, "ResPassPW": 9, "Coherent": 10, "Isoc": 11, "CmdBufEn": 12, "PPRLogEn": 13, "PprIntEn": 14,
    "PPREn": 15, "GTEn": 16, "GAEn": 17, "GAMEn": 25, "GALogEn": 28, "GAIntEn": 29, "DualPprLogEn": 30,
    "DualEventLogEn": 32, "PprAutoRspEn": 39, "BlkStopMrkEn": 41, "NumIntRemapMode": 43, "EPHEn": 45,
    "XTEn": 50, "IntCapXTEn": 51, "vCmdEn": 52, "vIommuEn": 53, "GAPPIEn": 55, "GCR3TRPMode": 58,
    "IRTCacheDis": 59, "SNPAVICEn": 61,
}


def test_control_bits_where_linux_puts_them():
    for name, bit in LINUX_CONTROL.items():
        assert CONTROL.field(name).lo == bit, name
    # Linux: iommu_feature_enable(CONTROL_GAM_EN) is GAMEn = 1 (vAPIC); NUM_INT_REMAP_MODE_2K is 1 << 43.
    assert CONTROL.view(1 << 25).gamen == 1
    assert CONTROL.encode(NumIntRemapMode=1) == 1 << 43
    assert CONTROL.field("InvTimeOut").describe(4) == "1 s"  # Linux CTRL_INV_TO_1S = 4


# Xen union amd_iommu_control, as (our name, width) from bit 0; None = Xen's unnamed or conflicting bits.
XEN_CONTROL = layout([
    ("IommuEn", 1), ("HtTunEn", 1), ("EventLogEn", 1), ("EventIntEn", 1), ("ComWaitIntEn", 1), ("InvTimeOut", 3),
    ("PassPW", 1), ("ResPassPW", 1), ("Coherent", 1), ("Isoc", 1), ("CmdBufEn", 1), ("PPRLogEn", 1),
    ("PprIntEn", 1), ("PPREn", 1), ("GTEn", 1), ("GAEn", 1), ("CRW", 4), ("SmiFEn", 1), ("SlfWBdis", 1),
    ("SmiFLogEn", 1), ("GAMEn", 3), ("GALogEn", 1), ("GAIntEn", 1), ("DualPprLogEn", 2), ("DualEventLogEn", 2),
    ("DevTblSegEn", 3), ("PrivAbrtEn", 2), ("PprAutoRspEn", 1), ("MarcEn", 1), ("BlkStopMrkEn", 1),
    ("PprAutoRspAon", 1), (None, 1), (None, 1), ("EPHEn", 1), ("HADUpdate", 2), ("GDUpdateDis", 1), (None, 1),
    ("XTEn", 1), ("IntCapXTEn", 1), ("vCmdEn", 1), ("vIommuEn", 1), ("GAUpdateDis", 1), ("GAPPIEn", 1), (None, 8),
])


def test_control_matches_xen_except_the_pinned_conflicts():
    for name, (hi, lo) in XEN_CONTROL.items():
        f = CONTROL.field(name)
        assert (f.hi, f.lo) == (hi, lo), name


def test_control_vs_virtualbox_valid_mask():
    vbox = 0x004DEFFFFFFFFFFF
    ours = named_mask(CONTROL)
    assert vbox & ~ours == 0
    # What VirtualBox lacks: bit 44 (Linux's NumIntRemapMode), and the vIOMMU / GAPPI / GCR3TRP / IRT / SNP bits.
    assert bits_of(ours & ~vbox) == {44, 52, 53, 55, 58, 59, 61, 62, 63}


def test_pinned_control_conflicts():
    # PprAutoRspAon: VirtualBox, Xen and the vIOMMU code's own "[42]" annotation beat the RFC's "48".
    assert CONTROL.field("PprAutoRspAon").lo == 42 and CONTROL.field("GDUpdateDis").lo == 48
    # Bits 44:43: Linux's 2-bit NumIntRemapMode, not VirtualBox/Xen's DomainIDPNE.
    f = CONTROL.field("NumIntRemapMode")
    assert (f.hi, f.lo) == (44, 43) and CONTROL.field("DomainIDPNE") is None
    assert all(src in f.conflict for src in ("Linux", "FreeBSD", "VirtualBox", "Xen")) and "DomainIDPNE" in f.conflict
    assert "48" in CONTROL.field("PprAutoRspAon").conflict
    # SNPAVICEn: 3 bits from 61 (width inferred); Linux's CONTROL_SNPAVIC_EN sets value 1.
    f = CONTROL.field("SNPAVICEn")
    assert (f.hi, f.lo) == (63, 61) and CONTROL.view(1 << 61).snpavicen == 1
    assert CONTROL.field("GstBufferTRPMode") is None  # bit unknown: not declared


# Linux FEATURE_* (EFR) and EFR2 FEATURE_* positions.
LINUX_EFR = {
    "PreFSup": (0, 0), "PPRSup": (1, 1), "XTSup": (2, 2), "NXSup": (3, 3), "GTSup": (4, 4), "GAPPISup": (5, 5),
    "IASup": (6, 6), "GASup": (7, 7), "HESup": (8, 8), "PCSup": (9, 9), "HATS": (11, 10), "GATS": (13, 12),
    "GLXSup": (15, 14), "PASmax": (36, 32), "MsiCapMmioSup": (46, 46), "GIoSup": (48, 48), "HASup": (49, 49),
    "EPHSup": (50, 50), "HDSup": (52, 52), "SNPSup": (63, 63),
}
LINUX_EFR2 = {"SEVSNPIOSup": (1, 1), "GCR3TRPModeSup": (3, 3), "SNPAVICSup": (7, 5), "NumIntRemapSup": (9, 8),
              "HTRangeIgnore": (11, 11)}

# Xen union amd_iommu_ext_features.
XEN_EFR = layout([
    ("PreFSup", 1), ("PPRSup", 1), ("XTSup", 1), ("NXSup", 1), ("GTSup", 1), ("GAPPISup", 1), ("IASup", 1),
    ("GASup", 1), ("HESup", 1), ("PCSup", 1), ("HATS", 2), ("GATS", 2), ("GLXSup", 2), ("SmiFSup", 2),
    ("SmiFRC", 3), ("GAMSup", 3), ("DualPprLogSup", 2), (None, 2), ("DualEventLogSup", 2), (None, 1),
    ("SATSSup", 1), ("PASmax", 5), ("USSup", 1), ("DevTblSegSup", 2), ("PprOvrflwEarlySup", 1),
    ("PprAutoRspSup", 1), ("MarcSup", 2), ("BlkStopMrkSup", 1), ("PerfOptSup", 1), ("MsiCapMmioSup", 1),
    (None, 1), ("GIoSup", 1), ("HASup", 1), ("EPHSup", 1), ("AttrFWSup", 1), ("HDSup", 1), (None, 1),
    ("InvIotlbTypeSup", 1), ("vIommuSup", 1), ("VmGuardIOSup", 1), ("VmTableSize", 4), ("GAUpdateDisSup", 1),
    (None, 2),
])


@pytest.mark.parametrize("reg,facts", [(EFR, LINUX_EFR), (EFR, XEN_EFR), (EFR2, LINUX_EFR2)],
                         ids=["EFR-linux", "EFR-xen", "EFR2-linux"])
def test_feature_bits_where_the_sources_put_them(reg, facts):
    for name, (hi, lo) in facts.items():
        f = reg.field(name)
        assert (f.hi, f.lo) == (hi, lo), name


def test_efr_bits_beyond_xen_follow_virtualbox_and_linux():
    assert EFR.field("ForcePhyDestSup").lo == 62  # VirtualBox
    assert EFR.field("SNPSup").lo == 63  # Linux
    assert len(EFR.named_fields) == 40


# ---- Status and RW1C --------------------------------------------------------------------------
def test_status_rw1c_mask_is_virtualbox_restricted_to_declared_bits():
    vbox_rw1c = 0x68E67  # IOMMU_STATUS_RW1C_MASK: bits 0,1,2,5,6,9,10,11,15,17,18
    assert STATUS_RW1C_MASK == vbox_rw1c & named_mask(STATUS) == vbox_rw1c
    assert bits_of(STATUS_RW1C_MASK) == {0, 1, 2, 5, 6, 9, 10, 11, 15, 17, 18}
    for f in STATUS.named_fields:
        assert f.meaning.endswith("(RW1C)") == bool(f.mask & STATUS_RW1C_MASK), f.name


def test_status_bit_positions_pinned():
    # Linux MMIO_STATUS_* and VirtualBox agree: 8 = GALogRun, 9 = GALOverflow, 10 = GAInt (Xen differs).
    assert [STATUS.field(n).lo for n in ("GALogRun", "GALOverflow", "GAInt")] == [8, 9, 10]
    assert [STATUS.field(n).lo for n in ("EventOverflow", "EventLogInt", "ComWaitInt", "EventLogRun", "CmdBufRun")] \
        == [0, 1, 2, 3, 4]


def test_writing_status_clears_only_rw1c_bits():
    running = STATUS.encode(EventLogInt=1, EventLogRun=1, CmdBufRun=1, ComWaitInt=1)
    # Linux acknowledges interrupts by writing back the value it read: the run bits stay.
    assert mmio.status_after_write(running, running) == STATUS.encode(EventLogRun=1, CmdBufRun=1)
    assert mmio.status_after_write(running, 0) == running
    everything = (1 << 64) - 1
    assert mmio.status_after_write(everything, everything) == everything & ~STATUS_RW1C_MASK


# ---- known answers from Linux -----------------------------------------------------------------
def test_linux_command_buffer_and_event_log_base_values():
    # Linux: entry = phys(cmd_buf) | MMIO_CMD_SIZE_512 (9 << 56); CMD_BUFFER_SIZE = 8192.
    value = CMD_BUF_BAR.encode(ComBase=0x12345000 >> 12, ComLen=9)
    assert value == 0x0900000012345000
    assert CMD_BUF_BAR.view(value).comlen == 9 and CMD_BUF_BAR.validate(value) == []
    assert mmio.ring_entries(9) == 512 and mmio.ring_bytes(9) == 8192
    # Event log: EVT_LEN_MASK is the same 9 << 56 (EVT_BUFFER_SIZE 8192, 512 entries).
    assert EVT_LOG_BAR.encode(EventBase=0x12345, EventLen=9) == 0x0900000012345000


def test_log_lengths_below_256_entries_are_flagged():
    for reg, name in ((CMD_BUF_BAR, "ComLen"), (EVT_LOG_BAR, "EventLen"), (mmio.PPR_LOG_BAR, "PPRLogLen")):
        assert [r.name for r in reg.validate(reg.encode({name: 7}))] == [f"{name}=7"]
        assert reg.validate(reg.encode({name: 8})) == []
        assert reg.field(name).describe(15) == "32768 entries (512 KiB)"


def test_pointer_range_covers_exactly_the_largest_ring():
    # Head/tail bits 18:4 address 512 KiB: 2^15 entries of 16 bytes (Linux CMD_BUFFER_MAXSIZE 0x80000).
    f = CMD_BUF_HEAD.field("CmdHdPtr")
    assert f.mask + 16 == mmio.ring_bytes(15) == 0x80000
    assert f.unit_shift == 4 and CMD_BUF_HEAD.view(0x1F0).cmdhdptr << 4 == 0x1F0


def test_linux_device_table_register():
    # Linux iommu_set_device_table: entry = phys(table) | ((dev_table_size >> 12) - 1); 2 MiB for 64K DTEs.
    dev_table_size = 65536 * 32
    value = 0x40000000 | ((dev_table_size >> 12) - 1)
    d = DEV_TAB_BAR.decode(value)
    assert d == {"Size": 0x1FF, "DevTabBase": 0x40000}
    assert mmio.device_table_bytes(value) == dev_table_size
    assert mmio.max_device_id(value) == 0xFFFF
    assert (mmio.device_table_bytes(0), mmio.max_device_id(0)) == (4096, 0x7F)


# ---- EFR helpers --------------------------------------------------------------------------------
@pytest.mark.parametrize("hats,levels", [(0, 4), (1, 5), (2, 6), (3, None)])
def test_host_levels_supported(hats, levels):
    assert mmio.host_levels_supported(EFR.encode(HATS=hats)) == levels


@pytest.mark.parametrize("gats,levels", [(0, 4), (1, 5), (2, None), (3, None)])
def test_guest_levels_supported(gats, levels):
    assert mmio.guest_levels_supported(EFR.encode(GATS=gats)) == levels


def test_pasmax_is_width_minus_one():
    # Pinned: Linux max_pasids = (1 << (PASmax + 1)) - 1; AMD's QEMU vIOMMU writes PASmax = 0xF for 16 bits.
    efr = EFR.encode(PASmax=0xF)
    assert mmio.max_pasid_bits(efr) == 16
    assert (1 << mmio.max_pasid_bits(efr)) - 1 == 0xFFFF  # Linux PASID_MASK for 16-bit PASIDs
    assert mmio.max_pasid_bits(EFR.encode(PASmax=19)) == 20  # the spec's 20-bit maximum
    assert "PASmax + 1" in EFR.field("PASmax").meaning


def test_efr_and_control_contexts_feed_the_dte_rules():
    ctx = mmio.efr_context(EFR.encode(HATS=3, GTSup=1))
    assert set(ctx) == {f"EFR.{f.name}" for f in EFR.named_fields}
    for key in ("EFR.HATS", "EFR.GTSup", "EFR.GIoSup", "EFR.GATS", "EFR.IASup", "EFR.PreFSup"):
        assert key in ctx
    both = {**ctx, **mmio.register_context(mmio.CONTROL, 0)}
    assert all(n in both for r in DTE.all_rules() for n in r.needs)
    dte = DTE.encode(V=1, TV=1, Mode=4, host_page_table_root_pointer=0x1000)
    assert [r.name for r in DTE.validate(dte, ctx)] == ["host-root-without-HATS"]
    assert DTE.validate(dte, mmio.efr_context(EFR.encode(HATS=0, GTSup=1))) == []
    assert mmio.register_context(EFR2, EFR2.encode(GCR3TRPModeSup=1))["EFR2.GCR3TRPModeSup"] == 1


# ---- INT vs Z3 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("reg", REGISTERS, ids=IDS)
@given(bits=U64)
def test_int_and_z3_decode_agree(reg, bits):
    symbolic = reg.decode(z3.BitVecVal(bits, 64), backend=Z3)
    assert {k: Z3.value(v) for k, v in symbolic.items()} == reg.decode(bits)


@given(bits=U64, written=U64, length=st.integers(0, 15))
def test_int_and_z3_helpers_agree(bits, written, length):
    sym = z3.BitVecVal(bits, 64)
    for helper in (mmio.device_table_bytes, mmio.max_device_id, mmio.max_pasid_bits):
        assert Z3.value(helper(sym, Z3)) == helper(bits), helper.__name__
    for helper in (mmio.ring_entries, mmio.ring_bytes):
        assert Z3.value(helper(z3.BitVecVal(length, 4), Z3)) == helper(length), helper.__name__
    assert Z3.value(mmio.status_after_write(sym, z3.BitVecVal(written, 64), Z3)) == mmio.status_after_write(bits, written)
    ctx = mmio.efr_context(sym, Z3)
    assert {k: Z3.value(v) for k, v in ctx.items()} == mmio.efr_context(bits)


def test_device_table_helpers_agree_for_every_register_value():
    """Proved: (max_device_id + 1) x 32 bytes is the table length, for all 2^64 register values."""
    bits = z3.BitVec("dev_tab_bar", 64)
    ids = z3.ZeroExt(48, mmio.max_device_id(bits, Z3))
    solver = z3.Solver()
    solver.add((ids + 1) * mmio.DEVICE_TABLE_ENTRY_BYTES != mmio.device_table_bytes(bits, Z3))
    assert solver.check() == z3.unsat


def test_status_write_never_sets_a_bit_and_keeps_read_only_bits():
    old, written = z3.BitVecs("old written", 64)
    new = mmio.status_after_write(old, written, Z3)
    solver = z3.Solver()
    solver.add(z3.Or(new & ~old != 0, (new ^ old) & ~STATUS_RW1C_MASK != 0))
    assert solver.check() == z3.unsat


def test_status_ga_bits_follow_the_majority_with_xens_order_recorded():
    # Linux, FreeBSD, VirtualBox and NOVA: 8 run, 9 overflow, 10 interrupt; Xen: 8 overflow, 9 interrupt, 10 run.
    assert [STATUS.field(n).lo for n in ("GALogRun", "GALOverflow", "GAInt")] == [8, 9, 10]
    for n in ("GALogRun", "GALOverflow", "GAInt"):
        f = STATUS.field(n)
        assert f.sources == ("Linux", "FreeBSD", "VirtualBox", "NOVA") and "Xen" in f.conflict


def test_efr_gats_2_has_no_defined_meaning_and_counts_as_4_levels():
    gats = EFR.field("GATS")
    assert set(gats.values) == {0, 1, 2, 3} and gats.illegal == {}
    assert "QEMU" in gats.values[2] and "4-level" in gats.values[2] and "QEMU" in gats.note
    assert guest_levels_supported(EFR.encode(GATS=2)) is None
    assert guest_levels_supported(EFR.encode(GATS=1)) == 5


def test_efr2_gappidissup_at_bit_4():
    f = EFR2.field("GAPPIDisSup")
    assert (f.hi, f.lo) == (4, 4) and f.sources == ("FreeBSD", "Linux")
    assert EFR2.validate(EFR2.encode(GAPPIDisSup=1)) == []
