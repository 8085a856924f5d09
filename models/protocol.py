"""The invalidation protocol of 48882 §2.4: after each kind of change to what the IOMMU reads, the
commands software must send before it relies on the change, then a COMPLETION_WAIT (§2.4.1) whose
store tells software they have all taken effect.

* a host (v1) page-table entry of a DomainID changes (§2.2.3): INVALIDATE_IOMMU_PAGES of the
  DomainID over the block the entry covers (§2.4.3; PDE = 1 when a page-directory entry changed), and
  INVALIDATE_IOTLB_PAGES over the block to each ATS device of the DomainID (§2.4.4);
* a guest (v2) page-table entry of a (DomainID, PASID) changes (§2.2.6): the same with GN = 1 and the
  PASID;
* the GCR3 table entry of a PASID changes (a new guest table): every page of the PASID, PDE = 1;
* a device's DTE is rewritten (§2.2.2): INVALIDATE_DEVTAB_ENTRY (§2.4.2), every page of each DomainID
  whose translations the device had or gets, and (ATS) every page of the device's own IOTLB.

Each function returns the :class:`Required` commands in the order software sends them, over the
backend ``b`` (:data:`~amdvi.spec.bitvec.INT` or :data:`~amdvi.spec.bitvec.Z3`): the proofs give
symbolic operands, the state machine and the driver models concrete ones. A range is an aligned block
``(base, shift)``, ``[base, base + 2^shift)``, encoded by :func:`amdvi.spec.commands.block_operand`;
commands are built with the command Structures' encoders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from amdvi.spec.bitvec import ADDRESS_WIDTH
from amdvi.spec.commands import (
    COMPLETION_WAIT, EVERY_PAGE, INVALIDATE_DEVTAB_ENTRY, INVALIDATE_IOMMU_PAGES, INVALIDATE_IOTLB_PAGES, RESET_VMMIO,
    block_operand,
)


@dataclass(frozen=True)
class Required:
    """One invalidation a change requires: ``command`` (128 bits), sent when ``when`` holds."""

    label: str
    command: Any
    when: Any = True


@dataclass(frozen=True)
class AtsDevice:
    """A device with its own IOTLB (DTE.I = 1) that may hold translations a change concerns, when
    ``when`` holds (e.g. its DTE's DomainID is the changed one)."""

    device_id: Any
    when: Any = True


# -- the commands (§2.4.1 .. §2.4.4) ------------------------------------------------------------------


def completion_wait(b: Any, store_address: Any, data: Any, *, interrupt: bool = False) -> Any:
    """COMPLETION_WAIT storing ``data`` at ``store_address`` (8-byte aligned) once every earlier
    command is done (§2.4.1); ``interrupt``: also signal Status.ComWaitInt."""
    return COMPLETION_WAIT.encode({"S": 1, "I": int(interrupt), "Store Address": b.lshr(store_address, 3, 64),
                                   "Store Data": data}, backend=b)


def invalidate_devtab_entry(b: Any, device_id: Any) -> Any:
    """INVALIDATE_DEVTAB_ENTRY of ``device_id`` (§2.4.2)."""
    return INVALIDATE_DEVTAB_ENTRY.encode({"DeviceID": device_id}, backend=b)


def reset_vmmio(b: Any, guest_id: Any) -> Any:
    """RESET_VMMIO of one HW-vIOMMU guest, All and VCmd set (as AMD's driver always sends it)."""
    return RESET_VMMIO.encode({"GuestID": guest_id, "All": 1, "VCmd": 1}, backend=b)


def _page_number(b: Any, address: Any) -> Any:
    """The Address operand of an invalidation: the address's page number (the field's unit_shift
    drops the offset bits; INVALIDATE_IOMMU_PAGES and INVALIDATE_IOTLB_PAGES place it alike)."""
    return b.extract(address, ADDRESS_WIDTH - 1, INVALIDATE_IOMMU_PAGES.field("Address").unit_shift)


def invalidate_iommu_pages(b: Any, domain_id: Any, block: tuple[Any, Any] = EVERY_PAGE, *, pde: bool = True,
                           pasid: Any = None) -> Any:
    """INVALIDATE_IOMMU_PAGES of ``domain_id`` over the aligned ``block`` (§2.4.3): its host
    translations, or with ``pasid`` given (GN = 1) the guest translations of that PASID; ``pde``:
    page-directory entries too."""
    address, s = block_operand(b, *block)
    return INVALIDATE_IOMMU_PAGES.encode({
        "DomainID": domain_id, "S": s, "PDE": int(pde), "GN": int(pasid is not None),
        "PASID": 0 if pasid is None else pasid, "Address": _page_number(b, address)}, backend=b)


def invalidate_iotlb_pages(b: Any, device_id: Any, block: tuple[Any, Any] = EVERY_PAGE, *, pasid: Any = None,
                           max_pending: Any = 0) -> Any:
    """INVALIDATE_IOTLB_PAGES to the ATS device ``device_id``'s own IOTLB over the aligned ``block``
    (§2.4.4); with ``pasid`` given (GN = 1) its translations of that PASID. QueueID is the DeviceID, as
    Linux fills it."""
    address, s = block_operand(b, *block)
    return INVALIDATE_IOTLB_PAGES.encode({
        "DeviceID": device_id, "QueueID": device_id, "MaxPend": max_pending, "S": s, "GN": int(pasid is not None),
        "PASID": 0 if pasid is None else pasid, "Address": _page_number(b, address)}, backend=b)


# -- what each change requires --------------------------------------------------------------------------

EACH_ATS_DEVICE = "INVALIDATE_IOTLB_PAGES(each device of the domain, range)"


def _pages_label(domain: str, extent: str, *, guest: bool, pde: bool) -> str:
    return f"INVALIDATE_IOMMU_PAGES({domain}, {extent}{', GN=1, PASID' if guest else ''}{', PDE=1' if pde else ''})"


def _each_ats_device(b: Any, ats_devices: Iterable[AtsDevice], block: tuple[Any, Any], pasid: Any = None
                     ) -> tuple[Required, ...]:
    return tuple(Required(EACH_ATS_DEVICE, invalidate_iotlb_pages(b, d.device_id, block, pasid=pasid), d.when)
                 for d in ats_devices)


def v1_table_change(b: Any, domain_id: Any, block: tuple[Any, Any], ats_devices: Iterable[AtsDevice] = (), *,
                    directory: bool = True) -> tuple[Required, ...]:
    """Host (v1) page-table entries of ``domain_id`` over the aligned ``block`` changed (a PTE, or with
    ``directory`` a page-directory entry too)."""
    return (Required(_pages_label("DomainID", "range", guest=False, pde=directory),
                     invalidate_iommu_pages(b, domain_id, block, pde=directory)),
            *_each_ats_device(b, ats_devices, block))


def v2_table_change(b: Any, domain_id: Any, pasid: Any, block: tuple[Any, Any],
                    ats_devices: Iterable[AtsDevice] = (), *, directory: bool = True) -> tuple[Required, ...]:
    """Guest (v2) page-table entries of ``pasid`` under ``domain_id`` over the aligned ``block`` of guest
    virtual addresses changed (with ``directory``, a page-directory entry too)."""
    return (Required(_pages_label("DomainID", "range", guest=True, pde=directory),
                     invalidate_iommu_pages(b, domain_id, block, pde=directory, pasid=pasid)),
            *_each_ats_device(b, ats_devices, block, pasid))


def gcr3_entry_change(b: Any, domain_id: Any, pasid: Any, ats_devices: Iterable[AtsDevice] = ()
                      ) -> tuple[Required, ...]:
    """The GCR3 table entry of ``pasid`` under ``domain_id`` changed (a new guest table, or none): every
    guest translation and guest page-directory entry of the PASID."""
    return (Required(_pages_label("DomainID", "all", guest=True, pde=True),
                     invalidate_iommu_pages(b, domain_id, pde=True, pasid=pasid)),
            *_each_ats_device(b, ats_devices, EVERY_PAGE, pasid))


def dte_change(b: Any, device_id: Any, domains: Mapping[str, Any], *, ats: Any = True) -> tuple[Required, ...]:
    """The DTE of ``device_id`` was rewritten. ``domains`` names each DomainID whose cached translations
    software flushes, in the order it sends them (``{"old DomainID": d}``: the one the old entry
    tagged); ``ats``: the device may hold translations in its own IOTLB (a backend boolean, or False:
    no such command)."""
    return (Required("INVALIDATE_DEVTAB_ENTRY(device)", invalidate_devtab_entry(b, device_id)),
            *(Required(_pages_label(role, "all", guest=False, pde=True), invalidate_iommu_pages(b, domain_id, pde=True))
              for role, domain_id in domains.items()),
            *(() if ats is False else (Required("INVALIDATE_IOTLB_PAGES(device, all)",
                                                invalidate_iotlb_pages(b, device_id), ats),)))


def commands_to_send(required: Iterable[Required]) -> list[int]:
    """The concrete commands of ``required`` whose ``when`` holds, in order (software queues them, then
    a :func:`completion_wait`)."""
    return [r.command for r in required if r.when]
