"""The iommufd layer's choices: where mainline and AMD's development trees differ, and fault switches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from amdvi.spec.choices import Choices, fault, reading


@dataclass(frozen=True)
class Iommufd(Choices):
    """Readings default to mainline (amd-nested-upstream.md §b.6); each fault is refuted by a test."""

    layer: ClassVar[str] = "iommufd"

    # -- readings --------------------------------------------------------------------------------
    nested_alloc: str = reading("mainline", {
        "mainline": "HWPT_ALLOC(pt = vIOMMU, AMD_GUEST) is EOPNOTSUPP: AMD's viommu ops have only .destroy "
                    "(torvalds/linux@5b0530bb drivers/iommu/amd/iommufd.c; hw_pagetable.c 310-311)",
        "amd-tree": "viommu_init wires alloc_domain_nested: the nested HWPT comes from driver.domain_alloc_nested "
                    "(AMDESE/linux-iommu, googleprodkernel, v2 12/12)",
    }, section="hw_pagetable.c 306-311", doc="whether a nested HWPT can be allocated through an AMD vIOMMU")
    viommu_type: str = reading("mainline", {
        "mainline": "any non-zero type is accepted: amd_iommufd_get_viommu_size ignores the type "
                    "(torvalds/linux@5b0530bb); DEFAULT 0 is refused by the core (viommu.c 32-33)",
        "amd-tree": "only IOMMU_VIOMMU_TYPE_AMD = 3 (out of tree): get_viommu_size is 0 for any other type "
                    "(googleprodkernel/linux-platforms@3c9b9a1e; viommu.c 44-48)",
    }, section="viommu.c 32-48", doc="which VIOMMU_ALLOC types an AMD device accepts")
    hw_queue: str = reading("mainline", {
        "mainline": "HW_QUEUE_ALLOC is EOPNOTSUPP: AMD's viommu ops have no hw_queue ops (viommu.c 381-398)",
        "amd-tree": "types AMD_CMD, AMD_EVT and AMD_PPR are accepted (AMDESE; their numeric values were not "
                    "found: the model uses 0x100, 0x101, 0x102)",
    }, section="viommu.c 369-398", doc="whether an AMD vIOMMU takes HW queues")

    viommu_interface: str = reading("iommufd", {
        "iommufd": "the HW-vIOMMU is programmed through iommufd's vIOMMU objects (VIOMMU_ALLOC, VDEVICE_ALLOC, "
                   "HW_QUEUE_ALLOC: AMD's later design). The RFC's numbers 0x60-0x67 are outside iommufd's table: "
                   "iommufd_fops_ioctl hands them to its VFIO-compat handler (iommufd_vfio_ioctl), which answers "
                   "0x64-0x66 as VFIO_GET_API_VERSION (0), VFIO_CHECK_EXTENSION (0) and VFIO_SET_IOMMU (EINVAL) "
                   "(VFIO_TYPE is ';' and VFIO_BASE 100, include/uapi/linux/vfio.h) and the others ENOIOCTLCMD, "
                   "which vfs_ioctl turns into ENOTTY (fs/ioctl.c)",
        "rfc": "the June-2023 RFC's own ioctls VIOMMU_IOMMU_INIT .. VIOMMU_CMDBUF_UPDATE (0x60-0x67) go to AMD's "
               "dispatcher first ([RFC-21], viommu.md §7); the iommufd vIOMMU calls keep working",
    }, section="viommu.md §7; main.c iommufd_fops_ioctl", doc="which hypervisor interface programs the HW-vIOMMU")
    rfc_dispatch: str = reading("intended", {
        "intended": "an RFC ioctl's error is what the caller gets",
        "as-coded": "iommufd returns only a 0 from AMD's dispatcher; any error falls through to the VFIO-compat "
                    "handler, whose answer the caller gets instead (0 for 0x64 and 0x65, EINVAL for 0x66, ENOTTY for "
                    "the others), and the failed call's partial work stays ([RFC-21] main.c; viommu.md §10.1)",
    }, section="viommu.md §7.2, §10.1", doc="whether an RFC ioctl's error reaches the caller")

    # -- fault switches --------------------------------------------------------------------------
    destroy_ignores_users: bool = fault(
        "DESTROY removes an object still in use (the users > 1 EBUSY check is skipped)", section="main.c 253-254")
    failed_map_keeps_area: bool = fault(
        "a MAP the driver refuses leaves the new area in the IOAS", section="io_pagetable.c (iopt_map_pages)")
    hwpt_alloc_bad_pt_enoent: bool = fault(
        "HWPT_ALLOC with a missing pt_id answers ENOENT instead of EINVAL", section="hw_pagetable.c 370-373")
    unmap_partial_splits: bool = fault(
        "UNMAP splits an area it covers only partly instead of failing ENOENT", section="io_pagetable.c 780-783")


MAINLINE = Iommufd()


def iommufd_choices(value: Any) -> Iommufd:
    """``value`` itself when it is an :class:`Iommufd`; a TypeError otherwise."""
    if not isinstance(value, Iommufd):
        raise TypeError(f"expected amdvi.models.iommufd.choices.Iommufd, got {type(value).__name__}")
    return value
