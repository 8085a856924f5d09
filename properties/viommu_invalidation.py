"""Guest invalidation completeness through the HW-vIOMMU, proved with Z3 against an adversarial guest.

A guest that changed its v2 tables queues invalidations with its own IDs and waits on a
COMPLETION_WAIT in its own memory. Two facts about one step of the guest's buffer
(``models.viommu.process_guest_command``) carry that over to the host, whose invalidation rules are
proved once for the host's own commands (``properties.invalidation``: a host INVALIDATE_IOMMU_PAGES
clears every slot it names, and nothing stale survives the required ones):

* **scope**: an invalidation the vIOMMU carries out for guest ``g`` is the guest's own command with
  only its DeviceID and DomainID replaced, each by the host ID of ``g``'s map entry for it (the
  PASID, the GN, S and PDE bits and the address are the guest's); so it clears exactly what the host
  command for those host IDs clears;
* **ordering**: a guest's COMPLETION_WAIT stores into guest memory only when no invalidation is in
  flight, so every invalidation queued before it (the guest's, and the host's) has taken effect.

Both are parametric in the GuestID (a symbolic ``g``) and hold for any command bits, any map
contents and any in-flight queue; ``Hardware.viommu_domain_map_shared`` refutes the first,
``Hardware.completion_wait_early`` the second.
"""

from __future__ import annotations

import z3

from amdvi.models import viommu as vi
from amdvi.spec import viommu as V
from amdvi.spec.bitvec import Z3
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.commands import INVALIDATE_IOMMU_PAGES

from .proof import ProofResult, Witness, prove
from .viommu_isolation import build

_ID_BITS = (15, 0)  # every translated DeviceID (models.viommu checks it at import)


def _id_mask(field: tuple[int, int]) -> int:
    hi, lo = field
    return ((1 << (hi - lo + 1)) - 1) << lo


def prove_scope(guests: int = 8, *, choices: Hardware = SPEC, timeout_ms: int = 120_000) -> ProofResult:
    """An accepted guest invalidation is the guest's command with its IDs replaced by ``g``'s map entries."""
    assumptions, _, q = build(guests, choices)
    e, g = q.effect, q.guest_id
    private = q.private_memory
    domain_field = INVALIDATE_IOMMU_PAGES.field("DomainID")
    guest_domain = domain_field.read(e.guest_command, Z3)
    entry = Z3.read64(private, vi.domid_entry_address(Z3, g, guest_domain))
    mapped_domain = V.DOMID_MAP_ENTRY.view(entry, Z3).HostDomainID
    device_entry = Z3.read64(private, vi.devid_entry_address(Z3, g, z3.Extract(15, 0, e.guest_command)))
    mapped_device = V.DEVID_MAP_ENTRY.view(z3.ZeroExt(64, device_entry), Z3).HostDeviceID
    replaced = 0
    for field in (_ID_BITS, (domain_field.hi, domain_field.lo)):
        replaced |= _id_mask(field)
    keep = z3.BitVecVal(((1 << 128) - 1) ^ replaced, 128)
    claim = z3.Implies(e.accepted, z3.And(
        e.host_command & keep == e.guest_command & keep,
        z3.Implies(e.names_domain, e.domain == mapped_domain),
        z3.Implies(e.names_device, e.device == mapped_device)))
    witnesses = [Witness("a guest INVALIDATE_IOMMU_PAGES is carried out", z3.And(e.accepted, e.names_domain))]
    return prove(f"vIOMMU guest invalidation scope ({guests} guests)", assumptions, claim, witnesses=witnesses,
                 timeout_ms=timeout_ms)


def prove_wait_ordering(guests: int = 8, *, choices: Hardware = SPEC, timeout_ms: int = 120_000) -> ProofResult:
    """A guest COMPLETION_WAIT stores only when no invalidation is in flight."""
    assumptions, _, q = build(guests, choices)
    e = q.effect
    claim = z3.Implies(e.store, z3.Not(q.in_flight_before))
    witnesses = [Witness("a guest COMPLETION_WAIT stores", e.store),
                 Witness("an invalidation is in flight when the guest's buffer is processed", q.in_flight_before)]
    return prove(f"vIOMMU guest COMPLETION_WAIT ordering ({guests} guests)", assumptions, claim, witnesses=witnesses,
                 timeout_ms=timeout_ms)

