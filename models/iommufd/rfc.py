"""The June-2023 AMD HW-vIOMMU RFC's ioctls on /dev/iommu (viommu.md §7; never merged).

[RFC-21] adds a second dispatcher to iommufd: a command number outside iommufd's own table goes to AMD's
dispatcher first, and only its 0 is returned; anything else falls through to the VFIO-compat handler
(``Iommufd.rfc_dispatch``). AMD's dispatcher applies its own size rules (:func:`dispatcher_errno`), then
a handler here hands the struct's fields to the driver's RFC operations
(``driver_api.RfcViommuDriver``), which decide the errnos of §7.3. The RFC keeps no iommufd object: its
guests live in the AMD driver, named by GuestID, and nothing checks that a GuestID or a host DeviceID
belongs to the caller (viommu.md §10.9).
"""

from __future__ import annotations

import errno
from typing import Any

from amdvi.models.iommufd.choices import Iommufd
from amdvi.models.iommufd.errors import Fail, Session
from amdvi.models.iommufd.objects import IommufdState
from amdvi.models.iommufd.uapi import (VFIO_CHECK_EXTENSION, VFIO_GET_API_VERSION, VFIO_SET_IOMMU, RfcCall,
                                       RfcCmdbufUpdate, RfcDeviceAttach, RfcDeviceDetach, RfcDomainAttach,
                                       RfcDomainDetach, RfcIommuDestroy, RfcIommuInit, RfcMmioAccess)

Result = tuple[IommufdState, dict[str, Any]]

# iommufd_vfio_ioctl (drivers/iommu/iommufd/vfio_compat.c) on the RFC's numbers: GET_API_VERSION returns
# VFIO_API_VERSION (0); CHECK_EXTENSION takes the argument pointer as the extension and answers 0 (not one it
# knows); SET_IOMMU takes it as the IOMMU type, not TYPE1 or TYPE1v2: EINVAL. Any other number:
# ENOIOCTLCMD, which vfs_ioctl (fs/ioctl.c) returns as ENOTTY.
_VFIO_COMPAT = {VFIO_GET_API_VERSION: 0, VFIO_CHECK_EXTENSION: 0, VFIO_SET_IOMMU: errno.EINVAL}


def vfio_compat_errno(number: int) -> int:
    """What the caller gets when iommufd hands an RFC number to its VFIO-compat handler."""
    return _VFIO_COMPAT.get(number, errno.ENOTTY)


def dispatcher_errno(call: RfcCall) -> int:
    """AMD's dispatcher before the handler ([RFC-21] iommufd_amd_viommu_ioctl): size unreadable: EFAULT;
    below min_size: EOPNOTSUPP (iommufd's own dispatcher says EINVAL); non-zero bytes past the struct
    (copy_struct_from_user): E2BIG."""
    if call.unreadable:
        return errno.EFAULT
    if call.size < call.min_size:
        return errno.EOPNOTSUPP
    if call.size > call.struct_size and call.trailing_nonzero:
        return errno.E2BIG
    return 0


def masked_errno(call: RfcCall, code: int, choices: Iommufd) -> int:
    """The errno the caller sees for AMD's ``code``: under ``rfc-dispatch=as-coded`` only a 0 passes
    iommufd_fops_ioctl, any other result is replaced by the VFIO-compat handler's ([RFC-21] main.c)."""
    if code and choices.rfc_dispatch == "as-coded":
        return vfio_compat_errno(call.number)
    return code


# -- the handlers (drivers/iommu/iommufd/amd_viommu.c of [RFC-21]) -------------------------------------------


def iommu_init(session: Session, state: IommufdState, call: RfcIommuInit, choices: Iommufd) -> Result:
    """The struct (with its gid) is copied back after the work: a fault there is EFAULT with the guest
    left set up ([RFC-21] viommu_iommu_init)."""
    gid = session.call("rfc_iommu_init", call.iommu_id)
    if call.unwritable:
        raise Fail(errno.EFAULT, state=state, partial=True)
    return state, {"gid": gid}


def iommu_destroy(session: Session, state: IommufdState, call: RfcIommuDestroy, choices: Iommufd) -> Result:
    session.call("rfc_iommu_destroy", call.iommu_id, call.gid)
    return state, {}


def device_update(session: Session, state: IommufdState, call: RfcDeviceAttach | RfcDeviceDetach,
                  choices: Iommufd) -> Result:
    session.call("rfc_device_update", call.iommu_id, call.gid, call.hdev_id, call.gdev_id,
                 attach=isinstance(call, RfcDeviceAttach))
    return state, {}


def domain_update(session: Session, state: IommufdState, call: RfcDomainAttach | RfcDomainDetach,
                  choices: Iommufd) -> Result:
    session.call("rfc_domain_update", call.iommu_id, call.gid, call.gdev_id, call.gdom_id,
                 attach=isinstance(call, RfcDomainAttach))
    return state, {}


def mmio_access(session: Session, state: IommufdState, call: RfcMmioAccess, choices: Iommufd) -> Result:
    """A write returns the driver's answer; a read copies the struct back with the value ([RFC-21]
    viommu_mmio_access: EFAULT when that faults; a read changes nothing)."""
    value = session.call("rfc_mmio_access", call.iommu_id, call.gid, call.offset, call.value,
                         write=bool(call.is_write))
    if call.is_write:
        return state, {}
    if call.unwritable:
        raise Fail(errno.EFAULT)
    return state, {"value": value}


def cmdbuf_update(session: Session, state: IommufdState, call: RfcCmdbufUpdate, choices: Iommufd) -> Result:
    """The driver pins the pages at ``hva`` from the VMM's memory (the scenario's user memory)."""
    session.call("rfc_cmdbuf_update", call.iommu_id, call.gid, call.cmdbuf_size, call.hva,
                 state.scenario.user_memory)
    return state, {}


HANDLERS = {RfcIommuInit: iommu_init, RfcIommuDestroy: iommu_destroy, RfcDeviceAttach: device_update,
            RfcDeviceDetach: device_update, RfcDomainAttach: domain_update, RfcDomainDetach: domain_update,
            RfcMmioAccess: mmio_access, RfcCmdbufUpdate: cmdbuf_update}
