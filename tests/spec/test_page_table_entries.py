"""Host (v1) and guest (v2) entry tables against how Linux builds its entries."""

from amdvi.spec.guest_page_table import GCR3_ENTRY, GPTE
from amdvi.spec.host_page_table import PDE, PTE


def test_linux_pde_decodes_as_written():
    # Linux PM_LEVEL_PDE(level, addr): PR | level << 9 | IR | IW | addr (permissions granted at every PDE).
    bits = 0x6000000000001401
    d = PDE.decode(bits)
    assert (d["PR"], d["Next Level"], d["IR"], d["IW"]) == (1, 2, 1, 1)
    assert d["Next Table Address"] << 12 == 0x1000
    assert PDE.validate(bits) == []


def test_linux_large_page_pte_uses_next_level_7_and_fc():
    # Linux installs a 2 MiB leaf at level 1 as 512 copies of: PR | FC | IR | IW | NL=7 | address with
    # bits 19:12 set and bit 20 clear (PAGE_SIZE_PTE for 2 MiB at 0x40000000).
    addr = 0x40000000 | 0xFF000
    bits = 1 | 7 << 9 | addr | 1 << 60 | 1 << 61 | 1 << 62
    d = PTE.decode(bits)
    assert (d["PR"], d["Next Level"], d["FC"], d["IR"], d["IW"], d["U"]) == (1, 7, 1, 1, 1, 0)
    assert PTE.field("Next Level").describe(7).startswith("page size encoded")
    assert PTE.validate(bits) == []


def test_reserved_bits_of_host_entries_raise_io_page_fault():
    (rule,) = PTE.validate(1 | 1 << 52)
    assert rule.event == "IO_PAGE_FAULT" and rule.name == "reserved[58:52]"
    (rule,) = PDE.validate(1 | 1 << 60)  # bit 60 is FC in a PTE but reserved in a PDE
    assert rule.name == "reserved[60:52]"
    assert PTE.validate(1 | 1 << 60) == []
    assert PDE.validate(1 | 1 << 63 | 0b11110) == []  # ignored bits are free for software


def test_linux_guest_entries():
    # Linux x86-64 format: tables get P | RW | U | A; a writable 4 KiB leaf gets P | RW | U | A | D.
    table = GPTE.decode(0x0000000012345027)
    assert (table["P"], table["R/W"], table["U/S"], table["A"], table["PS"]) == (1, 1, 1, 1, 0)
    leaf = GPTE.decode(0x8000000000200067 | 1 << 7)
    assert (leaf["D"], leaf["PS"], leaf["NX"]) == (1, 1, 1)
    assert leaf["Address"] << 12 == 0x200000


def test_gcr3_entry_is_address_with_valid_bit():
    # Linux writes a GCR3 entry as (cr3 & PAGE_MASK) | 1.
    d = GCR3_ENTRY.decode(0x12345001)
    assert (d["V"], d["GCR3"] << 12) == (1, 0x12345000)
    assert GCR3_ENTRY.validate(0x12345001) == []
    assert [r.name for r in GCR3_ENTRY.validate(0x12345003)] == ["reserved[11:1]"]
