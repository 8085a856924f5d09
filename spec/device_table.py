"""The Device Table Entry: 48882 §2.2.2.1 "Device Table Entry Format".

A DTE is 256 bits (four little-endian 64-bit words, Linux prints them as ``DTE[0]`` .. ``DTE[3]``),
indexed by the 16-bit DeviceID. Bit ``n`` is word ``n // 64``, bit ``n % 64``. Facts come from
``shared/reference/device-table-entry.md`` and a second reading of eight public sources (each field's
``sources``); every doubtful one carries a ``note`` or ``conflict`` and is pinned by
``tests/spec/test_device_table.py``.
"""

from __future__ import annotations

from .fields import Composite, Field, Rule, Structure, flag, reserved

SECTION = "§2.2.2.1"
ILLEGAL_DTE = "ILLEGAL_DEV_TABLE_ENTRY"
IO_PAGE_FAULT = "IO_PAGE_FAULT"

PASS_FLAG = {0: "blocked", 1: "passed through untranslated"}
_GUEST_ID_ORDER = (
    "FreeBSD (struct amdiommu_dte: gdevid then gid), the OSDev DTE table and the code of the AMD RFC's "
    "set_dte_viommu put GDeviceID at 223:208 and GuestID at 239:224; only the RFC's macro names "
    "(DTE_VIOMMU_GUESTID_SHIFT 16, DTE_VIOMMU_GDEVICEID_SHIFT 32) say the reverse, which this model "
    "followed until the three were read")

DTE = Structure(
    name="DTE",
    title="Device Table Entry",
    width=256,
    section=SECTION,
    reserved_event=ILLEGAL_DTE,
    aliases=("Device Table Entry",),
    description=(
        "One entry per DeviceID in the device table. It says whether and how the IOMMU translates "
        "the device's DMA (host v1 table, guest v2 tables through the GCR3 table), which DomainID "
        "tags the cached translations, and how the device's interrupts are remapped."
    ),
    fields=(
        # ---- word 0 ------------------------------------------------------------------
        flag("V", 0, "Entry valid: the rest of the entry is read; with V = 0 DMA is not translated",
             values={0: "not valid", 1: "valid"},
             sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        flag("TV", 1, "Translation information valid: Mode, the root pointers, IR/IW and the guest fields are meaningful",
             values={0: "translation fields not valid", 1: "translation fields valid"},
             sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        reserved(6, 2),
        Field("HAD", 8, 7, "Host Access and Dirty update: whether the IOMMU sets A/D bits in the host (v1) table",
              values={0: "no A/D update", 1: "access bit update only", 2: "reserved encoding",
                      3: "access and dirty update (Linux dirty tracking)"},
              note=("the four encodings are FreeBSD's (AMDIOMMU_DTE_HAD_NAND/AND/RSRV/AD); Linux writes only 11b "
                    "(with EFR.HDSup). 10b is named reserved, not illegal: no source says the IOMMU rejects it"),
              sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        Field("Mode", 11, 9, "Host paging mode: levels of the host (v1) page table",
              values={0: "translation disabled: the address passes through, subject to IR/IW",
                      1: "1-level table (2 MiB of IOVA)", 2: "2-level table (1 GiB)", 3: "3-level table (512 GiB)",
                      4: "4-level table (256 TiB)", 5: "5-level table (128 PiB)", 6: "6-level table (2^64)",
                      7: "reserved"},
              sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        Field("Host Page Table Root Pointer", 51, 12, "System physical address of the root host (v1) page table, bits 51:12",
              unit_shift=12,
              sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        flag("PPR", 52, "Peripheral page requests (PRI) from this device go to the PPR log",
             values={0: "PPR disabled", 1: "PPR enabled"},
             sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        flag("GPRP", 53, "Guest PPR response with PASID", note="VirtualBox comment spells it GRPR",
             sources=("Xen", "VirtualBox", "FreeBSD", "OSDev")),
        flag("GIoV", 54, "Guest I/O protection valid: requests without a PASID use the guest (v2) table of PASID 0",
             values={0: "requests without PASID use the host table only", 1: "requests without PASID use PASID 0's guest table"},
             sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        flag("GV", 55, "Guest translation valid: the GCR3 table root pointer and GLX are valid",
             values={0: "no guest translation", 1: "guest translation enabled"},
             sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "AMD-RFC", "OSDev")),
        Field("GLX", 57, 56, "Guest levels translated: levels of the GCR3 table minus one (not the guest page-table depth)",
              values={0: "1-level GCR3 table (PASID[8:0])", 1: "2-level GCR3 table (PASID[17:0])",
                      2: "3-level GCR3 table (PASID[19:0])"},
              illegal={3: "reserved GLX encoding"},
              note="that the IOMMU logs ILLEGAL_DEV_TABLE_ENTRY for GLX = 3 is inferred from Linux refusing it",
              sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        Field("GCR3 Table Root Pointer[14:12]", 60, 58, "GCR3 table root pointer, bits 14:12",
              sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        flag("IR", 61, "Read permission for DMA, ANDed with IR at every page-table level",
             values={0: "reads denied", 1: "reads allowed"},
             sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        flag("IW", 62, "Write permission for DMA, ANDed with IW at every page-table level",
             values={0: "writes denied", 1: "writes allowed"},
             sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        reserved(63, 63),
        # ---- word 1 ------------------------------------------------------------------
        Field("DomainID", 79, 64, "Domain identifier: tags this device's cached translations; INVALIDATE_IOMMU_PAGES selects by it",
              sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        Field("GCR3 Table Root Pointer[30:15]", 95, 80, "GCR3 table root pointer, bits 30:15",
              sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        flag("I", 96, "IOTLB enable: the device may request translations (ATS) and cache them",
             values={0: "ATS requests rejected", 1: "ATS allowed"},
             sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        flag("SE", 97, "Suppress I/O page-fault events for this device",
             note="exact scope of SE versus SA is not confirmed",
             sources=("Xen", "VirtualBox", "FreeBSD", "OSDev")),
        flag("SA", 98, "Suppress all I/O page-fault events for this device",
             sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        Field("IoCtl", 100, 99, "Port I/O control: what happens to port-I/O space requests",
              values={0: "aborted", 1: "forwarded untranslated", 2: "translated"},
              illegal={3: "reserved IoCtl encoding"}, scope="io",
              sources=("Xen", "VirtualBox", "FreeBSD", "OSDev")),
        flag("Cache", 101, "IOTLB cache hint", sources=("Xen", "VirtualBox", "FreeBSD", "OSDev")),
        flag("SD", 102, "Snoop disable", sources=("Xen", "VirtualBox", "FreeBSD", "OSDev")),
        flag("EX", 103, "Exclusion range applies to this device",
             sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        Field("SysMgt", 105, 104, "System management message handling",
              values={0: "system-management requests blocked", 1: "all SM messages forwarded",
                      2: "only INT messages forwarded", 3: "DMA to the SM range forwarded"},
              sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        flag("SATS", 106, "Secure ATS: the device's ATS requests are secure (trusted I/O) ones "
             "(FreeBSD: 'Secure/Non-secure ATS')",
             note="meaning only from FreeBSD's comment; the matching feature bit is EFR.SATSSup (Xen sats_sup)",
             sources=("FreeBSD", "OSDev"),
             conflict=("FreeBSD (sats) and OSDev name bit 106 SATS; VirtualBox (u1Rsvd1, valid mask 0xfffffbffffffffff) "
                       "and Xen (unnamed) keep it reserved, as older spec revisions did; newest QEMU does not check it")),
        Field("GCR3 Table Root Pointer[51:31]", 127, 107, "GCR3 table root pointer, bits 51:31",
              sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        # ---- word 2 ------------------------------------------------------------------
        flag("IV", 128, "Interrupt map valid: the interrupt fields are meaningful",
             values={0: "interrupts not remapped", 1: "interrupt remapping information valid"},
             sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        Field("IntTabLen", 132, 129, "Interrupt table length: log2 of the number of IRTEs",
              values={i: f"{1 << i} entries" for i in range(12)},
              illegal={i: "reserved IntTabLen encoding" for i in range(12, 16)}, scope="interrupt",
              note="VirtualBox checks it when an interrupt request uses the entry",
              sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        flag("IG", 133, "Ignore unmapped interrupts (no event logged)",
             sources=("Xen", "VirtualBox", "FreeBSD", "OSDev")),
        Field("Interrupt Table Root Pointer", 179, 134, "System physical address of the interrupt remapping table, bits 51:6 (128-byte aligned)",
              unit_shift=6,
              sources=("Linux", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev"),
              conflict=("Linux, Xen, VirtualBox, FreeBSD, NOVA and OSDev give address bits 51:6 at 179:134; an older"
                        " QEMU mask (AMDVI_IR_PHYS_ADDR_MASK) takes only bits 50:6, which a later QEMU patch fixes")),
        reserved(181, 180),
        Field("GPM", 183, 182, "Guest paging mode: depth of the guest (v2) page tables",
              values={0: "4-level guest page table", 1: "5-level guest page table"},
              illegal={2: "reserved guest paging mode", 3: "reserved guest paging mode"},
              note=("spec name not confirmed (Linux calls it the GPT level, DTE_GPT_LEVEL_MASK); the "
                    "illegal-entry event is inferred"),
              sources=("Linux", "FreeBSD", "OSDev"),
              conflict=("Linux, FreeBSD and OSDev name 183:182 (GPM, Linux's GPT level); VirtualBox and Xen, written"
                        " against older revisions, keep 183:180 reserved")),
        flag("InitPass", 184, "INIT interrupts pass through untranslated", values=PASS_FLAG,
             sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        flag("EIntPass", 185, "ExtInt interrupts pass through untranslated", values=PASS_FLAG,
             sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        flag("NMIPass", 186, "NMI interrupts pass through untranslated", values=PASS_FLAG,
             sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        flag("HPTMode", 187, "Host page table mode hint (FreeBSD: 'Host Page Table Mode Hint')",
             note="no source says what the hint changes",
             sources=("FreeBSD", "OSDev"),
             conflict=("FreeBSD (hptmode) and OSDev name bit 187 HPTMode; VirtualBox (u1Rsvd2, valid mask 0xf70f...), "
                       "Xen (unnamed) and older QEMU (AMDVI_DTE_UPPER_QUAD_RESERVED) keep it reserved; newer QEMU's "
                       "reserved mask no longer includes it")),
        Field("IntCtl", 189, 188, "Fixed and arbitrated interrupt control",
              values={0: "target abort", 1: "forwarded unmapped", 2: "remapped through the IRTE"},
              illegal={3: "reserved IntCtl encoding"}, scope="interrupt",
              sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "NOVA", "OSDev")),
        flag("Lint0Pass", 190, "LINT0 interrupts pass through untranslated", values=PASS_FLAG,
             sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        flag("Lint1Pass", 191, "LINT1 interrupts pass through untranslated", values=PASS_FLAG,
             sources=("Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD", "OSDev")),
        # ---- word 3 ------------------------------------------------------------------
        reserved(206, 192),
        flag("vImuEn", 207, "The device is attached to a hardware-accelerated guest vIOMMU (HW-vIOMMU)",
             note="from the AMD HW-vIOMMU RFC (2023), bit 15 of word 3",
             sources=("FreeBSD", "AMD-RFC", "OSDev")),
        Field("GDeviceID", 223, 208, "HW-vIOMMU guest-visible DeviceID",
              sources=("FreeBSD", "OSDev", "AMD-RFC"), conflict=_GUEST_ID_ORDER),
        Field("GuestID", 239, 224, "HW-vIOMMU guest identifier",
              sources=("FreeBSD", "OSDev", "AMD-RFC"), conflict=_GUEST_ID_ORDER),
        reserved(245, 240),
        flag("AttrV", 246, "Attribute override valid: SnoopAttribute applies",
             sources=("Xen", "VirtualBox", "FreeBSD", "OSDev")),
        flag("Mode0FC", 247, "Force coherent for untranslated (Mode = 0) DMA",
             sources=("Xen", "VirtualBox", "FreeBSD", "OSDev")),
        Field("SnoopAttribute", 255, 248, "Snoop attribute used when AttrV = 1",
              sources=("Xen", "VirtualBox", "FreeBSD", "OSDev")),
    ),
    composites=(
        Composite(
            "GCR3 Table Root Pointer",
            (("GCR3 Table Root Pointer[14:12]", 12), ("GCR3 Table Root Pointer[30:15]", 15),
             ("GCR3 Table Root Pointer[51:31]", 31)),
            "Address of the GCR3 table (system physical; guest physical when nested), 4 KiB aligned",
        ),
    ),
    rules=(
        Rule(
            "Mode=7",
            "Mode = 7 is a reserved host paging mode",
            lambda b, v, ctx: b.all_of(b.eq(v.v, 1), b.eq(v.tv, 1), b.eq(v.mode, 7)),
            event=IO_PAGE_FAULT,
            section=SECTION,
            note=("VirtualBox reports it as an IO_PAGE_FAULT cause (DteRsvdPagingMode) when a request uses "
                  "the entry; QEMU only asserts Mode is 1..6. Which event 48882 gives is unconfirmed."),
        ),
        Rule(
            "host-root-without-HATS",
            "Host Page Table Root Pointer is non-zero but host translation is unavailable (EFR.HATS = 11b)",
            lambda b, v, ctx: b.all_of(b.eq(ctx["EFR.HATS"], 3), b.ne(v.host_page_table_root_pointer, 0)),
            event=ILLEGAL_DTE,
            section=SECTION,
            needs=("EFR.HATS",),
        ),
        Rule(
            "Mode-beyond-HATS",
            "Mode asks for more host levels than EFR.HATS supports (HATS + 4)",
            lambda b, v, ctx: b.all_of(
                b.ne(ctx["EFR.HATS"], 3), b.ule(v.mode, 6), b.ugt(v.mode, b.add(b.zext(ctx["EFR.HATS"], 3), 4, 3))),
            event=IO_PAGE_FAULT,
            section=SECTION,
            needs=("EFR.HATS",),
            note=("the event for this case is not confirmed; VirtualBox treats an unsupported Mode like a reserved "
                  "one"),
        ),
        Rule(
            "guest-fields-without-GTSup",
            "GV, GLX or the GCR3 root pointer is set but guest translation is not supported (EFR.GTSup = 0)",
            lambda b, v, ctx: b.all_of(
                b.eq(ctx["EFR.GTSup"], 0),
                b.any_of(b.ne(v.gv, 0), b.ne(v.glx, 0), b.ne(v.gcr3_table_root_pointer, 0))),
            event=ILLEGAL_DTE,
            section=SECTION,
            needs=("EFR.GTSup",),
            note="VirtualBox counts feature-gated bits as reserved when the feature is absent",
        ),
        Rule(
            "GIoV-without-GIoSup",
            "GIoV is set but EFR.GIoSup = 0",
            lambda b, v, ctx: b.all_of(b.eq(ctx["EFR.GIoSup"], 0), b.eq(v.giov, 1)),
            event=ILLEGAL_DTE,
            section=SECTION,
            needs=("EFR.GIoSup",),
        ),
        Rule(
            "PPR-without-EPHEn",
            "PPR is set on an IOMMU with enhanced PPR handling (EFR.EPHSup = 1) that has not enabled it (Control.EPHEn = 0)",
            lambda b, v, ctx: b.all_of(b.eq(v.ppr, 1), b.eq(ctx["EFR.EPHSup"], 1), b.eq(ctx["CONTROL.EPHEn"], 0)),
            event=ILLEGAL_DTE,
            section=SECTION,
            needs=("EFR.EPHSup", "CONTROL.EPHEn"),
            note=("Linux commit ef75966abf95 (bugzilla 219499): after resume Control.EPHEn was clear and a DTE with "
                  "PPR = 1 raised ILLEGAL_DEV_TABLE_ENTRY; the spec wording itself was not seen"),
        ),
        Rule(
            "GPM-beyond-GATS",
            "GPM asks for a 5-level guest table but EFR.GATS does not advertise 5 levels (only GATS = 1 does)",
            lambda b, v, ctx: b.all_of(b.eq(v.gv, 1), b.eq(v.gpm, 1), b.ne(ctx["EFR.GATS"], 1)),
            event=ILLEGAL_DTE,
            section=SECTION,
            needs=("EFR.GATS",),
            note=("inferred from Linux refusing such guest DTEs; the hardware's event is not confirmed. GATS = 2 and 3, "
                  "defined by no source (QEMU advertises 2), count as 4-level, as in Linux"),
        ),
    ),
)

ENTRY_BYTES = 32
MAX_DEVICE_ID = 0xFFFF


def device_id_str(device_id: int, segment: int | None = None) -> str:
    """``0x0a08`` -> ``0a:01.0`` (bus, device, function), with ``SSSS:`` when a segment is given."""
    bdf = f"{device_id >> 8:02x}:{(device_id >> 3) & 0x1F:02x}.{device_id & 7:x}"
    return bdf if segment is None else f"{segment:04x}:{bdf}"
