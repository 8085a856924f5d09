"""Guest (v2) page-table entries and the GCR3 table: 48882 §2.2.6 "I/O Page Tables for Guest Translations".

The guest table has the x86-64 long-mode format, 4 or 5 levels (DTE.GPM). The GCR3 table,
rooted at the DTE's GCR3 Table Root Pointer and DTE.GLX + 1 levels deep, maps a PASID to the
root of that PASID's guest table. Facts come from ``shared/reference/page-tables.md``.
"""

from __future__ import annotations

from .fields import Field, Structure, flag, ignored, reserved

SECTION = "§2.2.6"

GPTE = Structure(
    name="GPTE",
    title="Guest page-table entry (x86-64 format)",
    width=64,
    section=SECTION,
    reserved_event="IO_PAGE_FAULT",
    description="An entry of a guest (v2) page table at any level: PML5E, PML4E, PDPE, PDE or PTE.",
    fields=(
        flag("P", 0, "Present", values={0: "not present", 1: "present"}, sources=("Linux",)),
        flag("R/W", 1, "Writable (ANDed down the walk)", values={0: "read-only", 1: "writable"}, sources=("Linux",)),
        flag("U/S", 2, "User page (ANDed down the walk)", values={0: "supervisor only", 1: "user accessible"},
             sources=("Linux",)),
        flag("PWT", 3, "Page-level write-through", note="whether the IOMMU honours PWT is not confirmed",
             sources=("Linux",)),
        flag("PCD", 4, "Page-level cache disable", note="whether the IOMMU honours PCD is not confirmed",
             sources=("Linux",)),
        flag("A", 5, "Accessed: set by the IOMMU unless guest A-bit update is disabled (Control.GAUpdateDis)",
             sources=("Linux",)),
        flag("D", 6, "Dirty (leaf only): set on a write unless guest D-bit update is disabled (Control.GDUpdateDis)",
             sources=("Linux",)),
        flag("PS", 7, "Page size: this PDPE (1 GiB) or PDE (2 MiB) is a leaf",
             values={0: "points to a table", 1: "large-page leaf"},
             note="at the PTE level this bit is PAT in the x86 format",
             sources=("Linux",)),
        flag("G", 8, "Global (leaf only)", sources=()),
        ignored(11, 9),
        Field("Address", 51, 12, "Guest/system physical address of the next table or page, bits 51:12", unit_shift=12,
              sources=("Linux",)),
        ignored(62, 52, note="x86 leaves these to software (protection keys in 62:59 for the CPU); "
                              "the IOMMU's reserved-bit rule for them is not confirmed"),
        flag("NX", 63, "No execute", values={0: "execute allowed", 1: "execute forbidden"}, sources=("Linux",)),
    ),
)

GCR3_ENTRY = Structure(
    name="GCR3",
    title="GCR3 table entry",
    width=64,
    section=SECTION,
    reserved_event="IO_PAGE_FAULT",
    aliases=("GCR3 Table Entry",),
    description=("An entry of the GCR3 table, indexed by PASID bits (9 per level). At the last level it "
                 "holds the guest CR3 of that PASID; above it, the address of the next GCR3 level."),
    note="the GCR3 table's own subsection number and the reserved bits of an entry are not confirmed",
    fields=(
        flag("V", 0, "Valid: this PASID has a guest table (or the next level exists)",
             values={0: "not valid", 1: "valid"}, note="Linux calls it GCR3_VALID",
             sources=("Linux",)),
        reserved(11, 1, note="unconfirmed; Linux writes them as zero"),
        Field("GCR3", 51, 12, "Address of the next GCR3 level, or the guest CR3 (root of the guest table)", unit_shift=12,
              sources=("Linux",)),
        reserved(63, 52, note="unconfirmed; Linux writes them as zero"),
    ),
)

STRUCTURES = (GPTE, GCR3_ENTRY)
