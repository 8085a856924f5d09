"""Event-log entries: the 128-bit records the IOMMU writes to its event log (48882 §2.5, §2.5.2..§2.5.11).

Every entry is two 64-bit words, Q0 = bits 63:0 and Q1 = bits 127:64; the event code is always
Q0[63:60]. Most events share a header (DeviceID in Q0[15:0], a PASID or DomainID in Q0[19:16] and
Q0[47:32], flag bits in Q0[59:48]) and an address in Q1. The shared pieces are built once by the
``_`` helpers below and each event lists only the pieces it has; bits no source names are declared
reserved. Linux prints the 12 bits Q0[59:48] as ``flags=0x%04x``: flags bit ``k`` is Q0 bit ``48 + k``,
and :func:`explain_flags` reads such a value back through the field declarations.

Facts come from ``shared/reference/commands-and-events.md`` §3–§5 (Linux, VirtualBox, QEMU, Xen) and
``viommu.md`` §6 (the HW-vIOMMU events); doubtful ones carry a ``note`` and are pinned by
``tests/spec/test_events.py``. Events are produced by the IOMMU, not checked by it, so no event has a
``reserved_event``; the reserved ranges are still declared so that every bit is accounted for.
"""

from __future__ import annotations

from .bitvec import INT, mask
from .fields import Composite, Field, Structure, flag, reserved

SECTION = "§2.5"
# Subsections as revision 3.11 numbers them, cited by a public emulator (OpenVMM's amd_iommu event module,
# whose bit layouts are not used here); a linux-kernel post quoting the spec also heads IO_PAGE_FAULT
# "2.5.3". §2.5.10 and §2.5.11 are inferred from the order of the codes; the others have no number.
SECTION_BY_CODE = {0x1: "§2.5.2", 0x2: "§2.5.3", 0x3: "§2.5.4", 0x4: "§2.5.5", 0x5: "§2.5.6", 0x6: "§2.5.7",
                   0x7: "§2.5.8", 0x8: "§2.5.9", 0x9: "§2.5.10", 0xA: "§2.5.11"}
SECTION_NOTE = ("section numbers unconfirmed: §2.5.2..§2.5.9 per revision 3.11 as a public emulator cites "
                "them (not read in the PDF), §2.5.10/§2.5.11 inferred from the order, later events only §2.5")

WIDTH = 128
FLAGS_LO, FLAGS_HI = 48, 59  # the 12 bits Linux prints as flags=
FLAGS_WIDTH = FLAGS_HI - FLAGS_LO + 1

HW_ERROR_TYPES = {0: "reserved", 1: "master abort", 2: "target abort", 3: "data error"}

# ---- the shared header pieces, each written once ---------------------------------------------

# name: (Q0 bit, meaning, both values, note). The flags bit Linux prints is the Q0 bit minus 48.
_FLAG_DEFS: dict[str, tuple[int, str, dict[int, str], str]] = {
    "GN": (48, "Guest/nested: the request carried a PASID, so Q0[47:32] holds PASID[15:0] rather than a DomainID",
           {0: "DomainID request (no PASID)", 1: "PASID (guest) request"}, ""),
    "NX": (49, "No-execute: the request asked for execute permission",
           {0: "no execute requested", 1: "execute requested"}, ""),
    "US": (50, "User/supervisor level of the request",
           {0: "supervisor request", 1: "user request"}, ""),
    "I": (51, "Interrupt: the request was an interrupt (MSI write to the interrupt range), not a memory access",
          {0: "memory request", 1: "interrupt request"}, "Linux EVENT_FLAG_I"),
    "PR": (52, "Present: the page-table entry at which the walk stopped was present",
           {0: "not present", 1: "present"}, ""),
    "RW": (53, "Read/write: direction of the access",
           {0: "read", 1: "write"},
           ("Linux EVENT_FLAG_RW. 48882 rev 3.00 Table 55 (as quoted on linux-kernel) says RW is meaningful "
            "only when PR = 1, TR = 0 and I = 0 (VirtualBox: I = 0 and TR = 0); the same thread found it "
            "reliable for PR = 0 faults too")),
    "PE": (54, "Permission: the access was denied by the IR/IW/U/S/NX permissions",
           {0: "no permission violation", 1: "permission denied"}, ""),
    "RZ": (55, "Reserved-zero: a reserved bit was set, or a level encoding was invalid, in a structure read",
           {0: "no reserved bit set", 1: "reserved bit set or invalid level encoding"}, ""),
    "TR": (56, "Translation: the request was an ATS translation request, not an ordinary transaction",
           {0: "transaction", 1: "translation request"}, ""),
}


def _header(code: int, name: str) -> tuple[Field, ...]:
    """The event code, Q0[63:60]."""
    return (Field("EventCode", 63, 60, "Event code: which event this entry records",
                  values={code: name}, fixed=code),)


def _device_id(meaning: str = "DeviceID (bus, device, function) of the requester") -> Field:
    return Field("DeviceID", 15, 0, meaning)


def _pasid_hi(note: str = "") -> Field:
    return Field("PASID[19:16]", 19, 16, "PASID bits 19:16 of the request (meaningful when GN = 1)", note=note)


def _domain_or_pasid() -> Field:
    return Field("DomainID or PASID[15:0]", 47, 32,
                 "DomainID of the device (GN = 0) or PASID bits 15:0 of the request (GN = 1)",
                 note="Linux prints Q0[47:32] together with PASID[19:16] as domain= or pasid=")


def _pasid_lo() -> Field:
    return Field("PASID[15:0]", 47, 32, "PASID bits 15:0 of the request (meaningful when GN = 1)")


def _vflags() -> Field:
    return Field("vflags", 31, 27, "HW-vIOMMU flags of the event",
                 note=("only in AMD's HW-vIOMMU patches (RFC 2023, AMDESE/linux-iommu), which read "
                       "(event[0] >> 27) & 0x1F; name and meaning per 48882 unknown; on other IOMMUs "
                       "these bits are reserved"))


def _fault_flags(*names: str, at: dict[str, int] | None = None) -> tuple[Field, ...]:
    """One 1-bit field per named flag, at its usual Q0 bit unless ``at`` moves it."""
    out = []
    for n in names:
        bit, meaning, values, note = _FLAG_DEFS[n]
        out.append(flag(n, (at or {}).get(n, bit), meaning, values=values, note=note))
    return tuple(out)


def _hw_error_type() -> Field:
    return Field("Type", 58, 57, "Kind of hardware error on the access", values=HW_ERROR_TYPES,
                 note="VirtualBox HWEVTTYPE")


def _raw_flags(note: str) -> Field:
    return Field("Flags", FLAGS_HI, FLAGS_LO, "Event flags (Linux prints them as flags=)", note=note)


def _address(meaning: str, lo: int = 64, note: str = "") -> Field:
    """Q1 from bit ``lo`` up: an address whose bits below ``lo - 64`` are zero."""
    return Field("Address", 127, lo, meaning, unit_shift=lo - 64, note=note)


def _event(code: int, name: str, title: str, description: str, *fields: Field, note: str = "",
           composites: tuple[Composite, ...] = ()) -> Structure:
    """An event structure: header plus ``fields``; every bit nothing names is declared reserved."""
    declared = _header(code, name) + fields
    used = 0
    for f in declared:
        used |= f.mask
    gaps, lo = [], None
    for bit in range(WIDTH + 1):
        free = bit < WIDTH and not (used >> bit) & 1
        if free and lo is None:
            lo = bit
        elif not free and lo is not None:
            gaps.append(reserved(bit - 1, lo, note="no source names these bits"))
            lo = None
    return Structure(
        name=name,
        title=title,
        width=WIDTH,
        section=SECTION_BY_CODE.get(code, SECTION),
        fields=tuple(sorted(declared + tuple(gaps), key=lambda f: f.lo)),
        description=description,
        composites=composites,
        reserved_event="",
        note="; ".join(x for x in (SECTION_NOTE, note) if x),
    )


# ---- the events ------------------------------------------------------------------------------

ILLEGAL_DEV_TABLE_ENTRY = _event(
    0x1, "ILLEGAL_DEV_TABLE_ENTRY", "Illegal device table entry event",
    "A request used a DTE with a reserved bit set or an illegal field value; the request is aborted. "
    "Linux then dumps the DTE (DTE[0]..DTE[3]).",
    _device_id(), _pasid_hi(), _vflags(), _pasid_lo(),
    *_fault_flags("GN", "I", "RW", "RZ", "TR"),
    _address("Address of the request that found the illegal entry (IOVA, or the MSI address when I = 1)",
             note="VirtualBox: the IOVA; QEMU writes the address of the DTE itself instead"),
)

IO_PAGE_FAULT = _event(
    0x2, "IO_PAGE_FAULT", "I/O page fault event",
    "A DMA or interrupt request could not be translated or was not permitted: the page walk found a "
    "not-present entry, a permission violation or a reserved bit, or an interrupt could not be remapped.",
    _device_id(), _pasid_hi(), _vflags(), _domain_or_pasid(),
    *_fault_flags("GN", "NX", "US", "I", "PR", "RW", "PE", "RZ", "TR"),
    _address("Faulting address: the IOVA (GVA when GN = 1), or the MSI address for an interrupt request"),
)

DEV_TAB_HARDWARE_ERROR = _event(
    0x3, "DEV_TAB_HARDWARE_ERROR", "Device table hardware error event",
    "Reading the device table failed (master abort, target abort or data error).",
    _device_id(), _vflags(), *_fault_flags("I", "RW", "TR"), _hw_error_type(),
    _address("System physical address of the device-table access that failed"),
)

PAGE_TAB_HARDWARE_ERROR = _event(
    0x4, "PAGE_TAB_HARDWARE_ERROR", "Page table hardware error event",
    "Reading a page-table entry during a walk failed (master abort, target abort or data error).",
    _device_id(),
    _pasid_hi(note=("VirtualBox marks Q0[31:16] reserved here; Linux's printed pasid includes Q0[19:16]; "
                    "declared like IO_PAGE_FAULT (unconfirmed)")),
    _vflags(), _domain_or_pasid(), *_fault_flags("GN", "I", "RW", "TR"), _hw_error_type(),
    _address("System physical address of the page-table entry whose read failed (8-byte aligned)", lo=67,
             note=("VirtualBox notes 48882 rev 3.05 gives Addr[31:3] in the figure and Addr[31:4] in the "
                   "table; bits 66:64 chosen reserved (entries are 8-byte aligned)")),
)

ILLEGAL_COMMAND_ERROR = _event(
    0x5, "ILLEGAL_COMMAND_ERROR", "Illegal command error event",
    "The command processor found an undefined opcode or a reserved bit set. Linux then dumps the "
    "command's four dwords (CMD[0]..CMD[3]).",
    _address("System physical address of the illegal command in the command buffer",
             note="commands are 16-byte aligned, but no source declares bits 67:64 reserved"),
)

COMMAND_HARDWARE_ERROR = _event(
    0x6, "COMMAND_HARDWARE_ERROR", "Command hardware error event",
    "A memory access made by the command processor failed (fetching a command or a COMPLETION_WAIT store).",
    _hw_error_type(), _address("System physical address of the access that failed"),
)

IOTLB_INV_TIMEOUT = _event(
    0x7, "IOTLB_INV_TIMEOUT", "IOTLB invalidation timeout event",
    "A device did not answer an INVALIDATE_IOTLB_PAGES command within Control.InvTimeOut.",
    _device_id("DeviceID of the device whose IOTLB invalidation timed out"),
    _address("System physical address of the INVALIDATE_IOTLB_PAGES command that timed out", lo=68),
)

INVALID_DEVICE_REQUEST = _event(
    0x8, "INVALID_DEVICE_REQUEST", "Invalid device request event",
    "A device made a request it is not allowed to make (for example a translation request without "
    "IOTLB enabled, or a write to the interrupt range the DTE does not allow).",
    _device_id(), _pasid_hi(), _pasid_lo(),
    *_fault_flags("GN", "US", "TR", at={"US": 49}),
    Field("Type", 59, 57, "Kind of invalid request",
          note=("3 bits here (VirtualBox u3Type); encodings not in the sources. A public user note reads "
                "flags=0x0a00 (Type 5) as a posted write to the interrupt/EOI range from a device whose "
                "DTE has IntCtl = 00b (unconfirmed)")),
    _address("Address of the invalid request (translation or access address)"),
    note=("US sits at Q0[49] here per VirtualBox EVT_INVALID_DEV_REQ_T, not at Q0[50] as in IO_PAGE_FAULT "
          "(unconfirmed)"),
)

INVALID_PPR_REQUEST = _event(
    0x9, "INVALID_PPR_REQUEST", "Invalid PPR request event",
    "A device sent a peripheral page request (PRI) the IOMMU cannot accept.",
    _device_id(),
    Field("PASID[15:0]", 31, 16, "PASID bits 15:0 of the page request", note="Linux PPR_PASID1"),
    Field("Tag", 41, 32, "PRI tag of the page request", note="Linux prints event[1] & 0x3FF"),
    Field("PASID[19:16]", 45, 42, "PASID bits 19:16 of the page request", note="Linux PPR_PASID2"),
    _raw_flags("per-bit layout not in the sources; Linux prints the 12 bits raw"),
    _address("Address of the page request"),
    note="laid out as a PPR log entry (Linux decodes it with the PPR_* macros); VirtualBox has no layout",
)

EVENT_COUNTER_ZERO = _event(
    0xA, "EVENT_COUNTER_ZERO", "Event counter zero event",
    "A performance event counter reached zero.",
    Field("CounterNote[51:32]", 83, 64, "Counter value of the event counter register, bits 51:32"),
    Field("CounterNote[31:0]", 127, 96, "Counter value of the event counter register, bits 31:0"),
    composites=(Composite("CounterNote", (("CounterNote[31:0]", 0), ("CounterNote[51:32]", 32)),
                          "Counter value of the event counter register"),),
    note=("code 0xA inferred: VirtualBox writes 0x10 (a decimal 10 with a 0x prefix, it cannot fit 4 bits); "
          "layout from VirtualBox EVT_EVENT_COUNTER_ZERO_T only"),
)

GUEST_EVENT_FAULT = _event(
    0xB, "GUEST_EVENT_FAULT", "Guest event fault event (HW-vIOMMU)",
    "The HW-vIOMMU could not deliver an event to a guest's event log.",
    _vflags(),
    Field("GuestID", 47, 32, "HW-vIOMMU guest ID (gid)",
          note="Linux RFC reads event[1] & 0xFFFF but stores it in a u8, so it prints only bits 39:32"),
    _raw_flags("per-bit layout unknown; Linux prints the 12 bits raw"),
    note="from the 2023 HW-vIOMMU RFC's print code only; every bit it does not print is unknown (declared reserved)",
)

VIOMMU_HW_ERR = _event(
    0xC, "VIOMMU_HW_ERR", "vIOMMU hardware error event (HW-vIOMMU)",
    "A memory access made by the HW-vIOMMU on behalf of a guest failed.",
    Field("GuestID", 15, 0, "HW-vIOMMU guest ID (gid)"),
    Field("Source", 17, 16, "Which HW-vIOMMU access failed (Linux prints it as src=)",
          note="encodings unknown"),
    _vflags(),
    _raw_flags("per-bit layout unknown; Linux prints the 12 bits raw"),
    _address("Address of the access that failed"),
    note="from the 2023 HW-vIOMMU RFC's print code only",
)

RMP_PAGE_FAULT = _event(
    0xD, "RMP_PAGE_FAULT", "RMP page fault event (SEV-SNP)",
    "A DMA request failed the SEV-SNP reverse-map (RMP) check.",
    _device_id(),
    Field("FlagsRMP", 23, 16, "RMP-specific fault flags (Linux prints them as flags_rmp=)",
          note="name from Linux flags_rmp; per-bit meaning not in the sources"),
    Field("VMG Tag", 47, 32, "VM guest tag of the request", note="name from Linux vmg_tag"),
    _raw_flags("per-bit layout not in the sources; Linux prints the 12 bits raw"),
    _address("Guest physical address of the request (Linux prints it as gpa=)"),
    note="layout from Linux amd_iommu_report_rmp_fault only",
)

RMP_HW_ERROR = _event(
    0xE, "RMP_HW_ERROR", "RMP hardware error event (SEV-SNP)",
    "Reading the SEV-SNP reverse map (RMP) failed.",
    _device_id(),
    Field("VMG Tag", 47, 32, "VM guest tag of the request", note="name from Linux vmg_tag"),
    _raw_flags("per-bit layout not in the sources; Linux prints the 12 bits raw"),
    _address("System physical address of the RMP access that failed (Linux prints it as spa=)", lo=67,
             note="Linux masks Q1[2:0] off before printing; what those bits hold is unknown"),
    note="layout from Linux amd_iommu_report_rmp_hw_error only",
)

EVENTS: tuple[Structure, ...] = (
    ILLEGAL_DEV_TABLE_ENTRY, IO_PAGE_FAULT, DEV_TAB_HARDWARE_ERROR, PAGE_TAB_HARDWARE_ERROR,
    ILLEGAL_COMMAND_ERROR, COMMAND_HARDWARE_ERROR, IOTLB_INV_TIMEOUT, INVALID_DEVICE_REQUEST,
    INVALID_PPR_REQUEST, EVENT_COUNTER_ZERO, GUEST_EVENT_FAULT, VIOMMU_HW_ERR, RMP_PAGE_FAULT, RMP_HW_ERROR,
)
STRUCTURES = EVENTS


def event_code(structure: Structure) -> int:
    """The fixed EventCode of an event structure."""
    code = structure.field("EventCode").fixed
    assert code is not None
    return code


EVENTS_BY_CODE: dict[int, Structure] = {event_code(s): s for s in EVENTS}
EVENTS_BY_NAME: dict[str, Structure] = {s.name: s for s in EVENTS}


def event_structure(bits: int) -> Structure | None:
    """The event structure for a 128-bit entry, chosen by Q0[63:60] (None for codes no source defines)."""
    return EVENTS_BY_CODE.get(INT.extract(bits, 63, 60))


# ---- the flags Linux prints ------------------------------------------------------------------

def flag_fields(structure: Structure) -> tuple[Field, ...]:
    """The named fields of ``structure`` that lie within Q0[59:48], in bit order."""
    return tuple(f for f in structure.named_fields if FLAGS_LO <= f.lo and f.hi <= FLAGS_HI)


# flags bit -> flag name, for the event that defines them all (IO_PAGE_FAULT).
FLAG_NAMES: dict[int, str] = {f.lo - FLAGS_LO: f.name for f in flag_fields(IO_PAGE_FAULT) if f.width == 1}


def explain_flags(structure: Structure, flags12: int) -> list[str]:
    """What a Linux ``flags=`` value says about an event, read through the field declarations.

    One line per field in Q0[59:48], set or clear (a clear bit is informative too: RW = 0 means a
    read), then one line per set bit the event does not define. ``flags12`` bit ``k`` is Q0 bit ``48 + k``.
    """
    if flags12 < 0 or flags12 >> FLAGS_WIDTH:
        raise ValueError(f"flags {flags12:#x} does not fit in {FLAGS_WIDTH} bits")
    out: list[str] = []
    covered = 0
    for f in flag_fields(structure):
        value = (flags12 >> (f.lo - FLAGS_LO)) & mask(f.width)
        covered |= mask(f.width) << (f.lo - FLAGS_LO)
        meaning = f.describe(value)
        shown = str(value) if f.width == 1 else f"{value:#x}"
        out.append(f"{f.name}={shown}: {meaning}" if meaning else f"{f.name}={shown}")
    stray = flags12 & ~covered
    for k in range(FLAGS_WIDTH):
        if (stray >> k) & 1:
            out.append(f"bit {k} (Q0[{FLAGS_LO + k}]) set, but {structure.name} reserves it")
    return out
