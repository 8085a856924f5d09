"""Building and writing DTEs (drivers/iommu/amd/iommu.c ``set_dte_entry``, ``amd_iommu_set_dte_v1``,
``update_dte256``, ``amd_iommu_update_dte``, ``clone_aliases``; linux-driver-sequences.md §1.1, §1.2).

The IOMMU reads a 256-bit DTE at once but the CPU writes it as two 128-bit halves (cmpxchg16b), so
the order of the halves decides what the IOMMU may see in between: V and GV live in the lower half,
so they are written last when set and first when cleared (the table in §1.2).
"""

from __future__ import annotations

from amdvi.spec.device_table import DTE

from .flush import device_flush_dte, flush_tlb_domid
from .flush import iommu_flush_dte_sync as _flush_dte_sync
from .state import CLEAR_DTE, PagingDomain, Work

WORD = (1 << 64) - 1
# write_dte_upper128 keeps the interrupt-remapping bits of data[2] (DTE_DATA2_INTR_MASK: all of
# data[2] but bits 55:52, the reserved pair and the guest paging mode)
DATA2_INTR_MASK = WORD & ~(0xF << 52)


def words(dte: int) -> tuple[int, int, int, int]:
    return tuple((dte >> (64 * i)) & WORD for i in range(4))  # type: ignore[return-value]


def join(w: tuple[int, ...]) -> int:
    return sum(word << (64 * i) for i, word in enumerate(w))


def read_dte(work: Work, device_id: int) -> int:
    at = work.config.layout.dte_address(device_id)
    return join(tuple(work.read(at + 8 * i) for i in range(4)))


def _write_lower(work: Work, device_id: int, new: int, what: str) -> None:
    at, w = work.config.layout.dte_address(device_id), words(new)
    work.store(((at, w[0]), (at + 8, w[1])), f"{what}: update_dte256: lower half")


def _write_upper(work: Work, device_id: int, new: int, what: str) -> None:
    at, w, old = work.config.layout.dte_address(device_id), words(new), words(read_dte(work, device_id))
    data2 = (w[2] & ~DATA2_INTR_MASK) | (old[2] & DATA2_INTR_MASK)
    work.store(((at + 16, data2), (at + 24, w[3])), f"{what}: update_dte256: upper half")


def update_dte256(work: Work, device_id: int, new: int, what: str, *, flush: bool = True) -> None:
    """update_dte256: the two halves in the order the old and new V / GV demand, each transition but
    the same-level GV one followed by INVALIDATE_DEVTAB_ENTRY + COMPLETION_WAIT (``flush`` False: the
    ``skip-alias-flush`` fault's alias copy, with no flush)."""

    def iommu_flush_dte_sync(work: Work, device_id: int, what: str) -> None:
        if flush:
            _flush_dte_sync(work, device_id, what)

    old = DTE.view(read_dte(work, device_id))
    new_view = DTE.view(new)
    enabling = (not old["V"]) or (not old["GV"] and new_view["V"])
    if work.choices.dte_halves_wrong_order and enabling:
        _write_lower(work, device_id, new, what)
        _write_upper(work, device_id, new, what)
        iommu_flush_dte_sync(work, device_id, what)
    elif not old["V"]:  # existing DTE not valid: V is set last
        _write_upper(work, device_id, new, what)
        _write_lower(work, device_id, new, what)
        iommu_flush_dte_sync(work, device_id, what)
    elif not new_view["V"]:  # valid -> not valid: V is cleared first
        _write_lower(work, device_id, new, what)
        _write_upper(work, device_id, new, what)
        iommu_flush_dte_sync(work, device_id, what)
    elif not old["GV"]:  # both valid, no guest table before: GV (if any) is set last
        _write_upper(work, device_id, new, what)
        _write_lower(work, device_id, new, what)
        iommu_flush_dte_sync(work, device_id, what)
    elif not new_view["GV"]:  # guest table dropped: GV is cleared first
        _write_lower(work, device_id, new, what)
        _write_upper(work, device_id, new, what)
        iommu_flush_dte_sync(work, device_id, what)
    elif old["GPM"] != new_view["GPM"]:  # guest paging level changes: disable, flush, then rewrite
        # Linux writes a zero-initialised entry's lower half here, V included (update_dte256 in
        # AMDESE/linux-iommu@00406666 drivers/iommu/amd/iommu.c), so the DTE has V = 0 until the last
        # write (the library's nested-guest-level-switch)
        _write_lower(work, device_id, 0, f"{what}: cleared")
        iommu_flush_dte_sync(work, device_id, what)
        _write_upper(work, device_id, new, what)
        _write_lower(work, device_id, new, what)
        iommu_flush_dte_sync(work, device_id, what)
    else:  # same guest level: only the lower half changes, no flush here
        _write_lower(work, device_id, new, what)


def clone_aliases(work: Work, device_id: int, what: str) -> None:
    """clone_aliases: the device's DTE copied to each alias with the same ordering rules."""
    state = work.device_state(device_id)
    if state.pci is None:
        return
    dte = read_dte(work, device_id)
    for alias in state.pci.aliases:
        if alias != device_id:
            update_dte256(work, alias, dte, f"{what}: clone_aliases", flush=not work.choices.skip_alias_flush)


def amd_iommu_update_dte(work: Work, device_id: int, new: int, what: str) -> None:
    """amd_iommu_update_dte: update_dte256, clone_aliases, device_flush_dte, COMPLETION_WAIT."""
    update_dte256(work, device_id, new, f"{what}: amd_iommu_update_dte")
    clone_aliases(work, device_id, f"{what}: amd_iommu_update_dte")
    device_flush_dte(work, device_id, f"{what}: amd_iommu_update_dte")
    work.completion_wait(f"{what}: amd_iommu_update_dte")


def v1_fields(domain: PagingDomain, domain_id: int, ats_enabled: bool, *, root: int | None = None,
              mode: int | None = None) -> dict[str, int]:
    """amd_iommu_set_dte_v1's fields: TV, Mode, HAD (dirty tracking), host root, IR, IW, DomainID, I."""
    return {"V": 1, "TV": 1, "Mode": domain.mode if mode is None else mode, "HAD": 3 if domain.dirty_tracking else 0,
            "Host Page Table Root Pointer": (domain.root if root is None else root) >> 12, "IR": 1, "IW": 1,
            "DomainID": domain_id, "I": int(ats_enabled)}


def set_dte_entry(work: Work, device_id: int, what: str, *, root: int | None = None, mode: int | None = None) -> None:
    """set_dte_entry for a device on a v1 paging domain (dev_data->domain): build from the clear DTE,
    update it, then flush the DomainID the old DTE carried if it had one (a previous kernel's, a
    nested DTE's hDomID, or during change_top the domain's own)."""
    state = work.device_state(device_id)
    domain = work.paging(state.domain)  # type: ignore[arg-type]
    old_domain_id = DTE.view(read_dte(work, device_id))["DomainID"]
    new = DTE.encode(v1_fields(domain, domain.domain_id, state.ats_enabled, root=root, mode=mode))
    amd_iommu_update_dte(work, device_id, new, f"{what}: set_dte_entry")
    if old_domain_id:
        flush_tlb_domid(work, old_domain_id, f"{what}: set_dte_entry: old DomainID")


def clear_dte_entry(work: Work, device_id: int, what: str) -> None:
    """clear_dte_entry: the clear DTE (V = 1, no translation: DMA blocked), updated and flushed."""
    amd_iommu_update_dte(work, device_id, CLEAR_DTE, f"{what}: clear_dte_entry")
