"""The calls a VMM makes on iommufd: one frozen dataclass per ioctl, fields named as in the uAPI structs.

iommufd ioctls follow ``include/uapi/linux/iommufd.h`` (layouts: amd-nested-upstream.md §a, iommufd.md
§3); ``__reserved`` is ``reserved``. A user pointer is replaced by what it points to (``data``: the
64-bit words at ``data_uptr``; ``allowed_iovas``: the (start, last) pairs), so a trace carries plain
ints, bools, strings and tuples. ``trailing_nonzero`` says the caller's struct is longer than the
kernel's (``size`` above :attr:`struct_size`) with non-zero bytes there (E2BIG, main.c 529-532).

The VFIO cdev calls name the scenario's device instead of an fd; ``FlushQueueDrain`` is the lazy-mode
flush-queue timer, not an ioctl. :data:`CALLS` maps each name to its class; :func:`fields` gives each
field's offset, width, direction and meaning.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

IN, OUT, INOUT = "in", "out", "in/out"

# constants of include/uapi/linux/iommufd.h (amd-nested-upstream.md §a, iommufd.md §3)
MAP_FIXED_IOVA, MAP_WRITEABLE, MAP_READABLE = 1, 2, 4
HWPT_ALLOC_NEST_PARENT, HWPT_ALLOC_DIRTY_TRACKING, HWPT_FAULT_ID_VALID, HWPT_ALLOC_PASID = 1, 2, 4, 8
HWPT_DATA_NONE, HWPT_DATA_VTD_S1, HWPT_DATA_ARM_SMMUV3, HWPT_DATA_AMD_GUEST = 0, 1, 2, 3
HW_INFO_FLAG_INPUT_TYPE = 1
HW_INFO_TYPE_DEFAULT, HW_INFO_TYPE_AMD = 0, 4
HW_CAP_DIRTY_TRACKING, HW_CAP_PCI_PASID_EXEC, HW_CAP_PCI_PASID_PRIV = 1, 2, 4
VIOMMU_TYPE_DEFAULT, VIOMMU_TYPE_AMD = 0, 3  # AMD = 3: out of tree (v2 12/12, AMDESE)
HW_QUEUE_TYPE_DEFAULT = 0
# AMD queue types exist only in AMD's trees: 2, 3, 4 in the copy of the uapi header in AMD's QEMU tree
# (papers/sources/viommu-amdese-facts.md §10; the kernel tree's stored header lacks them)
HW_QUEUE_TYPE_AMD_CMD, HW_QUEUE_TYPE_AMD_EVT, HW_QUEUE_TYPE_AMD_PPR = 2, 3, 4
VFIO_DEVICE_ATTACH_PASID = 1


def _f(bits: int, meaning: str, *, offset: int | None, direction: str = IN, default: Any = 0,
       named: bool | None = None) -> Any:
    """A struct field: ``offset`` in bytes (None: behind a user pointer), ``bits`` its width (of one
    element for a tuple); ``named``: a sequence may give a name an earlier call bound (default: the
    field is ``id`` or ends in ``_id``, an object id)."""
    return field(default=default, metadata={"offset": offset, "bits": bits, "direction": direction,
                                            "meaning": meaning, "named": named})


def _size(struct_size: int) -> Any:
    return _f(32, "bytes of the caller's struct", offset=0, default=struct_size)


def _trailing() -> Any:
    return field(default=False, metadata={"offset": None, "bits": 1, "direction": IN,
                                          "meaning": "the caller's struct is longer than the kernel's and has "
                                                     "non-zero bytes beyond it (E2BIG)"})


@dataclass(frozen=True)
class Call:
    """Base: ``name`` (the uAPI macro), ``number`` (the ioctl nr, 0 for pseudo-calls), ``struct_size``,
    ``min_size`` (offsetofend of the last mandatory field, the IOCTL_OP table: main.c 457-497)."""

    name: ClassVar[str] = ""
    number: ClassVar[int] = 0
    struct_size: ClassVar[int] = 0
    min_size: ClassVar[int] = 0
    iommufd: ClassVar[bool] = True  # dispatched by iommufd's size rules (not a VFIO or pseudo call)
    rfc: ClassVar[bool] = False  # one of the AMD HW-vIOMMU RFC's ioctls (their own dispatcher)


@dataclass(frozen=True)
class Destroy(Call):
    name: ClassVar[str] = "IOMMU_DESTROY"
    number: ClassVar[int] = 0x80
    struct_size: ClassVar[int] = 8
    min_size: ClassVar[int] = 8
    size: int = _size(8)
    id: int = _f(32, "the object to destroy", offset=4)
    trailing_nonzero: bool = _trailing()


@dataclass(frozen=True)
class IoasAlloc(Call):
    name: ClassVar[str] = "IOMMU_IOAS_ALLOC"
    number: ClassVar[int] = 0x81
    struct_size: ClassVar[int] = 12
    min_size: ClassVar[int] = 12
    size: int = _size(12)
    flags: int = _f(32, "must be 0", offset=4)
    out_ioas_id: int = _f(32, "the new IOAS", offset=8, direction=OUT)
    trailing_nonzero: bool = _trailing()


@dataclass(frozen=True)
class IoasAllowIovas(Call):
    name: ClassVar[str] = "IOMMU_IOAS_ALLOW_IOVAS"
    number: ClassVar[int] = 0x82
    struct_size: ClassVar[int] = 24
    min_size: ClassVar[int] = 24
    size: int = _size(24)
    ioas_id: int = _f(32, "the IOAS", offset=4)
    num_iovas: int = _f(32, "entries read from allowed_iovas", offset=8)
    reserved: int = _f(32, "__reserved, must be 0", offset=12)
    allowed_iovas: tuple[tuple[int, int], ...] = _f(64, "(start, last) pairs at the user pointer",
                                                    offset=None, default=())
    trailing_nonzero: bool = _trailing()


@dataclass(frozen=True)
class IoasCopy(Call):
    name: ClassVar[str] = "IOMMU_IOAS_COPY"
    number: ClassVar[int] = 0x83
    struct_size: ClassVar[int] = 40
    min_size: ClassVar[int] = 40
    size: int = _size(40)
    flags: int = _f(32, "FIXED_IOVA 1, WRITEABLE 2, READABLE 4", offset=4)
    dst_ioas_id: int = _f(32, "destination IOAS", offset=8)
    src_ioas_id: int = _f(32, "source IOAS", offset=12)
    length: int = _f(64, "bytes", offset=16)
    dst_iova: int = _f(64, "destination IOVA (written back when allocated)", offset=24, direction=INOUT)
    src_iova: int = _f(64, "source IOVA", offset=32)
    trailing_nonzero: bool = _trailing()


@dataclass(frozen=True)
class IoasIovaRanges(Call):
    name: ClassVar[str] = "IOMMU_IOAS_IOVA_RANGES"
    number: ClassVar[int] = 0x84
    struct_size: ClassVar[int] = 32
    min_size: ClassVar[int] = 32
    size: int = _size(32)
    ioas_id: int = _f(32, "the IOAS", offset=4)
    num_iovas: int = _f(32, "in: capacity of allowed_iovas; out: number of ranges", offset=8, direction=INOUT)
    reserved: int = _f(32, "__reserved, must be 0", offset=12)
    allowed_iovas: tuple[tuple[int, int], ...] = _f(64, "out: (start, last) of each usable range",
                                                    offset=None, direction=OUT, default=())
    out_iova_alignment: int = _f(64, "out: required IOVA alignment", offset=24, direction=OUT)
    trailing_nonzero: bool = _trailing()


@dataclass(frozen=True)
class IoasMap(Call):
    name: ClassVar[str] = "IOMMU_IOAS_MAP"
    number: ClassVar[int] = 0x85
    struct_size: ClassVar[int] = 40
    min_size: ClassVar[int] = 40
    size: int = _size(40)
    flags: int = _f(32, "FIXED_IOVA 1, WRITEABLE 2, READABLE 4", offset=4)
    ioas_id: int = _f(32, "the IOAS", offset=8)
    reserved: int = _f(32, "__reserved, must be 0", offset=12)
    user_va: int = _f(64, "process address (= system physical address in the model)", offset=16)
    length: int = _f(64, "bytes", offset=24)
    iova: int = _f(64, "IOVA (written back when allocated)", offset=32, direction=INOUT)
    trailing_nonzero: bool = _trailing()


@dataclass(frozen=True)
class IoasUnmap(Call):
    name: ClassVar[str] = "IOMMU_IOAS_UNMAP"
    number: ClassVar[int] = 0x86
    struct_size: ClassVar[int] = 24
    min_size: ClassVar[int] = 24
    size: int = _size(24)
    ioas_id: int = _f(32, "the IOAS", offset=4)
    iova: int = _f(64, "start; 0 with length U64_MAX unmaps everything", offset=8)
    length: int = _f(64, "bytes (written back: bytes unmapped)", offset=16, direction=INOUT)
    trailing_nonzero: bool = _trailing()


@dataclass(frozen=True)
class HwptAlloc(Call):
    name: ClassVar[str] = "IOMMU_HWPT_ALLOC"
    number: ClassVar[int] = 0x89
    struct_size: ClassVar[int] = 48
    min_size: ClassVar[int] = 24  # offsetofend(__reserved): data_type and later fields are extensions
    size: int = _size(48)
    flags: int = _f(32, "NEST_PARENT 1, DIRTY_TRACKING 2, FAULT_ID_VALID 4, PASID 8", offset=4)
    dev_id: int = _f(32, "the device", offset=8)
    pt_id: int = _f(32, "IOAS, NEST_PARENT HWPT_PAGING or VIOMMU", offset=12)
    out_hwpt_id: int = _f(32, "the new HWPT", offset=16, direction=OUT)
    reserved: int = _f(32, "__reserved, must be 0", offset=20)
    data_type: int = _f(32, "NONE 0, VTD_S1 1, ARM_SMMUV3 2, AMD_GUEST 3", offset=24)
    data_len: int = _f(32, "bytes at data_uptr", offset=28)
    data: tuple[int, ...] = _f(64, "the 64-bit words at data_uptr (AMD_GUEST: the guest DTE)", offset=None,
                               default=())
    fault_id: int = _f(32, "FAULT object when FAULT_ID_VALID", offset=40)
    reserved2: int = _f(32, "__reserved2", offset=44)
    trailing_nonzero: bool = _trailing()


@dataclass(frozen=True)
class GetHwInfo(Call):
    name: ClassVar[str] = "IOMMU_GET_HW_INFO"
    number: ClassVar[int] = 0x8A
    struct_size: ClassVar[int] = 40
    min_size: ClassVar[int] = 32  # offsetofend(__reserved); out_capabilities is an extension
    size: int = _size(40)
    flags: int = _f(32, "INPUT_TYPE 1", offset=4)
    dev_id: int = _f(32, "the device", offset=8)
    data_len: int = _f(32, "in: buffer bytes; out: the kernel's data size", offset=12, direction=INOUT)
    in_data_type: int = _f(32, "requested type with INPUT_TYPE (union with out_data_type)", offset=24)
    reserved: int = _f(24, "__reserved[3], must be 0", offset=29)
    out_data_type: int = _f(32, "out: DEFAULT 0, AMD 4, ...", offset=24, direction=OUT)
    data: tuple[int, ...] = _f(64, "out: the words written at data_uptr (AMD: efr, efr2)", offset=None,
                               direction=OUT, default=())
    out_max_pasid_log2: int = _f(8, "out: PASID width", offset=28, direction=OUT)
    out_capabilities: int = _f(64, "out: DIRTY_TRACKING 1, PCI_PASID_EXEC 2, PCI_PASID_PRIV 4", offset=32,
                               direction=OUT)
    trailing_nonzero: bool = _trailing()


@dataclass(frozen=True)
class HwptInvalidate(Call):
    name: ClassVar[str] = "IOMMU_HWPT_INVALIDATE"
    number: ClassVar[int] = 0x8D
    struct_size: ClassVar[int] = 32
    min_size: ClassVar[int] = 32
    size: int = _size(32)
    hwpt_id: int = _f(32, "HWPT_NESTED or VIOMMU", offset=4)
    data_uptr: int = _f(64, "the entry array (0: NULL)", offset=8)
    data_type: int = _f(32, "invalidation data type", offset=16)
    entry_len: int = _f(32, "bytes per entry", offset=20)
    entry_num: int = _f(32, "in: entries; out: entries handled", offset=24, direction=INOUT)
    reserved: int = _f(32, "__reserved, must be 0", offset=28)
    trailing_nonzero: bool = _trailing()


@dataclass(frozen=True)
class ViommuAlloc(Call):
    name: ClassVar[str] = "IOMMU_VIOMMU_ALLOC"
    number: ClassVar[int] = 0x90
    struct_size: ClassVar[int] = 40
    min_size: ClassVar[int] = 24  # offsetofend(out_viommu_id); the data fields are an extension
    size: int = _size(40)
    flags: int = _f(32, "must be 0", offset=4)
    type: int = _f(32, "DEFAULT 0 (refused), ARM_SMMUV3 1, TEGRA241_CMDQV 2, AMD 3 (out of tree)", offset=8)
    dev_id: int = _f(32, "a device behind the physical IOMMU", offset=12)
    hwpt_id: int = _f(32, "the NEST_PARENT HWPT_PAGING", offset=16)
    out_viommu_id: int = _f(32, "the new vIOMMU", offset=20, direction=OUT)
    data_len: int = _f(32, "bytes at data_uptr", offset=24)
    reserved: int = _f(32, "__reserved", offset=28)
    data: tuple[int, ...] = _f(64, "the 64-bit words at data_uptr", offset=None, default=())
    trailing_nonzero: bool = _trailing()


@dataclass(frozen=True)
class VdeviceAlloc(Call):
    name: ClassVar[str] = "IOMMU_VDEVICE_ALLOC"
    number: ClassVar[int] = 0x91
    struct_size: ClassVar[int] = 24
    min_size: ClassVar[int] = 24
    size: int = _size(24)
    viommu_id: int = _f(32, "the vIOMMU", offset=4)
    dev_id: int = _f(32, "the device", offset=8)
    out_vdevice_id: int = _f(32, "the new vDEVICE", offset=12, direction=OUT)
    virt_id: int = _f(64, "the device's ID in the guest (AMD vDeviceID)", offset=16)
    trailing_nonzero: bool = _trailing()


@dataclass(frozen=True)
class HwQueueAlloc(Call):
    name: ClassVar[str] = "IOMMU_HW_QUEUE_ALLOC"
    number: ClassVar[int] = 0x94
    struct_size: ClassVar[int] = 40
    min_size: ClassVar[int] = 40
    size: int = _size(40)
    flags: int = _f(32, "must be 0", offset=4)
    viommu_id: int = _f(32, "the vIOMMU", offset=8)
    type: int = _f(32, "queue type (AMD_CMD 2, AMD_EVT 3, AMD_PPR 4: AMD's trees)", offset=12)
    index: int = _f(32, "queue index", offset=16)
    out_hw_queue_id: int = _f(32, "the new HW queue", offset=20, direction=OUT)
    nesting_parent_iova: int = _f(64, "queue base in the parent's IOVA space", offset=24)
    length: int = _f(64, "bytes", offset=32)
    trailing_nonzero: bool = _trailing()


# -- VFIO cdev calls (include/uapi/linux/vfio.h; iommufd.md §3 "Device binding and attach") ----------


@dataclass(frozen=True)
class DeviceBind(Call):
    """VFIO_DEVICE_BIND_IOMMUFD on the cdev of ``device`` (a scenario name)."""

    name: ClassVar[str] = "VFIO_DEVICE_BIND_IOMMUFD"
    number: ClassVar[int] = 18  # VFIO_BASE + 18
    struct_size: ClassVar[int] = 16
    min_size: ClassVar[int] = 16
    iommufd: ClassVar[bool] = False
    device: str = _f(0, "the scenario's device name (stands for the cdev fd)", offset=None, default="")
    argsz: int = _f(32, "bytes of the caller's struct", offset=0, default=16)
    flags: int = _f(32, "must be 0", offset=4)
    out_devid: int = _f(32, "the new DEVICE object", offset=12, direction=OUT)


@dataclass(frozen=True)
class DeviceAttach(Call):
    """VFIO_DEVICE_ATTACH_IOMMUFD_PT: attach, or replace when already attached."""

    name: ClassVar[str] = "VFIO_DEVICE_ATTACH_IOMMUFD_PT"
    number: ClassVar[int] = 19
    struct_size: ClassVar[int] = 16
    min_size: ClassVar[int] = 12
    iommufd: ClassVar[bool] = False
    device: str = _f(0, "the scenario's device name", offset=None, default="")
    argsz: int = _f(32, "bytes of the caller's struct", offset=0, default=16)
    flags: int = _f(32, "ATTACH_PASID 1 (not modelled)", offset=4)
    pt_id: int = _f(32, "IOAS or HWPT (written back: the HWPT attached)", offset=8, direction=INOUT)
    pasid: int = _f(32, "with ATTACH_PASID", offset=12)


@dataclass(frozen=True)
class DeviceDetach(Call):
    """VFIO_DEVICE_DETACH_IOMMUFD_PT: the device goes to the blocking domain."""

    name: ClassVar[str] = "VFIO_DEVICE_DETACH_IOMMUFD_PT"
    number: ClassVar[int] = 20
    struct_size: ClassVar[int] = 12
    min_size: ClassVar[int] = 8
    iommufd: ClassVar[bool] = False
    device: str = _f(0, "the scenario's device name", offset=None, default="")
    argsz: int = _f(32, "bytes of the caller's struct", offset=0, default=12)
    flags: int = _f(32, "ATTACH_PASID 1 (not modelled)", offset=4)
    pasid: int = _f(32, "with ATTACH_PASID", offset=8)


@dataclass(frozen=True)
class DeviceUnbind(Call):
    """close() of the device's cdev: detach, tombstone its vDEVICE, destroy the DEVICE object."""

    name: ClassVar[str] = "VFIO_DEVICE_CLOSE"
    iommufd: ClassVar[bool] = False
    device: str = _f(0, "the scenario's device name", offset=None, default="")


@dataclass(frozen=True)
class FlushQueueDrain(Call):
    """Lazy mode: the DMA-API flush-queue timer fires (not an ioctl)."""

    name: ClassVar[str] = "FLUSH_QUEUE_DRAIN"
    iommufd: ClassVar[bool] = False


# -- the AMD HW-vIOMMU RFC's ioctls (June 2023, never merged; viommu.md §7) -----------------------------
# include/uapi/linux/amd_viommu.h of [RFC-12]: _IO(IOMMUFD_TYPE, 0x60 + n), size not encoded; each struct
# starts with size, iommu_id, gid. The dispatcher of [RFC-21] (drivers/iommu/iommufd/amd_viommu.c) takes
# min_size = offsetofend(the last field) and copies with copy_struct_from_user (E2BIG on non-zero bytes
# past the struct). VFIO shares the type (VFIO_TYPE ';', VFIO_BASE 100: include/uapi/linux/vfio.h), so
# 0x64..0x66 are also VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION and VFIO_SET_IOMMU.
RFC_CMD_BASE = 0x60
VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU = 100, 101, 102


def _fault(meaning: str) -> Any:
    return field(default=False, metadata={"offset": None, "bits": 1, "direction": IN, "meaning": meaning,
                                          "named": False})


def _unreadable() -> Any:
    return _fault("the argument pointer names no readable memory: reading size faults (EFAULT)")


def _unwritable() -> Any:
    return _fault("the caller's struct is not writable: the copy back faults (EFAULT) after the work is done")


def _iommu_id() -> Any:
    return _f(32, "PCI DeviceID of the host IOMMU (get_amd_iommu_from_devid)", offset=4, named=False)


def _gid(direction: str = IN) -> Any:
    return _f(32, "the guest ID (GuestID)", offset=8, direction=direction, named=True)


@dataclass(frozen=True)
class RfcCall(Call):
    """An RFC ioctl: AMD's dispatcher applies the size rules ([RFC-21]); ``unreadable``: EFAULT."""

    iommufd: ClassVar[bool] = False
    rfc: ClassVar[bool] = True


@dataclass(frozen=True)
class RfcIommuInit(RfcCall):
    """amd_viommu_iommu_info: a GuestID and its DeviceID and DomainID maps ([RFC-15])."""

    name: ClassVar[str] = "VIOMMU_IOMMU_INIT"
    number: ClassVar[int] = RFC_CMD_BASE
    struct_size: ClassVar[int] = 12
    min_size: ClassVar[int] = 12  # offsetofend(gid)
    size: int = _size(12)
    iommu_id: int = _iommu_id()
    gid: int = _gid(OUT)
    trailing_nonzero: bool = _trailing()
    unreadable: bool = _unreadable()
    unwritable: bool = _unwritable()


@dataclass(frozen=True)
class RfcIommuDestroy(RfcCall):
    name: ClassVar[str] = "VIOMMU_IOMMU_DESTROY"
    number: ClassVar[int] = RFC_CMD_BASE + 1
    struct_size: ClassVar[int] = 12
    min_size: ClassVar[int] = 12  # offsetofend(gid)
    size: int = _size(12)
    iommu_id: int = _iommu_id()
    gid: int = _gid()
    trailing_nonzero: bool = _trailing()
    unreadable: bool = _unreadable()


@dataclass(frozen=True)
class _RfcDevInfo(RfcCall):
    """struct amd_viommu_dev_info."""

    struct_size: ClassVar[int] = 20  # 18 bytes of fields, padded to the u32 alignment
    min_size: ClassVar[int] = 18  # offsetofend(queue_id)
    size: int = _size(20)
    iommu_id: int = _iommu_id()
    gid: int = _gid()
    hdev_id: int = _f(16, "host DeviceID of the device", offset=12, named=False)
    gdev_id: int = _f(16, "the device's DeviceID in the guest", offset=14, named=False)
    queue_id: int = _f(16, "guest queue ID (unused)", offset=16, named=False)
    trailing_nonzero: bool = _trailing()
    unreadable: bool = _unreadable()


@dataclass(frozen=True)
class RfcDeviceAttach(_RfcDevInfo):
    """The guest DeviceID's map entry and the host DTE's vIOMMU bits ([RFC-16])."""

    name: ClassVar[str] = "VIOMMU_DEVICE_ATTACH"
    number: ClassVar[int] = RFC_CMD_BASE + 2


@dataclass(frozen=True)
class RfcDeviceDetach(_RfcDevInfo):
    name: ClassVar[str] = "VIOMMU_DEVICE_DETACH"
    number: ClassVar[int] = RFC_CMD_BASE + 3


@dataclass(frozen=True)
class _RfcDomInfo(RfcCall):
    """struct amd_viommu_dom_info (its comment names an hdev_id the struct does not have)."""

    struct_size: ClassVar[int] = 16
    min_size: ClassVar[int] = 16  # offsetofend(gdom_id)
    size: int = _size(16)
    iommu_id: int = _iommu_id()
    gid: int = _gid()
    gdev_id: int = _f(16, "a guest DeviceID whose map entry names the device", offset=12, named=False)
    gdom_id: int = _f(16, "the guest DomainID", offset=14, named=False)
    trailing_nonzero: bool = _trailing()
    unreadable: bool = _unreadable()


@dataclass(frozen=True)
class RfcDomainAttach(_RfcDomInfo):
    """The guest DomainID maps to the host DomainID in the DTE of the device ([RFC-17])."""

    name: ClassVar[str] = "VIOMMU_DOMAIN_ATTACH"
    number: ClassVar[int] = RFC_CMD_BASE + 4


@dataclass(frozen=True)
class RfcDomainDetach(_RfcDomInfo):
    name: ClassVar[str] = "VIOMMU_DOMAIN_DETACH"
    number: ClassVar[int] = RFC_CMD_BASE + 5


@dataclass(frozen=True)
class RfcMmioAccess(RfcCall):
    """amd_viommu_mmio_data: a guest IOMMU MMIO access the VMM trapped, carried to VFCtrl / VF ([RFC-18])."""

    name: ClassVar[str] = "VIOMMU_MMIO_ACCESS"
    number: ClassVar[int] = RFC_CMD_BASE + 6
    struct_size: ClassVar[int] = 32  # 29 bytes of fields, padded to the u64 alignment
    min_size: ClassVar[int] = 29  # offsetofend(is_write)
    size: int = _size(32)
    iommu_id: int = _iommu_id()
    gid: int = _gid()
    offset: int = _f(32, "the guest IOMMU MMIO offset", offset=12, named=False)
    value: int = _f(64, "in: the value written; out: the value read", offset=16, direction=INOUT)
    mmio_size: int = _f(32, "access size (not read by the handlers)", offset=24, named=False)
    is_write: int = _f(8, "1: write, 0: read", offset=28, named=False)
    trailing_nonzero: bool = _trailing()
    unreadable: bool = _unreadable()
    unwritable: bool = _unwritable()


@dataclass(frozen=True)
class RfcCmdbufUpdate(RfcCall):
    """amd_viommu_cmdbuf_data: the guest's command-buffer pages mapped into its private slot ([RFC-19])."""

    name: ClassVar[str] = "VIOMMU_CMDBUF_UPDATE"
    number: ClassVar[int] = RFC_CMD_BASE + 7
    struct_size: ClassVar[int] = 24
    min_size: ClassVar[int] = 24  # offsetofend(hva)
    size: int = _size(24)
    iommu_id: int = _iommu_id()
    gid: int = _gid()
    cmdbuf_size: int = _f(32, "bytes of the guest's command buffer", offset=12, named=False)
    hva: int = _f(64, "the buffer's address in the VMM (= its system address in the model)", offset=16)
    trailing_nonzero: bool = _trailing()
    unreadable: bool = _unreadable()


RFC_CALLS: tuple[type[RfcCall], ...] = (RfcIommuInit, RfcIommuDestroy, RfcDeviceAttach, RfcDeviceDetach,
                                        RfcDomainAttach, RfcDomainDetach, RfcMmioAccess, RfcCmdbufUpdate)

CALLS: dict[str, type[Call]] = {c.name: c for c in (
    Destroy, IoasAlloc, IoasAllowIovas, IoasCopy, IoasIovaRanges, IoasMap, IoasUnmap, HwptAlloc, GetHwInfo,
    HwptInvalidate, ViommuAlloc, VdeviceAlloc, HwQueueAlloc, DeviceBind, DeviceAttach, DeviceDetach,
    DeviceUnbind, FlushQueueDrain, *RFC_CALLS)}


@dataclass(frozen=True)
class FieldInfo:
    name: str
    offset: int | None
    bits: int
    direction: str
    meaning: str
    named: bool = False  # a sequence may give a bound name here


def fields(call: type[Call] | Call) -> tuple[FieldInfo, ...]:
    """Each field of a call with its offset, width, direction and meaning."""
    return tuple(FieldInfo(f.name, f.metadata["offset"], f.metadata["bits"], f.metadata["direction"],
                           f.metadata["meaning"], _named(f)) for f in dataclasses.fields(call))


def _named(f: dataclasses.Field) -> bool:
    named = f.metadata.get("named")
    return (f.name == "id" or f.name.endswith("_id")) if named is None else named


def as_record(call: Call) -> dict[str, Any]:
    """A plain mapping for a trace: ``{"call": name, field: value...}`` (tuples as lists)."""
    def plain(v: Any) -> Any:
        return [plain(x) for x in v] if isinstance(v, tuple) else v
    return {"call": call.name, **{f.name: plain(getattr(call, f.name)) for f in dataclasses.fields(call)}}


def from_record(record: dict[str, Any]) -> Call:
    """The call a record names; a field missing takes its default; lists become tuples."""
    def frozen(v: Any) -> Any:
        return tuple(frozen(x) for x in v) if isinstance(v, list) else v
    cls = CALLS.get(record.get("call", ""))
    if cls is None:
        raise ValueError(f"unknown call {record.get('call')!r}; known: {', '.join(CALLS)}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(record) - known - {"call"}
    if unknown:
        raise ValueError(f"{cls.name}: unknown field(s) {', '.join(sorted(unknown))}")
    return cls(**{k: frozen(v) for k, v in record.items() if k != "call"})


def zero_beyond_size(call: Call) -> Call:
    """The call as the kernel reads it: struct fields past the caller's ``size`` are zero
    (copy_struct_from_user zero-extends a shorter struct)."""
    changes = {}
    for info in fields(call):
        if info.offset is not None and info.offset > 0 and info.direction != OUT \
                and info.offset + max(info.bits // 8, 1) > call.size:
            changes[info.name] = 0
    if changes.get("data_len", None) == 0:
        changes["data"] = ()
    return dataclasses.replace(call, **changes) if changes else call
