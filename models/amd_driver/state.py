"""The driver model's configuration and state, and the in-progress operation (:class:`Work`) through
which every memory write, queued command and wait becomes a timeline step.

State is immutable (frozen dataclasses; the dict fields are never mutated once a state is built: an
operation copies them into a :class:`Work`, changes the copies and freezes a new state). The
driver's memory view holds what it wrote: the device table and the page-table pages (zero words are
left out, as unwritten memory reads 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from amdvi.models import protocol
from amdvi.models.iommufd.driver_api import PciDevice
from amdvi.models.software import Layout
from amdvi.models.timeline import AtsControl, Queue, Store, Wait
from amdvi.spec.bitvec import INT
from amdvi.spec.device_table import DTE, ENTRY_BYTES
from amdvi.spec.mmio import EFR, EFR2

from .choices import Driver
from .domain_ids import MAX_DOMAIN_ID, DomainIds

PAGE_BYTES = 1 << 12
WORD_BYTES = 8
CLEAR_DTE = DTE.encode({"V": 1})  # amd_iommu_make_clear_dte: V only (no IVRS persistent bits modelled)


@dataclass(frozen=True)
class DriverConfig:
    """What the scenario fixes about the machine and the kernel.

    * ``layout``: where the device table, command ring and COMPLETION_WAIT semaphore live (one IOMMU);
    * ``devices``: the scenario's devices (their DTEs start as ``initial_dte``, or ``boot_dtes``);
    * ``lazy``: the DMA-API flush queue (iommu.strict=0); ignored with ``np_cache``, where Linux forces
      strict mode ("Using strict mode due to virtualization", linux-driver-sequences.md §3);
    * ``np_cache``: Capability NpCache (bit 26): map needs a flush (amd_iommu_iotlb_sync_map) and
      flushes go in naturally aligned chunks (amd_iommu_domain_flush_pages);
    * ``efr`` / ``efr2``: the feature registers hw_info returns and nest-parent support reads
      (GTSup, GIoSup, EFR2 GCR3TRPModeSup: is_nest_parent_supported; HDSup: dirty tracking);
    * ``guest_5_level``: amd_iommu_gpt_level is 5 (validate_gdte_nested accepts 5-level guests);
    * ``host_levels``: amd_iommu_hpt_level, the deepest v1 table (a map past it is ERANGE);
    * ``reserved_domain_ids`` and ``boot_dtes``: DTEs a previous kernel left (kdump); the DomainIDs
      they carry are reserved in the allocator at boot;
    * ``page_pool``: (base, pages) the page-table pages come from, disjoint from user memory;
    * ``iotlb_support``: amd_iommu_iotlb_sup (ATS usable); ``ats_queue_depth``: MaxPend Linux writes.
    """

    layout: Layout = Layout()
    devices: tuple[PciDevice, ...] = ()
    lazy: bool = False
    np_cache: bool = False
    efr: int = 0
    efr2: int = 0
    guest_5_level: bool = False
    host_levels: int = 6
    reserved_domain_ids: tuple[int, ...] = ()
    boot_dtes: tuple[tuple[int, int], ...] = ()  # (DeviceID, 256-bit DTE)
    initial_dte: int = CLEAR_DTE
    page_pool: tuple[int, int] = (0x0080_0000, 256)
    viommu_ids: int = 64  # HW-vIOMMU: the guest DeviceIDs and DomainIDs the maps cover (the model's bound)
    iommu_device_id: int = 0x0002  # the IOMMU's own DeviceID (its DTE maps the private address space)
    rfc_interface: bool = False  # the RFC's ioctls are reachable: the HW-vIOMMU is brought up at boot
    iotlb_support: bool = True
    ats_queue_depth: int = 0
    max_domain_id: int = MAX_DOMAIN_ID - 1
    choices: Driver = Driver()

    @property
    def strict(self) -> bool:
        return self.np_cache or not self.lazy

    @property
    def nest_parent_supported(self) -> bool:
        """is_nest_parent_supported: EFR GTSup, EFR GIoSup and EFR2 GCR3TRPModeSup all set."""
        efr, efr2 = EFR.view(self.efr), EFR2.view(self.efr2)
        return bool(efr["GTSup"] and efr["GIoSup"] and efr2["GCR3TRPModeSup"])

    @property
    def dirty_tracking_supported(self) -> bool:
        """amd_iommu_hd_support: EFR HDSup."""
        return bool(EFR.view(self.efr)["HDSup"])

    def device(self, device_id: int) -> PciDevice | None:
        return next((d for d in self.devices if d.device_id == device_id), None)


@dataclass(frozen=True)
class PagingDomain:
    """A v1 protection_domain: DomainID, table root and mode, its devices (dev_list, newest first as
    list_add puts them), the per-IOMMU refcount (iommu_array, one IOMMU here), its vIOMMUs
    (viommu_list, newest first) and the table pages it owns."""

    domain_id: int
    root: int
    mode: int
    nest_parent: bool = False
    dirty_tracking: bool = False
    dev_list: tuple[int, ...] = ()
    iommu_refs: int = 0
    viommus: tuple[int, ...] = ()
    table_pages: frozenset[int] = frozenset()


@dataclass(frozen=True)
class NestedDomain:
    """A nested_domain: its vIOMMU, the guest DTE (four words) and its gDomID."""

    viommu: int
    gdte: tuple[int, int, int, int]
    gdom_id: int


@dataclass(frozen=True)
class Viommu:
    """An amd_iommu_viommu: its nest parent and gdomid_array (gDomID -> (hDomID, users)); with the
    HW-vIOMMU (reading ``hw-viommu``) also its GuestID, translate DeviceID, the private pages of its maps,
    and the vDEVICEs written into its DeviceID map (guest DeviceID -> host DeviceID)."""

    parent: int
    gdom_ids: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    guest_id: int = 0
    translate_device_id: int = 0
    map_pages: tuple[int, ...] = ()  # pool pages: private-table pages and the maps' own pages
    vdevices: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RfcGuest:
    """A guest of the RFC's interface (its vminfo, viommu.md §7.3): ``initialized`` until DESTROY (which,
    as coded, keeps the record and so the GuestID), the private pages of its maps, the DeviceID map
    entries the driver wrote (guest DeviceID -> host DeviceID; the driver reads them back for a domain
    attach), its translate DeviceID (GUEST_MISC_CONTROL), its command buffer (``cmdbuf``: VMM address,
    bytes; ``cmdbuf_pages``: the system pages mapped into its private slot) and the VFCtrl and VF
    registers the driver last wrote (offset -> value; VF offsets 0x1000 + offset)."""

    initialized: bool = True
    map_pages: tuple[int, ...] = ()
    devices: Mapping[int, int] = field(default_factory=dict)
    translate_device_id: int = 0
    cmdbuf: tuple[int, int] = (0, 0)
    cmdbuf_pages: tuple[int, ...] = ()
    registers: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceState:
    """dev_data: the paging domain it is attached to (dev_data->domain), whether ATS and PASID are
    enabled, and (bookkeeping only) the nested domain whose DTE it carries."""

    pci: PciDevice | None = None
    domain: int | None = None
    ats_enabled: bool = False
    pasid_enabled: bool = False
    nested: int | None = None


@dataclass(frozen=True)
class Parked:
    """A lazily unmapped range waiting in the flush queue, with the table pages it freed."""

    domain: int
    iova: int
    length: int
    pages: tuple[int, ...] = ()


@dataclass(frozen=True)
class DriverState:
    memory: Mapping[int, int]
    ids: DomainIds
    domains: Mapping[int, PagingDomain | NestedDomain] = field(default_factory=dict)
    viommus: Mapping[int, Viommu] = field(default_factory=dict)
    devices: Mapping[int, DeviceState] = field(default_factory=dict)
    pool_used: frozenset[int] = frozenset()
    sequence: int = 0  # iommu->cmd_sem_val: the last COMPLETION_WAIT value
    need_sync: bool = False  # iommu->need_sync: a command was queued since the last COMPLETION_WAIT
    flush_queue: tuple[Parked, ...] = ()
    next_handle: int = 1
    rfc_guests: Mapping[int, RfcGuest] = field(default_factory=dict)  # GuestID -> the RFC's vminfo
    rfc_last_gid: int = 0  # the RFC's GuestID counter
    rfc_wrapped: bool = False  # the counter passed 0xFFFF once: GuestIDs in use are skipped from then on


def initial_state(config: DriverConfig) -> DriverState:
    """After boot: every scenario device (and alias) has the clear DTE, or the DTE a previous kernel
    left; the DomainIDs those carry and ``reserved_domain_ids`` are reserved."""
    memory: dict[int, int] = {}
    boot = dict(config.boot_dtes)
    for device in config.devices:
        for rid in device.requester_ids:
            boot.setdefault(rid, config.initial_dte)
    for rid, dte in boot.items():
        for i in range(ENTRY_BYTES // WORD_BYTES):
            word = (dte >> (64 * i)) & ((1 << 64) - 1)
            if word:
                memory[config.layout.dte_address(rid) + WORD_BYTES * i] = word
    carried = [DTE.view(dte)["DomainID"] for dte in dict(config.boot_dtes).values()]
    if config.choices.hw_viommu == "off" and not config.rfc_interface:
        return DriverState(memory=memory, ids=DomainIds.at_boot((*config.reserved_domain_ids, *carried),
                                                                config.max_domain_id))
    from .viommu_hw import PRIVATE_DOMAIN_ID, boot_private_space  # the HW-vIOMMU's private space, at start-up

    ids = DomainIds.at_boot((*config.reserved_domain_ids, *carried, PRIVATE_DOMAIN_ID), config.max_domain_id)
    work = Work(config, DriverState(memory=memory, ids=ids))
    boot_private_space(work)
    return replace(work.freeze(), next_handle=1)


class Work:
    """One driver operation in progress: mutable copies of the state plus the steps emitted so far.
    Every write goes to ``memory`` and to a :class:`Store` step in the same order."""

    def __init__(self, config: DriverConfig, state: DriverState):
        self.config = config
        self.choices = config.choices
        self.memory = dict(state.memory)
        self.ids = state.ids
        self.domains = dict(state.domains)
        self.viommus = dict(state.viommus)
        self.devices = dict(state.devices)
        self.pool_used = set(state.pool_used)
        self.sequence = state.sequence
        self.need_sync = state.need_sync
        self.flush_queue = list(state.flush_queue)
        self.next_handle = state.next_handle
        self.rfc_guests = dict(state.rfc_guests)
        self.rfc_last_gid, self.rfc_wrapped = state.rfc_last_gid, state.rfc_wrapped
        self.steps: list[Any] = []

    # -- memory ---------------------------------------------------------------------------------
    def read(self, address: int) -> int:
        return self.memory.get(address, 0)

    def store(self, writes: tuple[tuple[int, int], ...], what: str) -> None:
        """One atomic store (a 64-bit word, or the two words of a cmpxchg16b)."""
        for address, value in writes:
            if value:
                self.memory[address] = value
            else:
                self.memory.pop(address, None)
        self.steps.append(Store(tuple(writes), what))

    def alloc_page(self, what: str) -> int | None:
        """A zeroed page-table page from the pool (lowest free one); a page freed earlier is zeroed
        word by word first (the allocator's memset), so a replay sees every write."""
        base, pages = self.config.page_pool
        for n in range(pages):
            page = base + n * PAGE_BYTES
            if page not in self.pool_used:
                self.pool_used.add(page)
                for address in sorted(a for a in self.memory if page <= a < page + PAGE_BYTES):
                    self.store(((address, 0),), f"{what}: zero the page")
                return page
        return None

    def free_pages(self, pages: Any) -> None:
        self.pool_used.difference_update(pages)

    # -- commands ---------------------------------------------------------------------------------
    def queue(self, command: int, what: str) -> None:
        """iommu_queue_command: one command into the ring and the tail write (Linux moves the tail after
        each command, copy_cmd_to_buffer); sets need_sync."""
        self.steps.append(Queue((command,), what))
        self.need_sync = True

    def completion_wait(self, what: str) -> None:
        """iommu_completion_wait: skipped unless a command was queued since the last one; else the next
        sequence number in a COMPLETION_WAIT storing it at the semaphore, then poll for it."""
        if not self.need_sync:
            return
        self.sequence += 1
        semaphore = self.config.layout.semaphore
        self.steps.append(Queue((protocol.completion_wait(INT, semaphore, self.sequence),),
                                f"{what}: iommu_completion_wait"))
        self.need_sync = False
        self.steps.append(Wait(self.sequence, semaphore, f"{what}: wait_on_sem"))

    # -- devices --------------------------------------------------------------------------------------
    def ats_control(self, device_ids: tuple[int, ...], enable: bool, what: str) -> None:
        """pci_enable_ats / pci_disable_ats: the ATS capability's Enable bit of the function."""
        self.steps.append(AtsControl(tuple(device_ids), enable, what))

    # -- handles ------------------------------------------------------------------------------------
    def handle(self) -> int:
        self.next_handle += 1
        return self.next_handle - 1

    def device_state(self, device_id: int) -> DeviceState:
        return self.devices.get(device_id, DeviceState())

    def set_device(self, device_id: int, **changes: Any) -> None:
        self.devices[device_id] = replace(self.device_state(device_id), **changes)

    def paging(self, handle: int) -> PagingDomain:
        domain = self.domains[handle]
        assert isinstance(domain, PagingDomain)
        return domain

    def set_domain(self, handle: int, **changes: Any) -> None:
        self.domains[handle] = replace(self.domains[handle], **changes)

    def freeze(self) -> DriverState:
        return DriverState(memory=dict(self.memory), ids=self.ids, domains=dict(self.domains),
                           viommus=dict(self.viommus), devices=dict(self.devices),
                           pool_used=frozenset(self.pool_used), sequence=self.sequence, need_sync=self.need_sync,
                           flush_queue=tuple(self.flush_queue), next_handle=self.next_handle,
                           rfc_guests=dict(self.rfc_guests), rfc_last_gid=self.rfc_last_gid,
                           rfc_wrapped=self.rfc_wrapped)
