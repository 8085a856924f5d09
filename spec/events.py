"""Event-log entries: the 128-bit records the IOMMU writes to its event log (48882 §2.5, §2.5.2..§2.5.11).

Every entry is two 64-bit words, Q0 = bits 63:0 and Q1 = bits 127:64; the event code is always
Q0[63:60]. Most events share a header (DeviceID in Q0[15:0], a PASID or DomainID in Q0[19:16] and
Q0[47:32], flag bits in Q0[59:48]) and an address in Q1. The shared pieces are built once by the
``_`` helpers below and each event lists only the pieces it has; bits no source names are declared
reserved. Linux prints the 12 bits Q0[59:48] as ``flags=0x%04x``: flags bit ``k`` is Q0 bit ``48 + k``,
and :func:`explain_flags` reads such a value back through the field declarations.

Facts come from ``shared/reference/commands-and-events.md`` §3–§5 (Linux, VirtualBox, QEMU, Xen),
``viommu.md`` §6 (the HW-vIOMMU events) and a second reading of the public sources each field's
``sources`` names (FreeBSD and NOVA among them); doubtful ones carry a ``note`` or ``conflict`` and are pinned by
``tests/spec/test_events.py``. Events are produced by the IOMMU, not checked by it, so no event has a
``reserved_event``; the reserved ranges are still declared so that every bit is accounted for.
"""

from __future__ import annotations

from typing import Any, Mapping

from .bitvec import INT, mask
from .fields import Composite, Field, Structure, flag, reserved

SECTION = "§2.5"
# Subsections as revision 3.11 numbers them, cited by a public emulator (OpenVMM's amd_iommu event module)
# for §2.5.2..§2.5.9 and by NOVA's event-code list for §2.5.11..§2.5.15; a linux-kernel post quoting the spec
# also heads IO_PAGE_FAULT "2.5.3". §2.5.10 is inferred from the order of the codes.
SECTION_BY_CODE = {0x1: "§2.5.2", 0x2: "§2.5.3", 0x3: "§2.5.4", 0x4: "§2.5.5", 0x5: "§2.5.6", 0x6: "§2.5.7",
                   0x7: "§2.5.8", 0x8: "§2.5.9", 0x9: "§2.5.10", 0xA: "§2.5.11", 0xB: "§2.5.12", 0xC: "§2.5.13",
                   0xD: "§2.5.14", 0xE: "§2.5.15"}
SECTION_NOTE = ("section numbers as public sources cite them for revision 3.11 (OpenVMM §2.5.2..§2.5.9, NOVA "
                "§2.5.11..§2.5.15; not read in the PDF), §2.5.10 inferred from the order")

WIDTH = 128
EVENT_CODE_HI, EVENT_CODE_LO = 63, 60  # every event's code, Q0[63:60]
FLAGS_LO, FLAGS_HI = 48, 59  # the 12 bits Linux prints as flags=
FLAGS_WIDTH = FLAGS_HI - FLAGS_LO + 1

OPENVMM_DEVICE_ID = ("OpenVMM's fork reads the DeviceID from Q0[31:16]; Linux, FreeBSD, VirtualBox, Xen and QEMU "
                     "use Q0[15:0]")
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


# The helpers below build the pieces several events share; ``**kw`` carries each use's own
# ``sources`` and ``conflict`` (who confirms the piece in *that* event), since they differ per event.

def _header(code: int, name: str, **kw: Any) -> tuple[Field, ...]:
    """The event code, Q0[63:60]."""
    return (Field("EventCode", EVENT_CODE_HI, EVENT_CODE_LO, "Event code: which event this entry records",
                  values={code: name}, fixed=code, **kw),)


def _device_id(meaning: str = "DeviceID (bus, device, function) of the requester", **kw: Any) -> Field:
    return Field("DeviceID", 15, 0, meaning, **kw)


def _pasid_hi(note: str = "", **kw: Any) -> Field:
    return Field("PASID[19:16]", 19, 16, "PASID bits 19:16 of the request (meaningful when GN = 1)", note=note, **kw)


def _domain_or_pasid(**kw: Any) -> Field:
    return Field("DomainID or PASID[15:0]", 47, 32,
                 "DomainID of the device (GN = 0) or PASID bits 15:0 of the request (GN = 1)",
                 note="Linux prints Q0[47:32] together with PASID[19:16] as domain= or pasid=", **kw)


def _pasid_lo(**kw: Any) -> Field:
    return Field("PASID[15:0]", 47, 32, "PASID bits 15:0 of the request (meaningful when GN = 1)", **kw)


# The HW-vIOMMU flags, Q0[31:27]: AMD's RFC reads the five bits as one value (vflags=); FreeBSD names
# four of them in ILLEGAL_DEV_TABLE_ENTRY and IO_PAGE_FAULT and reserves Q0[28]. Older spec revisions
# (VirtualBox) reserve all five. name: (Q0 bit, FreeBSD's name).
_VFLAG_BITS = {"vNR": (27, "vnr"), "vEvent": (29, "vevent"), "vPtr": (30, "vptr"), "vCmd": (31, "vcmd")}
VFLAGS_LO = 27
VFLAGS = Composite(
    "vflags", tuple((n, bit - VFLAGS_LO) for n, (bit, _) in _VFLAG_BITS.items()),
    "HW-vIOMMU flags as AMD's RFC prints them (vflags=, Q0[31:27] as one value); its bit 1 (Q0[28]) is reserved")


def _vflags(note: str = "", **kw: Any) -> tuple[Field, ...]:
    """The four HW-vIOMMU flag bits and the reserved Q0[28] between them (see :data:`VFLAGS`)."""
    out: list[Field] = [reserved(28, 28, note="FreeBSD reserves it; AMD's RFC prints it inside vflags=")]
    for name, (bit, freebsd) in _VFLAG_BITS.items():
        out.append(flag(name, bit, f"HW-vIOMMU event flag (FreeBSD '{freebsd}'); its meaning is in no public source",
                        note="; ".join(x for x in (
                            "AMD's HW-vIOMMU RFC reads Q0[31:27] as one 5-bit vflags; the per-bit names are "
                            "FreeBSD's; on IOMMUs without HW-vIOMMU these bits are reserved (VirtualBox)", note) if x),
                        **kw))
    return tuple(out)


def _fault_flags(*, at: Mapping[str, int] | None = None, conflicts: Mapping[str, str] | None = None,
                 **sources: tuple[str, ...]) -> tuple[Field, ...]:
    """One 1-bit field per flag named as a keyword (its value: the sources that confirm it in this event),
    at its usual Q0 bit unless ``at`` moves it; ``conflicts`` gives a flag's disagreement, if any."""
    out = []
    for n, srcs in sources.items():
        bit, meaning, values, note = _FLAG_DEFS[n]
        out.append(flag(n, (at or {}).get(n, bit), meaning, values=values, note=note, sources=srcs,
                        conflict=(conflicts or {}).get(n, "")))
    return tuple(out)


def _hw_error_type(**kw: Any) -> Field:
    return Field("Type", 58, 57, "Kind of hardware error on the access", values=HW_ERROR_TYPES,
                 note="VirtualBox HWEVTTYPE", **kw)


def _raw_flags(note: str, **kw: Any) -> Field:
    return Field("Flags", FLAGS_HI, FLAGS_LO, "Event flags (Linux prints them as flags=)", note=note, **kw)


def _address(meaning: str, lo: int = 64, note: str = "", **kw: Any) -> Field:
    """Q1 from bit ``lo`` up: an address whose bits below ``lo - 64`` are zero."""
    return Field("Address", 127, lo, meaning, unit_shift=lo - 64, note=note, **kw)


def _event(code: int, name: str, title: str, description: str, *fields: Field | tuple[Field, ...], note: str = "",
           composites: tuple[Composite, ...] = (), code_sources: tuple[str, ...] | None = None,
           code_conflict: str = "") -> Structure:
    """An event structure: header plus ``fields`` (a helper's tuple is spliced in); every bit nothing
    names is declared reserved. ``code_sources`` confirm the event code."""
    flat = tuple(g for f in fields for g in (f if isinstance(f, tuple) else (f,)))
    if any(f.name == "vNR" for f in flat):
        composites = (VFLAGS, *composites)
    declared = _header(code, name, sources=code_sources, conflict=code_conflict) + flat
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
    _device_id(sources=("Linux", "FreeBSD", "VirtualBox", "QEMU"), conflict=OPENVMM_DEVICE_ID),
    _pasid_hi(sources=("Linux", "FreeBSD", "VirtualBox")),
    _vflags(sources=("Linux", "FreeBSD")),
    _pasid_lo(sources=("Linux", "FreeBSD", "VirtualBox")),
    *_fault_flags(GN=("FreeBSD", "VirtualBox"), I=("FreeBSD", "VirtualBox"), RW=("FreeBSD", "VirtualBox"),
                  RZ=("FreeBSD", "VirtualBox"), TR=("FreeBSD", "VirtualBox")),
    _address("Address of the request that found the illegal entry (IOVA, or the MSI address when I = 1)",
             note="VirtualBox: the IOVA; QEMU writes the address of the DTE itself instead",
             sources=("Linux", "VirtualBox", "QEMU"),
             conflict=("FreeBSD reserves Q1[1:0] and holds address bits 63:2 in 127:66; Linux, VirtualBox and QEMU "
                       "use all of 127:64")),
    code_sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM"),
)

IO_PAGE_FAULT = _event(
    0x2, "IO_PAGE_FAULT", "I/O page fault event",
    "A DMA or interrupt request could not be translated or was not permitted: the page walk found a "
    "not-present entry, a permission violation or a reserved bit, or an interrupt could not be remapped.",
    _device_id(sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU"), conflict=OPENVMM_DEVICE_ID),
    _pasid_hi(sources=("Linux", "FreeBSD", "VirtualBox")),
    _vflags(sources=("Linux", "FreeBSD")),
    _domain_or_pasid(sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "OpenVMM")),
    *_fault_flags(GN=("FreeBSD", "VirtualBox"), NX=("FreeBSD", "VirtualBox"), US=("FreeBSD", "VirtualBox"),
                  I=("FreeBSD", "VirtualBox", "Linux", "QEMU"), PR=("FreeBSD", "VirtualBox"),
                  RW=("FreeBSD", "VirtualBox", "Linux"), PE=("FreeBSD", "VirtualBox"),
                  RZ=("FreeBSD", "VirtualBox", "Xen"), TR=("FreeBSD", "VirtualBox", "Xen"),
                  conflicts={"I": "OpenVMM's fork puts I at Q0 bit 0; FreeBSD, VirtualBox, Linux and QEMU put it at 51",
                             "RW": "OpenVMM's fork puts RW at bit 127; FreeBSD, VirtualBox and Linux put it at 53"}),
    _address("Faulting address: the IOVA (GVA when GN = 1), or the MSI address for an interrupt request",
             sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU"),
             conflict=("OpenVMM's fork stores only address bits 62:32 in Q1[126:96], with RW in bit 127; Linux, "
                       "FreeBSD, VirtualBox, Xen and QEMU use all of 127:64")),
    code_sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM"),
)

DEV_TAB_HARDWARE_ERROR = _event(
    0x3, "DEV_TAB_HARDWARE_ERROR", "Device table hardware error event",
    "Reading the device table failed (master abort, target abort or data error).",
    _device_id(sources=("Linux", "VirtualBox", "QEMU"), conflict=OPENVMM_DEVICE_ID),
    _vflags(sources=("Linux",)),
    *_fault_flags(I=("VirtualBox",), RW=("VirtualBox",), TR=("VirtualBox",)),
    _hw_error_type(sources=("VirtualBox",)),
    _address("System physical address of the device-table access that failed",
             sources=("Linux", "VirtualBox", "QEMU", "OpenVMM")),
    code_sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM"),
)

PAGE_TAB_HARDWARE_ERROR = _event(
    0x4, "PAGE_TAB_HARDWARE_ERROR", "Page table hardware error event",
    "Reading a page-table entry during a walk failed (master abort, target abort or data error).",
    _device_id(sources=("Linux", "VirtualBox"), conflict=OPENVMM_DEVICE_ID),
    _pasid_hi(note="declared like IO_PAGE_FAULT (unconfirmed)", sources=("Linux",),
              conflict="Linux prints Q0[19:16] as part of pasid=; VirtualBox reserves Q0[31:16] in this event"),
    _vflags(sources=("Linux",)),
    _domain_or_pasid(sources=("Linux", "VirtualBox")),
    *_fault_flags(GN=("VirtualBox",), I=("VirtualBox",), RW=("VirtualBox",), TR=("VirtualBox",)),
    _hw_error_type(sources=("VirtualBox",)),
    _address("System physical address of the page-table entry whose read failed (8-byte aligned)", lo=67,
             note=("VirtualBox notes 48882 rev 3.05 gives Addr[31:3] in the figure and Addr[31:4] in the "
                   "table; bits 66:64 chosen reserved (entries are 8-byte aligned)"),
             sources=("VirtualBox",),
             conflict=("VirtualBox implements 127:68 while noting that the spec's figure gives Addr[31:3], i.e. "
                       "127:67, which is declared; Linux prints all 64 bits")),
    code_sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM"),
)

ILLEGAL_COMMAND_ERROR = _event(
    0x5, "ILLEGAL_COMMAND_ERROR", "Illegal command error event",
    "The command processor found an undefined opcode or a reserved bit set. Linux then dumps the "
    "command's four dwords (CMD[0]..CMD[3]).",
    _address("System physical address of the illegal command in the command buffer",
             note="commands are 16-byte aligned, but no source declares bits 67:64 reserved",
             sources=("Linux", "QEMU", "OpenVMM"),
             conflict="VirtualBox reserves Q1[3:0] (address in 127:68); Linux, QEMU and OpenVMM use all of 127:64"),
    code_sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM"),
)

COMMAND_HARDWARE_ERROR = _event(
    0x6, "COMMAND_HARDWARE_ERROR", "Command hardware error event",
    "A memory access made by the command processor failed (fetching a command or a COMPLETION_WAIT store).",
    _hw_error_type(sources=("VirtualBox",)),
    _address("System physical address of the access that failed", sources=("Linux", "VirtualBox", "QEMU", "OpenVMM")),
    code_sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "QEMU", "NOVA", "OpenVMM"),
)

IOTLB_INV_TIMEOUT = _event(
    0x7, "IOTLB_INV_TIMEOUT", "IOTLB invalidation timeout event",
    "A device did not answer an INVALIDATE_IOTLB_PAGES command within Control.InvTimeOut.",
    _device_id("DeviceID of the device whose IOTLB invalidation timed out", sources=("Linux", "VirtualBox")),
    _address("System physical address of the INVALIDATE_IOTLB_PAGES command that timed out", lo=68,
             sources=("VirtualBox",)),
    code_sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "NOVA", "OpenVMM"),
)

INVALID_DEVICE_REQUEST = _event(
    0x8, "INVALID_DEVICE_REQUEST", "Invalid device request event",
    "A device made a request it is not allowed to make (for example a translation request without "
    "IOTLB enabled, or a write to the interrupt range the DTE does not allow).",
    _device_id(sources=("Linux", "VirtualBox"), conflict=OPENVMM_DEVICE_ID),
    _pasid_hi(sources=("Linux", "VirtualBox")),
    _pasid_lo(sources=("Linux", "VirtualBox")),
    *_fault_flags(GN=("VirtualBox",), US=("VirtualBox",), TR=("VirtualBox",), at={"US": 49}),
    Field("Type", 59, 57, "Kind of invalid request",
          note=("3 bits here (VirtualBox u3Type); encodings not in the sources. A public user note reads "
                "flags=0x0a00 (Type 5) as a posted write to the interrupt/EOI range from a device whose "
                "DTE has IntCtl = 00b (unconfirmed)"),
          sources=("VirtualBox",), conflict="OpenVMM's fork puts the request type in Q0[3:0]; VirtualBox gives 59:57"),
    _address("Address of the invalid request (translation or access address)",
             sources=("Linux", "VirtualBox", "OpenVMM")),
    note=("US sits at Q0[49] here per VirtualBox EVT_INVALID_DEV_REQ_T, not at Q0[50] as in IO_PAGE_FAULT "
          "(unconfirmed)"),
    code_sources=("Linux", "FreeBSD", "VirtualBox", "Xen", "NOVA", "OpenVMM"),
)

INVALID_PPR_REQUEST = _event(
    0x9, "INVALID_PPR_REQUEST", "Invalid PPR request event",
    "A device sent a peripheral page request (PRI) the IOMMU cannot accept.",
    _device_id(sources=("Linux",)),
    Field("PASID[15:0]", 31, 16, "PASID bits 15:0 of the page request", note="Linux PPR_PASID1", sources=("Linux",)),
    Field("Tag", 41, 32, "PRI tag of the page request", note="Linux prints event[1] & 0x3FF", sources=("Linux",)),
    Field("PASID[19:16]", 45, 42, "PASID bits 19:16 of the page request", note="Linux PPR_PASID2", sources=("Linux",)),
    _raw_flags("per-bit layout not in the sources; Linux prints the 12 bits raw", sources=("Linux",)),
    _address("Address of the page request", sources=("Linux",)),
    note="laid out as a PPR log entry (Linux decodes it with the PPR_* macros); VirtualBox has no layout",
    code_sources=("Linux", "FreeBSD", "VirtualBox", "NOVA"),
)

EVENT_COUNTER_ZERO = _event(
    0xA, "EVENT_COUNTER_ZERO", "Event counter zero event",
    "A performance event counter reached zero.",
    Field("CounterNote[51:32]", 83, 64, "Counter value of the event counter register, bits 51:32",
          sources=("VirtualBox",)),
    Field("CounterNote[31:0]", 127, 96, "Counter value of the event counter register, bits 31:0",
          sources=("VirtualBox",)),
    composites=(Composite("CounterNote", (("CounterNote[31:0]", 0), ("CounterNote[51:32]", 32)),
                          "Counter value of the event counter register"),),
    note="layout from VirtualBox EVT_EVENT_COUNTER_ZERO_T only",
    code_sources=("FreeBSD", "NOVA"),
    code_conflict=("FreeBSD and NOVA give code 0xA; VirtualBox writes 0x10, which does not fit the 4-bit code (a "
                   "decimal 10 written as hex)"),
)

GUEST_EVENT_FAULT = _event(
    0xB, "GUEST_EVENT_FAULT", "Guest event fault event (HW-vIOMMU)",
    "The HW-vIOMMU could not deliver an event to a guest's event log.",
    _vflags(sources=("Linux",)),
    Field("GuestID", 47, 32, "HW-vIOMMU guest ID (gid)",
          note="Linux RFC reads event[1] & 0xFFFF but stores it in a u8, so it prints only bits 39:32",
          sources=("Linux",)),
    _raw_flags("per-bit layout unknown; Linux prints the 12 bits raw", sources=("Linux",)),
    note="from the 2023 HW-vIOMMU RFC's print code only; every bit it does not print is unknown (declared reserved)",
    code_sources=("Linux", "NOVA"),
    code_conflict=("Linux (AMD's RFC) and NOVA give code 0xB; VirtualBox writes 0x11, which does not fit the 4-bit "
                   "code"),
)

VIOMMU_HW_ERR = _event(
    0xC, "VIOMMU_HW_ERR", "vIOMMU hardware error event (HW-vIOMMU)",
    "A memory access made by the HW-vIOMMU on behalf of a guest failed.",
    Field("GuestID", 15, 0, "HW-vIOMMU guest ID (gid)", sources=("Linux",)),
    Field("Source", 17, 16, "Which HW-vIOMMU access failed (Linux prints it as src=)",
          note="encodings unknown",
          sources=("Linux",)),
    _vflags(sources=("Linux",)),
    _raw_flags("per-bit layout unknown; Linux prints the 12 bits raw", sources=("Linux",)),
    _address("Address of the access that failed", sources=("Linux",)),
    note="from the 2023 HW-vIOMMU RFC's print code only",
    code_sources=("Linux", "NOVA"),
)

RMP_PAGE_FAULT = _event(
    0xD, "RMP_PAGE_FAULT", "RMP page fault event (SEV-SNP)",
    "A DMA request failed the SEV-SNP reverse-map (RMP) check.",
    _device_id(sources=("Linux",)),
    Field("FlagsRMP", 23, 16, "RMP-specific fault flags (Linux prints them as flags_rmp=)",
          note="name from Linux flags_rmp; per-bit meaning not in the sources",
          sources=("Linux",)),
    Field("VMG Tag", 47, 32, "VM guest tag of the request", note="name from Linux vmg_tag", sources=("Linux",)),
    _raw_flags("per-bit layout not in the sources; Linux prints the 12 bits raw", sources=("Linux",)),
    _address("Guest physical address of the request (Linux prints it as gpa=)", sources=("Linux",)),
    note="layout from Linux amd_iommu_report_rmp_fault only",
    code_sources=("Linux", "NOVA"),
)

RMP_HW_ERROR = _event(
    0xE, "RMP_HW_ERROR", "RMP hardware error event (SEV-SNP)",
    "Reading the SEV-SNP reverse map (RMP) failed.",
    _device_id(sources=("Linux",)),
    Field("VMG Tag", 47, 32, "VM guest tag of the request", note="name from Linux vmg_tag", sources=("Linux",)),
    _raw_flags("per-bit layout not in the sources; Linux prints the 12 bits raw", sources=("Linux",)),
    _address("System physical address of the RMP access that failed (Linux prints it as spa=)", lo=67,
             note="Linux masks Q1[2:0] off before printing; what those bits hold is unknown",
             sources=("Linux",)),
    note="layout from Linux amd_iommu_report_rmp_hw_error only",
    code_sources=("Linux", "NOVA"),
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
    return EVENTS_BY_CODE.get(INT.extract(bits, EVENT_CODE_HI, EVENT_CODE_LO))


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
