"""The VFIO cdev calls: bind, attach / replace, detach, close (vfio device_cdev.c, iommufd device.c).

Facts from iommufd.md §3 "Device binding and attach" and iommufd-errnos.md §4.1, §4.6. The VFIO-side
errnos (bad argsz or flags, a call on an unbound cdev: EINVAL; a second bind: EINVAL) are VFIO's
usual answers, recalled rather than read in the references.
"""

from __future__ import annotations

import errno
from dataclasses import replace
from typing import Any

from amdvi.models.iommufd.choices import Iommufd
from amdvi.models.iommufd.domains import add_domain, destroy_paging
from amdvi.models.iommufd.errors import Fail, Session
from amdvi.models.iommufd.objects import (Device, HwptNested, HwptPaging, IommufdState, Ioas, device_ioas,
                                          intersects, paging_of, users, vdevice_of)
from amdvi.models.iommufd.uapi import (VFIO_DEVICE_ATTACH_PASID, DeviceAttach, DeviceBind, DeviceDetach,
                                       DeviceUnbind)

Result = tuple[IommufdState, dict[str, Any]]


def bound_device(state: IommufdState, name: str) -> tuple[int, Device] | None:
    return next(((i, d) for i, d in state.of_kind(Device) if d.pci.name == name), None)


def _check_vfio(call: Any) -> None:
    if call.argsz < call.min_size or call.flags & ~VFIO_DEVICE_ATTACH_PASID:
        raise Fail(errno.EINVAL)
    if call.flags & VFIO_DEVICE_ATTACH_PASID:
        raise Fail(errno.EOPNOTSUPP)  # PASID attach: not modelled


def device_bind(session: Session, state: IommufdState, call: DeviceBind, choices: Iommufd) -> Result:
    """Binding claims DMA ownership, which puts the device in the blocking domain."""
    if call.argsz < call.min_size or call.flags:
        raise Fail(errno.EINVAL)
    pci = state.scenario.device(call.device)
    if pci is None:
        raise Fail(errno.ENOENT)  # no such cdev
    if bound_device(state, call.device):
        raise Fail(errno.EINVAL)  # one device cannot be bound twice
    new_id = state.next_id()
    session.call("block", pci)
    return state.put(new_id, Device(pci)), {"out_devid": new_id}


def _bound(state: IommufdState, name: str) -> tuple[int, Device]:
    found = bound_device(state, name)
    if found is None:
        raise Fail(errno.EINVAL)  # VFIO: the cdev has no access granted until bound
    return found


def device_attach(session: Session, state: IommufdState, call: DeviceAttach, choices: Iommufd) -> Result:
    """Attach, or replace when attached (iommufd_device_change_pt). pt_id is written back as the HWPT."""
    _check_vfio(call)
    device_id, device = _bound(state, call.device)
    target = state.get(call.pt_id)
    if target is None:
        raise Fail(errno.ENOENT)  # iommufd_get_object, main.c 175-178
    if isinstance(target, Ioas):
        state, hwpt_id = _attach_auto(session, state, device_id, call.pt_id)
    elif isinstance(target, (HwptPaging, HwptNested)):
        state = attach_hwpt(session, state, device_id, call.pt_id)
        hwpt_id = call.pt_id
    else:
        raise Fail(errno.EINVAL)  # neither an IOAS nor a HWPT
    return state, {"pt_id": hwpt_id}


def _reserve_for(state: IommufdState, device_id: int, ioas_id: int) -> None:
    """The device's reserved regions join the IOAS: refused when one meets an area or an allowed range
    (io_pagetable.c 893-895)."""
    device: Device = state.get(device_id)
    if device_ioas(state, device) == ioas_id:
        return  # already reserved there
    ioas: Ioas = state.get(ioas_id)
    used = [(a.iova, a.last) for a in ioas.areas] + list(ioas.allowed)
    for region in state.scenario.reserved_regions.get(device.pci.name, ()):
        if any(intersects(region, u) for u in used):
            raise Fail(errno.EADDRINUSE)


def attach_hwpt(session: Session, state: IommufdState, device_id: int, hwpt_id: int) -> IommufdState:
    """Attach or replace to ``hwpt_id``: reserve in its IOAS, then the driver attaches; the old HWPT is
    released (an automatic one dies with its last device). Replacing with the same HWPT does nothing."""
    device: Device = state.get(device_id)
    if device.hwpt == hwpt_id:
        return state
    _reserve_for(state, device_id, paging_of(state, hwpt_id)[1].ioas)
    session.call("attach", device.pci, state.get(hwpt_id).domain)
    return release(session, state.put(device_id, replace(device, hwpt=hwpt_id)), device.hwpt)


def release(session: Session, state: IommufdState, old_hwpt: int | None) -> IommufdState:
    """After a device left ``old_hwpt``: an automatic HWPT nobody uses any more is destroyed
    (iommufd-errnos.md §4.1)."""
    old = state.get(old_hwpt) if old_hwpt is not None else None
    if isinstance(old, HwptPaging) and old.auto_domain and users(state, old_hwpt) == 1:
        state = destroy_paging(session, state, old_hwpt)
    return state


def _attach_auto(session: Session, state: IommufdState, device_id: int, ioas_id: int) -> tuple[IommufdState, int]:
    """iommufd_device_auto_get_domain: reuse the first automatic HWPT of the IOAS the driver accepts
    (EINVAL means incompatible: try the next; any other error fails), else make one. A first attach
    attaches before filling the new domain; a replace fills it first."""
    device: Device = state.get(device_id)
    for hwpt_id, hwpt in state.of_kind(HwptPaging):
        if hwpt.ioas != ioas_id or not hwpt.auto_domain:
            continue
        if device.hwpt == hwpt_id:
            return state, hwpt_id
        _reserve_for(state, device_id, ioas_id)
        result = session.attempt("attach", device.pci, hwpt.domain)
        if result.errno == errno.EINVAL:
            continue
        if result.errno:
            raise Fail(result.errno)
        return release(session, state.put(device_id, replace(device, hwpt=hwpt_id)), device.hwpt), hwpt_id
    immediate = device.hwpt is None
    state, hwpt_id = new_paging(session, state, ioas_id, device.pci, nest_parent=False, dirty_tracking=False,
                                pasid=False, auto_domain=True, attach_first=device_id if immediate else None)
    if not immediate:
        state = attach_hwpt(session, state, device_id, hwpt_id)
    return state, hwpt_id


def new_paging(session: Session, state: IommufdState, ioas_id: int, pci: Any, *, nest_parent: bool,
               dirty_tracking: bool, pasid: bool, auto_domain: bool,
               attach_first: int | None = None) -> tuple[IommufdState, int]:
    """iommufd_hwpt_paging_alloc: the id, the driver's domain, then (for an immediate attach) the
    device's attach, then the domain joins the IOAS (filled with every area)."""
    hwpt_id = state.next_id()
    domain = session.call("domain_alloc_paging", pci, nest_parent=nest_parent, dirty_tracking=dirty_tracking,
                          pasid=pasid)
    state = state.put(hwpt_id, HwptPaging(ioas_id, domain, nest_parent=nest_parent, auto_domain=auto_domain))
    if attach_first is not None:
        _reserve_for(state, attach_first, ioas_id)
        session.call("attach", pci, domain)
        state = state.put(attach_first, replace(state.get(attach_first), hwpt=hwpt_id))
    return add_domain(session, state, ioas_id, hwpt_id), hwpt_id


def device_detach(session: Session, state: IommufdState, call: DeviceDetach, choices: Iommufd) -> Result:
    """The device goes to the blocking domain; detaching a detached device is a silent success."""
    _check_vfio(call)
    device_id, device = _bound(state, call.device)
    return detach(session, state, device_id), {}


def detach(session: Session, state: IommufdState, device_id: int) -> IommufdState:
    device: Device = state.get(device_id)
    if device.hwpt is None:
        return state
    session.call("block", device.pci)
    return release(session, state.put(device_id, replace(device, hwpt=None)), device.hwpt)


def device_unbind(session: Session, state: IommufdState, call: DeviceUnbind, choices: Iommufd) -> Result:
    """Closing the cdev: detach, tombstone the vDEVICE (its id answers ENOENT and is not reused), and
    destroy the DEVICE (iommufd.md §3 VDEVICE_ALLOC; iommufd-errnos.md §4.10)."""
    device_id, _ = _bound(state, call.device)
    state = detach(session, state, device_id)
    vdevice_id = vdevice_of(state, device_id)
    if vdevice_id is not None:
        state = replace(state.drop(vdevice_id), tombstones=state.tombstones | {vdevice_id})
    return state.drop(device_id), {}
