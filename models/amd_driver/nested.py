"""Nested translation, a guest (v2) table over the host (v1) nest parent (torvalds/linux
drivers/iommu/amd/nested.c @103f4e7c: ``validate_gdte_nested``, ``amd_iommu_alloc_domain_nested``,
``set_dte_nested``, ``nested_domain_free``; amd-nested-upstream.md (b)).

The guest DTE (``struct iommu_hwpt_amd_guest``, four 64-bit words) is checked, then only whitelisted
guest fields are copied into a DTE whose host part (stage 2, permissions, ATS, DomainID) comes from
the parent. Each vIOMMU maps a guest DomainID to one host DomainID (hDomID), shared by every nested
domain with that gDomID and freed with the last of them.
"""

from __future__ import annotations

import errno

from amdvi.spec.device_table import DTE

from .dte_update import join, v1_fields
from .state import PagingDomain, Work

IOMMU_HWPT_DATA_AMD_GUEST = 3
GUEST_PGTABLE_4_LEVEL, GUEST_PGTABLE_5_LEVEL = 0, 1

# the guest fields set_dte_nested copies (PPR, GLX, GIoV, the GCR3 root pointer, guest paging mode)
GUEST_OWNED = ("PPR", "GLX", "GIoV", "GCR3 Table Root Pointer[14:12]", "GCR3 Table Root Pointer[30:15]",
               "GCR3 Table Root Pointer[51:31]", "GPM")
GUEST_OWNED_MASK = sum(DTE.field(name).mask for name in GUEST_OWNED)
GUEST_STAGE2_MASK = DTE.field("Mode").mask | DTE.field("Host Page Table Root Pointer").mask


def validate_gdte_nested(gdte: int, *, guest_5_level: bool) -> int:
    """0 or the errno validate_gdte_nested gives, checks in its order: the guest may not name a stage 2
    (Mode, host root: EINVAL); V = GV = 1 needs a GCR3 root (EINVAL); guest paging mode 2 or 3
    (EINVAL); GLX 3 (EINVAL); a 5-level guest on a 4-level host (EOPNOTSUPP)."""
    view = DTE.view(gdte)
    if view["Mode"] or view["Host Page Table Root Pointer"]:
        return errno.EINVAL
    if view["V"] and view["GV"] and not view["GCR3 Table Root Pointer"]:
        return errno.EINVAL
    if view["GPM"] not in (GUEST_PGTABLE_4_LEVEL, GUEST_PGTABLE_5_LEVEL):
        return errno.EINVAL
    if view["GLX"] == 3:
        return errno.EINVAL
    if view["GPM"] == GUEST_PGTABLE_5_LEVEL and not guest_5_level:
        return errno.EOPNOTSUPP
    return 0


def set_dte_nested(work: Work, parent: PagingDomain, hdom_id: int, gdte: int, ats_enabled: bool) -> int:
    """set_dte_nested: the clear DTE, the parent's v1 fields tagged with the hDomID, GV forced to 1, the
    guest-owned fields copied; nothing else of the guest's (its V, TV, DomainID, IR/IW, I, SysMgt,
    interrupt fields) reaches the DTE."""
    domain_id = parent.domain_id if work.choices.nested_shares_parent_domain_id else hdom_id
    dte = DTE.encode({**v1_fields(parent, domain_id, ats_enabled), "GV": 1})
    dte |= gdte & GUEST_OWNED_MASK
    if work.choices.gdte_not_validated and DTE.view(gdte)["Mode"]:  # the guest's own stage 2 taken
        dte = (dte & ~GUEST_STAGE2_MASK) | (gdte & GUEST_STAGE2_MASK)
    return dte


def gdte_value(data: tuple[int, ...]) -> int:
    """The guest DTE as one 256-bit value (dte[0] lowest)."""
    words = tuple(data) + (0,) * (4 - len(data))
    return join(tuple(w & ((1 << 64) - 1) for w in words[:4]))
