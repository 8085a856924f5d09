"""Command-buffer commands: 48882 §2.4 "Commands", §2.4.1..§2.4.10 (see ``SECTION_NOTE``).

Every command is a 128-bit record: Q0 is bits 63:0 and Q1 bits 127:64, both little-endian
64-bit words (Linux fills them as four dwords ``data[0]`` .. ``data[3]``). The opcode is
always Q0[63:60]; each command declares it as a fixed ``Opcode`` field, and dispatch by
opcode (:func:`command_structure`) is derived from those fields. An undefined opcode or a
set reserved bit makes the IOMMU log ILLEGAL_COMMAND_ERROR. Facts come from
``shared/reference/commands-and-events.md`` and a second reading of eight public sources (each field's
``sources``); every doubtful one carries a ``note`` or ``conflict`` and is pinned by
``tests/spec/test_commands.py``.
"""

from __future__ import annotations

from typing import Any

from .bitvec import INT, mask
from .fields import Composite, Field, Rule, Structure, flag, reserved
from .walk_types import SHIFT_WIDTH, low_mask

SECTION = "§2.4"
# Subsections as revision 3.11 numbers them: NOVA's opcode list cites §2.4.1..§2.4.10 one per opcode, and
# OpenVMM's amd_iommu spec module cites §2.4.1..§2.4.8 alike; VirtualBox (rev 3.05) cites §2.4 and §2.4.3 alike.
SECTION_BY_NAME = {
    "COMPLETION_WAIT": "§2.4.1", "INVALIDATE_DEVTAB_ENTRY": "§2.4.2", "INVALIDATE_IOMMU_PAGES": "§2.4.3",
    "INVALIDATE_IOTLB_PAGES": "§2.4.4", "INVALIDATE_INTERRUPT_TABLE": "§2.4.5", "PREFETCH_IOMMU_PAGES": "§2.4.6",
    "COMPLETE_PPR_REQUEST": "§2.4.7", "INVALIDATE_IOMMU_ALL": "§2.4.8", "INSERT_GUEST_EVENT": "§2.4.9",
    "RESET_VMMIO": "§2.4.10",
}
SECTION_NOTE = ("subsection numbers per revision 3.11 as two public sources cite them (NOVA's opcode list for "
                "§2.4.1..§2.4.10, OpenVMM for §2.4.1..§2.4.8); not read in the PDF")
ILLEGAL_COMMAND = "ILLEGAL_COMMAND_ERROR"
OPCODE_HI, OPCODE_LO = 63, 60

ADDRESS_MEANING = ("I/O virtual address bits 63:12 of the page to invalidate; with S = 1 the run of 1 bits "
                   "from bit 12 upward encodes a larger aligned range (see invalidation_range)")
S_VALUES = {0: "one 4 KiB page", 1: "range encoded in Address"}
IOTLB_PASID_SPLIT = ("current Linux (build_inv_iotlb_pages) and FreeBSD put PASID[15:8] at Q0[23:16], PASID[7:0] at "
                     "Q0[55:48] and PASID[19:16] at Q0[59:56]; Xen (iommu_cmd.c), VirtualBox and older Linux put "
                     "PASID[7:0] at 23:16 and PASID[19:8] at 59:48. The current Linux layout is declared")
GN_VALUES = {0: "host (no-PASID) translations", 1: "guest translations of the given PASID"}


def _command(name: str, opcode: int, title: str, description: str, fields: tuple[Field, ...],
             note: str = "", opcode_sources: tuple[str, ...] | None = None, opcode_conflict: str = "",
             **kw: Any) -> Structure:
    """A command structure: ``fields`` plus its fixed Opcode field (confirmed by ``opcode_sources``), in bit order."""
    op = Field("Opcode", OPCODE_HI, OPCODE_LO, "Command opcode", values={opcode: name}, fixed=opcode,
               sources=opcode_sources, conflict=opcode_conflict)
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
             values={0: "no store", 1: "store Store Data"},
             sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA")),
        flag("I", 1, "Interrupt: set Status.ComWaitInt and interrupt if Control.ComWaitIntEn",
             values={0: "no interrupt", 1: "signal completion"},
             sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD")),
        flag("F", 2, "Flush queue", note="exact semantics unconfirmed (VirtualBox: 'Flush Queue')",
             sources=("Xen", "VirtualBox", "FreeBSD")),
        Field("Store Address", 51, 3, "System physical address (8-byte aligned) the store writes, bits 51:3",
              unit_shift=3,
              sources=("QEMU", "Xen", "VirtualBox", "FreeBSD")),
        reserved(59, 52, note="QEMU logs ILLEGAL_COMMAND_ERROR when these are non-zero"),
        Field("Store Data", 127, 64, "64-bit value written when S = 1",
              sources=("Linux", "QEMU", "VirtualBox", "FreeBSD", "NOVA")),
    ),
    note="whether S = 0 with I = 0 is legal is unconfirmed (not treated as illegal here)",
    opcode_sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev"),
)

INVALIDATE_DEVTAB_ENTRY = _command(
    "INVALIDATE_DEVTAB_ENTRY", 0x02, "Invalidate device table entry",
    "Drops any cached copy of the DTE of one DeviceID; software issues it after changing the entry.",
    (
        Field("DeviceID", 15, 0, "DeviceID whose cached DTE is invalidated",
              sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA")),
        reserved(59, 16),
        reserved(127, 64),
    ),
    opcode_sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev"),
)

INVALIDATE_IOMMU_PAGES = _command(
    "INVALIDATE_IOMMU_PAGES", 0x03, "Invalidate IOMMU pages",
    "Invalidates the IOMMU's cached translations of one domain (host tables) or of one PASID of the "
    "domain (GN = 1) for one page or an encoded range. Linux's 'flush everything' form is S = 1 with "
    "the address INV_IOMMU_ALL_PAGES_ADDRESS and PDE = 1.",
    (
        Field("PASID", 19, 0, "PASID whose guest translations are invalidated (used when GN = 1)",
              sources=("Linux", "VirtualBox", "FreeBSD")),
        reserved(31, 20),
        Field("DomainID", 47, 32, "Domain whose cached translations are invalidated",
              sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA")),
        reserved(59, 48),
        flag("S", 64, "Size: one page, or the range encoded in Address", values=S_VALUES,
             sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA")),
        flag("PDE", 65, "Also invalidate cached page-directory entries",
             values={0: "leaf translations only", 1: "page-directory entries too"},
             note="Linux always sets it",
             sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "NOVA")),
        flag("GN", 66, "Guest/nested: select guest (PASID, v2) translations instead of host ones",
             values=GN_VALUES,
             sources=("Linux", "VirtualBox", "FreeBSD")),
        reserved(75, 67),
        Field("Address", 127, 76, ADDRESS_MEANING, unit_shift=12,
              sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA")),
    ),
    opcode_sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev"),
)

INVALIDATE_IOTLB_PAGES = _command(
    "INVALIDATE_IOTLB_PAGES", 0x04, "Invalidate IOTLB pages",
    "Sends an ATS invalidation to a device's own IOTLB for one page or an encoded range; the device "
    "must answer within Control.InvTimeOut or the IOMMU logs IOTLB_INV_TIMEOUT.",
    (
        Field("DeviceID", 15, 0, "Device whose IOTLB is invalidated",
              sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD")),
        Field("PASID[15:8]", 23, 16, "PASID bits 15:8 (used when GN = 1)",
              note="Linux build_inv_iotlb_pages writes PASID[15:8] here",
              sources=("Linux", "FreeBSD"), conflict=IOTLB_PASID_SPLIT),
        Field("MaxPend", 31, 24, "Maximum invalidations the device may have in flight; Linux writes the "
              "device's ATS invalidate queue depth",
              sources=("Linux", "Xen", "VirtualBox", "FreeBSD")),
        Field("QueueID", 47, 32, "Invalidation queue identifier; Linux writes the DeviceID here",
              sources=("Linux", "Xen", "VirtualBox", "FreeBSD")),
        Field("PASID[7:0]", 55, 48, "PASID bits 7:0 (used when GN = 1)",
              note="Linux writes PASID[7:0] here",
              sources=("Linux", "FreeBSD"), conflict=IOTLB_PASID_SPLIT),
        Field("PASID[19:16]", 59, 56, "PASID bits 19:16 (used when GN = 1)",
              note="Linux sends 16-bit PASIDs and never writes these bits; FreeBSD alone places them",
              sources=("FreeBSD",), conflict=IOTLB_PASID_SPLIT),
        flag("S", 64, "Size: one page, or the range encoded in Address", values=S_VALUES,
             sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD")),
        reserved(65, 65),
        flag("GN", 66, "Guest/nested: the invalidation carries the PASID", values=GN_VALUES,
             sources=("Linux", "VirtualBox", "FreeBSD")),
        reserved(67, 67),
        Field("Type", 69, 68, "Invalidation type (newer spec revisions; needs EFR.InvIotlbTypeSup)",
              note="the encodings are not in the sources",
              sources=("VirtualBox", "FreeBSD")),
        reserved(75, 70),
        Field("Address", 127, 76, ADDRESS_MEANING, unit_shift=12,
              sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD")),
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
    note="PASID byte placement: see the PASID fields' conflict; current Linux's is declared",
    opcode_sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev"),
)

INVALIDATE_INTERRUPT_TABLE = _command(
    "INVALIDATE_INTERRUPT_TABLE", 0x05, "Invalidate interrupt table",
    "Drops the cached interrupt remapping entries of one DeviceID.",
    (
        Field("DeviceID", 15, 0, "DeviceID whose cached IRTEs are invalidated",
              sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "NOVA")),
        reserved(59, 16),
        reserved(127, 64),
    ),
    opcode_sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev"),
)

PREFETCH_IOMMU_PAGES = _command(
    "PREFETCH_IOMMU_PAGES", 0x06, "Prefetch IOMMU pages",
    "Asks the IOMMU to walk and cache translations for a device ahead of use (needs EFR.PreFSup).",
    (
        Field("DeviceID", 15, 0, "Device whose translations are prefetched", sources=("FreeBSD",)),
        reserved(23, 16),
        Field("PFCount", 31, 24, "Number of translations to prefetch", sources=("FreeBSD",)),
        Field("PASID", 51, 32, "PASID of the guest translations to prefetch (used when GN = 1)", sources=("FreeBSD",)),
        reserved(59, 52),
        flag("S", 64, "Size of the prefetched pages: one page, or the range encoded in Address", values=S_VALUES,
             sources=("FreeBSD",)),
        reserved(65, 65),
        flag("GN", 66, "Guest/nested: prefetch guest translations of PASID", values=GN_VALUES, sources=("FreeBSD",)),
        reserved(67, 67),
        flag("Inval", 68, "Invalidate the cached translations before prefetching",
             note=("VirtualBox spells it Inval; the unmerged Linux patch calls it INV (CMD_PF_IOMMU_PAGES_INV_MASK "
                   "0x10)"),
             sources=("FreeBSD",)),
        reserved(75, 69),
        Field("Address", 127, 76, "I/O virtual address bits 63:12 of the first page to prefetch", unit_shift=12,
              sources=("FreeBSD",)),
    ),
    rules=(_needs_feature("PREFETCH_IOMMU_PAGES", "PreFSup"),),
    note=("layout from VirtualBox CMD_PREF_IOMMU_PAGES_T, agreeing with AMD's unmerged Linux patch "
          "build_pf_iommu_pages (2020: DeviceID, pfcnt << 24, address, S, INV at Q1 bit 4); VirtualBox's "
          "Q0 valid mask 0x780fffffff00ffff disagrees with its own struct (looks like a typo for "
          "0xf00fffffff00ffff): the struct is followed"),
    opcode_sources=("QEMU", "FreeBSD", "NOVA", "OSDev"),
)

# How Linux fills the 16-bit Completion Tag (build_complete_ppr): the PRI tag in the low 9 bits and a
# response status in the top 4, PPR_STATUS_SHIFT 12 of dword 3.
LINUX_PPR_TAG_BITS = 9
LINUX_PPR_STATUS_SHIFT = 12
LINUX_PPR_STATUS = {0x0: "success", 0x1: "invalid request", 0xF: "response failure"}
LINUX_PPR_SPLIT = (f"Linux writes the PRI tag in tag bits {LINUX_PPR_TAG_BITS - 1}:0 (Q1 bits 104:96) and a response "
                   f"status in tag bits 15:{LINUX_PPR_STATUS_SHIFT} (Q1 bits 111:108): "
                   + ", ".join(f"{k:#x} {v}" for k, v in LINUX_PPR_STATUS.items())
                   + "; tag bits 11:9 it leaves zero")


def linux_ppr_reading(completion_tag: int) -> dict[str, int]:
    """The 16-bit Completion Tag as Linux fills it: ``{"tag": 9 bits, "status": 4 bits, "unused": bits 11:9}``."""
    return {"tag": completion_tag & ((1 << LINUX_PPR_TAG_BITS) - 1),
            "status": completion_tag >> LINUX_PPR_STATUS_SHIFT & 0xF,
            "unused": completion_tag >> LINUX_PPR_TAG_BITS & ((1 << (LINUX_PPR_STATUS_SHIFT - LINUX_PPR_TAG_BITS)) - 1)}


COMPLETE_PPR_REQUEST = _command(
    "COMPLETE_PPR_REQUEST", 0x07, "Complete PPR request",
    "Sends a page-request group response (PRI) to a device after software has handled its page request.",
    (
        Field("DeviceID", 15, 0, "Device that made the page request", sources=("Linux", "VirtualBox", "FreeBSD")),
        reserved(31, 16),
        Field("PASID", 51, 32, "PASID of the page request (used when GN = 1)",
              sources=("Linux", "VirtualBox", "FreeBSD")),
        reserved(59, 52),
        reserved(65, 64),
        flag("GN", 66, "Guest/nested: the response carries the PASID", values=GN_VALUES,
             sources=("Linux", "VirtualBox", "FreeBSD")),
        reserved(95, 67),
        Field("Completion Tag", 111, 96, "Completion tag returned to the device with the page-request response",
              note=LINUX_PPR_SPLIT,
              sources=("VirtualBox", "FreeBSD"),
              conflict=("VirtualBox (u16CompletionTag) and FreeBSD (compltag:16) declare one 16-bit tag at 111:96, "
                        "and QEMU's reserved-bit checks leave all 16 bits free; Linux alone writes a 9-bit tag "
                        "(104:96) and a 4-bit response status (111:108). The 16 bits are declared so that no "
                        "command three sources accept is called illegal")),
        reserved(127, 112),
    ),
    note="Completion Tag is 16 bits as VirtualBox, FreeBSD and QEMU have it; Linux's split is in its note",
    opcode_sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev"),
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
    opcode_sources=("Linux", "QEMU", "Xen", "VirtualBox", "NOVA", "OSDev"),
    opcode_conflict=("FreeBSD's struct amdiommu_cmd_invalidate_iommu_all puts op at 35:32, a struct bug: its opcode "
                     "constant and every other FreeBSD command, like Linux, QEMU, Xen, VirtualBox, NOVA and OSDev, "
                     "use 63:60"),
)

INSERT_GUEST_EVENT = _command(
    "INSERT_GUEST_EVENT", 0x09, "Insert guest event (HW-vIOMMU)",
    "Asks the IOMMU to put an event into a hardware-vIOMMU guest's event log. Which event, and from where, "
    "no public source says.",
    (
        reserved(31, 0),
        Field("GuestID", 47, 32, "HW-vIOMMU guest whose event log receives the event",
              sources=("FreeBSD",)),
        reserved(59, 48),
        reserved(127, 64),
    ),
    rules=(_needs_feature("INSERT_GUEST_EVENT", "vIommuSup",
                          note=("inferred: GuestID names a HW-vIOMMU guest, so the command is taken to need "
                                "EFR.vIommuSup like RESET_VMMIO; no source says so")),),
    note=("layout only from FreeBSD (struct amdiommu_cmd_insert_guest_event: GuestID at 47:32, the rest "
          "reserved); the opcode is also in NOVA and OSDev's command list; nothing in Linux builds it"),
    opcode_sources=("FreeBSD", "NOVA", "OSDev"),
)

RESET_VMMIO = _command(
    "RESET_VMMIO", 0x0A, "Reset vIOMMU MMIO (HW-vIOMMU)",
    "Resets the virtualized MMIO state of one hardware-vIOMMU guest (AMD HW-vIOMMU RFC, 2023).",
    (
        Field("GuestID", 15, 0, "HW-vIOMMU guest identifier", sources=("AMD-RFC", "FreeBSD")),
        reserved(27, 16, note="not used by the RFC; reserved is assumed"),
        flag("All", 28, "Reset all vMMIO state of the guest", note="RFC name 'all'; semantics undocumented",
             sources=("AMD-RFC",),
             conflict=("AMD's RFC (build_reset_vmmio) sets bit 28; FreeBSD's struct amdiommu_cmd_reset_vmmio lands "
                       "it at 27, but that struct is 127 bits long (its op falls at 62:59), so its count is one bit "
                       "short")),
        reserved(30, 29, note="not used by the RFC; reserved is assumed"),
        flag("VCmd", 31, "Virtual command", note="RFC name 'vcmd'; semantics undocumented",
             sources=("AMD-RFC", "FreeBSD")),
        reserved(59, 32, note="not used by the RFC; reserved is assumed"),
        reserved(127, 64, note="not used by the RFC; reserved is assumed"),
    ),
    rules=(_needs_feature("RESET_VMMIO", "vIommuSup"),),
    note=("from the HW-vIOMMU RFC (build_reset_vmmio); spec field names and the reserved ranges are "
          "unconfirmed"),
    opcode_sources=("AMD-RFC", "NOVA", "OSDev"),
    opcode_conflict=("FreeBSD's struct amdiommu_cmd_reset_vmmio is one bit short and lands op at 62:59; its opcode "
                     "constant (0xa) and the RFC, NOVA and OSDev put it at 63:60"),
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
    INSERT_GUEST_EVENT,
    RESET_VMMIO,
)

COMMANDS_BY_OPCODE: dict[int, Structure] = {s.field("Opcode").fixed: s for s in COMMANDS}

COMMAND_BYTES = 16


def opcode_of(bits: int) -> int:
    """The opcode (Q0[63:60]) of a concrete 128-bit command."""
    return INT.extract(bits, OPCODE_HI, OPCODE_LO)


def command_structure(bits: int) -> Structure | None:
    """The command a concrete 128-bit record is, by opcode; ``None`` for an undefined opcode
    (00h, 0Bh-0Fh), which the IOMMU reports as ILLEGAL_COMMAND_ERROR."""
    return COMMANDS_BY_OPCODE.get(opcode_of(bits))


# ---- the S-bit range encoding (INVALIDATE_IOMMU_PAGES, INVALIDATE_IOTLB_PAGES) -----------------

INV_IOMMU_ALL_PAGES_ADDRESS = 0x7FFF_FFFF_FFFF_FFFF
"""The address Linux (``CMD_INV_IOMMU_ALL_PAGES_ADDRESS``) and Xen (``INV_IOMMU_ALL_PAGES_ADDRESS``)
put in an invalidation with S = 1 to mean every page: bits 62:12 set, bit 63 clear (bits 11:0 are
replaced by the command's flags)."""

PAGE_BYTES = 1 << 12
ALL_PAGES_FIRST_ZERO = 51
"""With S = 1, a first clear bit at or above 51 means every page. QEMU decodes it so
(amdvi_decode_invalidation_size, citing 48882 Table 14 "Example Page Size Encodings", where bits
50:12 all set is the whole address space), and Linux never encodes a block above 2^52 (past a highest
differing bit of 51 it sends INV_IOMMU_ALL_PAGES_ADDRESS). Bits 63:52 of an IOVA are a sign
extension, so no narrower block is meant there."""


def block_operand(b: Any, base: Any, shift: Any) -> tuple[Any, Any]:
    """``(address, S)`` of the invalidation covering the aligned block ``[base, base + 2^shift)``
    (``12 <= shift <= 64``, ``base`` a multiple of 2^shift), over backend ``b``: S = 0 and the page for
    one 4 KiB page; else S = 1 and the address with bits ``shift - 2 .. 12`` set, so that its first clear
    bit at or above 12 is ``shift - 1`` (bits 11:0 clear: the command's flags go there). The inverse of
    :func:`_invalidation_span` for shifts up to 51; a wider block decodes as every page
    (:data:`ALL_PAGES_FIRST_ZERO`), and ``(0, 64)`` gives ``INV_IOMMU_ALL_PAGES_ADDRESS``."""
    one_page = b.eq(shift, 12)
    run = b.band(b.bor(base, low_mask(b, b.sub(shift, 1, SHIFT_WIDTH))), b.bnot(b.const(PAGE_BYTES - 1, 64), 64))
    return b.ite(one_page, base, run, width=64), b.ite(one_page, b.const(0, 1), b.const(1, 1))


def _invalidation_span(b: Any, address: Any, s: Any) -> tuple[Any, Any]:
    """``(start, offset_mask)`` of the range, ``offset_mask = size - 1``, over backend ``b``.

    With S = 1 the bits from 12 up to the lowest clear bit z >= 12 are all ones, and the range is the
    aligned 2^(z+1) bytes around the address: ``low ^ (low + 1)`` (with bits 11:0 forced to one) is
    exactly the mask of bits z..0. When z >= ALL_PAGES_FIRST_ZERO (bits 50:12 all set) the range is the
    whole 64-bit space. The inverse of :func:`block_operand`.
    """
    low = b.bor(address, b.const(PAGE_BYTES - 1, 64))
    run = b.bxor(low, b.add(low, 1, 64))
    below = mask(ALL_PAGES_FIRST_ZERO)
    everything = b.eq(b.band(low, b.const(below, 64)), below)
    wide = b.ite(everything, b.const(mask(64), 64), run, width=64)
    offset_mask = b.ite(b.eq(s, 1), wide, b.const(PAGE_BYTES - 1, 64), width=64)
    return b.band(address, b.bnot(offset_mask, 64)), offset_mask


EVERY_PAGE = (0, 64)
"""The block ``(base, shift)`` of the whole 64-bit space: its operand is ``INV_IOMMU_ALL_PAGES_ADDRESS``, S = 1."""


def covering_block(start: int, size: int) -> tuple[int, int]:
    """``(base, shift)``: the smallest aligned block holding ``[start, start + size)`` (concrete), as Linux's
    build_inv_address rounds a range: one 4 KiB page, else 2^(h + 1) bytes where h is the highest bit that
    differs between the first and the last byte; past h = 51 (a block the operand cannot tell from every
    page, :data:`ALL_PAGES_FIRST_ZERO`) the whole space, :data:`EVERY_PAGE`."""
    if size <= 0 or start < 0 or start + size > 1 << 64:
        raise ValueError(f"bad invalidation range start={start:#x} size={size:#x}")
    end = start + size - 1
    if start >> 12 == end >> 12:
        return start & ~(PAGE_BYTES - 1), 12
    shift = (start ^ end).bit_length()
    if shift > ALL_PAGES_FIRST_ZERO + 1:
        return EVERY_PAGE
    return start & ~mask(shift), shift


def range_operand(start: int, size: int) -> tuple[int, int]:
    """``(address, S)`` of the smallest invalidation covering ``[start, start + size)``, as Linux's
    build_inv_address makes it (:func:`covering_block`, then :func:`block_operand`): S = 0 for one
    4 KiB page; else every address bit below the highest bit that differs between the first and last
    byte is set (bits 11:0 clear), and past a highest differing bit of 51 the all-pages address. A
    block of 2^52 bytes is encoded as such, and decodes as every page (:data:`ALL_PAGES_FIRST_ZERO`).
    The inverse of :func:`invalidation_range` up to rounding."""
    return block_operand(INT, *covering_block(start, size))


def invalidation_range(address: int, s: int) -> tuple[int, int]:
    """``(start, size)`` in bytes of the pages an invalidation covers.

    ``address`` is the 64-bit address as the command carries it (Q1 itself, or ``Address << 12``):
    bits 11:0 are ignored. S = 0 gives the one 4 KiB page; S = 1 decodes the run of ones from bit
    12 (see ``_invalidation_span``); a first clear bit at 51 or above, ``INV_IOMMU_ALL_PAGES_ADDRESS``
    among them, gives ``(0, 2**64)``.
    """
    start, offset_mask = _invalidation_span(INT, address & mask(64), s)
    return start, offset_mask + 1
