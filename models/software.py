"""What system software does at the lowest level: lay out the IOMMU's tables and rings, write DTEs
and page-table entries, build commands and queue them (48882 §2.4 "Commands", §3.4 registers).

Commands are built with the command Structures' encoders (never by hand-placed bits); queuing is a
list of :mod:`amdvi.models.iommu` moves (stores into the ring, then the tail register write), so a
checker can interleave hardware and device moves between them. Concrete (Python ints) unless noted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from amdvi.spec.bitvec import INT, mask
from amdvi.spec.commands import COMMAND_BYTES, EVERY_PAGE, INVALIDATE_IOMMU_ALL, covering_block
from amdvi.spec.device_table import DTE, ENTRY_BYTES
from amdvi.spec.levels import ENTRY_SHIFT, PAGE_SHIFT, entry_address as entry_at, gcr3_index_bits
from amdvi.spec.mmio import (
    CMD_BUF_BAR, CMD_BUF_HEAD, CMD_BUF_TAIL, CONTROL, DEV_TAB_BAR, EVT_LOG_BAR, EVT_LOG_HEAD, EVT_LOG_TAIL, STATUS,
)

from . import protocol
from .caches import Caches
from .iommu import CpuWrite, IommuState, SetTail
from .registers import Registers, ring_offset


@dataclass(frozen=True)
class Layout:
    """Where software put the IOMMU's structures (system physical addresses, 4 KiB aligned)."""

    dev_tab: int = 0x0010_0000
    dev_tab_pages: int = 1  # 128 DTEs a page
    cmd_ring: int = 0x0020_0000
    cmd_len: int = 8  # 2^8 entries of 16 bytes
    event_log: int = 0x0030_0000
    event_len: int = 8
    semaphore: int = 0x0040_0000  # COMPLETION_WAIT store address

    @property
    def ring_bytes(self) -> int:
        return (1 << self.cmd_len) * COMMAND_BYTES

    def dte_address(self, device_id: int) -> int:
        return self.dev_tab + ENTRY_BYTES * device_id


def registers(layout: Layout) -> Registers:
    """The registers after software enabled the IOMMU: device table, command buffer and event log on."""
    return Registers(
        dev_tab_bar=DEV_TAB_BAR.encode(DevTabBase=layout.dev_tab >> 12, Size=layout.dev_tab_pages - 1),
        cmd_buf_bar=CMD_BUF_BAR.encode(ComBase=layout.cmd_ring >> 12, ComLen=layout.cmd_len),
        evt_log_bar=EVT_LOG_BAR.encode(EventBase=layout.event_log >> 12, EventLen=layout.event_len),
        control=CONTROL.encode(IommuEn=1, CmdBufEn=1, EventLogEn=1),
        status=STATUS.encode(CmdBufRun=1, EventLogRun=1),
        cmd_head=CMD_BUF_HEAD.encode(CmdHdPtr=0), cmd_tail=CMD_BUF_TAIL.encode(CmdTailPtr=0),
        evt_head=EVT_LOG_HEAD.encode(EventHdPtr=0), evt_tail=EVT_LOG_TAIL.encode(EventTailPtr=0),
    )


def initial_state(layout: Layout, memory: dict[int, int] | None = None, caches: Caches | None = None) -> IommuState:
    return IommuState(memory=dict(memory or {}), regs=registers(layout), caches=caches or Caches.empty())


def write_dte(memory: dict[int, int], layout: Layout, device_id: int, dte: int) -> dict[int, int]:
    """``memory`` with the DTE of ``device_id`` stored (a copy)."""
    out = dict(memory)
    for i in range(ENTRY_BYTES // 8):
        out[layout.dte_address(device_id) + 8 * i] = (dte >> (64 * i)) & mask(64)
    return out


def dte_moves(layout: Layout, device_id: int, dte: int) -> list[CpuWrite]:
    """The stores that write a whole DTE (in word order; ordering rules of §2.2.2 are the driver's)."""
    return [CpuWrite(layout.dte_address(device_id) + 8 * i, (dte >> (64 * i)) & mask(64))
            for i in range(ENTRY_BYTES // 8)]


# -- commands (concrete calls of the builders of :mod:`amdvi.models.protocol`) ---------------------


def completion_wait(store_address: int, data: int, interrupt: bool = False) -> int:
    return protocol.completion_wait(INT, store_address, data, interrupt=interrupt)


def inv_devtab(device_id: int) -> int:
    return protocol.invalidate_devtab_entry(INT, device_id)


def _block(start: int, size: int | None) -> tuple[int, int]:
    return EVERY_PAGE if size is None else covering_block(start, size)


def inv_pages(domain_id: int, start: int = 0, size: int | None = None, *, pde: bool = True,
              pasid: int | None = None) -> int:
    """INVALIDATE_IOMMU_PAGES for ``[start, start + size)`` (``size`` None: every page); ``pasid``
    given: the guest (GN = 1) translations of that PASID."""
    return protocol.invalidate_iommu_pages(INT, domain_id, _block(start, size), pde=pde, pasid=pasid)


def inv_iotlb(device_id: int, start: int = 0, size: int | None = None, *, pasid: int | None = None,
              max_pending: int = 0) -> int:
    """INVALIDATE_IOTLB_PAGES to an ATS device's own IOTLB."""
    return protocol.invalidate_iotlb_pages(INT, device_id, _block(start, size), pasid=pasid, max_pending=max_pending)


def inv_all() -> int:
    return INVALIDATE_IOMMU_ALL.encode({})


def queue_moves(state: IommuState, layout: Layout, commands: Iterable[int]) -> list[Any]:
    """The stores that put ``commands`` in the ring at the current tail, then the tail write.

    Concrete; does not check for a full ring (the caller queues fewer than 2^ComLen - 1 commands).
    """
    tail = INT.value(ring_offset(INT, state.regs, "cmd_tail"))
    moves: list[Any] = []
    for bits in commands:
        at = layout.cmd_ring + tail
        moves += [CpuWrite(at, bits & mask(64)), CpuWrite(at + 8, bits >> 64)]
        tail = (tail + COMMAND_BYTES) % layout.ring_bytes
    return moves + [SetTail(tail)]


def semaphore(state: IommuState, layout: Layout) -> int:
    """Concrete: the word at the COMPLETION_WAIT store address."""
    return state.memory.get(layout.semaphore, 0)


def dte(**fields: Any) -> int:
    """A DTE from field values (spec names), composites allowed (``"Host Page Table Root Pointer"``...)."""
    return DTE.encode(fields)


# -- page tables (concrete builders: each returns a new memory) ------------------------------------


@dataclass(frozen=True)
class Mapped:
    """A memory with a new mapping, the next free table page, and the leaf entry's address."""

    memory: dict[int, int]
    next_free: int
    leaf_address: int
    directory_addresses: tuple[int, ...]  # the page-directory entries on the path, top level first


PAGE_BYTES = 1 << PAGE_SHIFT  # a table is one 4 KiB page


def _map_page(memory: dict[int, int], root: int, levels: int, address: int, next_free: int, *,
              directory: Callable[[int, int], int], next_table: Callable[[int], int], leaf: int) -> Mapped:
    """The 4 KiB page at ``address`` mapped by the word ``leaf`` in the ``levels``-level table at ``root``;
    a missing table below a level-n entry is allocated from ``next_free`` and linked by
    ``directory(table, n - 1)``; ``next_table(entry)`` reads where a present directory entry points."""
    out, table, directories = dict(memory), root, []
    for level in range(levels, 0, -1):
        at = entry_at(INT, table, address, level, range(level, level + 1))
        if level == 1:
            out[at] = leaf
            return Mapped(out, next_free, at, tuple(directories))
        directories.append(at)
        entry = out.get(at, 0)
        if entry & 1:
            table = next_table(entry)
            continue
        out[at] = directory(next_free, level - 1)
        table, next_free = next_free, next_free + PAGE_BYTES
    raise ValueError(f"a table of {levels} levels maps nothing")


def v1_map(memory: dict[int, int], root: int, mode: int, iova: int, spa: int, next_free: int, *,
           readable: bool = True, writable: bool = True) -> Mapped:
    """Map the 4 KiB page at ``iova`` to ``spa`` in the ``mode``-level v1 table at ``root`` (§2.2.3),
    allocating missing tables from ``next_free`` (4 KiB apart)."""
    from amdvi.spec.host_page_table import PDE, PTE

    return _map_page(
        memory, root, mode, iova, next_free,
        directory=lambda table, level: PDE.encode({"PR": 1, "IR": 1, "IW": 1, "Next Level": level,
                                                   "Next Table Address": table >> PAGE_SHIFT}),
        next_table=lambda entry: PDE.view(entry)["Next Table Address"] << PAGE_SHIFT,
        leaf=PTE.encode({"PR": 1, "IR": int(readable), "IW": int(writable), "Next Level": 0,
                         "Page Address": spa >> PAGE_SHIFT}))


def v2_map(memory: dict[int, int], root: int, gva: int, address: int, next_free: int, *,
           writable: bool = True, user: bool = False, levels: int = 4) -> Mapped:
    """Map the 4 KiB page at ``gva`` to ``address`` in the x86-64 format guest table at ``root`` (§2.2.6)."""
    from amdvi.spec.guest_page_table import GPTE

    return _map_page(
        memory, root, levels, gva, next_free,
        directory=lambda table, level: GPTE.encode({"P": 1, "R/W": 1, "U/S": 1, "Address": table >> PAGE_SHIFT}),
        next_table=lambda entry: GPTE.view(entry)["Address"] << PAGE_SHIFT,
        leaf=GPTE.encode({"P": 1, "R/W": int(writable), "U/S": int(user), "Address": address >> PAGE_SHIFT}))


def entry_on_path(memory: dict[int, int], root: int, address: int, level: int, *, top: int,
                  guest: bool = False) -> int | None:
    """Software's own look-up: the address of the level-``level`` entry on the path of ``address`` in
    the ``top``-level table at ``root``, v1 (§2.2.3) or, with ``guest``, x86-64 format (§2.2.6);
    ``None`` when an entry above it is not present."""
    from amdvi.spec.guest_page_table import GPTE
    from amdvi.spec.host_page_table import PDE

    table = root
    for at_level in range(top, level - 1, -1):
        at = entry_at(INT, table, address, at_level, range(at_level, at_level + 1))
        if at_level == level:
            return at
        entry = memory.get(at, 0)
        if not entry & 1:
            return None
        table = (GPTE.view(entry)["Address"] if guest else PDE.view(entry)["Next Table Address"]) << PAGE_SHIFT
    raise ValueError(f"no level {level} in a {top}-level table")


def gcr3_entry_address(table: int, pasid: int) -> int:
    """The entry of ``pasid`` in a one-level GCR3 table (DTE.GLX = 0)."""
    hi, lo = gcr3_index_bits(0)
    return table + (((pasid >> lo) & mask(hi - lo + 1)) << ENTRY_SHIFT)


def gcr3_entry(guest_root: int) -> int:
    from amdvi.spec.guest_page_table import GCR3_ENTRY

    return GCR3_ENTRY.encode({"V": 1, "GCR3": guest_root >> 12})


def v1_dte(domain_id: int, root: int, mode: int, *, readable: bool = True, writable: bool = True,
           ats: bool = False) -> int:
    """A DTE for a host (v1) translated device (§2.2.2.1): V, TV, Mode, root, DomainID, IR/IW, I."""
    return DTE.encode({"V": 1, "TV": 1, "IR": int(readable), "IW": int(writable), "Mode": mode,
                       "Host Page Table Root Pointer": root >> 12, "DomainID": domain_id, "I": int(ats)})


def v2_dte(domain_id: int, gcr3_table: int, *, host_root: int = 0, host_mode: int = 0, giov: bool = True,
           ats: bool = False) -> int:
    """A DTE for guest (v2) translation through a one-level GCR3 table (GLX = 0), nested over the v1
    table at ``host_root`` when ``host_mode`` != 0."""
    return DTE.encode({"V": 1, "TV": 1, "IR": 1, "IW": 1, "Mode": host_mode,
                       "Host Page Table Root Pointer": host_root >> 12, "DomainID": domain_id, "GV": 1, "GLX": 0,
                       "GIoV": int(giov), "GCR3 Table Root Pointer": gcr3_table, "I": int(ats)})
