"""Known-answer translation examples (issue 4 design), each run through both the spec's
``translate`` and the naive reference walker in ``reference_walker.py``.

Every example is a small memory image built with the field tables' encoders and a
DEV_TAB_BAR value; the expected answer is written out by hand (SPA, page size, permissions,
or the exact event record, built here through the event table's encoder).
"""

from __future__ import annotations

import pytest

from amdvi.spec.bitvec import INT
from amdvi.spec.device_table import DTE
from amdvi.spec.events import ILLEGAL_DEV_TABLE_ENTRY, IO_PAGE_FAULT, event_structure
from amdvi.spec.guest_page_table import GCR3_ENTRY, GPTE
from amdvi.spec.host_page_table import PDE, PTE
from amdvi.spec.mmio import DEV_TAB_BAR
from amdvi.spec.translation import DIMENSION_NAMES, Request, translate
from amdvi.spec.choices import Hardware

from reference_walker import Req, reference_translate

DEV_TAB = 0x10_0000
BAR = DEV_TAB_BAR.encode(DevTabBase=DEV_TAB >> 12, Size=0)  # 4 KiB: DeviceIDs 0..0x7F
DEV = 0x42
DOMAIN = 0x1234
M64 = (1 << 64) - 1


# ---- image building --------------------------------------------------------------------------

def idx(address: int, level: int) -> int:
    """Index of ``address`` in a level-``level`` table (9 bits; 7 at level 6)."""
    return (address >> (12 + 9 * (level - 1))) & 0x1FF


def put_dte(mem: dict, dev: int = DEV, *, v=1, tv=1, mode=0, root=0, ir=1, iw=1, domain=DOMAIN, gv=0,
            giov=0, glx=0, gpm=0, gcr3=0, sa=0, se=0, **extra) -> None:
    fields = {"V": v, "TV": tv, "Mode": mode, "Host Page Table Root Pointer": root >> 12, "IR": ir, "IW": iw,
              "DomainID": domain, "GV": gv, "GIoV": giov, "GLX": glx, "GPM": gpm, "SA": sa, "SE": se,
              "GCR3 Table Root Pointer[14:12]": (gcr3 >> 12) & 0x7,
              "GCR3 Table Root Pointer[30:15]": (gcr3 >> 15) & 0xFFFF,
              "GCR3 Table Root Pointer[51:31]": (gcr3 >> 31) & 0x1FFFFF, **extra}
    bits = DTE.encode(fields)
    for i in range(4):
        mem[DEV_TAB + 32 * dev + 8 * i] = (bits >> (64 * i)) & M64


def pde(table: int, nl: int, ir=1, iw=1) -> int:
    return PDE.encode({"PR": 1, "IR": ir, "IW": iw, "Next Level": nl, "Next Table Address": table >> 12})


def pte(page: int, nl: int = 0, ir=1, iw=1, **extra) -> int:
    return PTE.encode({"PR": 1, "IR": ir, "IW": iw, "Next Level": nl, "Page Address": page >> 12, **extra})


def gpte(address: int, rw=1, us=1, ps=0, nx=0) -> int:
    return GPTE.encode({"P": 1, "R/W": rw, "U/S": us, "PS": ps, "NX": nx, "Address": address >> 12})


def gcr3(address: int) -> int:
    return GCR3_ENTRY.encode(V=1, GCR3=address >> 12)


def fault_record(*, flags=(), address: int, dev: int = DEV, domain: int = DOMAIN, pasid: int | None = None,
                 write: bool = False, structure=IO_PAGE_FAULT) -> int:
    """The expected record, through the event table's encoder (a third reading of the layout)."""
    fields = {"DeviceID": dev, "Address": address, "RW": int(write), **{f: 1 for f in flags}}
    lo = "DomainID or PASID[15:0]" if structure is IO_PAGE_FAULT else "PASID[15:0]"
    if pasid is not None:
        fields.update({"GN": 1, lo: pasid & 0xFFFF, "PASID[19:16]": pasid >> 16})
    elif structure is IO_PAGE_FAULT:
        fields[lo] = domain
    return structure.encode(fields)


# ---- running both implementations ------------------------------------------------------------

def run_both(mem: dict, **req):
    spec = translate(INT, mem, BAR, Request(**req))
    ref = reference_translate(mem, BAR, Req(**req))
    return spec, ref


def expect_ok(mem: dict, *, spa: int, shift: int, r: bool, w: bool, **req):
    spec, ref = run_both(mem, **req)
    for name, o in (("spec", spec), ("reference", ref)):
        got = (bool(o.ok), o.spa, o.page_shift, bool(o.readable), bool(o.writable), o.dimension, bool(o.logged),
               o.event, o.domain_id)
        assert got == (True, spa, shift, r, w, 0, False, 0, DOMAIN), f"{name}: {got}"
    return spec


def expect_fault(mem: dict, *, event: int, dimension: int, logged: bool = True, domain: int = DOMAIN, **req):
    spec, ref = run_both(mem, **req)
    for name, o in (("spec", spec), ("reference", ref)):
        got = (bool(o.ok), o.dimension, bool(o.logged), o.event, o.domain_id)
        assert got == (False, dimension, logged, event, domain), (
            f"{name}: ok={got[0]} dim={got[1]} logged={got[2]} event={got[3]:#034x} domain={got[4]:#x}, "
            f"want event {event:#034x}")
    structure = event_structure(event)
    assert structure in (IO_PAGE_FAULT, ILLEGAL_DEV_TABLE_ENTRY)
    assert structure.validate(event) == []  # no reserved bit set: a well-formed record
    d = structure.decode(event)
    assert d["DeviceID"] == req["device_id"] and d["RW"] == int(req.get("write", False))
    assert DIMENSION_NAMES[dimension] in ("device table", "guest", "host")
    return spec


def host_4k_path(mem: dict, root: int, mode: int, iova: int, tables: list[int], page: int, **leaf) -> list[int]:
    """A full ``mode``-level path for ``iova`` through ``tables`` (one per level below the root)
    to a 4 KiB ``page``; returns the entry addresses read, top first."""
    addrs = []
    table = root
    for level, nxt in zip(range(mode, 1, -1), tables):
        a = table + 8 * idx(iova, level)
        mem[a] = pde(nxt, level - 1)
        addrs.append(a)
        table = nxt
    a = table + 8 * idx(iova, 1)
    mem[a] = pte(page, **leaf)
    addrs.append(a)
    return addrs


# ---- host (v1) walks ---------------------------------------------------------------------------

def test_four_level_v1_walk():
    mem: dict = {}
    root, iova = 0x20_0000, 0x7F12_3456_7ABC
    put_dte(mem, mode=4, root=root)
    addrs = host_4k_path(mem, root, 4, iova, [0x20_1000, 0x20_2000, 0x20_3000], 0xABCD_E000)
    assert [idx(iova, lv) for lv in (4, 3, 2, 1)] == [0xFE, 0x48, 0x1A2, 0x167]
    spec = expect_ok(mem, spa=0xABCD_EABC, shift=12, r=True, w=True, device_id=DEV, address=iova, write=True)
    walked = [s.entry_address for s in spec.steps if s.active and s.table == "PDE/PTE"]
    assert walked == addrs


def test_six_level_v1_walk_uses_bits_63_57_at_level_6():
    mem: dict = {}
    root, iova = 0x20_0000, 0xA2B4_C6D8_E0F1_2345
    put_dte(mem, mode=6, root=root)
    host_4k_path(mem, root, 6, iova, [0x20_1000 + 0x1000 * i for i in range(5)], 0x3_0000_0000)
    assert idx(iova, 6) == 0x51 == iova >> 57
    expect_ok(mem, spa=0x3_0000_0345, shift=12, r=True, w=True, device_id=DEV, address=iova, write=False)
    # the same walk with bit 63 flipped reads level-6 entry 0x11, which is empty
    other = iova ^ (1 << 63)
    expect_fault(mem, event=fault_record(address=other), dimension=3, device_id=DEV, address=other, write=False)


def skipping_image() -> dict:
    """Mode 4; the level-4 PDE has Next Level 2, so level 3 is skipped (IOVA bits 38:30 must be 0)."""
    mem: dict = {}
    root = 0x20_0000
    put_dte(mem, mode=4, root=root)  # used with IOVA (5 << 39) | (7 << 21) | (9 << 12)
    mem[root + 8 * 5] = pde(0x20_2000, 2)
    mem[0x20_2000 + 8 * 7] = pde(0x20_3000, 1)
    mem[0x20_3000 + 8 * 9] = pte(0x5555_5000)
    return mem


def test_skipped_level():
    iova = (5 << 39) | (7 << 21) | (9 << 12) | 0x10
    expect_ok(skipping_image(), spa=0x5555_5010, shift=12, r=True, w=True, device_id=DEV, address=iova, write=True)


@pytest.mark.parametrize("skipped_bit", [30, 34, 38])
def test_skipped_level_index_bits_must_be_zero(skipped_bit):
    iova = (5 << 39) | (7 << 21) | (9 << 12) | (1 << skipped_bit)
    expect_fault(skipping_image(), event=fault_record(flags=("PR", "RZ"), address=iova, write=True), dimension=3,
                 device_id=DEV, address=iova, write=True)


def test_2mib_page_through_next_level_7_at_level_1():
    mem: dict = {}
    root = 0x20_0000
    put_dte(mem, mode=3, root=root)
    region = (3 << 30) | (4 << 21)  # a 2 MiB-aligned IOVA
    mem[root + 8 * 3] = pde(0x20_1000, 2)
    mem[0x20_1000 + 8 * 4] = pde(0x20_2000, 1)
    encoded = 0x4000_0000 | 0xFF000  # bits 19:12 set, bit 20 clear: 2 MiB
    for i in range(512):  # replicated, as software writes it
        mem[0x20_2000 + 8 * i] = pte(encoded, nl=7)
    iova = region | 0x12_3456
    expect_ok(mem, spa=0x4012_3456, shift=21, r=True, w=True, device_id=DEV, address=iova, write=True)


def test_1gib_page_through_next_level_7_at_level_2():
    mem: dict = {}
    root = 0x20_0000
    put_dte(mem, mode=3, root=root)
    mem[root + 8 * 2] = pde(0x20_1000, 2)
    encoded = 0x8000_0000 | 0x1FFF_F000  # bits 28:12 set, bit 29 clear: 1 GiB
    for i in range(512):
        mem[0x20_1000 + 8 * i] = pte(encoded, nl=7)
    iova = (2 << 30) | 0x2345_6789
    expect_ok(mem, spa=0xA345_6789, shift=30, r=True, w=True, device_id=DEV, address=iova, write=False)


def test_next_level_7_size_must_exceed_the_level_default():
    # bit 12 clear encodes 8 KiB, which is not larger than level 2's default 2 MiB: RZ
    mem: dict = {}
    root = 0x20_0000
    put_dte(mem, mode=2, root=root)
    mem[root] = pte(0x4000_0000, nl=7)
    iova = 0x1000
    expect_fault(mem, event=fault_record(flags=("PR", "RZ"), address=iova), dimension=3,
                 device_id=DEV, address=iova)


@pytest.mark.parametrize("nl", [0, 7])
def test_a_level_6_leaf_is_invalid(nl):
    # 48882 Table 15 as the spec cites it: the top level of a 6-level table holds no translations,
    # so a leaf there (which would map 2^57 bytes with NL = 0) is an invalid encoding
    mem: dict = {}
    put_dte(mem, mode=6, root=0x20_0000)
    iova = (0x41 << 57) | 0x0123_4567_89AB_CDEF
    mem[0x20_0000 + 8 * 0x41] = pte(0x7FFF_F000, nl=nl)
    expect_fault(mem, event=fault_record(flags=("PR", "RZ"), address=iova, write=True), dimension=3,
                 device_id=DEV, address=iova, write=True)


def test_2mib_leaf_by_skipping_to_level_2():
    mem: dict = {}
    root = 0x20_0000
    put_dte(mem, mode=4, root=root)
    mem[root + 8 * 1] = pde(0x20_1000, 2)  # skips level 3
    mem[0x20_1000 + 8 * 6] = pte(0x6_0000_0000)  # level-2 leaf, NL = 0: 2 MiB
    iova = (1 << 39) | (6 << 21) | 0x1_2345
    expect_ok(mem, spa=0x6_0001_2345, shift=21, r=True, w=True, device_id=DEV, address=iova, write=True)


def test_1gib_leaf_at_level_3():
    mem: dict = {}
    root = 0x20_0000
    put_dte(mem, mode=4, root=root)
    mem[root + 8 * 1] = pde(0x20_1000, 3)
    mem[0x20_1000 + 8 * 2] = pte(0x7_4000_0000, ir=1, iw=0)  # level-3 leaf: 1 GiB, read-only
    iova = (1 << 39) | (2 << 30) | 0x3ABC_DEF0
    expect_ok(mem, spa=0x7_7ABC_DEF0, shift=30, r=True, w=False, device_id=DEV, address=iova, write=False)


def test_read_only_upper_pde_forbids_a_write_below():
    mem: dict = {}
    root, iova = 0x20_0000, 0x12_3456_7000
    put_dte(mem, mode=3, root=root)
    mem[root + 8 * idx(iova, 3)] = pde(0x20_1000, 2, ir=1, iw=0)
    mem[0x20_1000 + 8 * idx(iova, 2)] = pde(0x20_2000, 1)
    mem[0x20_2000 + 8 * idx(iova, 1)] = pte(0x9000_0000)
    expect_fault(mem, event=fault_record(flags=("PR", "PE"), address=iova, write=True), dimension=3,
                 device_id=DEV, address=iova, write=True)
    expect_ok(mem, spa=0x9000_0000, shift=12, r=True, w=False, device_id=DEV, address=iova, write=False)


def test_dte_iw_zero_forbids_writes_through_the_host_table():
    mem: dict = {}
    root, iova = 0x20_0000, 0x4000
    put_dte(mem, mode=1, root=root, iw=0)
    mem[root + 8 * 4] = pte(0x9000_0000)
    expect_fault(mem, event=fault_record(flags=("PR", "PE"), address=iova, write=True), dimension=3,
                 device_id=DEV, address=iova, write=True)


@pytest.mark.parametrize("level,nl", [(3, 3), (3, 5), (3, 6), (2, 4), (1, 1), (1, 6)])
def test_next_level_not_below_the_current_level_is_rz(level, nl):
    mem: dict = {}
    root, iova = 0x20_0000, 0x5_0000_0000 >> (3 - level) * 9
    put_dte(mem, mode=level, root=root)
    mem[root + 8 * idx(iova, level)] = pde(0x20_1000, nl)
    mem[0x20_1000 + 8 * idx(iova, level - 1 if level > 1 else 1)] = pte(0x9000_0000)
    expect_fault(mem, event=fault_record(flags=("PR", "RZ"), address=iova), dimension=3,
                 device_id=DEV, address=iova)


@pytest.mark.parametrize("reserved_bit", [52, 55, 58])
def test_reserved_bit_in_a_pte_is_rz(reserved_bit):
    mem: dict = {}
    root, iova = 0x20_0000, 0x3000
    put_dte(mem, mode=1, root=root)
    mem[root + 8 * 3] = pte(0x9000_0000) | 1 << reserved_bit
    expect_fault(mem, event=fault_record(flags=("PR", "RZ"), address=iova, write=True), dimension=3,
                 device_id=DEV, address=iova, write=True)


def test_reserved_bit_60_is_fc_in_a_pte_but_rz_in_a_pde():
    mem: dict = {}
    root, iova = 0x20_0000, 0x20_3000
    put_dte(mem, mode=2, root=root)
    mem[root + 8 * 1] = pde(0x20_1000, 1)
    mem[0x20_1000 + 8 * 3] = pte(0x9000_0000, FC=1)
    expect_ok(mem, spa=0x9000_0000, shift=12, r=True, w=True, device_id=DEV, address=iova, write=False)
    mem[root + 8 * 1] |= 1 << 60
    expect_fault(mem, event=fault_record(flags=("PR", "RZ"), address=iova), dimension=3,
                 device_id=DEV, address=iova)


@pytest.mark.parametrize("mode,iova", [(3, 1 << 39), (1, 1 << 21), (5, 1 << 57), (4, 1 << 63)])
def test_iova_beyond_mode_is_a_not_present_fault(mode, iova):
    mem: dict = {}
    put_dte(mem, mode=mode, root=0x20_0000)
    for i in range(512):  # every root entry would map, but the IOVA is out of range first
        mem[0x20_0000 + 8 * i] = pte(0x9000_0000, nl=0) if mode == 1 else pde(0x20_1000, mode - 1)
    expect_fault(mem, event=fault_record(address=iova, write=True), dimension=3,
                 device_id=DEV, address=iova, write=True)


def test_not_present_entry_flags():
    mem: dict = {}
    put_dte(mem, mode=2, root=0x20_0000)
    iova = 0x40_0000
    expect_fault(mem, event=fault_record(flags=("TR",), address=iova), dimension=3,
                 device_id=DEV, address=iova, ats=True)


# ---- device table ------------------------------------------------------------------------------

def test_v0_passes_through_untranslated():
    mem: dict = {}
    put_dte(mem, v=0, tv=0, mode=4, ir=0, iw=0, domain=0)
    spec, ref = run_both(mem, device_id=DEV, address=0xDEAD_BEEF_F00D, write=True)
    for o in (spec, ref):
        assert (bool(o.ok), o.spa, o.page_shift, bool(o.readable), bool(o.writable), o.dimension, bool(o.logged),
                o.event) == (True, 0xDEAD_BEEF_F00D, 64, True, True, 0, False, 0)


def test_mode_0_passthrough_with_ir_iw():
    mem: dict = {}
    put_dte(mem, mode=0, ir=1, iw=0)
    expect_ok(mem, spa=0x1234_5678, shift=64, r=True, w=False, device_id=DEV, address=0x1234_5678, write=False)


def test_tv0_is_a_device_table_fault():
    mem: dict = {}
    put_dte(mem, tv=0, mode=4, root=0x20_0000)
    expect_fault(mem, event=fault_record(address=0x5000), dimension=1, device_id=DEV, address=0x5000)


def test_mode_7_is_rz():
    mem: dict = {}
    put_dte(mem, mode=7, root=0x20_0000)
    expect_fault(mem, event=fault_record(flags=("RZ",), address=0x5000, write=True), dimension=1,
                 device_id=DEV, address=0x5000, write=True)


def test_sa_suppresses_the_page_fault_record():
    mem: dict = {}
    put_dte(mem, mode=3, root=0x20_0000, sa=1)
    spec, ref = run_both(mem, device_id=DEV, address=0x5000, write=False)
    for o in (spec, ref):
        assert (bool(o.ok), bool(o.logged), o.dimension) == (False, False, 3)


@pytest.mark.parametrize("has_pasid", [False, True])
def test_illegal_dte_glx_3_is_never_suppressed(has_pasid):
    mem: dict = {}
    put_dte(mem, mode=4, root=0x20_0000, gv=1, glx=3, sa=1)
    pasid = 0x9_ABCD
    event = fault_record(flags=("RZ",), address=0x7000, write=True, structure=ILLEGAL_DEV_TABLE_ENTRY,
                         pasid=pasid if has_pasid else None)
    expect_fault(mem, event=event, dimension=1, device_id=DEV, address=0x7000, write=True, pasid=pasid,
                 has_pasid=has_pasid)
    assert ILLEGAL_DEV_TABLE_ENTRY.decode(event)["GN"] == int(has_pasid)


def test_illegal_dte_reserved_bit():
    mem: dict = {}
    put_dte(mem, mode=1, root=0x20_0000)
    mem[DEV_TAB + 32 * DEV] |= 1 << 3
    expect_fault(mem, event=fault_record(flags=("RZ", "TR"), address=0x7000, structure=ILLEGAL_DEV_TABLE_ENTRY),
                 dimension=1, device_id=DEV, address=0x7000, ats=True)


def test_pasid_without_gv_is_a_device_table_fault():
    mem: dict = {}
    put_dte(mem, mode=1, root=0x20_0000)
    expect_fault(mem, event=fault_record(address=0x7000, pasid=0x1_0002), dimension=1,
                 device_id=DEV, address=0x7000, pasid=0x1_0002, has_pasid=True)


# ---- guest (v2) and nested walks -----------------------------------------------------------------

def test_five_level_v2_walk():
    mem: dict = {}
    gcr3_table, cr3, pasid = 0x30_0000, 0x30_1000, 5
    put_dte(mem, mode=0, gv=1, glx=0, gpm=1, gcr3=gcr3_table, ir=1, iw=1)
    mem[gcr3_table + 8 * pasid] = gcr3(cr3)
    gva = 0xFF12_3456_789A_BCDE  # canonical for 57 bits: 63:57 copy bit 56
    table = cr3
    for level, nxt in zip((5, 4, 3, 2), (0x30_2000, 0x30_3000, 0x30_4000, 0x30_5000)):
        mem[table + 8 * idx(gva, level)] = gpte(nxt)
        table = nxt
    mem[table + 8 * idx(gva, 1)] = gpte(0x8_8888_8000)
    expect_ok(mem, spa=0x8_8888_8CDE, shift=12, r=True, w=True, device_id=DEV, address=gva, write=True,
              pasid=pasid, has_pasid=True)
    # the same GVA is not canonical for a 4-level guest table
    put_dte(mem, mode=0, gv=1, glx=0, gpm=0, gcr3=gcr3_table)
    expect_fault(mem, event=fault_record(address=gva, pasid=pasid), dimension=2, device_id=DEV, address=gva,
                 pasid=pasid, has_pasid=True)


def guest_4level_image(*, nested: bool, rw_leaf=1, us=1, nx=0) -> tuple[dict, int, int]:
    """A GLX = 1 (two-level GCR3) guest table for PASID 0x2_0203 mapping one 2 MiB guest page."""
    mem: dict = {}
    pasid = (1 << 17) | (1 << 9) | 3  # GCR3 level 1 index 0x101, level 0 index 3
    gva = 0x0000_7654_3210_8765
    # guest-physical layout (system physical = GPA + 0x40000000 when nested)
    shift = 0x4000_0000 if nested else 0
    g = {"gcr3_l1": 0x1_0000, "gcr3_l0": 0x1_1000, "pml4": 0x1_2000, "pdpt": 0x1_3000, "pd": 0x1_4000}
    page_gpa = 0x1_2340_0000

    def at(gpa):
        return gpa + shift

    mem[at(g["gcr3_l1"]) + 8 * 0x101] = gcr3(g["gcr3_l0"])
    mem[at(g["gcr3_l0"]) + 8 * 3] = gcr3(g["pml4"])
    mem[at(g["pml4"]) + 8 * idx(gva, 4)] = gpte(g["pdpt"])
    mem[at(g["pdpt"]) + 8 * idx(gva, 3)] = gpte(g["pd"], us=us)
    mem[at(g["pd"]) + 8 * idx(gva, 2)] = gpte(page_gpa, ps=1, rw=rw_leaf, nx=nx)
    if nested:
        root = 0x20_0000
        put_dte(mem, mode=4, root=root, gv=1, glx=1, gpm=0, gcr3=g["gcr3_l1"])
        # host: GPA [0, 2 MiB) -> SPA 0x40000000 by a 2 MiB leaf; the data page by a 4 KiB leaf
        mem[root] = pde(0x20_1000, 3)
        mem[0x20_1000] = pde(0x20_2000, 2)
        mem[0x20_2000] = pte(0x4000_0000)
        final_gpa = page_gpa | (gva & 0x1F_FFFF)
        mem[0x20_1000 + 8 * idx(final_gpa, 3)] = pde(0x20_3000, 2)
        mem[0x20_3000 + 8 * idx(final_gpa, 2)] = pde(0x20_4000, 1)
        mem[0x20_4000 + 8 * idx(final_gpa, 1)] = pte(0xC_0DE0_0000 + 0x7000)
    else:
        put_dte(mem, mode=0, gv=1, glx=1, gpm=0, gcr3=g["gcr3_l1"])
    return mem, pasid, gva


def test_four_level_guest_only_2mib_page():
    mem, pasid, gva = guest_4level_image(nested=False)
    expect_ok(mem, spa=0x1_2340_0000 | (gva & 0x1F_FFFF), shift=21, r=True, w=True, device_id=DEV, address=gva,
              write=True, pasid=pasid, has_pasid=True)


def test_nested_walk():
    mem, pasid, gva = guest_4level_image(nested=True)
    expect_ok(mem, spa=0xC_0DE0_7000 | (gva & 0xFFF), shift=12, r=True, w=True, device_id=DEV, address=gva,
              write=True, pasid=pasid, has_pasid=True)


def test_nested_guest_table_pointer_not_mapped_by_the_host():
    mem, pasid, gva = guest_4level_image(nested=True)
    # move the PDPT to GPA 0x50000000, which the host table does not map
    moved = 0x5000_0000
    mem[0x4000_0000 + 0x1_2000 + 8 * idx(gva, 4)] = gpte(moved)
    expect_fault(mem, event=fault_record(address=moved), dimension=3, device_id=DEV, address=gva,
                 write=False, pasid=pasid, has_pasid=True)


def test_gcr3_entry_not_valid_is_a_guest_fault_with_the_pasid():
    mem, pasid, gva = guest_4level_image(nested=False)
    other = pasid + 1  # level-0 index 4: empty
    expect_fault(mem, event=fault_record(address=gva, pasid=other), dimension=2, device_id=DEV, address=gva,
                 write=False, pasid=other, has_pasid=True)


def test_guest_read_only_page_forbids_write():
    mem, pasid, gva = guest_4level_image(nested=False, rw_leaf=0)
    expect_fault(mem, event=fault_record(flags=("PR", "PE"), address=gva, pasid=pasid, write=True), dimension=2,
                 device_id=DEV, address=gva, write=True, pasid=pasid, has_pasid=True)
    expect_ok(mem, spa=0x1_2340_0000 | (gva & 0x1F_FFFF), shift=21, r=True, w=False, device_id=DEV, address=gva,
              write=False, pasid=pasid, has_pasid=True)


def test_guest_supervisor_page_and_user_request():
    mem, pasid, gva = guest_4level_image(nested=False, us=0)
    expect_fault(mem, event=fault_record(flags=("PR", "PE", "US"), address=gva, pasid=pasid), dimension=2,
                 device_id=DEV, address=gva, user=True, pasid=pasid, has_pasid=True)


def test_guest_no_execute():
    mem, pasid, gva = guest_4level_image(nested=False, nx=1)
    expect_fault(mem, event=fault_record(flags=("PR", "PE", "NX"), address=gva, pasid=pasid), dimension=2,
                 device_id=DEV, address=gva, execute=True, pasid=pasid, has_pasid=True)


def test_giov_request_without_pasid_uses_pasid_0():
    mem: dict = {}
    put_dte(mem, mode=0, gv=1, giov=1, glx=0, gcr3=0x30_0000)
    mem[0x30_0000] = gcr3(0x30_1000)
    gva = 0x5000
    mem[0x30_1000] = gpte(0x30_2000)
    mem[0x30_2000] = gpte(0x30_3000)
    mem[0x30_3000] = gpte(0x30_4000)
    mem[0x30_4000 + 8 * 5] = gpte(0x6666_6000)
    expect_ok(mem, spa=0x6666_6000, shift=12, r=True, w=True, device_id=DEV, address=gva, write=True)
    # without GIoV the same request uses no table at all (Mode 0): passthrough
    put_dte(mem, mode=0, gv=1, giov=0, glx=0, gcr3=0x30_0000)
    expect_ok(mem, spa=gva, shift=64, r=True, w=True, device_id=DEV, address=gva, write=True)


# ---- details the design leaves open, as both implementations settle them ---------------------------

def test_se_alone_suppresses_too():
    mem: dict = {}
    put_dte(mem, mode=3, root=0x20_0000, se=1)
    spec, ref = run_both(mem, device_id=DEV, address=0x5000)
    for o in (spec, ref):
        assert (bool(o.ok), bool(o.logged), o.dimension) == (False, False, 3)
        assert o.event == fault_record(address=0x5000)  # the record is still described, not written


def test_device_id_beyond_the_table_is_an_illegal_entry():
    mem: dict = {}
    beyond = 0x80  # Size = 0: DeviceIDs 0..0x7F
    event = fault_record(flags=("RZ",), address=0x9000, dev=beyond, structure=ILLEGAL_DEV_TABLE_ENTRY)
    expect_fault(mem, event=event, dimension=1, domain=0, device_id=beyond, address=0x9000)


def test_mode_0_passthrough_denial_is_pe_without_pr():
    mem: dict = {}
    put_dte(mem, mode=0, ir=1, iw=0)
    expect_fault(mem, event=fault_record(flags=("PE",), address=0x1000, write=True), dimension=1,
                 device_id=DEV, address=0x1000, write=True)


def test_giov_guest_fault_without_pasid_reports_the_domain():
    mem: dict = {}
    put_dte(mem, mode=0, gv=1, giov=1, glx=0, gcr3=0x30_0000)  # GCR3 entry 0 not valid
    expect_fault(mem, event=fault_record(address=0x5000), dimension=2, device_id=DEV, address=0x5000)


def test_guest_permission_flags_accumulate():
    mem, pasid, gva = guest_4level_image(nested=False, rw_leaf=0, us=0, nx=1)
    expect_fault(mem, event=fault_record(flags=("PR", "PE", "US", "NX"), address=gva, pasid=pasid, write=True),
                 dimension=2, device_id=DEV, address=gva, write=True, user=True, execute=True, pasid=pasid,
                 has_pasid=True)


def test_nested_dte_iw_is_checked_by_the_host_walk_of_the_final_gpa():
    mem, pasid, gva = guest_4level_image(nested=True)
    put_dte(mem, mode=4, root=0x20_0000, gv=1, glx=1, gpm=0, gcr3=0x1_0000, iw=0)
    final_gpa = 0x1_2340_0000 | (gva & 0x1F_FFFF)
    expect_fault(mem, event=fault_record(flags=("PR", "PE"), address=final_gpa, write=True), dimension=3,
                 device_id=DEV, address=gva, write=True, pasid=pasid, has_pasid=True)


def test_nested_dte_ir_0_stops_the_first_guest_table_read():
    mem, pasid, gva = guest_4level_image(nested=True)
    put_dte(mem, mode=4, root=0x20_0000, gv=1, glx=1, gpm=0, gcr3=0x1_0000, ir=0)
    # the GCR3 root's host walk is a read; RW still says what the request was
    expect_fault(mem, event=fault_record(flags=("PR", "PE"), address=0x1_0000, write=True), dimension=3,
                 device_id=DEV, address=gva, write=True, pasid=pasid, has_pasid=True)


def test_gcr3_walk_comes_before_the_canonical_check():
    mem, pasid, gva = guest_4level_image(nested=True)
    put_dte(mem, mode=4, root=0x20_0000, gv=1, glx=1, gpm=0, gcr3=0x5000_0000)  # GCR3 root not host-mapped
    not_canonical = gva | 1 << 60
    expect_fault(mem, event=fault_record(address=0x5000_0000), dimension=3, device_id=DEV, address=not_canonical,
                 pasid=pasid, has_pasid=True)


@pytest.mark.parametrize("field,value", [("IoCtl", 3), ("IntTabLen", 12), ("IntTabLen", 15), ("IntCtl", 3)])
def test_reserved_interrupt_and_port_io_encodings_do_not_stop_dma(field, value):
    # the DTE rules are scoped: these encodings concern interrupts / port I/O, not memory requests
    mem: dict = {}
    put_dte(mem, mode=0, **{field: value})
    expect_ok(mem, spa=0x8000, shift=64, r=True, w=True, device_id=DEV, address=0x8000, write=True)
    put_dte(mem, tv=0, **{field: value})
    expect_fault(mem, event=fault_record(address=0x8000), dimension=1, device_id=DEV, address=0x8000)


@pytest.mark.parametrize("dte", [{"tv": 0}, {"mode": 7}])
def test_device_table_fault_of_a_pasid_request_carries_the_pasid(dte):
    # GN = 1, so Q0[47:32] holds PASID[15:0] (not the DomainID the design note mentions for TV = 0)
    mem: dict = {}
    put_dte(mem, root=0x20_0000, **dte)
    flags = ("RZ",) if "mode" in dte else ()
    expect_fault(mem, event=fault_record(flags=flags, address=0x1000, pasid=0x5_4321), dimension=1,
                 device_id=DEV, address=0x1000, pasid=0x5_4321, has_pasid=True)


def test_guest_depth_is_bounded_by_efr_gats_when_registers_are_given():
    """GPM (DTE bits 183:182) selects a 5-level guest table; EFR.GATS must advertise it (Linux refuses
    such DTEs otherwise; the hardware event is inferred). GLX sets only the GCR3 table's depth."""
    from amdvi.spec.mmio import EFR, register_context
    from amdvi.spec.translation import DEVICE_TABLE as DEVICE_TABLE_DIMENSION

    mem, bar, req = _five_level_image_for_gats()
    assert translate(INT, mem, bar, req).ok  # no register context: nothing to bound it
    assert translate(INT, mem, bar, req, context=register_context(EFR, EFR.encode(GATS=1, GTSup=1, GIoSup=1))).ok
    refused = translate(INT, mem, bar, req, context=register_context(EFR, EFR.encode(GATS=0, GTSup=1, GIoSup=1)))
    assert not refused.ok and refused.dimension == DEVICE_TABLE_DIMENSION
    assert event_structure(refused.event).name == "ILLEGAL_DEV_TABLE_ENTRY"


def _five_level_image_for_gats():
    from amdvi.spec.device_table import DTE
    from amdvi.spec.guest_page_table import GCR3_ENTRY, GPTE
    from amdvi.spec.mmio import DEV_TAB_BAR
    from amdvi.spec.translation import Request

    dt, gcr3, cr3 = 0x100000, 0x300000, 0x310000
    mem = {}
    dte = DTE.encode({"V": 1, "TV": 1, "GV": 1, "GIoV": 1, "GPM": 1, "IR": 1, "IW": 1, "DomainID": 4,
                      "GCR3 Table Root Pointer[14:12]": (gcr3 >> 12) & 7,
                      "GCR3 Table Root Pointer[30:15]": (gcr3 >> 15) & 0xFFFF})
    for i in range(4):
        mem[dt + 0x40 * 32 + 8 * i] = (dte >> (64 * i)) & ((1 << 64) - 1)
    mem[gcr3] = GCR3_ENTRY.encode(V=1, GCR3=cr3 >> 12)
    for k in range(5):
        mem[cr3 + 0x1000 * k] = GPTE.encode({"P": 1, "R/W": 1, "U/S": 1, "Address": (cr3 >> 12) + k + 1})
    return mem, DEV_TAB_BAR.encode(DevTabBase=dt >> 12, Size=0), Request(0x40, 0x123, False)


def test_feature_rules_apply_to_translation_too():
    """With the registers given, guest fields on an IOMMU without GTSup make the entry illegal."""
    from amdvi.spec.mmio import EFR, register_context

    mem, bar, req = _five_level_image_for_gats()
    out = translate(INT, mem, bar, req, context=register_context(EFR, EFR.encode(GATS=1, GIoSup=1)))
    assert not out.ok and event_structure(out.event).name == "ILLEGAL_DEV_TABLE_ENTRY"


def test_the_reference_comparison_catches_a_broken_spec():
    """The mutant that skips host-translating guest table pointers disagrees with the reference walker
    on the nested example (so the agreement checked everywhere else is not vacuous)."""
    mem, pasid, gva = guest_4level_image(nested=True)
    req = dict(device_id=DEV, address=gva, write=True, pasid=pasid, has_pasid=True)
    ref = reference_translate(mem, BAR, Req(**req))
    broken = translate(INT, mem, BAR, Request(**req), choices=Hardware(guest_table_pointer_untranslated=True))
    assert (bool(ref.ok), ref.spa) != (bool(broken.ok), broken.spa)
    correct = translate(INT, mem, BAR, Request(**req))
    assert (bool(ref.ok), ref.spa) == (bool(correct.ok), correct.spa)
