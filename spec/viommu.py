"""The hardware-accelerated virtualized IOMMU (HW-vIOMMU): its per-guest registers, its mapping tables
and its private address space.

48882 revisions 3.07 and later describe the HW-vIOMMU; that chapter is not among the public sources
(``shared/reference/viommu.md`` §0), so every fact here comes from AMD's Linux RFC (2023, "AMD-RFC")
and AMD's later work-in-progress code on iommufd vIOMMU objects, read for bit positions and
sequences (``papers/sources/viommu-amdese-facts.md`` cites each fact of the later code by file and
function). Each field says which; where they differ the field carries a ``conflict``, and what no
source shows is declared as the model's own choice in a ``note`` (``tests/spec/test_viommu.py`` pins
them).

What is declared:

* the **VFCtrl** block (64 bytes per guest in the VFCtrl BAR), through which the hypervisor installs
  DeviceID and DomainID map entries and programs the guest's command buffer, event log and PPR log;
* the **VF** page (4 KiB per guest in the VF BAR), the guest's own command-buffer head and tail, its
  event-log head and its Status (the last two inferred);
* the guest's event-log tail and Status bits, kept in its MMIO block (:data:`GUEST_EVT_STATE`, the model's
  own);
* the **DeviceID map** (16 bytes per guest DeviceID) and **DomainID map** (8 bytes per guest
  DomainID) entries, which the hardware reads to translate a guest command's IDs;
* the **private address space** (:data:`REGIONS`): where the IOMMU keeps all of that, reached through
  its own DTE and a v1 table the host builds for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from .fields import Field, Structure, flag, ignored, reserved

SECTION = "§vIOMMU"
SECTION_NOTE = ("48882's HW-vIOMMU chapter (revision 3.07 and later) is not in the public sources; the "
                "structures come from AMD's RFC and AMD's work-in-progress Linux code (shared/reference/viommu.md)")

MAX_GUESTS = 1 << 16  # GuestID is 16 bits; GuestID 0 is never given to a guest (viommu.md §2)
VFCTRL_BLOCK_BYTES = 64  # per guest in the VFCtrl BAR
VF_PAGE_BYTES = 0x1000  # per guest in the VF BAR
DEVID_MAP_ENTRY_BYTES = 16
DOMID_MAP_ENTRY_BYTES = 8


def _map_control(name: str, what: str, guest_id: str, host_id: str) -> Structure:
    """GUEST_DID_MAP_CONTROL0 (DeviceIDs) and 1 (DomainIDs): one write installs one map entry."""
    return Structure(
        name=name,
        title=f"VFCtrl {what} map control",
        width=64,
        section=SECTION,
        description=(f"A write installs the {what} map entry of one guest {what}: the hardware stores the host "
                     f"{what} (and the valid bit) into the guest's {what} map in its private address space."),
        fields=(
            flag("V", 0, "The entry is valid (a cleared entry is written with the host ID 0 and V still 1 by the "
                 "RFC; AMD's later code maps every DomainID of a new vIOMMU to the parent domain's ID, since the "
                 "hardware logs an error for an unmapped one)",
                 sources=("AMD-RFC",)),
            reserved(13, 1),
            Field(host_id, 29, 14, f"Host {what}", sources=("AMD-RFC",)),
            reserved(45, 30),
            Field(guest_id, 61, 46, f"Guest {what} (the index into the guest's map)", sources=("AMD-RFC",)),
            reserved(62, 62),
            flag("Write", 63, "Set on every write that installs an entry", sources=("AMD-RFC",)),
        ),
        note=SECTION_NOTE,
    )


DID_MAP_CONTROL = _map_control("GUEST_DID_MAP_CONTROL0", "DeviceID", "GuestDeviceID", "HostDeviceID")
DOMID_MAP_CONTROL = _map_control("GUEST_DID_MAP_CONTROL1", "DomainID", "GuestDomainID", "HostDomainID")

MISC_CONTROL = Structure(
    name="GUEST_MISC_CONTROL",
    title="VFCtrl miscellaneous control",
    width=64,
    section=SECTION,
    description=("Names the DeviceID whose DTE the hardware uses for the vIOMMU's own accesses to guest memory "
                 "(its command buffer, logs and COMPLETION_WAIT stores: guest physical addresses)."),
    fields=(
        ignored(15, 0),
        Field("TranslateDeviceID", 31, 16, "DeviceID whose DTE translates the vIOMMU's guest-physical accesses",
              note=("AMD's RFC writes the guest device's host DeviceID here after a device attach; AMD's later code "
                    "writes a 'translate DeviceID' it allocates per vIOMMU (from 0xFFFF down), whose DTE holds the "
                    "nesting parent's (stage 2) root and DomainID and must exist before the guest's first "
                    "COMPLETION_WAIT: the model reads the field as that DeviceID"),
              sources=("AMD-RFC",)),
        ignored(63, 32),
    ),
    note=SECTION_NOTE,
)


def _log_control(name: str, what: str, length: str, enable: str, interrupt: str, extra: tuple[Field, ...],
                 base_lo: int, base_hi: int) -> Structure:
    return Structure(
        name=name,
        title=f"VFCtrl guest {what} control",
        width=64,
        section=SECTION,
        description=f"The guest's {what}: its guest physical base, its length, and the guest's enable bits.",
        fields=tuple(sorted((
            Field(length, 3, 0, f"log2 of the {what}'s 16-byte entries", sources=("AMD-RFC",)),
            *extra,
            flag(enable, 8, f"The guest enabled its {what}", sources=("AMD-RFC",)),
            flag(interrupt, 9, f"The guest enabled its {what} interrupt", sources=("AMD-RFC",)),
            *(f for f in _gap_fields(extra, base_lo)),
            Field("Base", base_hi, base_lo, f"Guest physical address of the {what} (bits 51:12: 4 KiB aligned)",
                  unit_shift=12, sources=("AMD-RFC",),
                  note="from AMD's later HW-queue code; the RFC mapped the buffer into the private space instead"),
            reserved(63, base_hi + 1),
        ), key=lambda f: f.lo)),
        note=SECTION_NOTE,
    )


def _gap_fields(extra: tuple[Field, ...], base_lo: int) -> tuple[Field, ...]:
    """Reserved bits between bit 10 (after the enables and the extra fields) and the base."""
    used = {i for f in extra for i in range(f.lo, f.hi + 1)} | set(range(0, 10))
    gaps, start = [], None
    for bit in range(10, base_lo):
        if bit in used:
            if start is not None:
                gaps.append(reserved(bit - 1, start))
                start = None
        elif start is None:
            start = bit
    if start is not None:
        gaps.append(reserved(base_lo - 1, start))
    return tuple(gaps)


CMD_CONTROL = _log_control("GUEST_CMD_CONTROL", "command buffer", "ComLen", "CmdBufEn", "ComWaitIntEn",
                           (reserved(7, 4),), 12, 51)
EVT_CONTROL = _log_control("GUEST_EVT_CONTROL", "event log", "EventLen", "EventLogEn", "EventIntEn",
                           (Field("EventLenB", 7, 4, "log2 of event log B's entries", sources=("AMD-RFC",)),
                            Field("DualEvtLogEn", 11, 10, "Dual event log enable", sources=("AMD-RFC",))), 12, 51)
PPR_CONTROL = _log_control("GUEST_PPR_CONTROL", "PPR log", "PPRLogLen", "PPRLogEn", "PPRIntEn",
                           (Field("PPRLogLenB", 7, 4, "log2 of PPR log B's entries", sources=("AMD-RFC",)),
                            flag("PPREn", 10, "Peripheral page requests enabled", sources=("AMD-RFC",)),
                            Field("DualPprLogEn", 12, 11, "Dual PPR log enable", sources=("AMD-RFC",)),
                            flag("PPRAutoRspEn", 13, "PPR auto-response enable", sources=("AMD-RFC",)),
                            flag("BlkStopMrkEn", 14, "Block stop-marker messages", sources=("AMD-RFC",)),
                            flag("PPRAutoRspAon", 15, "PPR auto-response always on", sources=("AMD-RFC",))),
                           16, 55)


def _pointer(name: str, title: str, what: str, note: str = "") -> Structure:
    return Structure(
        name=name,
        title=title,
        width=64,
        section=SECTION,
        description=f"The guest's {what} (a byte offset into its ring, 16-byte aligned).",
        fields=(reserved(3, 0), Field("Pointer", 18, 4, f"{what}, in 16-byte entries", unit_shift=4,
                                      sources=() if note else ("AMD-RFC",), note=note), reserved(63, 19)),
        note=SECTION_NOTE,
    )


VF_CMD_HEAD = _pointer("VF_CMD_HEAD", "VF guest command buffer head", "command buffer head")
VF_CMD_TAIL = _pointer("VF_CMD_TAIL", "VF guest command buffer tail", "command buffer tail")
_VF_INFERRED = ("inferred, not read in any source: the VF page is mapped 1:1 over the guest's IOMMU MMIO page at "
                "0x2000, where the event log head and tail are at 0x2010/0x2018 and Status at 0x2020 (48882 "
                "§3.4.11-§3.4.13; viommu-amdese-facts.md §2)")
VF_EVT_HEAD = _pointer("VF_EVT_HEAD", "VF guest event log head", "event log head", note=_VF_INFERRED)

VF_STATUS = Structure(
    name="VF_STATUS",
    title="VF guest status",
    width=64,
    section=SECTION,
    description=("The guest's Status register in its VF page: the guest clears its event-log bits by writing 1s "
                 "(RW1C, as the host's Status, 48882 §3.4.13); the model keeps only the two event-log bits."),
    fields=(flag("EventOverflow", 0, "The guest's event log overflowed; no event is written while it is set",
                 sources=(), note=_VF_INFERRED),
            flag("EventLogInt", 1, "An event was written to the guest's event log", sources=(), note=_VF_INFERRED),
            ignored(63, 2, note="the guest's other Status bits are not modelled")),
    note=SECTION_NOTE,
)

GUEST_EVT_STATE = Structure(
    name="GUEST_EVT_STATE",
    title="Guest event log state (the model's own)",
    width=64,
    section=SECTION,
    description=("What the model keeps of a guest's event log beyond its VFCtrl control register, in one word of "
                 "the guest's MMIO block: the tail the IOMMU advances and the guest's two event Status bits."),
    fields=(flag("EventOverflow", 0, "The guest's event log overflowed (a full log dropped an event)", sources=()),
            flag("EventLogInt", 1, "An event was written to the guest's event log", sources=()),
            reserved(3, 2),
            Field("Pointer", 18, 4, "event log tail, in 16-byte entries", unit_shift=4, sources=()),
            reserved(63, 19)),
    note=("the model's own: what the hardware keeps of a guest's event log is not public; the guest's 64-byte block "
          "has eight words and this is the last free one, so the tail and the Status bits (at their host Status "
          "positions, §3.4.13) share it"),
)

DEVID_MAP_ENTRY = Structure(
    name="DEVID_MAP_ENTRY",
    title="DeviceID map entry",
    width=128,
    section=SECTION,
    description=("The host DeviceID a guest DeviceID stands for: the hardware reads it to carry out a guest "
                 "command that names a device."),
    fields=(
        flag("V", 0, "The guest DeviceID is mapped", sources=(),
             note=("the model's own: no source shows the entry beyond the host DeviceID; the map control's V bit "
                   "is taken to be stored here")),
        ignored(23, 1),
        Field("HostDeviceID", 39, 24, "Host DeviceID", sources=("AMD-RFC",),
              note="AMD's RFC reads the host DeviceID back from bits 39:24 of the entry's first quadword"),
        ignored(127, 40),
    ),
    note=SECTION_NOTE,
)

DOMID_MAP_ENTRY = Structure(
    name="DOMID_MAP_ENTRY",
    title="DomainID map entry",
    width=64,
    section=SECTION,
    description=("The host DomainID a guest DomainID stands for: the hardware reads it to carry out a guest "
                 "invalidation that names a domain."),
    fields=(
        flag("V", 0, "The guest DomainID is mapped", sources=(), note="the model's own (see DEVID_MAP_ENTRY.V)"),
        ignored(23, 1),
        Field("HostDomainID", 39, 24, "Host DomainID", sources=(),
              note="the model's own position, by analogy with DEVID_MAP_ENTRY (the RFC reads this entry only to print it)"),
        ignored(63, 40),
    ),
    note=SECTION_NOTE,
)

STRUCTURES: tuple[Structure, ...] = (DID_MAP_CONTROL, DOMID_MAP_CONTROL, MISC_CONTROL, CMD_CONTROL, EVT_CONTROL,
                                     PPR_CONTROL, VF_CMD_HEAD, VF_CMD_TAIL, VF_EVT_HEAD, VF_STATUS, GUEST_EVT_STATE,
                                     DEVID_MAP_ENTRY, DOMID_MAP_ENTRY)

# the VFCtrl block's registers by offset (viommu.md §2.1), and the VF page's (§2.2)
VFCTRL_OFFSETS: Mapping[int, Structure] = MappingProxyType({
    0x00: DID_MAP_CONTROL, 0x08: DOMID_MAP_CONTROL, 0x10: MISC_CONTROL, 0x20: CMD_CONTROL, 0x28: EVT_CONTROL,
    0x30: PPR_CONTROL})
# (the event log head and Status at 0x10/0x20 are inferred from the page's 1:1 place at guest MMIO 0x2000; the
# event log tail at 0x18 is the IOMMU's to write, and the PPR log's head and tail at 0x30/0x38 are not modelled)
VF_OFFSETS: Mapping[int, Structure] = MappingProxyType({0x00: VF_CMD_HEAD, 0x08: VF_CMD_TAIL, 0x10: VF_EVT_HEAD,
                                                        0x20: VF_STATUS})


@dataclass(frozen=True)
class Region:
    """One region of the IOMMU's private address space: its base, the bytes each guest has, and the
    bytes of one entry (0: the region is one block per guest)."""

    name: str
    base: int
    per_guest: int
    entry: int = 0
    note: str = ""

    def address(self, guest_id: int, index: int = 0) -> int:
        """The private address of guest ``guest_id``'s entry ``index`` (its block when ``entry`` is 0)."""
        return self.base + guest_id * self.per_guest + index * self.entry


GUEST_MMIO = Region("guest MMIO", 0x0, VFCTRL_BLOCK_BYTES, note=(
    "64 bytes per guest from private address 0 (AMD's RFC; AMD's later code maps 4 x 2 MiB private sub-regions "
    "from VIOMMU_PRIV_REGION_BASE = 0 at IOMMU start-up); what the hardware keeps there is not public: the "
    "model keeps the guest's VFCtrl registers at their VFCtrl offsets and its command-buffer head and tail at "
    "0x00 and 0x08 (the offsets of the map controls, which are write-only)"))
DIRTY_STATUS = Region("command-buffer dirty status", 0x40_0000, 0, note=(
    "one bit per guest over 8 KiB; AMD's RFC clears a guest's bit at vIOMMU creation; its indexing formula "
    "is unusual and unconfirmed: the model does not use the bitmap (a guest's ring is pending whenever its "
    "head differs from its tail)"))
DEVID_MAP = Region("DeviceID map", 0x10_0000_0000, 1 << 20, DEVID_MAP_ENTRY_BYTES, note="1 MiB per guest (AMD's RFC)")
DOMID_MAP = Region("DomainID map", 0x20_0000_0000, 1 << 19, DOMID_MAP_ENTRY_BYTES,
                   note="512 KiB per guest (AMD's RFC)")
GUEST_COMMAND_BUFFER = Region("guest command buffer", 0x28_0000_0000, 1 << 19, note=(
    "512 KiB per guest (AMD's RFC, which maps the guest's buffer pages here); AMD's later code gives the "
    "hardware the buffer's guest physical address instead"))

REGIONS: tuple[Region, ...] = (GUEST_MMIO, DIRTY_STATUS, DEVID_MAP, DOMID_MAP, GUEST_COMMAND_BUFFER)
