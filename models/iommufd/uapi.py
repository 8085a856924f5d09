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


def _f(bits: int, meaning: str, *, offset: int | None, direction: str = IN, default: Any = 0) -> Any:
    """A struct field: ``offset`` in bytes (None: behind a user pointer), ``bits`` its width (of one
    element for a tuple)."""
    return field(default=default, metadata={"offset": offset, "bits": bits, "direction": direction,
                                            "meaning": meaning})


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


CALLS: dict[str, type[Call]] = {c.name: c for c in (
    Destroy, IoasAlloc, IoasAllowIovas, IoasCopy, IoasIovaRanges, IoasMap, IoasUnmap, HwptAlloc, GetHwInfo,
    HwptInvalidate, ViommuAlloc, VdeviceAlloc, HwQueueAlloc, DeviceBind, DeviceAttach, DeviceDetach,
    DeviceUnbind, FlushQueueDrain)}


@dataclass(frozen=True)
class FieldInfo:
    name: str
    offset: int | None
    bits: int
    direction: str
    meaning: str


def fields(call: type[Call] | Call) -> tuple[FieldInfo, ...]:
    """Each field of a call with its offset, width, direction and meaning."""
    return tuple(FieldInfo(f.name, f.metadata["offset"], f.metadata["bits"], f.metadata["direction"],
                           f.metadata["meaning"]) for f in dataclasses.fields(call))


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
