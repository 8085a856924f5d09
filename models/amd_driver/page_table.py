"""The v1 (host) page table as Linux's generic page table (drivers/iommu/generic_pt, format amdv1,
iommu_pt.h) builds it for the AMD driver (page-tables.md §1-2; linux-driver-sequences.md §3).

* A domain starts with a 3-level table (amd_iommu_domain_alloc_paging_v1: ``cfg.starting_level = 2``,
  generic-PT level 2 = DTE Mode 3, 512 GiB of IOVA) and grows on demand (PT_FEAT_DYNAMIC_TOP):
  increase_top stacks as many new top tables as the mapped range needs, each pointing at the old
  top through entry 0, then calls the driver's change_top once; past amd_iommu_hpt_level: ERANGE.
* Leaves are 4 KiB PTEs (the model maps as Linux does booted with ``amd_iommu=pgsize_4k``; larger and
  Next-Level-7 leaves are not modelled). Directory entries are PR, IR, IW and Next Level = level - 1.
* Unmap (__unmap_range) clears each present leaf, descending into tables first; a table whose whole
  span the range covers is then put on the free list and its directory entry cleared. Table pages
  are freed only after the caller's flush (iotlb_sync).
"""

from __future__ import annotations

from amdvi.spec.host_page_table import PDE, PTE

from .state import Work

START_MODE = 3
LEVEL_BITS = 9


def span_shift(level: int) -> int:
    """log2 of the IOVA span one entry of a level-``level`` table maps."""
    return 12 + LEVEL_BITS * (level - 1)


def covers(mode: int) -> int:
    """IOVA bits a ``mode``-level table translates (64 at mode 6)."""
    return min(64, 12 + LEVEL_BITS * mode)


def entry_address(table: int, iova: int, level: int) -> int:
    return table + 8 * ((iova >> span_shift(level)) & 0x1FF)


def directory_entry(table: int, next_level: int) -> int:
    return PDE.encode({"PR": 1, "IR": 1, "IW": 1, "Next Level": next_level, "Next Table Address": table >> 12})


def leaf_entry(pa: int, readable: bool, writable: bool) -> int:
    return PTE.encode({"PR": 1, "IR": int(readable), "IW": int(writable), "Next Level": 0, "Page Address": pa >> 12})


def next_table(entry: int) -> int:
    return PDE.view(entry)["Next Table Address"] << 12


def needed_mode(mode: int, last_iova: int) -> int:
    while covers(mode) < 64 and last_iova >> covers(mode):
        mode += 1
    return mode


def increase_top(work: Work, handle: int, new_mode: int, what: str) -> list[tuple[int, int]] | None:
    """increase_top's new tables (each one's entry 0 -> the previous top), bottom up; returns
    [(page, mode)] with the final top last, or None when the pool is empty."""
    domain = work.paging(handle)
    top, mode, made = domain.root, domain.mode, []
    for level in range(mode + 1, new_mode + 1):
        page = work.alloc_page(f"{what}: increase_top")
        if page is None:
            return None
        work.store(((page, directory_entry(top, level - 1)),), f"{what}: increase_top: entry 0 -> old top")
        made.append((page, level))
        top = page
    return made


def map_page(work: Work, handle: int, iova: int, pa: int, readable: bool, writable: bool, what: str) -> str | None:
    """Install the 4 KiB PTE for ``iova`` (missing tables allocated and linked on the way down); None,
    or the errno name on failure (EADDRINUSE: already mapped; ENOMEM: pool empty)."""
    domain = work.paging(handle)
    table = domain.root
    for level in range(domain.mode, 1, -1):
        at = entry_address(table, iova, level)
        entry = work.read(at)
        if not entry & 1:
            page = work.alloc_page(f"{what}: table")
            if page is None:
                return "ENOMEM"
            work.set_domain(handle, table_pages=work.paging(handle).table_pages | {page})
            work.store(((at, directory_entry(page, level - 1)),), f"{what}: __map_range: directory entry")
            entry = work.read(at)
        table = next_table(entry)
    at = entry_address(table, iova, 1)
    if work.read(at) & 1:
        return "EADDRINUSE"
    work.store(((at, leaf_entry(pa, readable, writable)),), f"{what}: pt_install_leaf_entry")
    return None


def unmap_range(work: Work, handle: int, iova: int, length: int, what: str) -> list[int]:
    """__unmap_range over [iova, iova + length): the freed table pages, in the order they were freed."""
    domain = work.paging(handle)
    freed: list[int] = []
    _unmap_table(work, domain.root, domain.mode, 0, iova, iova + length - 1, freed, what)
    work.set_domain(handle, table_pages=work.paging(handle).table_pages - set(freed))
    return freed


def _unmap_table(work: Work, table: int, level: int, base: int, first: int, last: int, freed: list[int],
                 what: str) -> None:
    shift = span_shift(level)
    start = max(first, base)
    end = min(last, base + (1 << (shift + LEVEL_BITS)) - 1) if shift + LEVEL_BITS < 64 else last
    index = (start - base) >> shift
    while True:
        entry_base = base + (index << shift)
        if entry_base > end or index >= 512:
            return
        at = table + 8 * index
        entry = work.read(at)
        if entry & 1 and level > 1:
            lower = next_table(entry)
            _unmap_table(work, lower, level - 1, entry_base, first, last, freed, what)
            if first <= entry_base and entry_base + (1 << shift) - 1 <= last:  # fully covered: free it
                freed.append(lower)
                work.store(((at, 0),), f"{what}: __unmap_range: clear directory entry")
        elif entry & 1:
            work.store(((at, 0),), f"{what}: __unmap_range: clear PTE")
        index += 1
