"""The boundary between iommufd and an IOMMU driver: what iommufd asks of the driver, and the answer.

iommufd (``models.iommufd``) decides the uAPI's errnos and owns its objects; the driver
(``models.amd_driver``) owns domains, DomainIDs, page tables, DTEs and the command ring, and says how
it changed the hardware as :mod:`amdvi.models.timeline` steps. Each driver operation is a pure
function ``(state, arguments) -> DriverResult``; on an error the state is the one it was given (Linux
drivers undo their partial work, and the fail-nth selftests check that iommufd does too).

The operations mirror ``struct iommu_ops`` / ``iommu_domain_ops`` / ``iommufd_viommu_ops`` as
iommufd reaches them (``iommu_paging_domain_alloc_flags``, ``domain_alloc_nested``, ``attach_dev``,
``map_pages`` + ``iotlb_sync_map``, ``unmap_pages`` + ``iotlb_sync``, ``viommu_init``, ``hw_info``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class PciDevice:
    """A device as the scenario declares it: its DeviceID (requester ID), the other DeviceIDs its DMA
    may carry (PCI DMA aliases and IVRS aliases, which Linux programs and flushes alike), whether it
    has ATS (its own IOTLB), PASID and PRI, and which IOMMU it is behind."""

    name: str
    device_id: int
    aliases: tuple[int, ...] = ()
    ats: bool = False
    pasid: bool = False
    pri: bool = False
    iommu: int = 0

    @property
    def requester_ids(self) -> tuple[int, ...]:
        return (self.device_id, *self.aliases)


@dataclass(frozen=True)
class DriverResult:
    """What a driver operation did: its new state (the old one on error), 0 or a positive errno,
    a value (a domain or vIOMMU handle, hw_info data), and the hardware steps it performed in order.
    ``kept``: an error after work the driver does not undo (the RFC's error paths): ``state`` and
    ``steps`` are that work."""

    state: Any
    errno: int = 0
    value: Any = None
    steps: tuple[Any, ...] = ()
    kept: bool = False


class IommuDriver(Protocol):
    """The driver operations iommufd calls. ``device`` is a :class:`PciDevice`; domains and vIOMMUs
    are the driver's own handles (ints it hands out)."""

    def hw_info(self, state: Any, device: PciDevice, data_type: int) -> DriverResult:
        """IOMMU_GET_HW_INFO's driver part: value = (out_data_type, data words)."""

    def domain_alloc_paging(self, state: Any, device: PciDevice, *, nest_parent: bool, dirty_tracking: bool,
                            pasid: bool) -> DriverResult:
        """A paging domain (a v1 table; NEST_PARENT allowed only with the EFR/EFR2 features): value = handle."""

    def domain_alloc_nested(self, state: Any, device: PciDevice, viommu: int, data_type: int,
                            data: tuple[int, ...]) -> DriverResult:
        """A nested domain from the guest DTE ``data`` (four 64-bit words) on ``viommu``: value = handle."""

    def domain_free(self, state: Any, domain: int) -> DriverResult:
        """Free a domain no device is attached to (its DomainID goes back to the allocator)."""

    def attach(self, state: Any, device: PciDevice, domain: int) -> DriverResult:
        """Attach ``device`` to ``domain``, replacing whatever it was attached to."""

    def block(self, state: Any, device: PciDevice) -> DriverResult:
        """Attach ``device`` to the blocking domain (detach: its DMA faults)."""

    def map(self, state: Any, domain: int, iova: int, pa: int, length: int, *, readable: bool,
            writable: bool) -> DriverResult:
        """Map ``[iova, iova + length)`` to ``[pa, pa + length)`` (4 KiB multiples), then iotlb_sync_map."""

    def unmap(self, state: Any, domain: int, iova: int, length: int) -> DriverResult:
        """Unmap ``[iova, iova + length)``, then iotlb_sync (strict) or park the range in the flush queue
        (lazy). value = True when the IOVA range and its pages may be reused now (strict), False when
        they are parked until :meth:`flush_queue_drain` releases them."""

    def flush_queue_drain(self, state: Any) -> DriverResult:
        """Lazy mode: the flush-queue timer fires: flush everything queued, then release it. value = the
        released ranges, a tuple of (domain, iova, length)."""

    def viommu_init(self, state: Any, device: PciDevice, parent: int, viommu_type: int,
                    data: tuple[int, ...]) -> DriverResult:
        """A vIOMMU on the NEST_PARENT domain ``parent``: value = handle."""

    def viommu_destroy(self, state: Any, viommu: int) -> DriverResult:
        """Destroy a vIOMMU no nested domain uses any more."""

    def vdevice_init(self, state: Any, viommu: int, device: PciDevice, virt_id: int) -> DriverResult:
        """A vDEVICE: ``device`` is guest DeviceID ``virt_id`` on ``viommu``."""

    def vdevice_destroy(self, state: Any, viommu: int, device: PciDevice, virt_id: int) -> DriverResult:
        """The vDEVICE is destroyed (iommufd has no driver destroy op for it; the driver decides)."""

    def hw_queue_init(self, state: Any, viommu: int, queue_type: int, base: int, length: int) -> DriverResult:
        """A HW queue of ``viommu`` at guest physical ``base`` (the nesting parent's IOVA), ``length`` bytes."""


class RfcViommuDriver(Protocol):
    """The driver operations behind the June-2023 HW-vIOMMU RFC's ioctls (viommu.md §7.3): AMD's handlers
    in drivers/iommu/amd/viommu.c, reached with the RFC's struct fields. Guests are named by GuestID."""

    def rfc_iommu_init(self, state: Any, iommu_id: int) -> DriverResult:
        """VIOMMU_IOMMU_INIT: value = the new GuestID."""

    def rfc_iommu_destroy(self, state: Any, iommu_id: int, gid: int) -> DriverResult:
        """VIOMMU_IOMMU_DESTROY."""

    def rfc_device_update(self, state: Any, iommu_id: int, gid: int, hdev_id: int, gdev_id: int, *,
                          attach: bool) -> DriverResult:
        """VIOMMU_DEVICE_ATTACH / DETACH."""

    def rfc_domain_update(self, state: Any, iommu_id: int, gid: int, gdev_id: int, gdom_id: int, *,
                          attach: bool) -> DriverResult:
        """VIOMMU_DOMAIN_ATTACH / DETACH."""

    def rfc_mmio_access(self, state: Any, iommu_id: int, gid: int, offset: int, value: int, *,
                        write: bool) -> DriverResult:
        """VIOMMU_MMIO_ACCESS: value = the value read (reads)."""

    def rfc_cmdbuf_update(self, state: Any, iommu_id: int, gid: int, size: int, hva: int,
                          user_memory: tuple[tuple[int, int], ...]) -> DriverResult:
        """VIOMMU_CMDBUF_UPDATE: the pages at ``hva`` (pinned from ``user_memory``) into the private space."""
