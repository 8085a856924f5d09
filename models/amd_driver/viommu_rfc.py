"""What AMD's June-2023 RFC driver does for its own ioctls (viommu.md §7.3; the Linux side of
``Iommufd.viommu_interface=rfc``).

Facts, not code: each function names the RFC patch its rules come from ([RFC-NN] = patch NN/21, viommu.md
§0). Where the effect is the later driver's (``viommu_hw``: a guest's maps in the private space, map
entries written through VFCtrl) the same helpers do it. The RFC's own differences:

* a guest is a GuestID from a global counter, not an iommufd object; nothing checks that the caller owns
  the GuestID or the host DeviceID it names (viommu.md §10.9);
* a new guest's DomainIDs map to host DomainID 0 (the later code: the parent's), and no RESET_VMMIO is sent;
* a device attach sets vImuEn, GuestID, GDeviceID and GV in the device's own DTE and makes it the
  translate DeviceID (GUEST_MISC_CONTROL); a domain attach maps the guest DomainID to the host DomainID in
  that DTE, so every guest domain of a device maps to its one host domain;
* the guest's command buffer is pinned by its VMM address and mapped into the guest's slot of the private
  space (GUEST_COMMAND_BUFFER), and the guest's register writes arrive as trapped MMIO accesses.

Readings of the driver layer choose between the RFC as coded and as intended where viommu.md §10 lists a
defect: ``rfc-destroy``, ``rfc-cmdbuf-stride``, ``rfc-domain-detach``. Bounds of the model (not the RFC's):
GuestIDs wrap after :data:`MAX_GID` (the guests whose MMIO block the boot-time private page holds), guest
DeviceIDs and DomainIDs below ``DriverConfig.viommu_ids``.
"""

from __future__ import annotations

import errno
from dataclasses import replace
from typing import Any

from amdvi.models import protocol
from amdvi.models.timeline import VfctrlWrite, VfWrite
from amdvi.spec import viommu as V
from amdvi.spec.bitvec import INT
from amdvi.spec.commands import EVERY_PAGE
from amdvi.spec.device_table import DTE
from amdvi.spec.mmio import CMD_BUF_BAR, CONTROL, EFR, EVT_LOG_BAR, OFFSETS, PPR_LOG_BAR

from . import page_table, viommu_hw
from .dte_update import read_dte, words
from .flush import domain_flush_pages, iommu_flush_dte
from .state import PAGE_BYTES, DriverState, RfcGuest, Work
from .viommu_hw import PRIVATE, ViommuError

MAX_GID = PAGE_BYTES // V.VFCTRL_BLOCK_BYTES - 1  # the model's counter wraps here (the RFC's at 0xFFFF)
CMD_BUFFER_MAXSIZE = V.GUEST_COMMAND_BUFFER.per_guest  # 512 KiB a guest [RFC-19]
VIOMMU_DTE_BITS = DTE.encode({"vImuEn": 1, "GuestID": 0xFFFF, "GDeviceID": 0xFFFF, "GV": 1})
EVERY_BYTE = 1 << 63


class KeptError(ViommuError):
    """An RFC error path that returns after work it does not undo."""


def _check_iommu(work: Work, iommu_id: int) -> None:
    """get_amd_iommu_from_devid: ENODEV unless ``iommu_id`` is the IOMMU's DeviceID [RFC-15..19]; the
    model also answers ENODEV when the HW-vIOMMU was not brought up (no private space)."""
    if iommu_id != work.config.iommu_device_id or PRIVATE not in work.domains:
        raise ViommuError(errno.ENODEV)


def _in_bounds(work: Work, guest_id: int) -> None:
    if guest_id >= work.config.viommu_ids:
        raise ViommuError(errno.EINVAL)  # the model's bound on guest DeviceIDs and DomainIDs


def _guest(work: Work, gid: int) -> RfcGuest:
    """The vminfo of ``gid``: EINVAL when there is none [RFC-15], [RFC-19]."""
    guest = work.rfc_guests.get(gid)
    if guest is None:
        raise ViommuError(errno.EINVAL)
    return guest


def _sync_map(work: Work, what: str) -> None:
    """iommu_map's iotlb_sync_map on the private domain: a flush only when the IOMMU caches non-present
    entries (amd_iommu_iotlb_sync_map)."""
    if work.config.np_cache:
        domain_flush_pages(work, PRIVATE, 0, EVERY_BYTE, f"{what}: iotlb_sync_map")


# -- VIOMMU_IOMMU_INIT / DESTROY -----------------------------------------------------------------------------


def next_gid(work: Work) -> int:
    """[RFC-15]: a global counter from 1 (0 is never given); once it has wrapped, GuestIDs still in use
    are skipped. The iommufd vIOMMUs' GuestIDs are always skipped (two kernels' allocators never meet)."""
    taken = {v.guest_id for v in work.viommus.values()}
    gid, wrapped = work.rfc_last_gid, work.rfc_wrapped
    for _ in range(MAX_GID):
        gid += 1
        if gid > MAX_GID:
            gid, wrapped = 1, True
        if gid not in taken and not (wrapped and gid in work.rfc_guests):
            work.rfc_last_gid, work.rfc_wrapped = gid, wrapped
            return gid
    raise ViommuError(errno.ENOSPC)  # every GuestID in use (the RFC would loop)


def iommu_init(work: Work, iommu_id: int) -> int:
    """[RFC-15] amd_viommu_iommu_init: a GuestID, private pages for its maps (no RESET_VMMIO: [RFC-11]
    defines it, nothing calls it), every guest DeviceID and DomainID written as cleared (host ID 0, V set).
    The command-buffer dirty bit it clears is not modelled (spec.viommu.DIRTY_STATUS)."""
    _check_iommu(work, iommu_id)
    gid = next_gid(work)
    what = "amd_viommu_iommu_init"
    pages = viommu_hw.map_guest_tables(work, gid, f"{what}: map DevID/DomID tables", flush=None)
    _sync_map(work, what)
    viommu_hw.clear_mapping(work, gid, 0, what)
    work.rfc_guests[gid] = RfcGuest(map_pages=pages)
    return gid


def iommu_destroy(work: Work, iommu_id: int, gid: int) -> None:
    """[RFC-15] amd_viommu_iommu_destroy. As coded (``rfc-destroy``) the guest is only marked not
    initialized: its GuestID and maps stay. Intended: the maps and the ring's slot unmapped, the GuestID free."""
    _check_iommu(work, iommu_id)
    guest = _guest(work, gid)
    if work.choices.rfc_destroy == "as-coded":
        work.rfc_guests[gid] = replace(guest, initialized=False)
        return
    what = "amd_viommu_iommu_destroy"
    _unmap_ring(work, gid, guest, what)
    viommu_hw.unmap_guest_tables(work, gid, guest.map_pages, what, flush="iotlb_sync")
    del work.rfc_guests[gid]


# -- VIOMMU_DEVICE_ATTACH / DETACH ------------------------------------------------------------------------


def _set_dte_viommu(work: Work, device_id: int, ids: tuple[int, int] | None, what: str) -> None:
    """[RFC-16] set_dte_viommu / its clear: vImuEn, GuestID and GDeviceID in DTE[3], then GV in DTE[0]
    (each one 64-bit store), INVALIDATE_DEVTAB_ENTRY, no wait."""
    new = read_dte(work, device_id) & ~VIOMMU_DTE_BITS
    if ids is not None:
        new |= DTE.encode({"vImuEn": 1, "GuestID": ids[0] & 0xFFFF, "GDeviceID": ids[1], "GV": 1})
    at, w = work.config.layout.dte_address(device_id), words(new)
    work.store(((at + 24, w[3]),), f"{what}: DTE[3] vIOMMU bits")
    work.store(((at, w[0]),), f"{what}: DTE[0] GV")
    iommu_flush_dte(work, device_id, what)


def device_update(work: Work, iommu_id: int, gid: int, hdev_id: int, gdev_id: int, attach: bool) -> None:
    """[RFC-16] amd_viommu_device_update. Attach: the DTE's vIOMMU bits cleared then set, the DeviceID map
    entry, GUEST_MISC_CONTROL = the device (its DTE translates the vIOMMU's guest-physical accesses), then
    the device's host domain flushed for PASID 0 and waited for; a device on no paging domain is EINVAL
    after all the writes (kept). Detach: the bits cleared, the entry cleared. The GuestID is not checked."""
    _check_iommu(work, iommu_id)
    _in_bounds(work, gdev_id)
    what = f"amd_viommu_device_update({'attach' if attach else 'detach'})"
    _set_dte_viommu(work, hdev_id, None, what)
    guest = work.rfc_guests.get(gid)
    if not attach:
        work.steps.append(VfctrlWrite(viommu_hw.device_map_writes(gid, {gdev_id: 0}), f"{what}: clear DevID map"))
        if guest is not None:
            work.rfc_guests[gid] = replace(guest, devices={g: h for g, h in guest.devices.items() if g != gdev_id})
        return
    _set_dte_viommu(work, hdev_id, (gid, gdev_id), what)
    work.steps.append(VfctrlWrite(viommu_hw.device_map_writes(gid, {gdev_id: hdev_id}), f"{what}: DevID map"))
    work.steps.append(VfctrlWrite(((gid, 0x10, V.MISC_CONTROL.encode(TranslateDeviceID=hdev_id)),),
                                  f"{what}: GUEST_MISC_CONTROL"))
    if guest is not None:
        work.rfc_guests[gid] = replace(guest, devices={**guest.devices, gdev_id: hdev_id}, translate_device_id=hdev_id)
    domain = work.device_state(hdev_id).domain
    if domain is None:
        raise KeptError(errno.EINVAL)
    work.queue(protocol.invalidate_iommu_pages(INT, work.paging(domain).domain_id, EVERY_PAGE, pasid=0),
               f"{what}: amd_iommu_flush_tlb(PASID 0)")
    work.completion_wait(f"{what}: amd_iommu_flush_tlb")


# -- VIOMMU_DOMAIN_ATTACH / DETACH ------------------------------------------------------------------------


def domain_update(work: Work, iommu_id: int, gid: int, gdev_id: int, gdom_id: int, attach: bool) -> None:
    """[RFC-17] amd_viommu_domain_update: the host DeviceID the guest's DeviceID map gives ``gdev_id`` (0
    when unmapped), the DomainID of that device's DTE, then the DomainID map entry (set, or cleared to 0;
    ``rfc-domain-detach=as-coded``: written to the wrong guest). An unknown GuestID is EINVAL (the model's
    answer: the RFC reads that guest's DeviceID map)."""
    _check_iommu(work, iommu_id)
    _in_bounds(work, gdom_id)
    hdev_id = _guest(work, gid).devices.get(gdev_id, 0)
    hdom_id = DTE.view(read_dte(work, hdev_id))["DomainID"]
    what = f"amd_viommu_domain_update({'attach' if attach else 'detach'})"
    if attach:
        target, entry = gid, {gdom_id: hdom_id}
    elif work.choices.rfc_domain_detach == "as-coded":
        target, entry = hdom_id, {gdom_id: gid}
    else:
        target, entry = gid, {gdom_id: 0}
    work.steps.append(VfctrlWrite(viommu_hw.domain_map_writes(target, entry), f"{what}: DomID map"))


# -- VIOMMU_MMIO_ACCESS ----------------------------------------------------------------------------------
# [RFC-18] (viommu.md §7.4): guest Control fields -> (VFCtrl register, its field); a base register's length
# (bits 59:56) -> (VFCtrl register, its length field); the command-buffer head and tail -> the VF page.
# Event log B and PPR log B bases (0xF8, 0xF0: [RFC-14]) have the layout of the A logs'.
CONTROL_FIELDS = (("CmdBufEn", 0x20, "CmdBufEn"), ("ComWaitIntEn", 0x20, "ComWaitIntEn"),
                  ("EventLogEn", 0x28, "EventLogEn"), ("EventIntEn", 0x28, "EventIntEn"),
                  ("DualEventLogEn", 0x28, "DualEvtLogEn"), ("PPRLogEn", 0x30, "PPRLogEn"),
                  ("PprIntEn", 0x30, "PPRIntEn"), ("PPREn", 0x30, "PPREn"), ("DualPprLogEn", 0x30, "DualPprLogEn"),
                  ("PprAutoRspEn", 0x30, "PPRAutoRspEn"), ("BlkStopMrkEn", 0x30, "BlkStopMrkEn"),
                  ("PprAutoRspAon", 0x30, "PPRAutoRspAon"))  # Aon: Control bit 42 (48 in the RFC's header)
EVT_LOG_B_BAR, PPR_LOG_B_BAR = 0xF8, 0xF0
BASE_LENGTHS = {OFFSETS["CMD_BUF_BAR"]: (CMD_BUF_BAR.field("ComLen"), 0x20, "ComLen"),
                OFFSETS["EVT_LOG_BAR"]: (EVT_LOG_BAR.field("EventLen"), 0x28, "EventLen"),
                EVT_LOG_B_BAR: (EVT_LOG_BAR.field("EventLen"), 0x28, "EventLenB"),
                OFFSETS["PPR_LOG_BAR"]: (PPR_LOG_BAR.field("PPRLogLen"), 0x30, "PPRLogLen"),
                PPR_LOG_B_BAR: (PPR_LOG_BAR.field("PPRLogLen"), 0x30, "PPRLogLenB")}
VF_REGISTERS = {OFFSETS["CMD_BUF_HEAD"]: 0x00, OFFSETS["CMD_BUF_TAIL"]: 0x08}
VF_KEY = 0x1000  # RfcGuest.registers keeps VF offset o at VF_KEY + o
# the EFR a guest reads ([RFC-09], [RFC-18]): guest translation, GIoV, 5-level guest tables, 16-bit PASIDs
GUEST_EFR = EFR.encode({"GTSup": 1, "GIoSup": 1, "GATS": 1, "GLXSup": 0, "PASmax": 0xF})


def _deposit(value: int, register: int, name: str, field_value: int) -> int:
    f = V.VFCTRL_OFFSETS[register].field(name)
    return (value & ~f.mask) | ((field_value << f.lo) & f.mask)


def _vfctrl_field(registers: dict[int, int], register: int, name: str) -> int:
    return V.VFCTRL_OFFSETS[register].field(name).read(registers.get(register, 0))


def _guest_write(registers: dict[int, int], offset: int, value: int) -> dict[int, int]:
    """The registers a guest MMIO write changes (read-modify-write of the driver's last values)."""
    if offset == OFFSETS["CONTROL"]:
        out = {r: registers.get(r, 0) for r in (0x20, 0x28, 0x30)}
        for guest_field, register, name in CONTROL_FIELDS:
            out[register] = _deposit(out[register], register, name, CONTROL.field(guest_field).read(value))
        return out
    if offset in BASE_LENGTHS:
        length, register, name = BASE_LENGTHS[offset]
        return {register: _deposit(registers.get(register, 0), register, name, length.read(value))}
    if offset in VF_REGISTERS:
        pointer = V.VF_CMD_HEAD.field("Pointer")
        return {VF_KEY + VF_REGISTERS[offset]: value & pointer.mask}
    return {}  # any other offset is ignored [RFC-18]


def _guest_read(registers: dict[int, int], offset: int) -> int:
    """Reads invert the writes' mapping; EFR is the synthesized one; any other offset reads 0. (The RFC's
    PPR-B read ORs into the caller's value, viommu.md §10.8: not modelled.)"""
    if offset == OFFSETS["CONTROL"]:
        return CONTROL.encode({g: _vfctrl_field(registers, r, n) for g, r, n in CONTROL_FIELDS})
    if offset in BASE_LENGTHS:
        length, register, name = BASE_LENGTHS[offset]
        return _vfctrl_field(registers, register, name) << length.lo
    if offset in VF_REGISTERS:
        return registers.get(VF_KEY + VF_REGISTERS[offset], 0)
    return GUEST_EFR if offset == OFFSETS["EFR"] else 0


def mmio_access(work: Work, iommu_id: int, gid: int, offset: int, value: int, write: bool) -> int:
    """[RFC-18] amd_viommu_guest_mmio_write / _read for a GuestID (not checked). The driver reads back
    what it last wrote: the hardware's own head moves are not seen (a head read is the last head written)."""
    _check_iommu(work, iommu_id)
    guest = work.rfc_guests.get(gid)
    registers = dict(guest.registers) if guest is not None else {}
    if not write:
        return _guest_read(registers, offset)
    changed = _guest_write(registers, offset, value)
    what = f"amd_viommu_guest_mmio_write({offset:#x})"
    vfctrl = tuple((gid, r, v) for r, v in sorted(changed.items()) if r < VF_KEY)
    if vfctrl:
        work.steps.append(VfctrlWrite(vfctrl, what))
    for r, v in changed.items():
        if r >= VF_KEY:
            work.steps.append(VfWrite(gid, r - VF_KEY, v, what))
    if guest is not None:
        work.rfc_guests[gid] = replace(guest, registers={**registers, **changed})
    return 0


# -- VIOMMU_CMDBUF_UPDATE ---------------------------------------------------------------------------------


def ring_page_addresses(work: Work, hva: int, count: int) -> tuple[int, ...]:
    """The VMM address pinned for each page of the ring: hva + i pages, or as coded ([RFC-19],
    ``rfc-cmdbuf-stride``) hva advanced by i pages at step i."""
    if work.choices.rfc_cmdbuf_stride == "as-coded":
        return tuple(hva + PAGE_BYTES * (i * (i + 1) // 2) for i in range(count))
    return tuple(hva + PAGE_BYTES * i for i in range(count))


def _pinnable(user_memory: tuple[tuple[int, int], ...], page: int) -> bool:
    return any(base <= page and page + PAGE_BYTES <= base + size for base, size in user_memory)


def _unmap_ring(work: Work, gid: int, guest: RfcGuest, what: str) -> None:
    """The guest's ring pages out of its private slot, flushed; the table pages freed after the flush."""
    if not guest.cmdbuf_pages:
        return
    freed = page_table.unmap_range(work, PRIVATE, V.GUEST_COMMAND_BUFFER.address(gid),
                                   PAGE_BYTES * len(guest.cmdbuf_pages), f"{what}: unmap ring")
    domain_flush_pages(work, PRIVATE, 0, EVERY_BYTE, f"{what}: iotlb_sync")
    work.free_pages(freed)


def cmdbuf_update(work: Work, iommu_id: int, gid: int, size: int, hva: int,
                  user_memory: tuple[tuple[int, int], ...]) -> None:
    """[RFC-19] amd_viommu_cmdbuf_update: ``size >> 12`` pages pinned from the VMM's memory, page i mapped
    at GUEST_COMMAND_BUFFER + GuestID x 512 KiB + i x 4 KiB. EINVAL for an unknown GuestID and a page that
    cannot be pinned (the RFC pins and maps page by page and undoes on failure: the model checks every
    page first and changes nothing). The model's own rules: a ring over 512 KiB is EINVAL; a ring mapped
    before is unmapped first."""
    _check_iommu(work, iommu_id)
    guest = _guest(work, gid)
    pages = tuple(a & ~(PAGE_BYTES - 1) for a in ring_page_addresses(work, hva, size >> 12))
    if size > CMD_BUFFER_MAXSIZE or not all(_pinnable(user_memory, p) for p in pages):
        raise ViommuError(errno.EINVAL)
    what = "amd_viommu_cmdbuf_update"
    _unmap_ring(work, gid, guest, what)
    for i, page in enumerate(pages):
        if page_table.map_page(work, PRIVATE, V.GUEST_COMMAND_BUFFER.address(gid) + PAGE_BYTES * i, page, True,
                               True, f"{what}: map ring page {i}"):
            raise ViommuError(errno.EINVAL)
    _sync_map(work, what)
    work.rfc_guests[gid] = replace(guest, cmdbuf=(hva, size), cmdbuf_pages=pages)


# -- what the properties read ---------------------------------------------------------------------------------


def guest_ownership(state: DriverState, layout: Any) -> dict[int, tuple[frozenset[int], frozenset[int]]]:
    """What the RFC gave each of its guests: the host DeviceIDs attached to it (none once destroyed), and
    the host DomainIDs their DTEs carry now (a domain attach maps to those), with 0, the cleared entry's
    (DomainID 0 is never allocated: ``domain_ids``)."""
    out = {}
    for gid, guest in state.rfc_guests.items():
        devices = frozenset(guest.devices.values()) if guest.initialized else frozenset()
        domains = {DTE.view(_dte(state, layout, d))["DomainID"] for d in devices}
        out[gid] = (devices, frozenset(domains | {0}))
    return out


def _dte(state: DriverState, layout: Any, device_id: int) -> int:
    at = layout.dte_address(device_id)
    return sum(state.memory.get(at + 8 * i, 0) << (64 * i) for i in range(4))
