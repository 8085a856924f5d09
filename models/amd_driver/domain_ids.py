"""DomainID allocation: Linux's ``pdom_ids`` IDA (drivers/iommu/amd/iommu.c ``amd_iommu_pdom_id_alloc``,
``amd_iommu_pdom_id_reserve``, ``amd_iommu_pdom_id_free``).

An IDA hands out the lowest free ID of its range, here 1 .. MAX_DOMAIN_ID - 1 (0 is never used: a
DTE with DomainID 0 is what the driver reads as "no previous domain"). A freed ID is free again at
once: nothing in the allocator waits for the IOMMU to forget it, so the flush before the free is the
driver's job (detach_device's whole-domain flush). IDs found in DTEs copied from a previous kernel
(kdump) are reserved at boot and never handed out (amd-nested-upstream.md (d) 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

MAX_DOMAIN_ID = 1 << 16  # DomainID is 16 bits (DTE[79:64]); the IDA range ends at MAX_DOMAIN_ID - 1


@dataclass(frozen=True)
class DomainIds:
    """The IDs in use (allocated or reserved) and the highest ID the allocator may hand out."""

    used: frozenset[int] = frozenset()
    last: int = MAX_DOMAIN_ID - 1

    @classmethod
    def at_boot(cls, reserved: Iterable[int] = (), last: int = MAX_DOMAIN_ID - 1) -> "DomainIds":
        """The allocator after boot reserved ``reserved`` (IDs a previous kernel's DTEs still carry)."""
        ids = frozenset(int(i) for i in reserved if i)
        if any(not 0 < i <= last for i in ids):
            raise ValueError(f"reserved DomainIDs must be in 1..{last}: {sorted(ids)}")
        return cls(ids, last)

    def alloc(self) -> tuple["DomainIds", int | None]:
        """The lowest free ID from 1 and the allocator holding it; ``None`` when every ID is in use
        (Linux: ida_alloc_range fails; callers turn it into ENOMEM or ENOSPC)."""
        for candidate in range(1, self.last + 1):
            if candidate not in self.used:
                return DomainIds(self.used | {candidate}, self.last), candidate
        return self, None

    def free(self, domain_id: int) -> "DomainIds":
        """``domain_id`` free again, reusable by the very next :meth:`alloc`."""
        if domain_id not in self.used:
            raise ValueError(f"DomainID {domain_id} is not allocated")
        return DomainIds(self.used - {domain_id}, self.last)
