"""The driver's invalidations (drivers/iommu/amd/iommu.c): domain flushes, DTE flushes and the
COMPLETION_WAIT that ends them (linux-driver-sequences.md §0, §3).

Ranges go into commands as Linux's build_inv_address rounds them: one 4 KiB page with S = 0, else the
smallest aligned power-of-two block holding the range, past a highest differing bit of 51 every page
(:func:`amdvi.spec.commands.covering_block`, the same rule). Commands come from the builders of
:mod:`amdvi.models.protocol`.
"""

from __future__ import annotations

from amdvi.models import protocol
from amdvi.spec.bitvec import INT
from amdvi.spec.commands import EVERY_PAGE, INV_IOMMU_ALL_PAGES_ADDRESS, covering_block

from .state import PagingDomain, Work

ALL_PAGES_SIZE = INV_IOMMU_ALL_PAGES_ADDRESS  # amd_iommu_domain_flush_all passes this constant as the size


def inv_block(address: int, size: int) -> tuple[int, int]:
    """build_inv_address's block for ``[address, address + size)``, clipped to the 64-bit space."""
    return covering_block(address, min(size, (1 << 64) - address))


def inv_iommu_pages(work: Work, domain_id: int, address: int, size: int, what: str) -> None:
    """build_inv_iommu_pages (PDE = 1 always, host translations: GN = 0) queued."""
    work.queue(protocol.invalidate_iommu_pages(INT, domain_id, inv_block(address, size), pde=True), what)


def device_flush_iotlb(work: Work, device_id: int, address: int, size: int, what: str) -> None:
    """device_flush_iotlb: INVALIDATE_IOTLB_PAGES to the device's own DeviceID (dev_data->devid, not
    its aliases), MaxPend = its ATS queue depth."""
    if work.choices.skip_device_iotlb_flush:
        return
    work.queue(protocol.invalidate_iotlb_pages(INT, device_id, inv_block(address, size),
                                               max_pending=work.config.ats_queue_depth),
               what if what.endswith("device_flush_iotlb") else f"{what}: device_flush_iotlb")


def iommu_flush_pages_v1_hdom_ids(work: Work, parent: PagingDomain, address: int, size: int, what: str) -> None:
    """A nest parent's flush repeated for every hDomID of every vIOMMU on its viommu_list (gDomIDs in
    xarray index order), queued on the vIOMMU's IOMMU whether or not the parent has devices there."""
    if work.choices.parent_flush_misses_hdomids:
        return
    for handle in parent.viommus:
        for gdom_id in sorted(work.viommus[handle].gdom_ids):
            hdom_id, _users = work.viommus[handle].gdom_ids[gdom_id]
            inv_iommu_pages(work, hdom_id, address, size, f"{what}: iommu_flush_pages_v1_hdom_ids")


def _domain_flush_pages_once(work: Work, handle: int, address: int, size: int, what: str) -> None:
    """__domain_flush_pages: the domain's DomainID on each IOMMU of iommu_array (none when no device is
    attached), the hDomIDs of a nest parent, then every ATS-enabled device on dev_list."""
    domain = work.paging(handle)
    if domain.iommu_refs:
        inv_iommu_pages(work, domain.domain_id, address, size, f"{what}: domain_flush_pages_v1")
    if domain.viommus:
        iommu_flush_pages_v1_hdom_ids(work, domain, address, size, what)
    for device_id in domain.dev_list:
        if work.device_state(device_id).ats_enabled:
            device_flush_iotlb(work, device_id, address, size, f"{what}: device_flush_iotlb")


def np_cache_chunks(address: int, size: int) -> list[tuple[int, int]]:
    """amd_iommu_domain_flush_pages with NpCache: the range cut into naturally aligned power-of-two
    chunks, each the smaller of the address's alignment and the largest power of two within the size
    left (address 0 counts as aligned to anything)."""
    chunks = []
    while size:
        size_alignment = size.bit_length() - 1
        alignment = min((address & -address).bit_length() - 1, size_alignment) if address else size_alignment
        chunks.append((address, 1 << alignment))
        address, size = address + (1 << alignment), size - (1 << alignment)
    return chunks


def domain_flush_pages(work: Work, handle: int, address: int, size: int, what: str) -> None:
    """amd_iommu_domain_flush_pages: the flushes (in NpCache chunks when the IOMMU caches non-present
    entries), then domain_flush_complete: COMPLETION_WAIT on each IOMMU of the domain's iommu_array."""
    chunks = np_cache_chunks(address, size) if work.config.np_cache else [(address, size)]
    for chunk_address, chunk_size in chunks:
        _domain_flush_pages_once(work, handle, chunk_address, chunk_size, what)
    domain_flush_complete(work, handle, what)


def domain_flush_complete(work: Work, handle: int, what: str) -> None:
    """COMPLETION_WAIT on each IOMMU of the domain's iommu_array (one IOMMU here); under the reading
    hdomid-flush-wait=viommu-iommus also where only its vIOMMUs' hDomIDs were flushed."""
    domain = work.paging(handle)
    if domain.iommu_refs or (domain.viommus and work.choices.hdomid_flush_wait == "viommu-iommus"):
        work.completion_wait(f"{what}: domain_flush_complete")


def domain_flush_all(work: Work, handle: int, what: str) -> None:
    """amd_iommu_domain_flush_all: domain_flush_pages(0, CMD_INV_IOMMU_ALL_PAGES_ADDRESS) (with NpCache
    that range too is cut into chunks, 63 of them)."""
    domain_flush_pages(work, handle, 0, ALL_PAGES_SIZE, f"{what}: amd_iommu_domain_flush_all")


def flush_tlb_domid(work: Work, domain_id: int, what: str) -> None:
    """amd_iommu_flush_tlb_domid: every page of one DomainID, then COMPLETION_WAIT."""
    work.queue(protocol.invalidate_iommu_pages(INT, domain_id, EVERY_PAGE, pde=True),
               f"{what}: amd_iommu_flush_tlb_domid")
    work.completion_wait(f"{what}: amd_iommu_flush_tlb_domid")


def iommu_flush_dte(work: Work, device_id: int, what: str) -> None:
    work.queue(protocol.invalidate_devtab_entry(INT, device_id), f"{what}: iommu_flush_dte")


def iommu_flush_dte_sync(work: Work, device_id: int, what: str) -> None:
    """iommu_flush_dte_sync: INVALIDATE_DEVTAB_ENTRY then COMPLETION_WAIT."""
    iommu_flush_dte(work, device_id, what)
    work.completion_wait(f"{what}: iommu_flush_dte_sync")


def device_flush_dte(work: Work, device_id: int, what: str) -> None:
    """device_flush_dte: INVALIDATE_DEVTAB_ENTRY for the device and each of its aliases (PCI DMA
    aliases and the IVRS alias), then, with ATS enabled, the device's whole IOTLB."""
    state = work.device_state(device_id)
    aliases = () if work.choices.skip_alias_flush or state.pci is None else state.pci.aliases
    for rid in (device_id, *aliases):
        iommu_flush_dte(work, rid, f"{what}: device_flush_dte")
    if state.ats_enabled:
        device_flush_iotlb(work, device_id, 0, (1 << 64) - 1, f"{what}: device_flush_dte")
