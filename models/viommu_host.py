"""What a hypervisor sets up for HW-vIOMMU guests, as the hardware sees it: the IOMMU's own DTE and
private v1 table, each guest's stage 2 behind its translate DeviceID, and the VFCtrl writes that
install the guest's maps and command buffer (``models.viommu``).

This is the hardware-level picture a driver produces (AMD's RFC and later code, viommu.md §3-§4):
the private table maps each private page the guests use to its own system page (never two private
pages to one, :func:`private_pages_distinct` checks it: the proofs of ``properties.viommu_isolation``
assume it), and a guest's stage 2 maps only the guest's own pages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from amdvi.spec import viommu as V
from amdvi.spec.bitvec import INT
from amdvi.spec.choices import SPEC, Hardware

from . import software as sw
from .iommu import IommuState
from .viommu import TranslatedPrivateSpace, ViommuConfig, vfctrl_write

PAGE = 0x1000
PRIVATE_DOMAIN_ID = 0xFFFE  # the DomainID of the IOMMU's own private table (the model's choice)
TABLE_MODE = 3  # the private table and each stage 2 are 3-level v1 tables: addresses below 2^39


@dataclass(frozen=True)
class GuestSetup:
    """One guest: its GuestID, the DeviceID whose DTE is its stage 2, the guest pages (GPA -> system
    page), its device and domain maps (guest ID -> host ID) and where its command buffer and event log are (GPA)."""

    guest_id: int
    translate_device_id: int
    pages: Mapping[int, int]
    devices: Mapping[int, int] = field(default_factory=dict)
    domains: Mapping[int, int] = field(default_factory=dict)
    command_buffer: int = 0
    com_len: int = 8
    event_log: int | None = None  # GPA of its event log (None: the guest has not enabled one)
    event_len: int = 8
    stage2_domain_id: int = 0  # 0: the translate DeviceID's own number


@dataclass(frozen=True)
class HostSetup:
    layout: sw.Layout = sw.Layout()
    config: ViommuConfig = ViommuConfig()
    private_root: int = 0x0070_0000
    table_pages: int = 0x0071_0000  # where private and stage-2 tables are allocated from
    private_frames: int = 0x0090_0000  # where the private pages' system pages are allocated from


def _page(address: int) -> int:
    return address & ~(PAGE - 1)


def private_pages(guests: tuple[GuestSetup, ...]) -> list[int]:
    """Every private page the guests' blocks and map entries are on."""
    pages = {_page(V.GUEST_MMIO.address(g.guest_id)) for g in guests}
    for g in guests:
        pages |= {_page(V.DEVID_MAP.address(g.guest_id, d)) for d in g.devices}
        pages |= {_page(V.DOMID_MAP.address(g.guest_id, d)) for d in g.domains}
    return sorted(pages)


def table_pages_needed(guests: tuple[GuestSetup, ...]) -> int:
    """At most how many table pages :func:`build` allocates from ``HostSetup.table_pages`` (each mapped page
    may need a new table at every level below the root), so a caller can keep that range clear."""
    below_root = TABLE_MODE - 1
    return below_root * len(private_pages(guests)) + sum(1 + below_root * len(g.pages) for g in guests)


def build(guests: tuple[GuestSetup, ...], host: HostSetup = HostSetup(), memory: Mapping[int, int] | None = None,
          *, choices: Hardware = SPEC) -> IommuState:
    """The IOMMU state once the hypervisor has set up ``guests``."""
    mem = dict(memory or {})
    next_table, next_frame = host.table_pages, host.private_frames
    mem = sw.write_dte(mem, host.layout, host.config.iommu_device_id,
                       sw.v1_dte(PRIVATE_DOMAIN_ID, host.private_root, TABLE_MODE))
    for ipa in private_pages(guests):
        mapped = sw.v1_map(mem, host.private_root, TABLE_MODE, ipa, next_frame, next_table)
        mem, next_table, next_frame = mapped.memory, mapped.next_free, next_frame + PAGE
    for g in guests:
        root, next_table = next_table, next_table + PAGE
        for gpa, spa in sorted(g.pages.items()):
            mapped = sw.v1_map(mem, root, TABLE_MODE, gpa, spa, next_table)
            mem, next_table = mapped.memory, mapped.next_free
        mem = sw.write_dte(mem, host.layout, g.translate_device_id,
                           sw.v1_dte(g.stage2_domain_id or g.translate_device_id, root, TABLE_MODE))
    state = sw.initial_state(host.layout, mem)
    space = TranslatedPrivateSpace(host.config)
    for g in guests:
        write = lambda offset, value: vfctrl_write(INT, s, g.guest_id, offset, value, space=space,  # noqa: E731
                                                   choices=choices)
        s = state
        for gdev, hdev in sorted(g.devices.items()):
            s = write(0x00, V.DID_MAP_CONTROL.encode(V=1, HostDeviceID=hdev, GuestDeviceID=gdev, Write=1))
        for gdom, hdom in sorted(g.domains.items()):
            s = write(0x08, V.DOMID_MAP_CONTROL.encode(V=1, HostDomainID=hdom, GuestDomainID=gdom, Write=1))
        s = write(0x10, V.MISC_CONTROL.encode(TranslateDeviceID=g.translate_device_id))
        s = write(0x20, V.CMD_CONTROL.encode(ComLen=g.com_len, CmdBufEn=1, Base=g.command_buffer >> 12))
        if g.event_log is not None:  # the HW queue of type EVT: its GPA and length, enabled (viommu.md §9)
            s = write(0x28, V.EVT_CONTROL.encode(EventLen=g.event_len, EventLogEn=1, Base=g.event_log >> 12))
        state = s
    return state


def private_pages_distinct(state: IommuState, guests: tuple[GuestSetup, ...], host: HostSetup = HostSetup(),
                           *, choices: Hardware = SPEC) -> bool:
    """Whether every private page the guests use reaches its own system page (no two share one)."""
    space = TranslatedPrivateSpace(host.config)
    spas = []
    for ipa in private_pages(guests):
        ok, spa = space.address(INT, state, ipa, False, choices)
        if not ok:
            return False
        spas.append(_page(spa))
    return len(set(spas)) == len(spas)
