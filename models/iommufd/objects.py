"""iommufd's objects and the state that holds them, immutable.

Facts from ``shared/reference/iommufd.md`` §2 and ``iommufd-errnos.md`` §4. What Linux keeps as
counters or lists that follow from other objects (an object's ``users``, an IOAS's reserved ranges
and iova_alignment, a vIOMMU's vDEVICEs) is derived here rather than stored, so it can never drift
from the references it counts: DESTROY's EBUSY rule (main.c 253-254) reads :func:`users`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Mapping

from amdvi.models.iommufd.driver_api import PciDevice

PAGE_SIZE = 4096
HPAGE_SIZE = 2 * 1024 * 1024  # x86-64 with THP: the auto-IOVA alignment clamp (io_pagetable.c 138-151)
U64_MAX = ULONG_MAX = (1 << 64) - 1  # 64-bit kernel: unsigned long is 64 bits
U32_MAX = (1 << 32) - 1

# The AMD v1 page table's aperture. The driver API has no aperture query; AMD v1 domains report the
# whole 64-bit space (assumed, not read in a reference), so attaching reserves nothing for the aperture.
AMD_V1_APERTURE = (0, U64_MAX)

# The reserved regions the AMD driver reports for every device (mmio-and-features.md 207-208): the MSI
# window and the HyperTransport range (the latter may be omitted when EFR2.HTRangeIgnore = 1; not modelled).
AMD_MSI_RANGE = (0xFEE0_0000, 0xFEEF_FFFF)
AMD_HT_RANGE = (0xFD_0000_0000, 0xFF_FFFF_FFFF)
AMD_RESERVED_REGIONS = (AMD_MSI_RANGE, AMD_HT_RANGE)

Range = tuple[int, int]  # (first, last), inclusive like Linux's interval trees


class Table(Mapping):
    """An immutable mapping (sorted items) with copy-on-write ``set``/``remove``; hashable."""

    __slots__ = ("_items", "_index")

    def __init__(self, items: Any = ()) -> None:
        pairs = dict(items.items() if isinstance(items, Mapping) else items)
        self._items = tuple(sorted(pairs.items(), key=lambda kv: repr(kv[0]) if not isinstance(kv[0], int) else kv[0]))
        self._index = dict(self._items)

    def __getitem__(self, key: Any) -> Any:
        return self._index[key]

    def __iter__(self) -> Iterator[Any]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._items) == dict(other.items())

    def __repr__(self) -> str:
        return f"Table({dict(self._items)!r})"

    def set(self, key: Any, value: Any) -> "Table":
        return Table({**self._index, key: value})

    def remove(self, key: Any) -> "Table":
        return Table({k: v for k, v in self._items if k != key})


def intersects(a: Range, b: Range) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


# -- objects -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Area:
    """One MAP or COPY piece: ``[iova, iova + length)`` -> user memory at ``user_va`` (identity-mapped:
    also its system physical address). ``pages_writable``: the pages were pinned for writing (set by
    the MAP that created them; a COPY shares them, io_pagetable.c 216-217)."""

    iova: int
    length: int
    user_va: int
    readable: bool
    writable: bool
    pages_writable: bool

    @property
    def last(self) -> int:
        return self.iova + self.length - 1


@dataclass(frozen=True)
class Ioas:
    """An IOVA space. ``domains``: the paging HWPTs whose domains mirror it, in ``iopt->domains``
    order (appended; a removal moves the last into the hole) -- the order MAP fills them in."""

    areas: tuple[Area, ...] = ()
    allowed: tuple[Range, ...] = ()
    domains: tuple[int, ...] = ()
    kind = "ioas"


@dataclass(frozen=True)
class Device:
    """A VFIO device bound to this iommufd; ``hwpt``: the HWPT it is attached to (None: blocked)."""

    pci: PciDevice
    hwpt: int | None = None
    kind = "device"


@dataclass(frozen=True)
class HwptPaging:
    """A paging domain mirroring ``ioas``. ``auto_domain``: created by an attach to the IOAS, destroyed
    with its last device; otherwise it lives until DESTROY."""

    ioas: int
    domain: int
    nest_parent: bool = False
    auto_domain: bool = False
    kind = "hwpt_paging"


@dataclass(frozen=True)
class HwptNested:
    """A nested (stage-1) domain over ``parent`` (a NEST_PARENT HwptPaging). Allocated through a vIOMMU
    (``viommu`` set) it holds the vIOMMU, which holds the parent; through the parent directly it holds
    the parent."""

    parent: int
    domain: int
    viommu: int | None = None
    kind = "hwpt_nested"


@dataclass(frozen=True)
class Viommu:
    """A vIOMMU on the NEST_PARENT ``hwpt``, behind physical IOMMU ``iommu``; ``handle``: the driver's."""

    hwpt: int
    handle: int
    iommu: int
    type: int
    kind = "viommu"


@dataclass(frozen=True)
class Vdevice:
    """A device's identity (``virt_id``: AMD vDeviceID) inside ``viommu``."""

    viommu: int
    device: int
    virt_id: int
    kind = "vdevice"


@dataclass(frozen=True)
class HwQueue:
    """A guest queue in the parent's IOVA space, pinned by an internal access (its areas cannot be
    unmapped while it exists: io_pagetable.c 775-778)."""

    viommu: int
    type: int
    index: int
    iova: int
    length: int
    kind = "hw_queue"


IommufdObject = Ioas | Device | HwptPaging | HwptNested | Viommu | Vdevice | HwQueue


@dataclass(frozen=True)
class Parked:
    """Lazy mode: an unmapped range the driver has not flushed yet from ``domain`` (of ``hwpt`` in
    ``ioas``): still reachable through that domain, and its IOVA still reserved."""

    ioas: int
    hwpt: int
    domain: int
    iova: int
    length: int
    pa: int
    readable: bool
    writable: bool


@dataclass(frozen=True)
class Scenario:
    """What the world gives the iommufd layer: the devices a VMM may bind (by name), the process's
    memory (user VA = system physical address), and each device's reserved IOVA regions."""

    devices: tuple[PciDevice, ...] = ()
    user_memory: tuple[tuple[int, int], ...] = ()  # (start, length)
    reserved_regions: Table = field(default_factory=Table)  # device name -> tuple of Range

    def device(self, name: str) -> PciDevice | None:
        return next((d for d in self.devices if d.name == name), None)

    def user_memory_covers(self, start: int, length: int) -> bool:
        """Whether pinning ``[start, start + length)`` succeeds (else EFAULT)."""
        position, end = start, start + length
        for base, size in sorted(self.user_memory):
            if base <= position < base + size:
                position = base + size
            if position >= end:
                return True
        return length == 0


@dataclass(frozen=True)
class IommufdState:
    """One iommufd file: its objects by id, the ids held by tombstones, and the parked ranges."""

    scenario: Scenario
    objects: Table = field(default_factory=Table)  # id -> object
    tombstones: frozenset[int] = frozenset()
    parked: tuple[Parked, ...] = ()

    def get(self, object_id: int, *kinds: type) -> Any:
        """The object, or None when missing or not of ``kinds`` (iommufd_get_object's ENOENT, main.c 175-178)."""
        obj = self.objects.get(object_id)
        return obj if obj is not None and (not kinds or isinstance(obj, kinds)) else None

    def put(self, object_id: int, obj: Any) -> "IommufdState":
        return replace(self, objects=self.objects.set(object_id, obj))

    def drop(self, object_id: int) -> "IommufdState":
        return replace(self, objects=self.objects.remove(object_id))

    def of_kind(self, kind: type) -> tuple[tuple[int, Any], ...]:
        return tuple((i, o) for i, o in self.objects.items() if isinstance(o, kind))

    def next_id(self) -> int:
        """The lowest free id >= 1: the xarray allocates from 1; a tombstone keeps its id."""
        taken = set(self.objects) | self.tombstones
        return next(i for i in range(1, len(taken) + 2) if i not in taken)


def initial_state(devices: tuple[PciDevice, ...] = (), user_memory: tuple[tuple[int, int], ...] = (),
                  reserved_regions: Mapping[str, tuple[Range, ...]] | None = None) -> IommufdState:
    """An empty iommufd. ``reserved_regions`` defaults to the AMD regions for every device."""
    if reserved_regions is None:
        reserved_regions = {d.name: AMD_RESERVED_REGIONS for d in devices}
    scenario = Scenario(tuple(devices), tuple(user_memory),
                        Table({k: tuple(v) for k, v in reserved_regions.items()}))
    return IommufdState(scenario)


# -- derived facts ------------------------------------------------------------------------------------


def references(obj: Any) -> tuple[int, ...]:
    """The ids ``obj`` holds a ``users`` reference on (iommufd.md §2 table)."""
    if isinstance(obj, Device):
        return () if obj.hwpt is None else (obj.hwpt,)
    if isinstance(obj, HwptPaging):
        return (obj.ioas,)
    if isinstance(obj, HwptNested):
        return (obj.viommu,) if obj.viommu is not None else (obj.parent,)
    if isinstance(obj, Viommu):
        return (obj.hwpt,)
    if isinstance(obj, Vdevice):
        return (obj.viommu,)  # the device itself is only held short-term
    if isinstance(obj, HwQueue):
        return (obj.viommu,)  # and, through its internal access, the IOAS: see users()
    return ()


def hw_queue_ioas(state: IommufdState, queue: HwQueue) -> int:
    """The IOAS a HW queue's internal access pins (the vIOMMU's parent's); the access holds it too."""
    return state.get(state.get(queue.viommu).hwpt).ioas


def users(state: IommufdState, object_id: int) -> int:
    """Linux's ``obj->users``: 1 for the xarray, one per reference, one for VFIO's hold on a bound
    device (a DEVICE is never destroyable by DESTROY)."""
    count = 1 + sum(references(o).count(object_id) for o in state.objects.values())
    count += sum(1 for _, q in state.of_kind(HwQueue) if hw_queue_ioas(state, q) == object_id)
    return count + (1 if isinstance(state.get(object_id), Device) else 0)


def paging_of(state: IommufdState, hwpt_id: int | None) -> tuple[int, HwptPaging] | None:
    """The paging HWPT behind ``hwpt_id``: itself, or a nested HWPT's parent (its stage 2)."""
    hwpt = state.get(hwpt_id) if hwpt_id is not None else None
    if isinstance(hwpt, HwptNested):
        hwpt_id, hwpt = hwpt.parent, state.get(hwpt.parent)
    return (hwpt_id, hwpt) if isinstance(hwpt, HwptPaging) else None


def device_ioas(state: IommufdState, device: Device) -> int | None:
    behind = paging_of(state, device.hwpt)
    return behind[1].ioas if behind else None


def reserved_ranges(state: IommufdState, ioas_id: int, *, except_device: int | None = None) -> tuple[Range, ...]:
    """The IOAS's reserved IOVA: the reserved regions of the devices attached through it
    (io_pagetable.c 1498-1547), the complement of each domain's aperture (none for AMD v1), and the
    parked ranges (lazy mode). Sorted; may overlap."""
    ranges: list[Range] = []
    for device_id, device in state.of_kind(Device):
        if device_id != except_device and device_ioas(state, device) == ioas_id:
            ranges += state.scenario.reserved_regions.get(device.pci.name, ())
    ranges += [(p.iova, p.iova + p.length - 1) for p in state.parked if p.ioas == ioas_id]
    return tuple(sorted(ranges))


def iova_alignment(state: IommufdState, ioas_id: int) -> int:
    """1 with no domain (HUGE_PAGES on), else the largest minimum page size of the domains: 4 KiB for
    AMD v1 (assumed for every driver domain; iommufd-errnos.md §4.5)."""
    return PAGE_SIZE if state.get(ioas_id, Ioas).domains else 1


def vdevice_of(state: IommufdState, device_id: int) -> int | None:
    return next((i for i, v in state.of_kind(Vdevice) if v.device == device_id), None)


def viommu_vdevices(state: IommufdState, viommu_id: int) -> Mapping[int, int]:
    """virt_id -> vDEVICE id of a vIOMMU."""
    return {v.virt_id: i for i, v in state.of_kind(Vdevice) if v.viommu == viommu_id}
