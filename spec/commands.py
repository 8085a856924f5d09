"""Command-buffer commands: 48882 §2.4 "Commands", §2.4.1..§2.4.8 (see ``SECTION_NOTE``).

Every command is a 128-bit record: Q0 is bits 63:0 and Q1 bits 127:64, both little-endian
64-bit words (Linux fills them as four dwords ``data[0]`` .. ``data[3]``). The opcode is
always Q0[63:60]; each command declares it as a fixed ``Opcode`` field, and dispatch by
opcode (:func:`command_structure`) is derived from those fields. An undefined opcode or a
set reserved bit makes the IOMMU log ILLEGAL_COMMAND_ERROR. Facts come from
``shared/reference/commands-and-events.md`` (Linux, QEMU, Xen and VirtualBox sources); every
doubtful one carries a ``note`` and is pinned by ``tests/spec/test_commands.py``.
"""

from __future__ import annotations

from typing import Any

from .bitvec import INT, mask
from .fields import Composite, Field, Rule, Structure, flag, reserved

SECTION = "§2.4"
# Subsections as revision 3.11 numbers them, cited by a public emulator (OpenVMM's amd_iommu spec
# module); VirtualBox (rev 3.05) cites §2.4 and §2.4.3 alike. 2.4.7 is inferred from the order.
SECTION_BY_NAME = {
    "COMPLETION_WAIT": "§2.4.1", "INVALIDATE_DEVTAB_ENTRY": "§2.4.2", "INVALIDATE_IOMMU_PAGES": "§2.4.3",
    "INVALIDATE_IOTLB_PAGES": "§2.4.4", "INVALIDATE_INTERRUPT_TABLE": "§2.4.5", "PREFETCH_IOMMU_PAGES": "§2.4.6",
    "COMPLETE_PPR_REQUEST": "§2.4.7", "INVALIDATE_IOMMU_ALL": "§2.4.8", "RESET_VMMIO": SECTION,
}
SECTION_NOTE = ("subsection numbers per revision 3.11 as a public emulator cites them (not read in the PDF); "
                "COMPLETE_PPR_REQUEST's §2.4.7 is inferred from the order, RESET_VMMIO (HW-vIOMMU RFC) has none")
ILLEGAL_COMMAND = "ILLEGAL_COMMAND_ERROR"
OPCODE_HI, OPCODE_LO = 63, 60

ADDRESS_MEANING = ("I/O virtual address bits 63:12 of the page to invalidate; with S = 1 the run of 1 bits "
                   "from bit 12 upward encodes a larger aligned range (see invalidation_range)")
S_VALUES = {0: "one 4 KiB page", 1: "range encoded in Address"}
GN_VALUES = {0: "host (no-PASID) translations", 1: "guest translations of the given PASID"}


def _command(name: str, opcode: int, title: str, description: str, fields: tuple[Field, ...],
             note: str = "", **kw: Any) -> Structure:
    """A command structure: ``fields`` plus its fixed Opcode field, in bit order."""
    op = Field("Opcode", OPCODE_HI, OPCODE_LO, "Command opcode", values={opcode: name}, fixed=opcode)
    return Structure(
        name=name,
        title=title,
        width=128,
        section=SECTION_BY_NAME[name],
        fields=tuple(sorted(fields + (op,), key=lambda f: f.lo)),
        description=description,
        reserved_event=ILLEGAL_COMMAND,
        note="; ".join(n for n in (note, SECTION_NOTE) if n),
        **kw,
    )


def _needs_feature(command: str, feature: str, note: str = "") -> Rule:
    """The command is illegal when the EFR feature bit that advertises it is clear."""
    key = f"EFR.{feature}"
    return Rule(
        f"{command}-without-{feature}",
        f"{command} is issued but {key} = 0",
        lambda b, v, ctx: b.eq(ctx[key], 0),
        event=ILLEGAL_COMMAND,
        section=SECTION_BY_NAME[command],
        needs=(key,),
        note=note or "the event is inferred: without the feature the opcode is treated as undefined",
    )


COMPLETION_WAIT = _command(
    "COMPLETION_WAIT", 0x01, "Completion wait",
    "Waits until every earlier command has completed, then optionally stores Store Data at Store Address "
    "(S) and/or signals Status.ComWaitInt (I). Linux uses the store form as a semaphore with an "
    "increasing sequence number.",
    (
        flag("S", 0, "Store: when all earlier commands are done, write Store Data to Store Address",
             values={0: "no store", 1: "store Store Data"}),
        flag("I", 1, "Interrupt: set Status.ComWaitInt and interrupt if Control.ComWaitIntEn",
             values={0: "no interrupt", 1: "signal completion"}),
        flag("F", 2, "Flush queue", note="exact semantics unconfirmed (VirtualBox: 'Flush Queue')"),
        Field("Store Address", 51, 3, "System physical address (8-byte aligned) the store writes, bits 51:3",
              unit_shift=3),
        reserved(59, 52, note="QEMU logs ILLEGAL_COMMAND_ERROR when these are non-zero"),
        Field("Store Data", 127, 64, "64-bit value written when S = 1"),
    ),
    note="whether S = 0 with I = 0 is legal is unconfirmed (not treated as illegal here)",
)

INVALIDATE_DEVTAB_ENTRY = _command(
    "INVALIDATE_DEVTAB_ENTRY", 0x02, "Invalidate device table entry",
    "Drops any cached copy of the DTE of one DeviceID; software issues it after changing the entry.",
    (
        Field("DeviceID", 15, 0, "DeviceID whose cached DTE is invalidated"),
        reserved(59, 16),
        reserved(127, 64),
    ),
)

INVALIDATE_IOMMU_PAGES = _command(
    "INVALIDATE_IOMMU_PAGES", 0x03, "Invalidate IOMMU pages",
    "Invalidates the IOMMU's cached translations of one domain (host tables) or of one PASID of the "
    "domain (GN = 1) for one page or an encoded range. Linux's 'flush everything' form is S = 1 with "
    "the address INV_IOMMU_ALL_PAGES_ADDRESS and PDE = 1.",
    (
        Field("PASID", 19, 0, "PASID whose guest translations are invalidated (used when GN = 1)"),
        reserved(31, 20),
        Field("DomainID", 47, 32, "Domain whose cached translations are invalidated"),
        reserved(59, 48),
        flag("S", 64, "Size: one page, or the range encoded in Address", values=S_VALUES),
        flag("PDE", 65, "Also invalidate cached page-directory entries",
             values={0: "leaf translations only", 1: "page-directory entries too"},
             note="Linux always sets it"),
        flag("GN", 66, "Guest/nested: select guest (PASID, v2) translations instead of host ones",
             values=GN_VALUES),
        reserved(75, 67),
        Field("Address", 127, 76, ADDRESS_MEANING, unit_shift=12),
    ),
)

INVALIDATE_IOTLB_PAGES = _command(
    "INVALIDATE_IOTLB_PAGES", 0x04, "Invalidate IOTLB pages",
    "Sends an ATS invalidation to a device's own IOTLB for one page or an encoded range; the device "
    "must answer within Control.InvTimeOut or the IOMMU logs IOTLB_INV_TIMEOUT.",
    (
        Field("DeviceID", 15, 0, "Device whose IOTLB is invalidated"),
        Field("PASID[15:8]", 23, 16, "PASID bits 15:8 (used when GN = 1)",
              note=("Linux build_inv_iotlb_pages writes PASID[15:8] here; VirtualBox names these bits "
                    "'PASID Lo' and Q0[59:48] 'PASID Hi'. Linux's placement is used (it drives real hardware)")),
        Field("MaxPend", 31, 24, "Maximum invalidations the device may have in flight; Linux writes the "
              "device's ATS invalidate queue depth"),
        Field("QueueID", 47, 32, "Invalidation queue identifier; Linux writes the DeviceID here"),
        Field("PASID[7:0]", 55, 48, "PASID bits 7:0 (used when GN = 1)",
              note="Linux writes PASID[7:0] here (see PASID[15:8] for the VirtualBox conflict)"),
        Field("PASID[19:16]", 59, 56, "PASID bits 19:16 (used when GN = 1)",
              note=("inferred: Linux sends 16-bit PASIDs and never writes these bits; VirtualBox counts "
                    "them in its 12-bit 'PASID Hi' at 59:48")),
        flag("S", 64, "Size: one page, or the range encoded in Address", values=S_VALUES),
        reserved(65, 65),
        flag("GN", 66, "Guest/nested: the invalidation carries the PASID", values=GN_VALUES),
        reserved(67, 67),
        Field("Type", 69, 68, "Invalidation type (newer spec revisions; needs EFR.InvIotlbTypeSup)",
              note="only VirtualBox declares it; the encodings are not in the sources"),
        reserved(75, 70),
        Field("Address", 127, 76, ADDRESS_MEANING, unit_shift=12),
    ),
    composites=(
        Composite("PASID", (("PASID[7:0]", 0), ("PASID[15:8]", 8), ("PASID[19:16]", 16)),
                  "The 20-bit PASID, split over three byte ranges (Linux placement)"),
    ),
    rules=(
        Rule(
            "Type-without-InvIotlbTypeSup",
            "Type is non-zero but EFR.InvIotlbTypeSup = 0",
            lambda b, v, ctx: b.all_of(b.eq(ctx["EFR.InvIotlbTypeSup"], 0), b.ne(v.type, 0)),
            event=ILLEGAL_COMMAND,
            section=SECTION_BY_NAME["INVALIDATE_IOTLB_PAGES"],
            needs=("EFR.InvIotlbTypeSup",),
            note="inferred: without the feature the Type bits are taken as reserved",
        ),
    ),
    note=("PASID byte placement: Linux and VirtualBox disagree; Linux's is declared (PASID[15:8] at Q0[23:16], "
          "PASID[7:0] at Q0[55:48])"),
)

INVALIDATE_INTERRUPT_TABLE = _command(
    "INVALIDATE_INTERRUPT_TABLE", 0x05, "Invalidate interrupt table",
    "Drops the cached interrupt remapping entries of one DeviceID.",
    (
        Field("DeviceID", 15, 0, "DeviceID whose cached IRTEs are invalidated"),
        reserved(59, 16),
        reserved(127, 64),
    ),
)

PREFETCH_IOMMU_PAGES = _command(
    "PREFETCH_IOMMU_PAGES", 0x06, "Prefetch IOMMU pages",
    "Asks the IOMMU to walk and cache translations for a device ahead of use (needs EFR.PreFSup).",
    (
        Field("DeviceID", 15, 0, "Device whose translations are prefetched"),
        reserved(23, 16),
        Field("PFCount", 31, 24, "Number of translations to prefetch"),
        Field("PASID", 51, 32, "PASID of the guest translations to prefetch (used when GN = 1)"),
        reserved(59, 52),
        flag("S", 64, "Size of the prefetched pages: one page, or the range encoded in Address", values=S_VALUES),
        reserved(65, 65),
        flag("GN", 66, "Guest/nested: prefetch guest translations of PASID", values=GN_VALUES),
        reserved(67, 67),
        flag("Inval", 68, "Invalidate the cached translations before prefetching",
             note="VirtualBox spells it Inval; the unmerged Linux patch calls it INV (CMD_PF_IOMMU_PAGES_INV_MASK 0x10)"),
        reserved(75, 69),
        Field("Address", 127, 76, "I/O virtual address bits 63:12 of the first page to prefetch", unit_shift=12),
    ),
    rules=(_needs_feature("PREFETCH_IOMMU_PAGES", "PreFSup"),),
    note=("layout from VirtualBox CMD_PREF_IOMMU_PAGES_T, agreeing with AMD's unmerged Linux patch "
          "build_pf_iommu_pages (2020: DeviceID, pfcnt << 24, address, S, INV at Q1 bit 4); VirtualBox's "
          "Q0 valid mask 0x780fffffff00ffff disagrees with its own struct (looks like a typo for "
          "0xf00fffffff00ffff): the struct is followed"),
)

COMPLETE_PPR_REQUEST = _command(
    "COMPLETE_PPR_REQUEST", 0x07, "Complete PPR request",
    "Sends a page-request group response (PRI) to a device after software has handled its page request.",
    (
        Field("DeviceID", 15, 0, "Device that made the page request"),
        reserved(31, 16),
        Field("PASID", 51, 32, "PASID of the page request (used when GN = 1)"),
        reserved(59, 52),
        reserved(65, 64),
        flag("GN", 66, "Guest/nested: the response carries the PASID", values=GN_VALUES),
        reserved(95, 67),
        Field("Completion Tag", 104, 96, "Page request group index of the request being completed",
              note=("9 bits as Linux writes it (tag & 0x1ff); VirtualBox declares a 16-bit tag at 111:96 "
                    "and no Status field. Linux is followed")),
        reserved(107, 105, note="part of VirtualBox's 16-bit Completion Tag"),
        Field("Status", 111, 108, "Response code returned to the device",
              values={0x0: "success", 0x1: "invalid request", 0xF: "response failure"},
              note=("from Linux (PPR_STATUS_SHIFT 12 of dword 3; PPR_SUCCESS/INVALID/FAILURE); not in "
                    "VirtualBox, which counts these bits in its Completion Tag")),
        reserved(127, 112),
    ),
    note="Completion Tag width and the Status field follow Linux; VirtualBox disagrees",
)

INVALIDATE_IOMMU_ALL = _command(
    "INVALIDATE_IOMMU_ALL", 0x08, "Invalidate all IOMMU caches",
    "Invalidates every cached DTE, translation and interrupt-remapping entry (needs EFR.IASup).",
    (
        reserved(59, 0),
        reserved(127, 64),
    ),
    rules=(_needs_feature("INVALIDATE_IOMMU_ALL", "IASup",
                          note=("Linux sends it only with EFR.IASup (else per-DTE/IRT/domain loops); the "
                                "event when it is absent is inferred")),),
)

RESET_VMMIO = _command(
    "RESET_VMMIO", 0x0A, "Reset vIOMMU MMIO (HW-vIOMMU)",
    "Resets the virtualized MMIO state of one hardware-vIOMMU guest (AMD HW-vIOMMU RFC, 2023).",
    (
        Field("GuestID", 15, 0, "HW-vIOMMU guest identifier"),
        reserved(27, 16, note="not used by the RFC; reserved is assumed"),
        flag("All", 28, "Reset all vMMIO state of the guest", note="RFC name 'all'; semantics undocumented"),
        reserved(30, 29, note="not used by the RFC; reserved is assumed"),
        flag("VCmd", 31, "Virtual command", note="RFC name 'vcmd'; semantics undocumented"),
        reserved(59, 32, note="not used by the RFC; reserved is assumed"),
        reserved(127, 64, note="not used by the RFC; reserved is assumed"),
    ),
    rules=(_needs_feature("RESET_VMMIO", "vIommuSup"),),
    note=("from the HW-vIOMMU RFC (build_reset_vmmio); spec field names and the reserved ranges are "
          "unconfirmed"),
)

COMMANDS: tuple[Structure, ...] = (
    COMPLETION_WAIT,
    INVALIDATE_DEVTAB_ENTRY,
    INVALIDATE_IOMMU_PAGES,
    INVALIDATE_IOTLB_PAGES,
    INVALIDATE_INTERRUPT_TABLE,
    PREFETCH_IOMMU_PAGES,
    COMPLETE_PPR_REQUEST,
    INVALIDATE_IOMMU_ALL,
    RESET_VMMIO,
)

COMMANDS_BY_OPCODE: dict[int, Structure] = {s.field("Opcode").fixed: s for s in COMMANDS}

COMMAND_BYTES = 16


def opcode_of(bits: int) -> int:
    """The opcode (Q0[63:60]) of a concrete 128-bit command."""
    return INT.extract(bits, OPCODE_HI, OPCODE_LO)


def command_structure(bits: int) -> Structure | None:
    """The command a concrete 128-bit record is, by opcode; ``None`` for an undefined opcode
    (00h, 09h, 0Bh-0Fh), which the IOMMU reports as ILLEGAL_COMMAND_ERROR."""
    return COMMANDS_BY_OPCODE.get(opcode_of(bits))


# ---- the S-bit range encoding (INVALIDATE_IOMMU_PAGES, INVALIDATE_IOTLB_PAGES) -----------------

INV_IOMMU_ALL_PAGES_ADDRESS = 0x7FFF_FFFF_FFFF_FFFF
"""The address Linux (``CMD_INV_IOMMU_ALL_PAGES_ADDRESS``) and Xen (``INV_IOMMU_ALL_PAGES_ADDRESS``)
put in an invalidation with S = 1 to mean every page: bits 62:12 set, bit 63 clear (bits 11:0 are
replaced by the command's flags)."""

PAGE_BYTES = 1 << 12


def _invalidation_span(b: Any, address: Any, s: Any) -> tuple[Any, Any]:
    """``(start, offset_mask)`` of the range, ``offset_mask = size - 1``, over backend ``b``.

    With S = 1 the bits from 12 up to the lowest clear bit z >= 12 are all ones, and the range is the
    aligned 2^(z+1) bytes around the address: ``low ^ (low + 1)`` (with bits 11:0 forced to one) is
    exactly the mask of bits z..0. No clear bit at all wraps to the whole 64-bit space.
    """
    low = b.bor(address, b.const(PAGE_BYTES - 1, 64))
    run = b.bxor(low, b.add(low, 1, 64))
    offset_mask = b.ite(b.eq(s, 1), run, b.const(PAGE_BYTES - 1, 64))
    return b.band(address, b.bnot(offset_mask, 64)), offset_mask


def range_operand(start: int, size: int) -> tuple[int, int]:
    """``(address, S)`` of the smallest invalidation covering ``[start, start + size)``: S = 0 for one
    4 KiB page, else the naturally aligned power-of-two block that holds the range (its address has
    every bit below the block's top bit set, bits 11:0 clear), and INV_IOMMU_ALL_PAGES_ADDRESS when the
    range needs bit 63. The inverse of :func:`invalidation_range` up to rounding."""
    if size <= 0 or start < 0 or start + size > 1 << 64:
        raise ValueError(f"bad invalidation range start={start:#x} size={size:#x}")
    end = start + size - 1
    if start >> 12 == end >> 12:
        return start & ~(PAGE_BYTES - 1), 0
    top = (start ^ end).bit_length()  # bits below `top` vary inside the range
    if top >= 64:
        return INV_IOMMU_ALL_PAGES_ADDRESS & ~(PAGE_BYTES - 1), 1
    block_start = start & ~((1 << top) - 1)
    # bits 12 .. top-2 set, bit top-1 clear: the lowest clear bit z = top-1 gives 2^(z+1) = 2^top bytes
    return (block_start | ((1 << (top - 1)) - 1)) & ~(PAGE_BYTES - 1), 1


def invalidation_range(address: int, s: int) -> tuple[int, int]:
    """``(start, size)`` in bytes of the pages an invalidation covers.

    ``address`` is the 64-bit address as the command carries it (Q1 itself, or ``Address << 12``):
    bits 11:0 are ignored. S = 0 gives the one 4 KiB page; S = 1 decodes the run of ones from bit
    12 (see ``_invalidation_span``). ``INV_IOMMU_ALL_PAGES_ADDRESS`` gives ``(0, 2**64)``.
    """
    start, offset_mask = _invalidation_span(INT, address & mask(64), s)
    return start, offset_mask + 1
