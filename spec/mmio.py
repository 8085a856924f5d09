"""The MMIO registers the models use: 48882 §3.4 "IOMMU MMIO Registers" (subsections per revision 3.11).

Fourteen 64-bit registers of the IOMMU's MMIO window: the device table, command buffer,
event log and PPR log base registers, Control, the exclusion range, the Extended Feature
Registers EFR and EFR2, the command-buffer and event-log head/tail pointers, and Status.
Facts come from ``shared/reference/mmio-and-features.md``, ``device-table-entry.md`` §4 and
``commands-and-events.md`` §1 and §3 (Linux, QEMU, Xen and VirtualBox sources). Where those
sources disagree the field carries a ``note`` and ``tests/spec/test_mmio.py`` pins the choice.

Writing a reserved register bit is not an event, so ``reserved_event`` is empty; the reserved
ranges are still declared so that validators can flag them. Each register's offset is stated
once, in :data:`_LAYOUT`; :data:`REGISTERS`, :data:`REGISTERS_BY_OFFSET` and :data:`OFFSETS`
derive from it. The helpers below compute sizes from register values: those written over a
backend (``backend=INT`` or ``Z3``) are plain field arithmetic; ``host_levels_supported`` and
``guest_levels_supported`` are concrete table look-ups (they return ``None`` for encodings
without a level count).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from .bitvec import INT, log2
from .fields import Field, Structure, flag, ignored, reserved
from .levels import PAGE_SHIFT

SECTION = "§3.4"
SECTION_NOTE = ("subsection numbers follow revision 3.11 as cited in a public emulator (OpenVMM's amd_iommu "
                "spec module); VirtualBox, written against 3.05, cites §3.3.13 for the pointer registers, so "
                "numbering moved between revisions")

ENTRY_BYTES = 16  # command-buffer and event-log entries are 128 bits (Linux EVTLOG_ENTRY_SIZE)
DEVICE_TABLE_ENTRY_BYTES = 32
DEVICE_ID_WIDTH = 16
RING_WIDTH = 32  # width of ring_entries / ring_bytes results (512 KiB fits easily)

RW1C = "RW1C"  # read; writing 1 clears
RO = "RO"  # read-only

# -- value tables shared by declarations and helpers --------------------------------------------
HATS_LEVELS = {0: 4, 1: 5, 2: 6}  # EFR.HATS -> deepest host (v1) table; 3 = host translation unavailable
GATS_LEVELS = {0: 4, 1: 5}  # EFR.GATS -> deepest guest (v2) table; 2 and 3 are defined by no source
MIN_LOG_LEN = 8  # ComLen / EventLen / PPRLogLen: at least 2^8 = 256 entries (Xen iommu-defs.h)


def _log_len_field(name: str, what: str, **kw: Any) -> Field:
    return Field(
        name, 59, 56, f"Length of the {what}: 2^{name} entries of 16 bytes",
        values={n: f"{1 << n} entries ({(1 << n) * ENTRY_BYTES // 1024} KiB)" for n in range(MIN_LOG_LEN, 16)},
        illegal={n: f"below the minimum of {1 << MIN_LOG_LEN} entries" for n in range(MIN_LOG_LEN)},
        note=("minimum 256 entries from Xen's 'power of 2 increments, minimum of 256'; that 48882 names "
              "0..7 reserved was not seen. Linux writes 9 (512 entries, 8 KiB)"),
        **kw,
    )


def _base_field(name: str, what: str, **kw: Any) -> Field:
    return Field(name, 51, 12, f"System physical address of the {what}, bits 51:12 (4 KiB aligned)", unit_shift=12,
                 **kw)


def _pointer_register(name: str, title: str, field: str, meaning: str, alias: str, section: str,
                      sources: tuple[str, ...]) -> Structure:
    return Structure(
        name=name,
        title=title,
        width=64,
        section=section,
        aliases=(title, alias),
        description=meaning,
        note=SECTION_NOTE,
        fields=(
            reserved(3, 0),
            Field(field, 18, 4, "Byte offset into the ring, bits 18:4 (16-byte aligned; 512 KiB at most)",
                  unit_shift=4,
                  note=(f"spec short name {field!r} not seen in the sources; the bit range is Linux GENMASK(18, 4), "
                        "VirtualBox valid mask 0x7fff0 and Xen 0x0007FFF0"), sources=sources),
            reserved(63, 19),
        ),
    )


# =============================================================================================
# Base address registers
# =============================================================================================
DEV_TAB_BAR = Structure(
    name="DEV_TAB_BAR",
    title="Device Table Base Address Register",
    width=64,
    section="§3.4.1",
    aliases=("Device Table Base Address Register", "MMIO_DEV_TABLE_OFFSET"),
    description="Where the device table lives and how many 4 KiB pages it spans.",
    note=SECTION_NOTE,
    fields=(
        Field("Size", 8, 0, "Device table length in 4 KiB pages minus one: (Size + 1) x 4 KiB, 128 DTEs a page",
              values={0: "4 KiB: DeviceIDs 0..0x7F", 0x1FF: "2 MiB: all 65536 DeviceIDs (Linux)"},
              note=("with a segmented device table (Control.DevTblSegEn) the segment registers' Size is 7:0 "
                    "(VirtualBox)"),
              sources=("VirtualBox", "Xen", "FreeBSD", "NOVA", "OpenVMM"),
              conflict="VirtualBox, Xen, FreeBSD, NOVA and OpenVMM give 8:0; QEMU masks 11:0"),
        reserved(11, 9),
        _base_field("DevTabBase", "device table", sources=("VirtualBox", "QEMU", "Xen", "OpenVMM")),
        reserved(63, 52),
    ),
)

def _ring_register(name: str, title: str, section: str, base: str, length: str, what: str,
                   aliases: tuple[str, ...], base_sources: tuple[str, ...],
                   length_sources: tuple[str, ...]) -> Structure:
    """A ring's base address register: base address 51:12 and log2 of its 16-byte entries in 59:56."""
    return Structure(
        name=name,
        title=title,
        width=64,
        section=section,
        aliases=(title, *aliases),
        description=f"Where the {what} lives and how many 16-byte entries it holds.",
        note=SECTION_NOTE,
        fields=(
            reserved(11, 0),
            _base_field(base, what, sources=base_sources),
            reserved(55, 52),
            _log_len_field(length, what, sources=length_sources),
            reserved(63, 60),
        ),
    )


CMD_BUF_BAR = _ring_register("CMD_BUF_BAR", "Command Buffer Base Address Register", "§3.4.2", "ComBase", "ComLen",
                             "command buffer", ("MMIO_CMD_BUF_OFFSET",),
                             base_sources=("VirtualBox", "QEMU", "Xen", "OpenVMM"),
                             length_sources=("Linux", "VirtualBox", "Xen", "QEMU", "FreeBSD", "NOVA", "OpenVMM"))
EVT_LOG_BAR = _ring_register("EVT_LOG_BAR", "Event Log Base Address Register", "§3.4.3", "EventBase", "EventLen",
                             "event log", ("MMIO_EVT_BUF_OFFSET",),
                             base_sources=("VirtualBox", "QEMU", "Xen", "OpenVMM"),
                             length_sources=("Linux", "VirtualBox", "Xen", "QEMU", "FreeBSD", "NOVA", "OpenVMM"))
PPR_LOG_BAR = _ring_register("PPR_LOG_BAR", "PPR Log Base Address Register", "§3.4", "PPRLogBase", "PPRLogLen",
                             "PPR log", ("Peripheral Page Request Log Base Address Register", "MMIO_PPR_LOG_OFFSET"),
                             base_sources=("VirtualBox", "Xen", "QEMU"), length_sources=("Linux", "VirtualBox", "Xen"))

# =============================================================================================
# Control
# =============================================================================================
_ENABLE = {0: "disabled", 1: "enabled"}

CONTROL = Structure(
    name="CONTROL",
    title="IOMMU Control Register",
    width=64,
    section="§3.4.4",
    aliases=("IOMMU Control Register", "Control Register", "MMIO_CONTROL_OFFSET"),
    description="Enables of the IOMMU and its rings, logs and optional features.",
    note=(SECTION_NOTE + ". Bits 52 and up follow Linux, the HW-vIOMMU RFC and Xen; VirtualBox's valid mask "
          "0x004defffffffffff predates them. GstBufferTRPMode (used by AMD's vIOMMU driver) has no known bit "
          "and is not declared."),
    fields=(
        flag("IommuEn", 0, "IOMMU enable: translate and remap upstream requests", values=_ENABLE,
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM")),
        flag("HtTunEn", 1, "HyperTransport tunnel translation enable",
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM")),
        flag("EventLogEn", 2, "Event logging enable", values=_ENABLE,
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM")),
        flag("EventIntEn", 3, "Interrupt when an event is logged", values=_ENABLE,
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM")),
        flag("ComWaitIntEn", 4, "Interrupt on COMPLETION_WAIT with I = 1", values=_ENABLE,
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM")),
        Field("InvTimeOut", 7, 5, "Timeout for remote IOTLB invalidations (INVALIDATE_IOTLB_PAGES)",
              values={0: "no timeout", 1: "1 ms", 2: "10 ms", 3: "100 ms", 4: "1 s", 5: "10 s", 6: "100 s"},
              note="the meaning of 7 was not seen (Linux CTRL_INV_TO_* stops at 6)",
              sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
        flag("PassPW", 8, "HyperTransport PassPW bit for IOMMU-originated requests",
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
        flag("ResPassPW", 9, "HyperTransport response PassPW bit",
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
        flag("Coherent", 10, "HyperTransport coherent bit for device-table and page-table reads",
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "NOVA", "OpenVMM")),
        flag("Isoc", 11, "HyperTransport isochronous bit for IOMMU reads",
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "NOVA", "OpenVMM")),
        flag("CmdBufEn", 12, "Command buffer processing enable (Status.CmdBufRun follows it)", values=_ENABLE,
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM")),
        flag("PPRLogEn", 13, "PPR logging enable", note="VirtualBox spells it PprLogEn",
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "NOVA", "OpenVMM")),
        flag("PprIntEn", 14, "Interrupt when a PPR is logged", note="VirtualBox spells it PprIntrEn",
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "NOVA", "OpenVMM")),
        flag("PPREn", 15, "Peripheral page request processing enable", note="VirtualBox spells it PprEn",
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "NOVA", "OpenVMM")),
        flag("GTEn", 16, "Guest translation (v2 tables through the GCR3 table) enable", values=_ENABLE,
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "NOVA", "OpenVMM")),
        flag("GAEn", 17, "Guest virtual-APIC enable (128-bit IRTEs)", values=_ENABLE,
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM")),
        Field("CRW", 21, 18, "Reserved for future use (undocumented)",
              note="VirtualBox declares it 1 bit wide by mistake; Xen gives 4 bits",
              sources=("VirtualBox", "Xen")),
        flag("SmiFEn", 22, "SMI filter enable", sources=("FreeBSD", "VirtualBox", "Xen", "NOVA", "OpenVMM")),
        flag("SlfWBdis", 23, "Self write-back disable", note="VirtualBox spells it SlfWBDis",
             sources=("FreeBSD", "VirtualBox", "Xen", "NOVA", "OpenVMM")),
        flag("SmiFLogEn", 24, "SMI filter log enable", sources=("FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
        Field("GAMEn", 27, 25, "Guest virtual-APIC mode",
              values={0: "legacy guest-APIC interrupt remapping", 1: "virtual APIC (interrupts posted to vCPUs)"},
              note="value meanings inferred: Linux sets only bit 25 (CONTROL_GAM_EN) for vAPIC mode",
              sources=("Linux", "FreeBSD", "VirtualBox", "Xen"),
              conflict="Linux, FreeBSD, VirtualBox and Xen give GAMEn at 27:25; OpenVMM's fork reserves those bits"),
        flag("GALogEn", 28, "Guest virtual-APIC (GA) log enable",
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
        flag("GAIntEn", 29, "Interrupt when the GA log is written",
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
        Field("DualPprLogEn", 31, 30, "Dual PPR log (log B) enable",
              sources=("FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
        Field("DualEventLogEn", 33, 32, "Dual event log (log B) enable",
              sources=("FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
        Field("DevTblSegEn", 36, 34, "Segmented device table enable",
              note="encodings (how many segments) not seen",
              sources=("FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
        Field("PrivAbrtEn", 38, 37, "Privilege abort enable", sources=("FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
        flag("PprAutoRspEn", 39, "PPR auto-response enable", sources=("FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
        flag("MarcEn", 40, "Memory address routing and control (MARC) enable",
             sources=("FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
        flag("BlkStopMrkEn", 41, "Block PCIe stop-marker messages", note="VirtualBox spells it BlkStopMarkEn",
             sources=("FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
        flag("PprAutoRspAon", 42, "PPR auto-response always on",
             note="AMD's later vIOMMU code annotates its use as bit [42]; 42 is declared",
             sources=("FreeBSD", "VirtualBox", "Xen", "OpenVMM"),
             conflict=("FreeBSD, VirtualBox, Xen and OpenVMM give bit 42; AMD's HW-vIOMMU RFC header defines "
                       "CONTROL_PPR_AUTO_RSP_AON as 48")),
        Field("NumIntRemapMode", 44, 43, "Interrupt remapping table size mode",
              values={0: "512 IRTEs per table", 1: "2048 IRTEs per table (needs EFR2.NumIntRemapSup = 1)"},
              note="Linux CONTROL_NUM_INT_REMAP_MODE = 43, 2 bits; the newer layout is declared",
              sources=("Linux", "FreeBSD", "OpenVMM"),
              conflict=("Linux, FreeBSD and OpenVMM give NumIntRemapMode at 44:43; VirtualBox and Xen (older "
                        "revision) name bit 43 DomainIDPNE and reserve 44")),
        flag("EPHEn", 45, "Enhanced PPR handling enable", sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
        Field("HADUpdate", 47, 46, "Host access/dirty bit update in the v1 tables",
              note="encodings not seen",
              sources=("FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
        flag("GDUpdateDis", 48, "Disable hardware update of the dirty bit in guest (v2) tables",
             sources=("FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
        reserved(49, 49),
        flag("XTEn", 50, "x2APIC interrupt remapping enable (32-bit destination IDs)",
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "NOVA", "OpenVMM")),
        flag("IntCapXTEn", 51, "The IOMMU's own interrupts use the x2APIC-format registers at 0x170..0x180",
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "NOVA", "OpenVMM")),
        flag("vCmdEn", 52, "HW-vIOMMU: virtualized command buffer enable",
             note="from the HW-vIOMMU RFC (CONTROL_VCMD_EN) and Xen vcmd_en",
             sources=("FreeBSD", "Xen", "OpenVMM")),
        flag("vIommuEn", 53, "HW-vIOMMU enable", note="from the HW-vIOMMU RFC (CONTROL_VIOMMU_EN) and Xen viommu_en",
             sources=("FreeBSD", "Xen", "OpenVMM")),
        flag("GAUpdateDis", 54, "Disable hardware update of the access bit in guest (v2) tables",
             sources=("FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
        flag("GAPPIEn", 55, "Guest APIC posted-interrupt enable", note="Linux CONTROL_GAPPI_EN and Xen gappi_en",
             sources=("FreeBSD", "Xen", "OpenVMM", "Linux")),
        reserved(57, 56, note="Xen marks 63:56 reserved; Linux uses 58, 59 and 61 only"),
        flag("GCR3TRPMode", 58, "GCR3 table root pointers are guest physical (needs EFR2.GCR3TRPModeSup)",
             sources=("Linux", "FreeBSD", "OpenVMM")),
        flag("IRTCacheDis", 59, "Disable caching of interrupt remapping table entries",
             sources=("Linux", "FreeBSD", "OpenVMM")),
        reserved(60, 60),
        Field("SNPAVICEn", 63, 61, "SNP-secure virtual-APIC mode",
              values={0: "disabled", 1: "enabled with GAM vAPIC (Linux)"},
              note=("width inferred: Linux sets only bit 61 (CONTROL_SNPAVIC_EN); the 3-bit width mirrors "
                    "EFR2.SNPAVICSup (7:5) the way GAMEn mirrors GAMSup. Bits 63:62 may be reserved."),
              sources=("Linux", "FreeBSD", "OpenVMM")),
    ),
)

# =============================================================================================
# Exclusion range
# =============================================================================================
EXCL_BASE = Structure(
    name="EXCL_BASE",
    title="IOMMU Exclusion Base Register",
    width=64,
    section="§3.4.5",
    aliases=("IOMMU Exclusion Base Register", "Exclusion Range Base Register", "MMIO_EXCL_BASE_OFFSET"),
    description="Start of the exclusion range: DMA inside it passes untranslated for the selected devices.",
    note=SECTION_NOTE + ". The spec's short name for the address field was not seen.",
    fields=(
        flag("ExEn", 0, "Exclusion range enable", values=_ENABLE, note="Linux MMIO_EXCL_ENABLE_MASK",
             sources=("Linux", "VirtualBox", "Xen", "QEMU", "OpenVMM")),
        flag("Allow", 1, "The range applies to all devices (else only those with DTE.EX = 1)",
             values={0: "only devices with DTE.EX = 1", 1: "all devices"}, note="Linux MMIO_EXCL_ALLOW_MASK",
             sources=("Linux", "VirtualBox", "Xen", "QEMU", "OpenVMM")),
        reserved(11, 2),
        Field("Exclusion Range Base Address", 51, 12, "System physical address where the range starts, bits 51:12",
              unit_shift=12,
              sources=("VirtualBox", "OpenVMM"),
              conflict="VirtualBox and OpenVMM give 51:12; Xen's high-dword mask 0xFFFFFFFF takes 63:12"),
        reserved(63, 52),
    ),
)

EXCL_LIMIT = Structure(
    name="EXCL_LIMIT",
    title="IOMMU Exclusion Range Limit Register",
    width=64,
    section="§3.4.6",
    aliases=("IOMMU Exclusion Range Limit Register", "Exclusion Range Limit Register", "MMIO_EXCL_LIMIT_OFFSET"),
    description="Last 4 KiB page of the exclusion range (inclusive).",
    note=SECTION_NOTE,
    fields=(
        ignored(11, 0, note="read as ones, so the limit covers the whole last page (VirtualBox 'treated as 1s')"),
        Field("Exclusion Range Limit", 51, 12, "System physical address of the range's last page, bits 51:12",
              unit_shift=12,
              sources=("VirtualBox", "QEMU", "OpenVMM"),
              conflict="VirtualBox, QEMU and OpenVMM give 51:12; Xen's high-dword mask 0xFFFFFFFF takes 63:12"),
        reserved(63, 52),
    ),
)

# =============================================================================================
# Extended Feature Registers
# =============================================================================================
_SUP = {0: "not supported", 1: "supported"}

EFR = Structure(
    name="EFR",
    title="IOMMU Extended Feature Register",
    width=64,
    section="§3.4.7",
    aliases=("IOMMU Extended Feature Register", "Extended Feature Register", "MMIO_EXT_FEATURES"),
    description="Read-only feature report; the ACPI IVHD types 11h/40h carry a copy of it.",
    note=(SECTION_NOTE + ". Bits 5, 31 and 55..63 differ between spec revisions: VirtualBox and Xen follow "
          "different revisions; Linux adds SNPSup at 63."),
    fields=(
        flag("PreFSup", 0, "PREFETCH_IOMMU_PAGES supported", values=_SUP,
             sources=("Linux", "VirtualBox", "Xen", "QEMU", "OpenVMM")),
        flag("PPRSup", 1, "Peripheral page requests (PRI) supported", values=_SUP,
             sources=("Linux", "VirtualBox", "Xen", "QEMU", "OpenVMM")),
        flag("XTSup", 2, "x2APIC interrupt remapping supported", values=_SUP,
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "NOVA", "OpenVMM")),
        flag("NXSup", 3, "No-execute and privilege-level protection supported", values=_SUP,
             sources=("Linux", "VirtualBox", "Xen", "OpenVMM")),
        flag("GTSup", 4, "Guest translation (v2 tables) supported", values=_SUP,
             sources=("Linux", "VirtualBox", "Xen", "QEMU", "OpenVMM")),
        flag("GAPPISup", 5, "Guest APIC posted interrupts supported", values=_SUP,
             note="Linux FEATURE_GAPPI and Xen gappi_sup",
             sources=("Xen", "OpenVMM", "Linux"),
             conflict="Linux, Xen and OpenVMM name bit 5 GAPPISup; VirtualBox (older revision) reserves it"),
        flag("IASup", 6, "INVALIDATE_IOMMU_ALL supported", values=_SUP,
             sources=("Linux", "VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM")),
        flag("GASup", 7, "Guest virtual APIC supported", values=_SUP,
             sources=("Linux", "VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM")),
        flag("HESup", 8, "Hardware error registers supported", values=_SUP,
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU", "OpenVMM")),
        flag("PCSup", 9, "Performance counters supported", values=_SUP,
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU", "OpenVMM")),
        Field("HATS", 11, 10, "Host address translation size: deepest host (v1) table is HATS + 4 levels",
              values={**{h: f"up to {n}-level host tables" for h, n in HATS_LEVELS.items()},
                      3: "host translation unavailable (HATDis)"},
              note=("Linux init.c: hpt_level = HATS + 4, and 3 disables host translation; QEMU reports 3 when DMA "
                    "translation is off"),
              sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM")),
        Field("GATS", 13, 12, "Guest address translation size: depth of guest (v2) tables",
              values={**{g: f"{n}-level guest tables" for g, n in GATS_LEVELS.items()},
                      2: "no defined meaning (QEMU advertises it); read as 4-level guest tables, as Linux does",
                      3: "no defined meaning"},
              note=("only 0 (4-level) and 1 (5-level) are defined anywhere (Linux GUEST_PGTABLE_5_LEVEL, AMD's RFC "
                    "FEATURE_GATS_5LEVEL). QEMU advertises 2 (AMDVI_GATS_MODE 2 << 12) without implementing guest "
                    "tables, apparently copying HATS = 2 (6 host levels): x86-64 has no 6-level guest table. Linux "
                    "uses 5-level tables only when GATS == 1, so 2 and 3 act as 4-level; the GPM-beyond-GATS rule "
                    "does the same. Not illegal: EFR is a report, and a reserved report value is no error"),
              sources=("Linux", "VirtualBox", "Xen", "QEMU", "OpenVMM"),
              conflict=("the position (13:12) is agreed by Linux, VirtualBox, Xen, QEMU and OpenVMM; the value QEMU "
                        "advertises, 2, no source defines (see the note)")),
        Field("GLXSup", 15, 14, "Largest DTE.GLX supported (GCR3 table levels minus one)",
              values={0: "1-level GCR3 table", 1: "up to 2-level GCR3 tables", 2: "up to 3-level GCR3 tables"},
              note=("Linux compares the GCR3 levels it needs with this value; the HW-vIOMMU RFC's "
                    "FEATURE_GLX_3LEVEL = 0 disagrees with that reading"),
              sources=("Linux", "VirtualBox", "Xen", "OpenVMM")),
        Field("SmiFSup", 17, 16, "SMI filter support", sources=("VirtualBox", "Xen", "OpenVMM")),
        Field("SmiFRC", 20, 18, "SMI filter register count", sources=("VirtualBox", "Xen", "OpenVMM")),
        Field("GAMSup", 23, 21, "Guest virtual-APIC modes supported (Linux tests bit 21 for vAPIC)",
              sources=("Linux", "VirtualBox", "Xen", "OpenVMM")),
        Field("DualPprLogSup", 25, 24, "Dual PPR log support", sources=("VirtualBox", "Xen", "OpenVMM")),
        reserved(27, 26),
        Field("DualEventLogSup", 29, 28, "Dual event log support", sources=("VirtualBox", "Xen", "OpenVMM")),
        reserved(30, 30),
        flag("SATSSup", 31, "Secure ATS supported", values=_SUP, note="Xen sats_sup; DTE.SATS is the matching entry bit",
             sources=("Xen", "OpenVMM"), conflict="Xen and OpenVMM name bit 31 SATSSup; VirtualBox reserves 31:30"),
        Field("PASmax", 36, 32, "Largest PASID width minus one: PASIDs have PASmax + 1 bits",
              note=("Linux init.c sets max_pasids = 2^(PASmax+1) - 1 and AMD's QEMU vIOMMU reports 16-bit "
                    "PASIDs as 0xF; VirtualBox spells it PASMax"),
              sources=("Linux", "VirtualBox", "Xen", "OpenVMM")),
        flag("USSup", 37, "User/supervisor page protection supported", values=_SUP,
             sources=("VirtualBox", "Xen", "OpenVMM")),
        Field("DevTblSegSup", 39, 38, "Segmented device table support", note="encodings not seen",
              sources=("FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
        flag("PprOvrflwEarlySup", 40, "PPR log overflow early warning supported", values=_SUP,
             sources=("VirtualBox", "Xen", "OpenVMM")),
        flag("PprAutoRspSup", 41, "PPR auto-response supported", values=_SUP, sources=("VirtualBox", "Xen", "OpenVMM")),
        Field("MarcSup", 43, 42, "Memory address routing and control (MARC) support",
              sources=("VirtualBox", "Xen", "OpenVMM")),
        flag("BlkStopMrkSup", 44, "Blocking stop-marker messages supported", values=_SUP,
             note="VirtualBox spells it BlkStopMarkSup",
             sources=("VirtualBox", "Xen", "OpenVMM")),
        flag("PerfOptSup", 45, "Performance optimization supported", values=_SUP,
             sources=("VirtualBox", "Xen", "NOVA", "OpenVMM")),
        flag("MsiCapMmioSup", 46, "MSI capability registers readable through MMIO", values=_SUP,
             sources=("Linux", "VirtualBox", "Xen", "OpenVMM")),
        reserved(47, 47),
        flag("GIoSup", 48, "Guest I/O protection (DTE.GIoV) supported", values=_SUP,
             sources=("Linux", "VirtualBox", "Xen", "OpenVMM")),
        flag("HASup", 49, "Host access-bit update supported", values=_SUP,
             sources=("Linux", "VirtualBox", "Xen", "OpenVMM")),
        flag("EPHSup", 50, "Enhanced PPR handling supported", values=_SUP,
             sources=("Linux", "VirtualBox", "Xen", "OpenVMM")),
        flag("AttrFWSup", 51, "Attribute forwarding supported", values=_SUP, sources=("VirtualBox", "Xen", "OpenVMM")),
        flag("HDSup", 52, "Host dirty-bit update supported", values=_SUP,
             sources=("Linux", "VirtualBox", "Xen", "OpenVMM")),
        reserved(53, 53),
        flag("InvIotlbTypeSup", 54, "INVALIDATE_IOTLB_PAGES Type field supported", values=_SUP,
             sources=("VirtualBox", "Xen", "OpenVMM")),
        flag("vIommuSup", 55, "HW-vIOMMU supported", values=_SUP,
             note="AMD's Linux tree FEATURE_VIOMMU and Xen viommu_sup",
             sources=("Linux", "Xen", "OpenVMM"),
             conflict="Linux, Xen and OpenVMM name bit 55 vIommuSup; VirtualBox reserves 60:55"),
        flag("VmGuardIOSup", 56, "VM guard I/O supported", values=_SUP, sources=("Xen", "OpenVMM")),
        Field("VmTableSize", 60, 57, "VM table size", note="meaning not seen",
              sources=("Xen",), conflict="only Xen names 60:57; OpenVMM's fork reserves 60:57 and VirtualBox 60:55"),
        flag("GAUpdateDisSup", 61, "Disabling guest access/dirty updates supported", values=_SUP,
             sources=("VirtualBox", "Xen"),
             conflict=("VirtualBox and Xen name bit 61 GAUpdateDisSup; OpenVMM's fork names it v2_had_dis_sup "
                       "(disabling v2 host access/dirty updates)")),
        flag("ForcePhyDestSup", 62, "Forcing physical destination mode for remapped interrupts supported",
             values=_SUP,
             sources=("VirtualBox", "OpenVMM"),
             conflict="VirtualBox and OpenVMM name bit 62 ForcePhyDestSup; Xen reserves 63:62"),
        flag("SNPSup", 63, "SEV-SNP supported", values=_SUP, note="Linux FEATURE_SNP",
             sources=("Linux", "OpenVMM"),
             conflict="Linux and OpenVMM name bit 63 SNPSup; VirtualBox and Xen (older revisions) reserve it"),
    ),
)

EFR2 = Structure(
    name="EFR2",
    title="IOMMU Extended Feature 2 Register",
    width=64,
    section="§3.4",
    aliases=("IOMMU Extended Feature 2 Register", "Extended Feature Register 2", "MMIO_EXT_FEATURES2"),
    description="Second feature report (also in the ACPI IVHD types 11h/40h at offset 80h).",
    note=(SECTION_NOTE + ". Only the bits Linux or FreeBSD use are named; the others are declared reserved for lack "
          "of a source (FreeBSD also names bit 2, TMPMSup, not declared here: one source, no user)."),
    fields=(
        reserved(0, 0),
        flag("SEVSNPIOSup", 1, "SEV-SNP trusted I/O supported", values=_SUP, sources=("Linux",)),
        reserved(2, 2),
        flag("GCR3TRPModeSup", 3, "Control.GCR3TRPMode is usable", values=_SUP, sources=("Linux", "FreeBSD")),
        flag("GAPPIDisSup", 4, "IRTE[GAPPIDis] is usable: software may suppress a guest APIC physical processor "
             "interrupt (GAPPI) per interrupt remapping entry", values=_SUP,
             note="FreeBSD AMDIOMMU_EFR2_GAPPID ('masking of GAPIC PPI'); AMD's 2026 GAPPI RFC for Linux "
                  "(FEATURE_GAPPIDISSUP, citing 48882 rev 3.11 §2.2.5.4)",
             sources=("FreeBSD", "Linux")),
        Field("SNPAVICSup", 7, 5, "Virtual APIC with SEV-SNP support",
              values={1: "GAM vAPIC supported with SNP"},
              sources=("Linux", "FreeBSD")),
        Field("NumIntRemapSup", 9, 8, "Interrupt remapping table sizes supported",
              values={0: "512 IRTEs per table", 1: "2048 IRTEs per table supported"},
              note="value 0 meaning inferred: Linux only tests for 1",
              sources=("Linux", "FreeBSD")),
        reserved(10, 10),
        flag("HTRangeIgnore", 11, "The HyperTransport range 0xFD_0000_0000..0xFF_FFFF_FFFF need not be reserved",
             sources=("Linux", "FreeBSD")),
        reserved(63, 12),
    ),
)

# =============================================================================================
# Head and tail pointers
# =============================================================================================
CMD_BUF_HEAD = _pointer_register(
    "CMD_BUF_HEAD", "Command Buffer Head Pointer Register", "CmdHdPtr",
    "Offset of the next command the IOMMU will read; the IOMMU advances it.", "MMIO_CMD_HEAD_OFFSET", "§3.4.9",
    sources=("Linux", "VirtualBox", "Xen", "QEMU", "FreeBSD", "NOVA", "OpenVMM"))
CMD_BUF_TAIL = _pointer_register(
    "CMD_BUF_TAIL", "Command Buffer Tail Pointer Register", "CmdTailPtr",
    "Offset just past the last command software wrote; the ring is empty when head == tail.", "MMIO_CMD_TAIL_OFFSET", "§3.4.10",
    sources=("Linux", "VirtualBox", "Xen", "QEMU", "FreeBSD", "OpenVMM"))
EVT_LOG_HEAD = _pointer_register(
    "EVT_LOG_HEAD", "Event Log Head Pointer Register", "EventHdPtr",
    "Offset of the next event software will read; software advances it.", "MMIO_EVT_HEAD_OFFSET", "§3.4.11",
    sources=("VirtualBox", "Xen", "QEMU", "OpenVMM"))
EVT_LOG_TAIL = _pointer_register(
    "EVT_LOG_TAIL", "Event Log Tail Pointer Register", "EventTailPtr",
    "Offset where the IOMMU writes the next event; the IOMMU advances it.", "MMIO_EVT_TAIL_OFFSET", "§3.4.12",
    sources=("VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM"))

# =============================================================================================
# Status
# =============================================================================================
# (name, bit, access, meaning, note, sources[, conflict]): the one place that says which Status bits are RW1C.
_ALL7 = ("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM")
_PPR_MOVED = ("OpenVMM's fork reserves bits 9:5 and puts the PPR overflow/interrupt/run bits at 10/11/12; Linux, "
              "FreeBSD, VirtualBox, Xen and NOVA put them at 5/6/7")
_GA_ORDER = ("Linux, FreeBSD, VirtualBox and NOVA: 8 = GA log running, 9 = overflow, 10 = interrupt; Xen's "
             "IOMMU_STATUS_GAPIC_LOG_* masks give 8 = overflow, 9 = interrupt, 10 = running; OpenVMM's fork puts "
             "the three at 13/14/15. The majority is followed")
_DUAL = ("FreeBSD", "VirtualBox", "NOVA")
_STATUS_BITS = (
    ("EventOverflow", 0, RW1C, "The event log was full and an event was dropped", "", _ALL7),
    ("EventLogInt", 1, RW1C, "An event was logged (interrupt requested when EventIntEn)", "",
     ("Linux", "FreeBSD", "VirtualBox", "Xen", "NOVA", "OpenVMM")),
    ("ComWaitInt", 2, RW1C, "A COMPLETION_WAIT with I = 1 completed", "", _ALL7),
    ("EventLogRun", 3, RO, "Event logging is running", "", _ALL7),
    ("CmdBufRun", 4, RO, "Command buffer processing is running", "",
     ("FreeBSD", "VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM")),
    ("PprOverflow", 5, RW1C, "The PPR log was full and a request was dropped", "",
     ("Linux", "FreeBSD", "VirtualBox", "Xen", "NOVA"), _PPR_MOVED),
    ("PprInt", 6, RW1C, "A PPR was logged", "", ("Linux", "FreeBSD", "VirtualBox", "Xen", "NOVA"), _PPR_MOVED),
    ("PprLogRun", 7, RO, "PPR logging is running", "", ("Linux", "FreeBSD", "VirtualBox", "Xen", "NOVA"), _PPR_MOVED),
    ("GALogRun", 8, RO, "Guest virtual-APIC logging is running", "", ("Linux", "FreeBSD", "VirtualBox", "NOVA"),
     _GA_ORDER),
    ("GALOverflow", 9, RW1C, "The GA log overflowed", "", ("Linux", "FreeBSD", "VirtualBox", "NOVA"), _GA_ORDER),
    ("GAInt", 10, RW1C, "A GA log entry was written", "", ("Linux", "FreeBSD", "VirtualBox", "NOVA"), _GA_ORDER),
    ("PprOverflowB", 11, RW1C, "PPR log B overflowed", "", _DUAL),
    ("PprLogActive", 12, RO, "Which PPR log is active (A or B)",
     "VirtualBox describes it as 'log A is active', NOVA as 'log B active': the polarity is unconfirmed", _DUAL),
    ("EvtOverflowB", 15, RW1C, "Event log B overflowed", "", _DUAL),
    ("EventLogActive", 16, RO, "Which event log is active (A or B)",
     "VirtualBox spells it EvtLogActive; VirtualBox and NOVA disagree on the polarity as for PprLogActive", _DUAL),
    ("PprOverflowEarlyB", 17, RW1C, "PPR log B overflow early warning", "", _DUAL),
    ("PprOverflowEarly", 18, RW1C, "PPR log overflow early warning", "", _DUAL),
)

STATUS = Structure(
    name="STATUS",
    title="IOMMU Status Register",
    width=64,
    section="§3.4.13",
    aliases=("IOMMU Status Register", "Status Register", "MMIO_STATUS_OFFSET"),
    description=("Run and interrupt status. RW1C bits are cleared by writing 1 (Linux writes the bits back); "
                 "RO bits follow the enables."),
    note=SECTION_NOTE + ". Bits 13-14 and 19 and up are unknown and declared reserved.",
    fields=tuple(sorted(
        (*(flag(name, bit, f"{meaning} ({access})", note=note, sources=srcs, conflict="".join(conflict))
           for name, bit, access, meaning, note, srcs, *conflict in _STATUS_BITS),
         reserved(14, 13), reserved(63, 19)),
        key=lambda f: f.lo)),
)

STATUS_ACCESS: Mapping[str, str] = MappingProxyType({name: access for name, _, access, *_ in _STATUS_BITS})
STATUS_RW1C_MASK = sum(STATUS.field(n).mask for n, a in STATUS_ACCESS.items() if a == RW1C)

# =============================================================================================
# The map: each offset stated once
# =============================================================================================
_LAYOUT: tuple[tuple[int, Structure], ...] = (
    (0x0000, DEV_TAB_BAR),
    (0x0008, CMD_BUF_BAR),
    (0x0010, EVT_LOG_BAR),
    (0x0018, CONTROL),
    (0x0020, EXCL_BASE),
    (0x0028, EXCL_LIMIT),
    (0x0030, EFR),
    (0x0038, PPR_LOG_BAR),
    (0x01A0, EFR2),
    (0x2000, CMD_BUF_HEAD),
    (0x2008, CMD_BUF_TAIL),
    (0x2010, EVT_LOG_HEAD),
    (0x2018, EVT_LOG_TAIL),
    (0x2020, STATUS),
)

REGISTERS: tuple[Structure, ...] = tuple(reg for _, reg in _LAYOUT)
REGISTERS_BY_OFFSET: Mapping[int, Structure] = MappingProxyType(dict(_LAYOUT))
OFFSETS: Mapping[str, int] = MappingProxyType({reg.name: off for off, reg in _LAYOUT})


# =============================================================================================
# Derived helpers
# =============================================================================================
def device_table_bytes(dev_tab_bar_bits: Any, backend: Any = INT) -> Any:
    """Device table length in bytes, (Size + 1) x 4 KiB (64-bit result; field arithmetic).

    Source: VirtualBox IOMMU_GET_DEV_TAB_SIZE, QEMU AMDVI_MMIO_DEVTAB_SIZE_UNIT = 4096.
    """
    b = backend
    size = b.zext(DEV_TAB_BAR.field("Size").read(dev_tab_bar_bits, b), 64)
    return b.shl(b.add(size, 1, 64), PAGE_SHIFT, 64)


def max_device_id(dev_tab_bar_bits: Any, backend: Any = INT) -> Any:
    """Largest DeviceID the device table covers: (Size + 1) x 128 - 1 (16-bit result; field arithmetic).

    32-byte DTEs (Linux DEV_TABLE_ENTRY_SIZE), so a 4 KiB page holds 128; Size = 0x1FF covers 0xFFFF.
    """
    b = backend
    size = b.zext(DEV_TAB_BAR.field("Size").read(dev_tab_bar_bits, b), 17)
    entries = b.shl(b.add(size, 1, 17), PAGE_SHIFT - log2(DEVICE_TABLE_ENTRY_BYTES), 17)
    return b.extract(b.sub(entries, 1, 17), DEVICE_ID_WIDTH - 1, 0)


def ring_entries(len_field: Any, backend: Any = INT) -> Any:
    """Entries of a ring whose length field (ComLen, EventLen, PPRLogLen) is ``len_field``: 2^len.

    32-bit result; field arithmetic. Source: Linux MMIO_CMD_SIZE_512 = 9 << 56 for 512 entries.
    """
    b = backend
    return b.shl(b.const(1, RING_WIDTH), b.zext(len_field, RING_WIDTH), RING_WIDTH)


def ring_bytes(len_field: Any, backend: Any = INT) -> Any:
    """Bytes of a command buffer or event log: 2^len entries of 16 bytes (32-bit result)."""
    b = backend
    return b.shl(ring_entries(len_field, b), log2(ENTRY_BYTES), RING_WIDTH)


def max_pasid_bits(efr_bits: Any, backend: Any = INT) -> Any:
    """PASID width the IOMMU supports: EFR.PASmax + 1 (6-bit result; field arithmetic).

    Source: Linux init.c ``max_pasids = (1 << (pasmax + 1)) - 1``; AMD's QEMU vIOMMU encodes
    16-bit PASIDs as PASmax = 0xF. See the PASmax note.
    """
    b = backend
    return b.add(b.zext(EFR.field("PASmax").read(efr_bits, b), 6), 1, 6)


def host_levels_supported(efr_bits: int) -> int | None:
    """Deepest host (v1) table, HATS + 4; ``None`` when HATS = 3 (host translation unavailable).

    Concrete table look-up (:data:`HATS_LEVELS`). Source: Linux init.c (2025 HATS series).
    """
    return HATS_LEVELS.get(EFR.view(efr_bits).hats)


def guest_levels_supported(efr_bits: int) -> int | None:
    """Deepest guest (v2) table: GATS 0 -> 4, 1 -> 5; ``None`` for 2 and 3 (no known meaning).

    Concrete table look-up (:data:`GATS_LEVELS`). Source: Linux picks 5-level only when GATS == 1.
    """
    return GATS_LEVELS.get(EFR.view(efr_bits).gats)


def register_context(register: Structure, bits: Any, backend: Any = INT) -> dict[str, Any]:
    """``{"<REG>.<Field>": value}`` for every named field of ``register``, read through ``backend``."""
    view = register.view(bits, backend)
    return {f"{register.name}.{f.name}": view[f.name] for f in register.named_fields}


def efr_context(efr_bits: Any, backend: Any = INT) -> dict[str, Any]:
    """The validation context other tables' Rules use: ``"EFR.HATS"``, ``"EFR.GTSup"``, ... for every EFR field."""
    return register_context(EFR, efr_bits, backend)


def status_after_write(old: Any, written: Any, backend: Any = INT) -> Any:
    """Status after software writes ``written``: RW1C bits written as 1 clear, every other bit is kept."""
    b = backend
    return b.band(old, b.bnot(b.band(written, b.const(STATUS_RW1C_MASK, 64)), 64))
