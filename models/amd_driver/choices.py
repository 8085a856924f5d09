"""The Linux AMD IOMMU driver model's choices: readings where the sources leave the driver's behaviour
open, and fault switches that re-create a class of real driver bug (each one pinned by a test in
``tests/models/amd_driver`` that shows how it changes the emitted steps).

Sources: ``shared/reference/linux-driver-sequences.md`` and ``amd-nested-upstream.md``; the code read is
drivers/iommu/amd/iommu.c (AMDESE/linux-iommu, generic-PT era) and nested.c (torvalds/linux@103f4e7c).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from amdvi.spec.choices import Choices, fault, reading


@dataclass(frozen=True)
class Driver(Choices):
    """The driver layer's choices: every reading at its default and no fault is the driver as read."""

    layer: ClassVar[str] = "driver"

    # -- readings --------------------------------------------------------------------------------
    nested_attach_previous: str = reading("kept", {
        "kept": "nested_attach_device only rewrites the DTE: the device stays on its previous paging domain's "
                "device list (dev_data->domain), so that domain's flushes, growth (change_top) and a later "
                "attach to it (seen as 'same domain', a no-op) still treat the device as its own "
                "(torvalds/linux nested.c @103f4e7c, amd-nested-upstream.md b.4; linux-driver-sequences.md §4.3)",
        "detached": "nested attach first detaches the previous paging domain, as attach_device does (a reading "
                    "no source shows; kept to compare against)",
    }, section="linux-driver-sequences.md §4.3", doc="whether nested attach leaves the previous paging domain")

    hw_viommu: str = reading("off", {
        "off": "mainline: a vIOMMU object only records its nest parent; no HW-vIOMMU is programmed",
        "amd-wip": "AMD's work-in-progress HW-vIOMMU (papers/sources/viommu-amdese-facts.md §7): a GuestID, a "
                   "translate DeviceID, DeviceID and DomainID maps written through VFCtrl, HW queues",
    }, section="viommu-amdese-facts.md §7", doc="whether the driver programs the HW-vIOMMU")
    domid_map_on_free: str = reading("reset", {
        "reset": "when a nested domain's last reference goes, its gDomID's DomainID map entry is pointed back "
                 "at the parent's DomainID before the hDomID is freed (what the cross-guest properties need)",
        "kept": "nested_domain_free frees the hDomID and leaves the map entry (AMD's work-in-progress code as "
                "read, viommu-amdese-facts.md §4, §7.4): the guest's gDomID still names the freed hDomID",
    }, section="viommu-amdese-facts.md §7.4", doc="what happens to a freed nested domain's DomainID map entry")
    nested_free_flush: str = reading("none", {
        "none": "nested_domain_free returns the hDomID to the global DomainID allocator with no flush, and "
                "nested_attach_device rewrites the DTE without flushing the DomainID it replaces (torvalds/linux "
                "nested.c, amd-nested-upstream.md): IOTLB entries tagged with the freed hDomID survive until the "
                "ID is reused by another context",
        "flush": "the hDomID's translations are flushed (INVALIDATE_IOMMU_PAGES for every page of it, then "
                 "COMPLETION_WAIT) before it goes back to the allocator (a fix no source shows)",
    }, section="amd-nested-upstream.md", doc="whether a freed nested domain's host DomainID is flushed first")
    hdomid_flush_wait: str = reading("parent-iommus", {
        "parent-iommus": "a nest parent's flush waits (domain_flush_complete) only on the IOMMUs of the parent's "
                         "iommu_array, where a device is attached to the parent itself; the hDomID invalidations "
                         "iommu_flush_pages_v1_hdom_ids queues on a vIOMMU's IOMMU are not waited for when no "
                         "device is attached to the parent there (torvalds/linux iommu.c and nested.c: "
                         "nested_attach_device does not pdom_attach_iommu the parent, as Jason Gunthorpe asked "
                         "in review of v4)",
        "viommu-iommus": "the flush also waits on the IOMMU of every vIOMMU on the parent (a fix no source shows)",
    }, section="amd-nested-upstream.md (d.1)", doc="which IOMMUs a nest parent's flush waits on")
    devid_map_on_destroy: str = reading("cleared", {
        "cleared": "destroying a vDEVICE clears its DeviceID map entry (host DeviceID 0, the clearing write)",
        "kept": "no vDEVICE destroy hook: the entry stays until the vIOMMU is destroyed (AMD's work-in-progress "
                "code as read, viommu-amdese-facts.md §4)",
    }, section="viommu-amdese-facts.md §4", doc="what happens to a destroyed vDEVICE's DeviceID map entry")

    rfc_destroy: str = reading("intended", {
        "intended": "VIOMMU_IOMMU_DESTROY unmaps and frees the guest's DeviceID and DomainID maps and frees its "
                    "GuestID (a second DESTROY of it is EINVAL)",
        "as-coded": "the June-2023 RFC as written ([RFC-15], viommu.md §10.2): the GuestID and vminfo are never "
                    "freed (a later INIT after the counter wraps skips it; a second DESTROY succeeds) and the free "
                    "helper's inverted guard leaves the maps mapped, still read by the hardware",
    }, section="viommu.md §7.3, §10.2", doc="what the RFC's VIOMMU_IOMMU_DESTROY frees")
    rfc_cmdbuf_stride: str = reading("intended", {
        "intended": "VIOMMU_CMDBUF_UPDATE pins page i of the buffer at hva + i x 4 KiB",
        "as-coded": "the RFC advances the address by 4 KiB x i at step i ([RFC-19], viommu.md §10.3): page i is "
                    "pinned at hva + 4 KiB x (0 + 1 + ... + i), so pages from the third on are other memory, or "
                    "memory that cannot be pinned (EINVAL)",
    }, section="viommu.md §7.3, §10.3", doc="which pages the RFC's VIOMMU_CMDBUF_UPDATE maps")
    rfc_domain_detach: str = reading("intended", {
        "intended": "VIOMMU_DOMAIN_DETACH writes the cleared entry (host DomainID 0) for the guest DomainID",
        "as-coded": "the RFC passes (GuestID, host DomainID) to the clear helper in swapped order ([RFC-17], "
                    "viommu.md §10.4): the write goes to the VFCtrl block of the GuestID equal to the host DomainID, "
                    "naming host DomainID = the GuestID (the model's reading of the swap: the helper's body was not "
                    "read), and the caller's entry stays",
    }, section="viommu.md §7.3, §10.4", doc="where the RFC's VIOMMU_DOMAIN_DETACH writes")

    # -- fault switches ----------------------------------------------------------------------------
    unmap_skips_flush: bool = fault(
        "unmap clears the PTEs and frees the table pages without iotlb_sync: no INVALIDATE_IOMMU_PAGES, no "
        "COMPLETION_WAIT")
    flush_range_too_small: bool = fault(
        "domain_flush_pages on unmap invalidates only the first 4 KiB page of the gathered range")
    dte_halves_wrong_order: bool = fault(
        "update_dte256 writes the lower half (with V / GV) first when enabling, so the IOMMU can read the new "
        "V = 1 with the old upper half")
    domain_id_freed_before_flush: bool = fault(
        "detach_device skips the whole-domain flush, so domain_free hands the DomainID back while its "
        "translations are still cached and the next domain reuses it without a flush")
    skip_device_iotlb_flush: bool = fault(
        "no INVALIDATE_IOTLB_PAGES for ATS devices (neither on domain flushes nor in device_flush_dte)")
    skip_alias_flush: bool = fault(
        "aliases of a device get the cloned DTE (clone_aliases) but no INVALIDATE_DEVTAB_ENTRY, so the IOMMU "
        "may keep using an alias's old DTE")
    gdte_not_validated: bool = fault(
        "validate_gdte_nested is skipped and set_dte_nested takes the guest's Mode and host root pointer "
        "(a guest-chosen stage 2) and any GLX, GLX = 3 included")
    flush_queue_releases_early: bool = fault(
        "lazy mode: unmap releases the IOVA range and the freed table pages at once (value True), before the "
        "flush queue's flush")
    parent_flush_misses_hdomids: bool = fault(
        "a nest parent's flushes skip the hDomIDs of its vIOMMUs (iommu_flush_pages_v1_hdom_ids)")
    np_cache_map_no_flush: bool = fault(
        "iotlb_sync_map does nothing even when the IOMMU caches non-present entries (NpCache)")
    nested_shares_parent_domain_id: bool = fault(
        "set_dte_nested tags the nested DTE with the parent's DomainID instead of the gDomID's hDomID")


DEFAULTS = Driver()


def driver_choices(value: Any) -> Driver:
    """``value`` itself when it is a :class:`Driver`; TypeError otherwise (never run a model silently
    under some other layer's choices)."""
    if not isinstance(value, Driver):
        raise TypeError(f"expected amdvi.models.amd_driver.choices.Driver, got {type(value).__name__}")
    return value
