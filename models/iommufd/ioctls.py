"""``ioctl(driver, driver_state, state, call) -> Outcome``: iommufd's dispatcher and its handlers.

Every call either succeeds or leaves both states as they were (the fail-nth property, iommufd-errnos.md
§4.11), except a non-atomic UNMAP, whose already-removed areas stay removed (§4.7). Errnos are decided
where Linux decides them: the file:line of iommufd-errnos.md §3 is next to each rule.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from amdvi.models.iommufd import attach, ioas_ops, rfc
from amdvi.models.iommufd.choices import MAINLINE, Iommufd, iommufd_choices
from amdvi.models.iommufd.domains import destroy_paging
from amdvi.models.iommufd.errors import Fail, Session
from amdvi.models.iommufd.ioas_ops import source_pages
from amdvi.models.iommufd.objects import (ULONG_MAX, Device, HwptNested, HwptPaging, HwQueue, IommufdState,
                                          Ioas, Vdevice, Viommu, users, vdevice_of,
                                          viommu_vdevices)
from amdvi.models.iommufd.uapi import (HW_CAP_DIRTY_TRACKING, HW_INFO_FLAG_INPUT_TYPE, HW_INFO_TYPE_DEFAULT,
                                       HW_QUEUE_TYPE_AMD_CMD, HW_QUEUE_TYPE_AMD_EVT, HW_QUEUE_TYPE_AMD_PPR,
                                       HW_QUEUE_TYPE_DEFAULT, HWPT_ALLOC_DIRTY_TRACKING, HWPT_ALLOC_NEST_PARENT,
                                       HWPT_ALLOC_PASID, HWPT_DATA_NONE, HWPT_FAULT_ID_VALID, VIOMMU_TYPE_AMD,
                                       VIOMMU_TYPE_DEFAULT, Call, Destroy, DeviceAttach, DeviceBind, DeviceDetach,
                                       DeviceUnbind, FlushQueueDrain, GetHwInfo, HwptAlloc, HwptInvalidate,
                                       HwQueueAlloc, IoasAlloc, IoasAllowIovas, IoasCopy, IoasIovaRanges, IoasMap,
                                       IoasUnmap, VdeviceAlloc, ViommuAlloc, zero_beyond_size)

EFR_HDSUP = 1 << 52  # EFR host dirty-bit support (mmio-and-features.md 179): IOMMU_CAP_DIRTY_TRACKING on AMD
Result = tuple[IommufdState, dict[str, Any]]


@dataclass(frozen=True)
class Outcome:
    """What one call did: the new states, 0 or a positive errno, the fields written back (``out``),
    and the driver's timeline steps in order."""

    state: IommufdState
    driver_state: Any
    errno: int = 0
    out: Mapping[str, Any] = field(default_factory=dict)
    steps: tuple[Any, ...] = ()


def ioctl(driver: Any, driver_state: Any, state: IommufdState, call: Call, *,
          choices: Iommufd = MAINLINE) -> Outcome:
    """Run one call. iommufd ioctls first pass the dispatcher's size rules (main.c 525-532)."""
    iommufd_choices(choices)
    if call.rfc:
        return _rfc_ioctl(driver, driver_state, state, call, choices)
    if call.iommufd:
        if call.size < call.min_size:
            return Outcome(state, driver_state, errno.EINVAL)  # main.c 525-526
        if call.size > call.struct_size and call.trailing_nonzero:
            return Outcome(state, driver_state, errno.E2BIG)  # main.c 529-532
        call = zero_beyond_size(call)
    return _handle(driver, driver_state, state, call, choices)


def _handle(driver: Any, driver_state: Any, state: IommufdState, call: Call, choices: Iommufd) -> Outcome:
    session = Session(driver, driver_state)
    try:
        new_state, out = HANDLERS[type(call)](session, state, call, choices)
    except Fail as failed:
        kept = failed.state if failed.state is not None else state
        if failed.partial:
            return Outcome(kept, session.state, failed.errno, failed.out, tuple(session.steps))
        return Outcome(kept, driver_state, failed.errno, failed.out)
    return Outcome(new_state, session.state, 0, out, tuple(session.steps))


def _rfc_ioctl(driver: Any, driver_state: Any, state: IommufdState, call: Call, choices: Iommufd) -> Outcome:
    """An RFC number is outside iommufd's table (main.c iommufd_fops_ioctl): without the RFC it goes to the
    VFIO-compat handler; with it, to AMD's dispatcher first ([RFC-21]; ``models.iommufd.rfc``)."""
    if choices.viommu_interface != "rfc":
        return Outcome(state, driver_state, rfc.vfio_compat_errno(call.number))
    code = rfc.dispatcher_errno(call)
    outcome = Outcome(state, driver_state, code) if code else _handle(driver, driver_state, state,
                                                                        zero_beyond_size(call), choices)
    shown = rfc.masked_errno(call, outcome.errno, choices)
    return outcome if shown == outcome.errno else replace(outcome, errno=shown, out={})


def _words(data: tuple[int, ...], data_len: int) -> tuple[int, ...]:
    """The 64-bit words the kernel reads for ``data_len`` bytes (missing ones read as zero)."""
    count = -(-data_len // 8)
    return tuple(data[:count]) + (0,) * max(0, count - len(data))


def _device(state: IommufdState, dev_id: int) -> Device:
    device = state.get(dev_id, Device)
    if device is None:
        raise Fail(errno.ENOENT)  # iommufd_get_device (main.c 175-178)
    return device


# -- HWPT -------------------------------------------------------------------------------------------


def hwpt_alloc(session: Session, state: IommufdState, call: HwptAlloc, choices: Iommufd) -> Result:
    if call.reserved:
        raise Fail(errno.EOPNOTSUPP)  # hw_pagetable.c 360-361
    if (call.data_type == HWPT_DATA_NONE) != (call.data_len == 0):
        raise Fail(errno.EINVAL)  # 362-364
    device = _device(state, call.dev_id)  # 366-368
    target = state.get(call.pt_id)
    if target is None:
        raise Fail(errno.ENOENT if choices.hwpt_alloc_bad_pt_enoent else errno.EINVAL)  # 370-373
    if isinstance(target, Ioas):
        state, hwpt_id = _alloc_paging(session, state, call, device)
    elif isinstance(target, HwptPaging):
        # Nested through a parent HWPT needs iommu_ops.domain_alloc_nested, which AMD does not have
        # (amd-nested-upstream.md §b.6): EOPNOTSUPP before the parent checks (hw_pagetable.c 249-254).
        raise Fail(errno.EOPNOTSUPP)
    elif isinstance(target, Viommu):
        state, hwpt_id = _alloc_nested(session, state, call, device, target, choices)
    else:
        raise Fail(errno.EINVAL)  # 417-419: a nested HWPT, a device, a vDEVICE...
    if call.flags & HWPT_FAULT_ID_VALID:
        raise Fail(errno.ENOENT)  # 423-430: the model has no FAULT objects; the new HWPT is aborted
    return state, {"out_hwpt_id": hwpt_id}


def _alloc_paging(session: Session, state: IommufdState, call: HwptAlloc, device: Device) -> tuple[IommufdState, int]:
    valid = HWPT_ALLOC_NEST_PARENT | HWPT_ALLOC_DIRTY_TRACKING | HWPT_FAULT_ID_VALID | HWPT_ALLOC_PASID
    if call.flags & ~valid:
        raise Fail(errno.EOPNOTSUPP)  # hw_pagetable.c 134-135
    # 136-138 (DIRTY_TRACKING without the capability) is left to the driver's domain_alloc_paging
    if call.flags & HWPT_FAULT_ID_VALID and call.flags & HWPT_ALLOC_NEST_PARENT:
        raise Fail(errno.EOPNOTSUPP)  # 139-141
    if call.data_type != HWPT_DATA_NONE:
        raise Fail(errno.EOPNOTSUPP)  # AMD's domain_alloc_paging_flags refuses user data
    return attach.new_paging(session, state, call.pt_id, device.pci,
                             nest_parent=bool(call.flags & HWPT_ALLOC_NEST_PARENT),
                             dirty_tracking=bool(call.flags & HWPT_ALLOC_DIRTY_TRACKING),
                             pasid=bool(call.flags & HWPT_ALLOC_PASID), auto_domain=False)


def _alloc_nested(session: Session, state: IommufdState, call: HwptAlloc, device: Device, viommu: Viommu,
                  choices: Iommufd) -> tuple[IommufdState, int]:
    if device.pci.iommu != viommu.iommu:
        raise Fail(errno.EINVAL)  # hw_pagetable.c 406-409
    if call.flags & ~(HWPT_FAULT_ID_VALID | HWPT_ALLOC_PASID):
        raise Fail(errno.EOPNOTSUPP)  # 306-307
    if call.data_len == 0:
        raise Fail(errno.EOPNOTSUPP)  # 308-309
    if choices.nested_alloc == "mainline":
        raise Fail(errno.EOPNOTSUPP)  # 310-311: AMD's mainline viommu ops lack alloc_domain_nested
    hwpt_id = state.next_id()
    domain = session.call("domain_alloc_nested", device.pci, viommu.handle, call.data_type,
                          _words(call.data, call.data_len))
    return state.put(hwpt_id, HwptNested(viommu.hwpt, domain, viommu=call.pt_id)), hwpt_id


def hwpt_invalidate(session: Session, state: IommufdState, call: HwptInvalidate, choices: Iommufd) -> Result:
    """AMD has neither cache_invalidate_user nor a vIOMMU cache_invalidate: nested HWPT and vIOMMU are
    EOPNOTSUPP. entry_num is written back as the handled count, 0 here (hw_pagetable.c 562-570)."""
    handled = {"entry_num": 0}
    if call.reserved:
        raise Fail(errno.EOPNOTSUPP, out=handled)  # 523-524
    if call.entry_num and (not call.data_uptr or not call.entry_len):
        raise Fail(errno.EINVAL, out=handled)  # 528-529
    target = state.get(call.hwpt_id)
    if target is None:
        raise Fail(errno.ENOENT, out=handled)
    if isinstance(target, (HwptNested, Viommu)):
        raise Fail(errno.EOPNOTSUPP, out=handled)  # 542-544, 552-554
    raise Fail(errno.EINVAL, out=handled)  # 557-559


# -- GET_HW_INFO ------------------------------------------------------------------------------------


def get_hw_info(session: Session, state: IommufdState, call: GetHwInfo, choices: Iommufd) -> Result:
    """The driver's data words (AMD: raw EFR and EFR2), truncated to the caller's data_len; data_len is
    written back as the kernel's size. out_max_pasid_log2 and the PCI PASID capabilities are not
    modelled (0)."""
    if call.flags & ~HW_INFO_FLAG_INPUT_TYPE or call.reserved:
        raise Fail(errno.EOPNOTSUPP)
    data_type = call.in_data_type if call.flags & HW_INFO_FLAG_INPUT_TYPE else HW_INFO_TYPE_DEFAULT
    device = _device(state, call.dev_id)
    out_type, words = session.call("hw_info", device.pci, data_type)
    words = tuple(words)
    copied = min(call.data_len, 8 * len(words))
    data = tuple(w & ((1 << (8 * min(8, copied - 8 * i))) - 1) for i, w in enumerate(words) if 8 * i < copied)
    capabilities = HW_CAP_DIRTY_TRACKING if words and words[0] & EFR_HDSUP else 0
    return state, {"data_len": 8 * len(words), "out_data_type": out_type, "data": data,
                   "out_max_pasid_log2": 0, "out_capabilities": capabilities}


# -- vIOMMU, vDEVICE, HW queue ------------------------------------------------------------------------


def viommu_alloc(session: Session, state: IommufdState, call: ViommuAlloc, choices: Iommufd) -> Result:
    if call.flags or call.type == VIOMMU_TYPE_DEFAULT:
        raise Fail(errno.EOPNOTSUPP)  # viommu.c 32-33
    device = _device(state, call.dev_id)
    if choices.viommu_type == "amd-tree" and call.type != VIOMMU_TYPE_AMD:
        raise Fail(errno.EOPNOTSUPP)  # 44-48: get_viommu_size is 0 for the type
    parent = state.get(call.hwpt_id, HwptPaging)
    if parent is None:
        raise Fail(errno.ENOENT)  # 59-63
    if not parent.nest_parent:
        raise Fail(errno.EINVAL)  # 65-68
    viommu_id = state.next_id()
    handle = session.call("viommu_init", device.pci, parent.domain, call.type, _words(call.data, call.data_len))
    return state.put(viommu_id, Viommu(call.hwpt_id, handle, device.pci.iommu, call.type)), \
        {"out_viommu_id": viommu_id}


def vdevice_alloc(session: Session, state: IommufdState, call: VdeviceAlloc, choices: Iommufd) -> Result:
    """The driver's vdevice_init writes the guest DeviceID's map entry (AMD's tree)."""
    if call.virt_id > ULONG_MAX:
        raise Fail(errno.EINVAL)  # viommu.c 155-156
    viommu = state.get(call.viommu_id, Viommu)
    if viommu is None:
        raise Fail(errno.ENOENT)  # 158-166
    device = _device(state, call.dev_id)
    if device.pci.iommu != viommu.iommu:
        raise Fail(errno.EINVAL)  # 168-170
    if vdevice_of(state, call.dev_id) is not None:
        raise Fail(errno.EEXIST)  # 178-180
    if call.virt_id in viommu_vdevices(state, call.viommu_id):
        raise Fail(errno.EEXIST)  # 223-225
    session.call("vdevice_init", viommu.handle, device.pci, call.virt_id)
    vdevice_id = state.next_id()
    return state.put(vdevice_id, Vdevice(call.viommu_id, call.dev_id, call.virt_id)), \
        {"out_vdevice_id": vdevice_id}


AMD_QUEUE_TYPES = (HW_QUEUE_TYPE_AMD_CMD, HW_QUEUE_TYPE_AMD_EVT, HW_QUEUE_TYPE_AMD_PPR)


def hw_queue_alloc(session: Session, state: IommufdState, call: HwQueueAlloc, choices: Iommufd) -> Result:
    """The queue's pages are pinned through an access on the parent's IOAS: they must be mapped (ENOENT)
    and physically contiguous (EFAULT). One queue per (type, index) on a vIOMMU is the model's rule
    (EEXIST, as the selftest driver); the AMD tree's index rules were not found."""
    if call.flags or call.type == HW_QUEUE_TYPE_DEFAULT:
        raise Fail(errno.EOPNOTSUPP)  # viommu.c 369-370
    if call.length == 0:
        raise Fail(errno.EINVAL)  # 371-372
    if call.nesting_parent_iova + call.length - 1 > ULONG_MAX:
        raise Fail(errno.EOVERFLOW)  # 373-375
    viommu = state.get(call.viommu_id, Viommu)
    if viommu is None:
        raise Fail(errno.ENOENT)
    if choices.hw_queue == "mainline" or call.type not in AMD_QUEUE_TYPES:
        raise Fail(errno.EOPNOTSUPP)  # 381-398: no hw_queue ops, or size 0 for the type
    ioas = state.get(state.get(viommu.hwpt).ioas)
    pages = source_pages(ioas, call.nesting_parent_iova, call.length)  # unmapped: ENOENT (access pin)
    if any(b.user_va != a.user_va + a.length for a, b in zip(pages, pages[1:])) \
            or not state.scenario.user_memory_covers(pages[0].user_va, call.length):
        raise Fail(errno.EFAULT)  # 337-339
    if any(q.viommu == call.viommu_id and (q.type, q.index) == (call.type, call.index)
           for _, q in state.of_kind(HwQueue)):
        raise Fail(errno.EEXIST)
    session.call("hw_queue_init", viommu.handle, call.type, call.nesting_parent_iova, call.length)
    queue_id = state.next_id()
    queue = HwQueue(call.viommu_id, call.type, call.index, call.nesting_parent_iova, call.length)
    return state.put(queue_id, queue), {"out_hw_queue_id": queue_id}


# -- DESTROY and the flush-queue timer ----------------------------------------------------------------


def destroy(session: Session, state: IommufdState, call: Destroy, choices: Iommufd) -> Result:
    """Refused while anything else holds the object (users > 1): main.c 248-254."""
    target = state.get(call.id)
    if target is None:
        raise Fail(errno.ENOENT)  # 248-249: missing, 0, or a tombstone
    if users(state, call.id) > 1 and not choices.destroy_ignores_users:
        raise Fail(errno.EBUSY)  # 253-254
    if isinstance(target, HwptPaging):
        return destroy_paging(session, state, call.id), {}
    if isinstance(target, HwptNested):
        session.call("domain_free", target.domain)
    elif isinstance(target, Viommu):
        session.call("viommu_destroy", target.handle)
    elif isinstance(target, Vdevice):
        viommu = state.get(target.viommu, Viommu)
        session.call("vdevice_destroy", viommu.handle, state.get(target.device).pci, target.virt_id)
    return state.drop(call.id), {}


def flush_queue_drain(session: Session, state: IommufdState, call: FlushQueueDrain, choices: Iommufd) -> Result:
    """The flush-queue timer: the driver flushes and names the ranges it released; they stop being
    parked (reachable and reserved)."""
    released = session.call("flush_queue_drain") or ()

    def freed(p: Any) -> bool:
        return any(d == p.domain and i <= p.iova and p.iova + p.length <= i + n for d, i, n in released)
    return replace(state, parked=tuple(p for p in state.parked if not freed(p))), {"released": tuple(released)}


HANDLERS: dict[type, Callable[..., Result]] = {
    Destroy: destroy, IoasAlloc: ioas_ops.ioas_alloc, IoasAllowIovas: ioas_ops.ioas_allow_iovas,
    IoasCopy: ioas_ops.ioas_copy, IoasIovaRanges: ioas_ops.ioas_iova_ranges, IoasMap: ioas_ops.ioas_map,
    IoasUnmap: ioas_ops.ioas_unmap, HwptAlloc: hwpt_alloc, GetHwInfo: get_hw_info,
    HwptInvalidate: hwpt_invalidate, ViommuAlloc: viommu_alloc, VdeviceAlloc: vdevice_alloc,
    HwQueueAlloc: hw_queue_alloc, DeviceBind: attach.device_bind, DeviceAttach: attach.device_attach,
    DeviceDetach: attach.device_detach, DeviceUnbind: attach.device_unbind, FlushQueueDrain: flush_queue_drain,
    **rfc.HANDLERS,
}
