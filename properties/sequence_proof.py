"""Isolation of a sequence's nested devices against any guest, proved with Z3 (``amdvi check --prove``).

``amdvi check`` tries every listed access under every cache choice; for a nested device (guest v2 over
host v1) the guest is the adversary, and what it may write is unbounded. At a point of the run this
module fixes what the hypervisor owns, exactly as the driver left it (the device table and every
page-table page of the driver's pool), and lets the guest own the rest: every word of memory outside
those pages and the guest fields of the device's DTE (GIoV, GLX, GPM, the GCR3 root). It then asks Z3
(``properties.isolation.nested_isolation``) whether any access of the device, at any address, with or
without a PASID, reads a guest table or reaches a final address outside the frames its stage 2 maps.

The invariant reported when it is proved: *for every guest memory content and every guest DTE field,
every guest-table read and every final address of the device lie in its stage-2 frames.* Its premises
are witnessed by the run itself (the guest's actual tables and a request that the run translates
through them), so the proof is not vacuous. Frame-level: permissions are left to ``amdvi check``'s
isolation.
"""

from __future__ import annotations

from dataclasses import dataclass


from amdvi.models.iommufd.driver_api import PciDevice
from amdvi.spec.bitvec import INT
from amdvi.spec.device_table import DTE
from amdvi.spec.translation import read_dte, translate

from .isolation import GUEST_DTE_FIELDS, HostLayout, IsolationQuery, nested_isolation
from .sequence_check import Execution, requests

INVARIANT = ("for every guest memory content and every guest DTE field, every guest-table read and every final "
             "address of the device lie in its stage-2 frames")


@dataclass(frozen=True)
class GuestProof:
    device: str
    at: int
    query: IsolationQuery | None  # None: not proved, see ``why``
    why: str = ""


def _regions(ex: Execution) -> tuple[tuple[int, int], ...]:
    layout = ex.scenario.layout
    pool_base, pool_pages = ex.scenario.driver_model().config.page_pool
    return ((layout.dev_tab, layout.dev_tab + 0x1000 * layout.dev_tab_pages),
            (pool_base, pool_base + 0x1000 * pool_pages))


def _nested(dte: int) -> bool:
    v = DTE.view(dte)
    return bool(v["V"] and v["TV"] and v["GV"] and v["Mode"])


def host_layout_at(ex: Execution, at: int, device: PciDevice) -> HostLayout:
    """What the hypervisor owns at boundary ``at``, and the frames ``device``'s stage 2 maps."""
    memory = ex.run.boundaries[at].memory
    regions = _regions(ex)
    words = {a: v for a, v in memory.items() if any(lo <= a < hi for lo, hi in regions)}
    bar = ex.run.state.regs.dev_tab_bar
    dte, _, _ = read_dte(INT, memory, bar, device.device_id)
    frames = ex.promise.frames[at].get(device.device_id)
    mapped = tuple((pa, n) for pa, n, _, _ in (frames.ranges if frames else ()))
    return HostLayout(words, bar, mapped, {}, regions=regions, device=device.device_id, dte_bits=dte)


def guest_isolation(ex: Execution, device: PciDevice, at: int | None = None, *,
                    timeout_ms: int = 300_000) -> GuestProof:
    """Prove (or refute) that no guest leads ``device`` outside its stage 2 at boundary ``at`` (default:
    the end of the run)."""
    at = len(ex.run.boundaries) - 1 if at is None else at
    memory = ex.run.boundaries[at].memory
    bar = ex.run.state.regs.dev_tab_bar
    dte, _, _ = read_dte(INT, memory, bar, device.device_id)
    if not _nested(dte):
        return GuestProof(device.name, at, None, "its DTE is not a nested (GV = 1 over a host table) one there")
    layout = host_layout_at(ex, at, device)
    if not layout.mapped:
        return GuestProof(device.name, at, None, "it has no stage-2 frames there")
    witness_request = next((r for r in requests(ex) if r.device_id == device.device_id
                            and translate(INT, memory, bar, r).ok and translate(INT, memory, bar, r).guest), None)
    if witness_request is None:
        return GuestProof(device.name, at, None, "no access of the run is translated through the guest's tables "
                                                 "to witness the premises")
    guest_image = {a: v for a, v in memory.items() if not any(lo <= a < hi for lo, hi in layout.regions)}
    view = DTE.view(dte)
    guest_fields = {name: view[name] for name in GUEST_DTE_FIELDS}
    query = nested_isolation(ex.scenario.hardware, timeout_ms, layout=layout,
                             witness=(guest_image, guest_fields, witness_request),
                             name=f"guest-isolation[{device.name}]")
    return GuestProof(device.name, at, query)


def nested_devices(ex: Execution, at: int | None = None) -> list[PciDevice]:
    """The scenario's devices whose DTE is nested at boundary ``at`` (default: the end)."""
    at = len(ex.run.boundaries) - 1 if at is None else at
    memory = ex.run.boundaries[at].memory
    bar = ex.run.state.regs.dev_tab_bar
    return [d for d in ex.scenario.devices if _nested(read_dte(INT, memory, bar, d.device_id)[0])]


