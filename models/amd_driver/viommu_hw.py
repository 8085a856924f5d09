"""What AMD's work-in-progress driver does to program the HW-vIOMMU (reading ``hw-viommu=amd-wip``).

Facts: ``papers/sources/viommu-amdese-facts.md`` (AMDESE/linux-iommu, read for sequences; each step
below names the function it models) and ``shared/reference/viommu.md``. The private address space is
a v1 paging domain of the driver's own (handle :data:`PRIVATE`, DomainID :data:`PRIVATE_DOMAIN_ID`),
mapped through the IOMMU's own DTE at boot; a vIOMMU's maps get private pages when it is created.

The model covers guest DeviceIDs and DomainIDs below ``DriverConfig.viommu_ids``: the maps' pre-fill
(``viommu_clear_mapping``, 65536 entries each in the driver) writes those, and a vDEVICE or a nested
domain with a larger guest ID is refused (EINVAL, the model's bound, not Linux's).
"""

from __future__ import annotations

import errno
from dataclasses import replace
from typing import Any

from amdvi.models import protocol
from amdvi.models.timeline import VfctrlWrite
from amdvi.spec import viommu as V
from amdvi.spec.bitvec import INT
from amdvi.spec.device_table import DTE
from amdvi.spec.mmio import ENTRY_BYTES as RING_ENTRY_BYTES

from . import page_table
from .dte_update import amd_iommu_update_dte, v1_fields
from .flush import domain_flush_pages
from .state import PAGE_BYTES, PagingDomain, Work

PRIVATE = -1  # the driver's handle of the private domain
PRIVATE_DOMAIN_ID = 0xFFFE  # reserved at boot (the model's choice of ID)
EVERY_PAGE_SIZE = 1 << 63


class ViommuError(Exception):
    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def boot_private_space(work: Work) -> None:
    """IOMMU start-up (amd_viommu_init): the private domain, the IOMMU's own DTE pointing at it, and
    the private page of every guest's MMIO block mapped (the first 64 GuestIDs share one page)."""
    root = work.alloc_page("amd_viommu_init: private table root")
    assert root is not None
    work.domains[PRIVATE] = PagingDomain(PRIVATE_DOMAIN_ID, root, 3, iommu_refs=1)
    _map_private(work, V.GUEST_MMIO.base, "amd_viommu_init: guest MMIO region")
    dte = DTE.encode(v1_fields(work.paging(PRIVATE), PRIVATE_DOMAIN_ID, False))
    for i in range(4):
        word = (dte >> (64 * i)) & ((1 << 64) - 1)
        if word:
            work.memory[work.config.layout.dte_address(work.config.iommu_device_id) + 8 * i] = word


def _map_private(work: Work, ipa: int, what: str) -> int:
    """A zeroed pool page mapped at private address ``ipa`` (tables allocated on the way)."""
    frame = work.alloc_page(f"{what}: backing page")
    if frame is None or page_table.map_page(work, PRIVATE, ipa, frame, True, True, what):
        raise ViommuError(errno.ENOMEM)
    return frame


def _map_writes(guest_id: int, control: Any, guest_field: str, host_field: str, entries: dict[int, int]) -> tuple:
    offset = next(o for o, s in V.VFCTRL_OFFSETS.items() if s is control)
    return tuple((guest_id, offset, control.encode({"V": 1, "Write": 1, guest_field: g, host_field: h}))
                 for g, h in sorted(entries.items()))


def device_map_writes(guest_id: int, entries: dict[int, int]) -> tuple:
    """GUEST_DID_MAP_CONTROL0 writes (amd_viommu_set_device_mapping; host 0 clears, V still 1)."""
    return _map_writes(guest_id, V.DID_MAP_CONTROL, "GuestDeviceID", "HostDeviceID", entries)


def domain_map_writes(guest_id: int, entries: dict[int, int]) -> tuple:
    """GUEST_DID_MAP_CONTROL1 writes (amd_viommu_set_domain_mapping)."""
    return _map_writes(guest_id, V.DOMID_MAP_CONTROL, "GuestDomainID", "HostDomainID", entries)


def clear_mapping(work: Work, guest_id: int, parent_domain_id: int, what: str) -> None:
    """viommu_clear_mapping: every guest DeviceID to host 0, every guest DomainID to the parent's ID (the
    RFC's, viommu.md §4: to host DomainID 0)."""
    n = work.config.viommu_ids
    work.steps.append(VfctrlWrite(device_map_writes(guest_id, dict.fromkeys(range(n), 0))
                                  + domain_map_writes(guest_id, dict.fromkeys(range(n), parent_domain_id)),
                                  f"{what}: viommu_clear_mapping"))


def _free_id(used: set[int], candidates: range) -> int | None:
    return next((i for i in candidates if i not in used), None)


def viommu_init(work: Work, handle: int) -> None:
    """amd_iommufd_viommu_init (AMD's tree): a GuestID, a translate DeviceID, RESET_VMMIO, the maps'
    private pages, the maps pre-filled, the translate DTE (the parent's stage 2), VFCtrl MISC."""
    entry = work.viommus[handle]
    parent = work.paging(entry.parent)
    config = work.config
    what = "amd_iommufd_viommu_init"
    gid = _free_id({v.guest_id for v in work.viommus.values()} | set(work.rfc_guests), range(1, V.MAX_GUESTS))
    taken = {rid for d in work.devices.values() if d.pci for rid in d.pci.requester_ids}
    taken |= {v.translate_device_id for v in work.viommus.values()} | {config.iommu_device_id}
    top = config.layout.dev_tab_pages * (PAGE_BYTES // 32) - 1
    tid = _free_id(taken, range(top, 0, -1))  # amd_iommu_trans_devid_alloc: from the top down
    if gid is None or tid is None:
        raise ViommuError(errno.ENOSPC)
    work.queue(protocol.reset_vmmio(INT, gid), f"{what}: amd_iommu_reset_vmmio")
    work.completion_wait(f"{what}: amd_iommu_reset_vmmio")
    map_pages = map_guest_tables(work, gid, f"{what}: amd_viommu_init_one: map DevID/DomID tables",
                                 flush="amd_iommu_flush_private_vm_region")
    clear_mapping(work, gid, parent.domain_id, what)
    translate = DTE.encode({**v1_fields(parent, parent.domain_id, False), "I": 0})
    amd_iommu_update_dte(work, tid, translate, f"{what}: amd_iommu_set_translate_dte")
    work.steps.append(VfctrlWrite(((gid, 0x10, V.MISC_CONTROL.encode(TranslateDeviceID=tid)),),
                                  f"{what}: amd_iommu_update_vfctrl_mmio_translate_devid"))
    work.viommus[handle] = replace(entry, guest_id=gid, translate_device_id=tid, map_pages=map_pages)


def map_guest_tables(work: Work, gid: int, what: str, *, flush: str | None) -> tuple[int, ...]:
    """A guest's DeviceID and DomainID maps get zeroed private pages (the pages a model-bound map covers);
    ``flush`` names the private-domain flush that follows (None: none). The pool pages it took."""
    before = set(work.pool_used)
    for region in (V.DEVID_MAP, V.DOMID_MAP):
        last = region.address(gid, work.config.viommu_ids - 1)
        for ipa in range(region.address(gid), last + 1, PAGE_BYTES):
            _map_private(work, ipa, what)
    if flush:
        domain_flush_pages(work, PRIVATE, 0, EVERY_PAGE_SIZE, f"{what}: {flush}")
    return tuple(sorted(set(work.pool_used) - before))


def unmap_guest_tables(work: Work, gid: int, pages: tuple[int, ...], what: str, *,
                       flush: str = "amd_iommu_flush_private_vm_region") -> None:
    """A guest's maps unmapped from the private space, the private domain flushed (``flush`` names how),
    their pages freed."""
    for region in (V.DEVID_MAP, V.DOMID_MAP):
        page_table.unmap_range(work, PRIVATE, region.address(gid),
                               region.address(gid, work.config.viommu_ids - 1) - region.address(gid) + PAGE_BYTES,
                               f"{what}: unmap tables")
    domain_flush_pages(work, PRIVATE, 0, EVERY_PAGE_SIZE, f"{what}: {flush}")
    work.free_pages(pages)


def viommu_destroy(work: Work, handle: int) -> None:
    """amd_iommufd_viommu_destroy (AMD's tree): the maps unmapped and freed, MISC cleared, the maps
    pre-filled again, the translate DTE cleared; the IDs go back."""
    entry = work.viommus[handle]
    parent = work.paging(entry.parent)
    what = "amd_iommufd_viommu_destroy: amd_viommu_uninit_one"
    gid = entry.guest_id
    unmap_guest_tables(work, gid, entry.map_pages, what)
    work.steps.append(VfctrlWrite(((gid, 0x10, 0),), f"{what}: clear VFCtrl MISC"))
    clear_mapping(work, gid, parent.domain_id, what)
    amd_iommu_update_dte(work, entry.translate_device_id, 0, "amd_iommufd_viommu_destroy: amd_iommu_clear_translate_dte")


def _in_bounds(work: Work, guest_id: int) -> None:
    if not 0 <= guest_id < work.config.viommu_ids:
        raise ViommuError(errno.EINVAL)


def vdevice_init(work: Work, handle: int, device_id: int, virt_id: int) -> None:
    """_amd_viommu_vdevice_init: the guest DeviceID (virt_id, kept as 16 bits) maps to the device."""
    entry = work.viommus[handle]
    guest_device = virt_id & 0xFFFF
    _in_bounds(work, guest_device)
    work.steps.append(VfctrlWrite(device_map_writes(entry.guest_id, {guest_device: device_id}),
                                  "_amd_viommu_vdevice_init: amd_viommu_set_device_mapping"))
    work.viommus[handle] = replace(entry, vdevices={**entry.vdevices, guest_device: device_id})


def vdevice_destroy(work: Work, handle: int, virt_id: int) -> None:
    """No hook in AMD's tree (reading ``devid-map-on-destroy``): the entry is cleared or stays."""
    entry = work.viommus[handle]
    guest_device = virt_id & 0xFFFF
    if work.choices.devid_map_on_destroy == "cleared":
        work.steps.append(VfctrlWrite(device_map_writes(entry.guest_id, {guest_device: 0}),
                                      "vdevice destroy: amd_viommu_clear_device_mapping"))
    work.viommus[handle] = replace(entry, vdevices={g: d for g, d in entry.vdevices.items() if g != guest_device})


QUEUE_REGISTERS = {2: (0x20, V.CMD_CONTROL, "ComLen", "CmdBufEn"), 3: (0x28, V.EVT_CONTROL, "EventLen", "EventLogEn"),
                   4: (0x30, V.PPR_CONTROL, "PPRLogLen", "PPRLogEn")}  # HW queue type -> VFCtrl register


def hw_queue_init(work: Work, handle: int, queue_type: int, base: int, length: int) -> None:
    """hw_queue_init: the queue's guest physical base and log2 length into the guest's VFCtrl register,
    enabled (AMD's tree takes the enables from the queue's flags; QEMU sets them as the guest does)."""
    if queue_type not in QUEUE_REGISTERS:
        raise ViommuError(errno.EINVAL)
    entries = length // RING_ENTRY_BYTES
    if base % PAGE_BYTES or length % PAGE_BYTES or entries & (entries - 1) or not 256 <= entries <= 1 << 15:
        raise ViommuError(errno.EINVAL)  # a power-of-two ring of 256 to 32768 entries (the length field)
    offset, register, length_field, enable = QUEUE_REGISTERS[queue_type]
    value = register.encode({length_field: entries.bit_length() - 1, enable: 1, "Base": base >> 12})
    entry = work.viommus[handle]
    work.steps.append(VfctrlWrite(((entry.guest_id, offset, value),), "hw_queue_init: amd_viommu_set_buf"))


def nested_dte_fields(work: Work, handle: int, device_id: int) -> dict[str, int]:
    """set_dte_nested's vIOMMU bits: vImuEn, GuestID and the device's guest DeviceID (when the device
    is a vDEVICE of the vIOMMU)."""
    entry = work.viommus[handle]
    guest_device = next((g for g, d in entry.vdevices.items() if d == device_id), None)
    if not entry.guest_id or guest_device is None:
        return {}
    return {"vImuEn": 1, "GuestID": entry.guest_id, "GDeviceID": guest_device}


def map_domain(work: Work, handle: int, guest_domain: int, host_domain: int, what: str) -> None:
    """amd_viommu_domain_id_update: the guest DomainID's map entry names ``host_domain``."""
    entry = work.viommus[handle]
    if entry.guest_id:
        work.steps.append(VfctrlWrite(domain_map_writes(entry.guest_id, {guest_domain: host_domain}), what))
