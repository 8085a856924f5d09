"""Host (v1, "AMD64 IOMMU") page-table entries: 48882 §2.2.3 "I/O Page Tables for Host Translations".

A v1 table is one 4 KiB page of 512 64-bit entries. An entry whose Next Level is 1..6 is a
page-directory entry (PDE) pointing at the table of that level; Next Level 0 is a leaf (PTE)
mapping the default page size of its level, and Next Level 7 a leaf whose page size is
encoded in the address field (Table 14, "Example Page Size Encodings"). Facts come from
``shared/reference/page-tables.md``.
"""

from __future__ import annotations

from .fields import Field, Structure, flag, ignored, reserved

SECTION = "§2.2.3"

NEXT_LEVEL_OF_PDE = {n: f"points to a level-{n} table" for n in range(1, 7)}

PDE = Structure(
    name="PDE",
    title="Host page-directory entry",
    width=64,
    section=SECTION,
    reserved_event="IO_PAGE_FAULT",
    description="A v1 entry that points to a lower-level table (Next Level 1..6).",
    fields=(
        flag("PR", 0, "Present", values={0: "not present", 1: "present"},
             sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        ignored(4, 1),
        flag("A", 5, "Accessed: set by the IOMMU when host A/D update is enabled (DTE.HAD)",
             sources=("Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        ignored(8, 6),
        Field("Next Level", 11, 9, "Level of the table this entry points to; lower levels in between are skipped",
              values={0: "not a PDE: a leaf of the level's default size", **NEXT_LEVEL_OF_PDE,
                      7: "not a PDE: a leaf with encoded page size"},
              sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        Field("Next Table Address", 51, 12, "System physical address of the next table, bits 51:12", unit_shift=12,
              sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        reserved(60, 52),
        flag("IR", 61, "Reads allowed through this entry (ANDed down the walk)",
             sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        flag("IW", 62, "Writes allowed through this entry (ANDed down the walk)",
             sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        ignored(63, 63),
    ),
)

PTE = Structure(
    name="PTE",
    title="Host page-table entry",
    width=64,
    section=SECTION,
    reserved_event="IO_PAGE_FAULT",
    description="A v1 leaf entry (Next Level 0, or 7 for an encoded page size).",
    fields=(
        flag("PR", 0, "Present", values={0: "not present", 1: "present"},
             sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        ignored(4, 1),
        flag("A", 5, "Accessed: set by the IOMMU when host A/D update is enabled (DTE.HAD)",
             sources=("Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        flag("D", 6, "Dirty: set by the IOMMU on a write when host dirty update is enabled",
             sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        ignored(8, 7),
        Field("Next Level", 11, 9, "0 for a page of the level's default size; 7 when the size is encoded in the address",
              values={0: "page of the level's default size", **{n: f"not a PTE: {d}" for n, d in NEXT_LEVEL_OF_PDE.items()},
                      7: "page size encoded in the address (Table 14)"},
              sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        Field("Page Address", 51, 12, "System physical address of the page, bits 51:12; with Next Level 7 the low "
              "bits hold the page-size encoding", unit_shift=12,
              sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        reserved(58, 52),
        flag("U", 59, "Untranslated access only: the translation is not returned to ATS requests",
             sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        flag("FC", 60, "Force coherent: DMA to the page is snooped",
             sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        flag("IR", 61, "Reads allowed", sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        flag("IW", 62, "Writes allowed", sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        ignored(63, 63),
    ),
)

STRUCTURES = (PDE, PTE)
