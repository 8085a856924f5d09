"""The HW-vIOMMU's map writes, proved with Z3: a hypervisor's VFCtrl map write for one guest installs
exactly that guest's entry and changes no other guest's map (the hardware half of mapping-table
integrity; the hypervisor half, that it rewrites or clears every entry when it frees or reassigns the
ID, is checked along sequences by ``properties.sequence.mapping_table_integrity``).

Parametric: the written GuestID ``g``, the guest ID in the write, the value written, and the other
guest ``h`` and ID looked up afterwards are all symbolic; the private address space is an
uninterpreted memory the write is stored into (a flat view of it: distinct private addresses are
distinct words, which ``models.viommu_host.private_pages_distinct`` checks for a concrete set-up).
``Hardware.viommu_domain_map_shared`` refutes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import z3

from amdvi.models import viommu as vi
from amdvi.models.caches import Caches
from amdvi.models.iommu import IommuState
from amdvi.models.registers import Registers
from amdvi.spec import viommu as V
from amdvi.spec.bitvec import Z3
from amdvi.spec.choices import SPEC, Hardware

from .proof import ProofResult, Witness, prove


@dataclass(frozen=True)
class FlatPrivateSpace:
    """The private address space as a memory of its own, kept in ``state.memory`` (address = private
    address): what the IOMMU's own v1 table gives when it maps distinct private pages to distinct pages."""

    def read(self, b: Any, state: IommuState, ipa: Any, choices: Hardware) -> tuple[Any, Any]:
        return b.true(), b.read64(state.memory, ipa)

    def write(self, b: Any, state: IommuState, ipa: Any, value: Any, when: Any, choices: Hardware) -> IommuState:
        return state.replace(memory=b.ite(when, b.write64(state.memory, ipa, value), state.memory))


def _same(a: vi.Lookup, b: vi.Lookup) -> Any:
    return z3.And(a.mapped == b.mapped, z3.Implies(a.mapped, a.host_id == b.host_id))


def prove_map_write_isolation(guests: int = 8, *, choices: Hardware = SPEC, timeout_ms: int = 120_000) -> ProofResult:
    """A DomainID or DeviceID map write for guest ``g`` gives ``g`` the written entry and leaves every
    other (guest, ID) as it was."""
    if not 2 <= guests < V.MAX_GUESTS:
        raise ValueError(f"guests: between 2 and {V.MAX_GUESTS - 1} (GuestIDs 1 to guests; 0 is never a guest's)")
    g, h = z3.BitVec("guest_id", 16), z3.BitVec("other_guest_id", 16)
    other = z3.BitVec("other_id", 16)
    space = FlatPrivateSpace()
    before = IommuState(memory=Z3.memory_function("private"), regs=Registers(), caches=Caches.empty())
    assumptions = [z3.UGE(g, 1), z3.ULE(g, guests), z3.UGE(h, 1), z3.ULE(h, guests)]
    claims, witnesses = [], []
    for offset, control, guest_field, lookup in ((0x08, V.DOMID_MAP_CONTROL, "GuestDomainID", vi.lookup_domain),
                                                 (0x00, V.DID_MAP_CONTROL, "GuestDeviceID", vi.lookup_device)):
        value = z3.BitVec(f"written_{offset:#x}", 64)
        view = control.view(value, Z3)
        after = vi.vfctrl_write(Z3, before, g, offset, value, space=space, choices=choices)
        written = view[guest_field]
        installed = lookup(Z3, after, g, written, space, choices)
        host = view["HostDomainID" if offset == 0x08 else "HostDeviceID"]
        expected_mapped = view.V == 1
        if lookup is vi.lookup_device and choices.viommu_devid_zero == "unmapped":
            expected_mapped = z3.And(expected_mapped, host != 0)
        wrote = view.Write == 1
        claims.append(z3.Implies(wrote, z3.And(installed.mapped == expected_mapped,
                                               z3.Implies(installed.mapped, installed.host_id == host))))
        untouched = z3.Or(h != g, other != written)
        for probe in (vi.lookup_domain, vi.lookup_device):
            claims.append(z3.Implies(z3.Or(untouched, probe is not lookup),
                                     _same(probe(Z3, after, h, other, space, choices),
                                           probe(Z3, before, h, other, space, choices))))
        witnesses.append(Witness(f"a write at VFCtrl {offset:#x} installs a mapped entry", z3.And(wrote, installed.mapped)))
    witnesses.append(Witness("another guest's entry is looked up", h != g))
    return prove(f"vIOMMU map-write isolation ({guests} guests)", assumptions, z3.And(*claims), witnesses=witnesses,
                 timeout_ms=timeout_ms)
