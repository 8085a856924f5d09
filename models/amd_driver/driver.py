"""The Linux AMD IOMMU driver as iommufd reaches it: :class:`AmdDriver` implements
:class:`amdvi.models.iommufd.driver_api.IommuDriver` over the state of :mod:`.state`.

Each operation is a pure function ``(state, arguments) -> DriverResult``: on an error the state it was
given comes back with no steps; otherwise the new state and the steps (Store, Queue, Wait) the driver
performed, in order, each ``what`` naming the Linux function it models (drivers/iommu/amd/iommu.c,
nested.c, iommufd.c; generic_pt for the table; linux-driver-sequences.md for the sequences).
"""

from __future__ import annotations

import errno
from dataclasses import replace
from typing import Any

from amdvi.models.iommufd.driver_api import DriverResult, PciDevice

from amdvi.spec.device_table import DTE

from . import page_table
from .choices import driver_choices
from .dte_update import amd_iommu_update_dte, clear_dte_entry, clone_aliases, set_dte_entry
from . import viommu_hw, viommu_rfc
from .flush import device_flush_dte, domain_flush_all, domain_flush_complete, domain_flush_pages, flush_tlb_domid
from .nested import IOMMU_HWPT_DATA_AMD_GUEST, gdte_value, set_dte_nested, validate_gdte_nested
from .state import (
    PAGE_BYTES, DriverConfig, DriverState, NestedDomain, PagingDomain, Parked, Viommu, Work, initial_state,
)

IOMMU_HW_INFO_TYPE_DEFAULT, IOMMU_HW_INFO_TYPE_AMD = 0, 4


class _Failed(Exception):
    def __init__(self, code: int):
        self.code = code


def _fail(code: int) -> None:
    raise _Failed(code)


class AmdDriver:
    """The driver under ``config`` (devices, features, strict or lazy, choices)."""

    def __init__(self, config: DriverConfig = DriverConfig()):
        driver_choices(config.choices)
        self.config = config

    def initial_state(self) -> DriverState:
        return initial_state(self.config)

    # -- plumbing -------------------------------------------------------------------------------------
    def _run(self, state: DriverState, body: Any) -> DriverResult:
        work = Work(self.config, state)
        try:
            value = body(work)
        except viommu_rfc.KeptError as failure:
            return DriverResult(work.freeze(), failure.code, None, tuple(work.steps), kept=True)
        except (_Failed, viommu_hw.ViommuError) as failure:
            return DriverResult(state, failure.code)
        return DriverResult(work.freeze(), 0, value, tuple(work.steps))

    def _know(self, work: Work, device: PciDevice) -> int:
        """dev_data for ``device`` (probe): remembered with the PciDevice so aliases and ATS are known."""
        if work.device_state(device.device_id).pci != device:
            work.set_device(device.device_id, pci=device)
        return device.device_id

    # -- hw_info ----------------------------------------------------------------------------------------
    def hw_info(self, state: DriverState, device: PciDevice, data_type: int) -> DriverResult:
        """amd_iommufd_hw_info: type DEFAULT or AMD only; returns IOMMU_HW_INFO_TYPE_AMD with EFR, EFR2."""
        if data_type not in (IOMMU_HW_INFO_TYPE_DEFAULT, IOMMU_HW_INFO_TYPE_AMD):
            return DriverResult(state, errno.EOPNOTSUPP)
        return DriverResult(state, 0, (IOMMU_HW_INFO_TYPE_AMD, (self.config.efr, self.config.efr2)))

    # -- domains ------------------------------------------------------------------------------------------
    def domain_alloc_paging(self, state: DriverState, device: PciDevice, *, nest_parent: bool, dirty_tracking: bool,
                            pasid: bool) -> DriverResult:
        """amd_iommu_domain_alloc_paging_flags -> amd_iommu_domain_alloc_paging_v1: a DomainID
        (protection_domain_alloc; none left: ENOMEM) and a zeroed 3-level root table. PASID domains are
        v2 tables, not modelled: EOPNOTSUPP, as Linux answers when the IOMMU lacks PASID support."""
        config = self.config

        def body(work: Work) -> int:
            if pasid:
                _fail(errno.EOPNOTSUPP)
            if dirty_tracking and not config.dirty_tracking_supported:
                _fail(errno.EOPNOTSUPP)
            if nest_parent and not config.nest_parent_supported:
                _fail(errno.EOPNOTSUPP)
            work.ids, domain_id = work.ids.alloc()
            if domain_id is None:
                _fail(errno.ENOMEM)
            root = work.alloc_page("pt_iommu_amdv1_init: top table")
            if root is None:
                _fail(errno.ENOMEM)
            handle = work.handle()
            work.domains[handle] = PagingDomain(domain_id, root, page_table.START_MODE, nest_parent=nest_parent,
                                                dirty_tracking=dirty_tracking)
            return handle
        return self._run(state, body)

    def domain_alloc_nested(self, state: DriverState, device: PciDevice, viommu: int, data_type: int,
                            data: tuple[int, ...]) -> DriverResult:
        """amd_iommu_alloc_domain_nested: type AMD_GUEST only; validate_gdte_nested; the gDomID's hDomID
        shared (refcount) or newly allocated (none left: ENOSPC)."""
        config = self.config

        def body(work: Work) -> int:
            if data_type != IOMMU_HWPT_DATA_AMD_GUEST:
                _fail(errno.EOPNOTSUPP)
            if viommu not in work.viommus:
                _fail(errno.EINVAL)
            gdte = gdte_value(data)
            if not work.choices.gdte_not_validated:
                code = validate_gdte_nested(gdte, guest_5_level=config.guest_5_level)
                if code:
                    _fail(code)
            gdom_id = (gdte >> 64) & 0xFFFF
            entry = work.viommus[viommu]
            mapping = dict(entry.gdom_ids)
            if gdom_id in mapping:
                hdom_id, users = mapping[gdom_id]
                mapping[gdom_id] = (hdom_id, users + 1)
            else:
                work.ids, hdom_id = work.ids.alloc()
                if hdom_id is None:
                    _fail(errno.ENOSPC)
                mapping[gdom_id] = (hdom_id, 1)
            work.viommus[viommu] = replace(entry, gdom_ids=mapping)
            handle = work.handle()
            work.domains[handle] = NestedDomain(viommu, tuple((gdte >> (64 * i)) & ((1 << 64) - 1) for i in range(4)),
                                                gdom_id)  # type: ignore[arg-type]
            return handle
        return self._run(state, body)

    def domain_free(self, state: DriverState, domain: int) -> DriverResult:
        """amd_iommu_domain_free (table pages and DomainID back, no flush: detach flushed) or
        nested_domain_free (the gDomID's reference dropped; the hDomID freed with the last one)."""
        def body(work: Work) -> None:
            target = work.domains.get(domain)
            if target is None:
                _fail(errno.ENOENT)
            if isinstance(target, NestedDomain):
                entry = work.viommus[target.viommu]
                mapping = dict(entry.gdom_ids)
                hdom_id, users = mapping[target.gdom_id]
                if users > 1:
                    mapping[target.gdom_id] = (hdom_id, users - 1)
                else:
                    del mapping[target.gdom_id]
                    if work.choices.domid_map_on_free == "reset":
                        viommu_hw.map_domain(work, target.viommu, target.gdom_id, work.paging(entry.parent).domain_id,
                                             "nested_domain_free: the DomainID map entry back to the parent's")
                    if work.choices.nested_free_flush == "flush":
                        flush_tlb_domid(work, hdom_id, "nested_domain_free")
                    work.ids = work.ids.free(hdom_id)
                work.viommus[target.viommu] = replace(entry, gdom_ids=mapping)
            else:
                if target.dev_list or target.viommus:
                    _fail(errno.EBUSY)  # Linux WARNs; iommufd never frees an attached domain
                parked = [p for p in work.flush_queue if p.domain == domain]
                for p in parked:  # the flush queue dies with its domain (its pages were unreachable)
                    work.free_pages(p.pages)
                work.flush_queue = [p for p in work.flush_queue if p.domain != domain]
                work.free_pages(target.table_pages | {target.root})  # pt_iommu_deinit
                work.ids = work.ids.free(target.domain_id)
            del work.domains[domain]
        return self._run(state, body)

    # -- attach / detach ------------------------------------------------------------------------------------
    def attach(self, state: DriverState, device: PciDevice, domain: int) -> DriverResult:
        """amd_iommu_attach_device for a paging domain, nested_attach_device for a nested one."""
        def body(work: Work) -> None:
            device_id = self._know(work, device)
            target = work.domains.get(domain)
            if target is None:
                _fail(errno.ENOENT)
            if isinstance(target, NestedDomain):
                self._nested_attach(work, device_id, domain, target)
            else:
                self._attach_paging(work, device_id, domain)
        return self._run(state, body)

    def block(self, state: DriverState, device: PciDevice) -> DriverResult:
        """blocked_domain_attach_device: detach from the paging domain if any, then the clear DTE."""
        def body(work: Work) -> None:
            device_id = self._know(work, device)
            what = "blocked_domain_attach_device"
            if work.device_state(device_id).domain is not None:
                self._detach(work, device_id, what)
            clear_dte_entry(work, device_id, what)
            work.set_device(device_id, nested=None)
        return self._run(state, body)

    def _attach_paging(self, work: Work, device_id: int, handle: int) -> None:
        """amd_iommu_attach_device: a no-op for the domain the device is on (dev_data->domain); else
        detach_device from the old one, then attach_device."""
        current = work.device_state(device_id)
        if current.domain == handle:
            return
        if current.domain is not None:
            self._detach(work, device_id, "amd_iommu_attach_device")
        what = "attach_device"
        domain = work.paging(handle)
        pci = work.device_state(device_id).pci
        ats = bool(pci and pci.ats and self.config.iotlb_support)  # pdev_enable_cap_ats
        if ats and not work.device_state(device_id).ats_enabled:
            work.ats_control(pci.requester_ids, True, f"{what}: pdev_enable_caps: pci_enable_ats")
        work.set_domain(handle, iommu_refs=domain.iommu_refs + 1, dev_list=(device_id, *domain.dev_list))
        work.set_device(device_id, domain=handle, ats_enabled=ats, nested=None)
        set_dte_entry(work, device_id, f"{what}: dev_update_dte")

    def _detach(self, work: Work, device_id: int, what: str) -> None:
        """detach_device: disable ATS/PASID, clear the DTE, flush the whole domain and wait (before the
        device leaves dev_list and the IOMMU refcount drops, so the flush still reaches it)."""
        handle = work.device_state(device_id).domain
        what = f"{what}: detach_device"
        state = work.device_state(device_id)
        if state.ats_enabled:
            work.ats_control(state.pci.requester_ids, False, f"{what}: pdev_disable_caps: pci_disable_ats")
        work.set_device(device_id, ats_enabled=False, pasid_enabled=False)  # pdev_disable_caps
        clear_dte_entry(work, device_id, f"{what}: dev_update_dte")
        if not work.choices.domain_id_freed_before_flush:
            domain_flush_all(work, handle, what)
        domain = work.paging(handle)
        work.set_domain(handle, dev_list=tuple(d for d in domain.dev_list if d != device_id),
                        iommu_refs=domain.iommu_refs - 1)
        work.set_device(device_id, domain=None, nested=None)

    def _nested_attach(self, work: Work, device_id: int, handle: int, target: NestedDomain) -> None:
        """nested_attach_device: EINVAL with PASID enabled; set_dte_nested; amd_iommu_update_dte. The
        previous paging domain is kept (reading ``nested-attach-previous``)."""
        state = work.device_state(device_id)
        if state.pasid_enabled:
            _fail(errno.EINVAL)
        if self.config.choices.nested_attach_previous == "detached" and state.domain is not None:
            self._detach(work, device_id, "nested_attach_device")
        viommu = work.viommus[target.viommu]
        parent = work.paging(viommu.parent)
        hdom_id, _users = viommu.gdom_ids[target.gdom_id]
        new = set_dte_nested(work, parent, hdom_id, gdte_value(target.gdte), work.device_state(device_id).ats_enabled)
        hw = viommu_hw.nested_dte_fields(work, target.viommu, device_id)  # the HW-vIOMMU's bits (AMD's tree)
        if hw:
            new |= DTE.encode(hw)  # set_dte_nested builds the DTE afresh: these bits are 0 there
        amd_iommu_update_dte(work, device_id, new, "nested_attach_device")
        viommu_hw.map_domain(work, target.viommu, target.gdom_id, hdom_id,
                             "nested_attach_device: amd_viommu_domain_id_update")
        work.set_device(device_id, nested=handle)

    # -- map / unmap ------------------------------------------------------------------------------------------
    def map(self, state: DriverState, domain: int, iova: int, pa: int, length: int, *, readable: bool,
            writable: bool) -> DriverResult:
        """map_pages (growing the table first if the range needs it: increase_top + change_top), then
        amd_iommu_iotlb_sync_map, which flushes only when the IOMMU has NpCache."""
        config = self.config

        def body(work: Work) -> None:
            if not isinstance(work.domains.get(domain), PagingDomain):
                _fail(errno.EINVAL)
            if length <= 0 or (iova | pa | length) % PAGE_BYTES or iova + length > 1 << 64:
                _fail(errno.EINVAL)
            what = "map_pages"
            current = work.paging(domain)
            mode = page_table.needed_mode(current.mode, iova + length - 1)
            if mode > config.host_levels:
                _fail(errno.ERANGE)
            if mode > current.mode:
                self._grow(work, domain, mode, what)
            for offset in range(0, length, PAGE_BYTES):
                failure = page_table.map_page(work, domain, iova + offset, pa + offset, readable, writable, what)
                if failure:
                    _fail(getattr(errno, failure))
            if config.np_cache and not work.choices.np_cache_map_no_flush:
                domain_flush_pages(work, domain, iova, length, "amd_iommu_iotlb_sync_map")
        return self._run(state, body)

    def _grow(self, work: Work, handle: int, mode: int, what: str) -> None:
        """increase_top's new tables, then amd_iommu_change_top: every device's DTE rebuilt with the new
        root and mode (set_dte_entry, clone_aliases), device_flush_dte for each, then wait."""
        old = work.paging(handle)
        made = page_table.increase_top(work, handle, mode, what)
        if made is None:
            _fail(errno.ENOMEM)
        root, _ = made[-1]
        what = f"{what}: increase_top: amd_iommu_change_top"
        for device_id in old.dev_list:
            set_dte_entry(work, device_id, what, root=root, mode=mode)
            clone_aliases(work, device_id, what)
        for device_id in old.dev_list:
            device_flush_dte(work, device_id, what)
        domain_flush_complete(work, handle, what)
        work.set_domain(handle, root=root, mode=mode,
                        table_pages=old.table_pages | {old.root} | {page for page, _ in made[:-1]})

    def unmap(self, state: DriverState, domain: int, iova: int, length: int) -> DriverResult:
        """unmap_pages (PTEs cleared, range and freed tables gathered), then strict: amd_iommu_iotlb_sync
        (domain flush pages over the gathered range + wait, then the pages freed); lazy: the range and
        pages parked in the flush queue."""
        config = self.config

        def body(work: Work) -> bool:
            if not isinstance(work.domains.get(domain), PagingDomain):
                _fail(errno.EINVAL)
            if length <= 0 or (iova | length) % PAGE_BYTES:
                _fail(errno.EINVAL)
            choices = work.choices
            freed = page_table.unmap_range(work, domain, iova, length, "unmap_pages")
            if not config.strict:
                if choices.flush_queue_releases_early:
                    work.free_pages(freed)
                    work.flush_queue.append(Parked(domain, iova, length))
                    return True
                work.flush_queue.append(Parked(domain, iova, length, tuple(freed)))
                return False
            if not choices.unmap_skips_flush:
                size = PAGE_BYTES if choices.flush_range_too_small else length
                domain_flush_pages(work, domain, iova, size, "amd_iommu_iotlb_sync")
            work.free_pages(freed)  # iommu_put_pages_list, after the flush
            return True
        return self._run(state, body)

    def flush_queue_drain(self, state: DriverState) -> DriverResult:
        """The flush queue's timer (fq_flush_iotlb): amd_iommu_flush_iotlb_all on each domain with parked
        ranges (a whole-domain flush + wait), then every parked range and page released."""
        def body(work: Work) -> tuple[tuple[int, int, int], ...]:
            released = tuple(work.flush_queue)
            for handle in dict.fromkeys(p.domain for p in released):
                if isinstance(work.domains.get(handle), PagingDomain):
                    domain_flush_all(work, handle, "fq_flush_iotlb: amd_iommu_flush_iotlb_all")
            for parked in released:
                work.free_pages(parked.pages)
            work.flush_queue = []
            return tuple((p.domain, p.iova, p.length) for p in released)
        return self._run(state, body)

    # -- vIOMMU ------------------------------------------------------------------------------------------------
    def viommu_init(self, state: DriverState, device: PciDevice, parent: int, viommu_type: int,
                    data: tuple[int, ...]) -> DriverResult:
        """amd_iommufd_viommu_init: remember the nest parent, an empty gdomid_array, and link into the
        parent's viommu_list (list_add: at its head)."""
        def body(work: Work) -> int:
            target = work.domains.get(parent)
            if not isinstance(target, PagingDomain) or not target.nest_parent:
                _fail(errno.EINVAL)
            handle = work.handle()
            work.viommus[handle] = Viommu(parent)
            work.set_domain(parent, viommus=(handle, *target.viommus))
            if work.choices.hw_viommu == "amd-wip":
                viommu_hw.viommu_init(work, handle)
            return handle
        return self._run(state, body)

    def viommu_destroy(self, state: DriverState, viommu: int) -> DriverResult:
        """amd_iommufd_viommu_destroy: unlink from the parent's viommu_list."""
        def body(work: Work) -> None:
            entry = work.viommus.get(viommu)
            if entry is None:
                _fail(errno.ENOENT)
            if entry.gdom_ids:
                _fail(errno.EBUSY)  # nested domains still hold hDomIDs (iommufd's refcounts prevent this)
            parent = work.paging(entry.parent)
            work.set_domain(entry.parent, viommus=tuple(v for v in parent.viommus if v != viommu))
            if entry.guest_id:
                viommu_hw.viommu_destroy(work, viommu)
            del work.viommus[viommu]
        return self._run(state, body)

    def vdevice_init(self, state: DriverState, viommu: int, device: PciDevice, virt_id: int) -> DriverResult:
        """_amd_viommu_vdevice_init (AMD's tree; nothing without the HW-vIOMMU)."""
        def body(work: Work) -> None:
            if viommu not in work.viommus:
                _fail(errno.ENOENT)
            if work.viommus[viommu].guest_id:
                viommu_hw.vdevice_init(work, viommu, self._know(work, device), virt_id)
        return self._run(state, body)

    def vdevice_destroy(self, state: DriverState, viommu: int, device: PciDevice, virt_id: int) -> DriverResult:
        """No hook in AMD's tree: reading ``devid-map-on-destroy``."""
        def body(work: Work) -> None:
            if viommu in work.viommus and work.viommus[viommu].guest_id:
                viommu_hw.vdevice_destroy(work, viommu, virt_id)
        return self._run(state, body)

    def hw_queue_init(self, state: DriverState, viommu: int, queue_type: int, base: int, length: int) -> DriverResult:
        """hw_queue_init (AMD's tree): the guest's command buffer, event log or PPR log."""
        def body(work: Work) -> None:
            if viommu not in work.viommus or not work.viommus[viommu].guest_id:
                _fail(errno.EOPNOTSUPP)
            viommu_hw.hw_queue_init(work, viommu, queue_type, base, length)
        return self._run(state, body)

    # -- the June-2023 RFC's ioctls (driver_api.RfcViommuDriver; viommu_rfc) ----------------------------------
    def rfc_iommu_init(self, state: DriverState, iommu_id: int) -> DriverResult:
        return self._run(state, lambda work: viommu_rfc.iommu_init(work, iommu_id))

    def rfc_iommu_destroy(self, state: DriverState, iommu_id: int, gid: int) -> DriverResult:
        return self._run(state, lambda work: viommu_rfc.iommu_destroy(work, iommu_id, gid))

    def rfc_device_update(self, state: DriverState, iommu_id: int, gid: int, hdev_id: int, gdev_id: int, *,
                          attach: bool) -> DriverResult:
        return self._run(state, lambda work: viommu_rfc.device_update(work, iommu_id, gid, hdev_id, gdev_id, attach))

    def rfc_domain_update(self, state: DriverState, iommu_id: int, gid: int, gdev_id: int, gdom_id: int, *,
                          attach: bool) -> DriverResult:
        return self._run(state, lambda work: viommu_rfc.domain_update(work, iommu_id, gid, gdev_id, gdom_id, attach))

    def rfc_mmio_access(self, state: DriverState, iommu_id: int, gid: int, offset: int, value: int, *,
                        write: bool) -> DriverResult:
        return self._run(state, lambda work: viommu_rfc.mmio_access(work, iommu_id, gid, offset, value, write))

    def rfc_cmdbuf_update(self, state: DriverState, iommu_id: int, gid: int, size: int, hva: int,
                          user_memory: tuple[tuple[int, int], ...]) -> DriverResult:
        return self._run(state, lambda work: viommu_rfc.cmdbuf_update(work, iommu_id, gid, size, hva, user_memory))
