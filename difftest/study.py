"""The feasibility study's findings (shared/reference/qemu-amd-iommu.md §2, §5) as hand-built cases.

Each :class:`StudyCase` names the known divergences it must show (none: QEMU and the spec agree, e.g.
over-invalidation). ``amdvi diff-qemu --study`` runs them, each on a fresh QEMU (Status bits QEMU
cannot clear would otherwise carry over), and says which reproduce.
"""

from __future__ import annotations

from dataclasses import dataclass

from amdvi.models.software import completion_wait, inv_all, inv_devtab, inv_iotlb, inv_pages, v1_dte, v1_map
from amdvi.spec.commands import COMPLETION_WAIT
from amdvi.spec.device_table import DTE, ENTRY_BYTES
from amdvi.spec.host_page_table import PDE, PTE

from .case import Case, Commands, CpuStore, EduDma, RegisterWrite
from .layout import DATA, GIANT_DATA, LAYOUT, TABLE_POOL, device_id, semaphore_slot

IOVA = 0x1234_5678_9000  # every level of a 4-level table used
DOMAIN = 0x42
ROOT = TABLE_POOL


@dataclass(frozen=True)
class StudyCase:
    name: str
    study: str  # the study's label
    expected: frozenset[str]  # the known divergences it shows (empty: agreement)
    case: Case


def _dte_words(dte: int, device: int = 0) -> dict[int, int]:
    base = LAYOUT.dte_address(device_id(device))
    return {base + 8 * k: (dte >> (64 * k)) & ((1 << 64) - 1) for k in range(ENTRY_BYTES // 8)
            if (dte >> (64 * k)) & ((1 << 64) - 1)}


def _mapped(*pages: tuple[int, int], dte: int | None = None, mode: int = 4) -> tuple[dict[int, int], list[int]]:
    """Memory with ``(iova, spa)`` pages mapped in one table (4 KiB leaves) and the device's DTE; the
    leaf addresses."""
    memory: dict[int, int] = {}
    free, leaves = ROOT + 0x1000, []
    for iova, spa in pages:
        m = v1_map(memory, ROOT, mode, iova, spa, free)
        memory, free = m.memory, m.next_free
        leaves.append(m.leaf_address)
    memory.update(_dte_words(v1_dte(DOMAIN, ROOT, mode) if dte is None else dte))
    return memory, leaves


def _case(name: str, memory: dict[int, int], steps: list, ring_start: int = 0) -> Case:
    return Case(1, tuple(sorted(memory.items())), tuple(steps), title=name, ring_start=ring_start)


def _wait(n: int) -> int:
    return completion_wait(semaphore_slot(n), n)


def cases() -> list[StudyCase]:
    out = []

    def add(name: str, study: str, expected: set[str], case: Case) -> None:
        out.append(StudyCase(name, study, frozenset(expected), case))

    memory, leaves = _mapped((IOVA, DATA))
    add("translated read and write agree", "§2 row 1", set(),
        _case("translated DMA", memory, [EduDma(0, IOVA + 0x10), EduDma(0, IOVA + 0x18, True)]))
    add("unmapped IOVA: IO_PAGE_FAULT never logged", "B1", {"event-log-dead"},
        _case("fault", memory, [EduDma(0, IOVA + 0x2000)]))
    stale = [EduDma(0, IOVA), CpuStore(leaves[0], PTE.encode({"PR": 1, "IR": 1, "IW": 1, "Page Address": (DATA + 0x1000) >> 12}))]
    add("stale until INVALIDATE_IOMMU_PAGES of the page and a wait", "§2 staleness rows", set(),
        _case("staleness", memory, stale + [EduDma(0, IOVA), Commands((inv_devtab(device_id(0)), _wait(1))),
                                            EduDma(0, IOVA), Commands((inv_pages(DOMAIN + 1, IOVA, 4096), _wait(2))),
                                            EduDma(0, IOVA), Commands((inv_pages(DOMAIN, IOVA, 4096), _wait(3))),
                                            EduDma(0, IOVA)]))
    add("INVALIDATE_IOMMU_PAGES of another page flushes the domain (over-invalidation)", "B11", set(),
        _case("over-invalidation", memory, stale + [Commands((inv_pages(DOMAIN, IOVA + 0x5000, 4096), _wait(1))),
                                                    EduDma(0, IOVA)]))
    add("INVALIDATE_IOTLB_PAGES S=1 keeps the IOMMU's IOTLB (allowed: an ATS command)", "B7", set(),
        _case("iotlb pages", memory, stale + [Commands((inv_iotlb(device_id(0), 0, 1 << 20), _wait(1))),
                                              EduDma(0, IOVA), Commands((inv_all(), _wait(2))), EduDma(0, IOVA)]))

    absent, _ = _mapped((IOVA, DATA))
    absent[leaves[0]] = PTE.encode({"PR": 0, "IR": 1, "IW": 1, "Page Address": DATA >> 12})
    add("leaf with PR = 0 translates", "B3", {"leaf-present-ignored", "event-log-dead"},
        _case("leaf PR=0", absent, [EduDma(0, IOVA)]))

    read_only, _ = _mapped((IOVA, DATA), dte=v1_dte(DOMAIN, ROOT, 4, writable=False))
    add("DTE IW = 0: a write after a read is allowed", "B4", {"cached-permissions-from-leaf", "event-log-dead"},
        _case("cached permissions", read_only, [EduDma(0, IOVA, True), EduDma(0, IOVA), EduDma(0, IOVA, True)]))

    write_protected, _ = _mapped((IOVA, DATA))
    write_protected[leaves[0]] = PTE.encode({"PR": 1, "IR": 1, "IW": 0, "Page Address": DATA >> 12})
    granted = CpuStore(leaves[0], PTE.encode({"PR": 1, "IR": 1, "IW": 1, "Page Address": DATA >> 12}))
    add("a write refused, then allowed by the table: QEMU faults on its cached permission", "found by diff-qemu",
        {"cached-permission-fault", "event-log-dead"},
        _case("cached permission", write_protected, [EduDma(0, IOVA, True), granted, EduDma(0, IOVA, True)]))

    add("bit 48 set with Mode 4 aliases", "B6", {"address-beyond-mode", "event-log-dead"},
        _case("beyond mode", memory, [EduDma(0, IOVA | 1 << 48)]))

    mode7 = dict(memory)
    mode7.update(_dte_words(DTE.encode({"V": 1, "TV": 1, "IR": 1, "IW": 1, "Mode": 7, "DomainID": DOMAIN,
                                        "Host Page Table Root Pointer": ROOT >> 12})))
    add("DTE Mode 7: blocked, no event", "extras Mode 7", {"event-log-dead"}, _case("mode 7", mode7, [EduDma(0, IOVA)]))

    tv0 = dict(memory)
    tv0.update(_dte_words(DTE.encode({"V": 1, "TV": 0, "IR": 1, "IW": 1, "DomainID": DOMAIN})))
    add("DTE V = 1, TV = 0 passes DMA through", "extras TV = 0", {"translation-not-valid-identity", "event-log-dead"},
        _case("TV=0", tv0, [EduDma(0, DATA + 0x40)]))

    add("an illegal command does not stop the queue", "B8", {"illegal-command-continues", "event-log-dead"},
        _case("illegal opcode", memory, [Commands((0, _wait(1)))]))
    add("CMD_BUF_HEAD after the head wraps", "B9", {"head-written-before-wrap"},
        _case("wrap", memory, [Commands((_wait(1),))], ring_start=LAYOUT.ring_bytes - 16))
    add("STATUS.ComWaitInt cannot be cleared", "B10", {"status-not-writable"},
        _case("W1C", memory, [Commands((COMPLETION_WAIT.encode({"I": 1}), _wait(1))), RegisterWrite("STATUS", 1 << 2)]))
    add("EXCL_BASE reads back 0", "B10", {"exclusion-base-not-writable"},
        _case("EXCL_BASE", memory, [RegisterWrite("EXCL_BASE", 0x5000)]))

    reserved, _ = _mapped((IOVA, DATA))
    reserved[leaves[0]] |= 1 << 52
    add("a reserved PTE bit is ignored", "found by diff-qemu", {"reserved-bits-ignored", "event-log-dead"},
        _case("reserved bit", reserved, [EduDma(0, IOVA)]))

    skip: dict[int, int] = {}
    skip.update(_dte_words(v1_dte(DOMAIN, ROOT, 4)))
    skip[ROOT] = PDE.encode({"PR": 1, "IR": 1, "IW": 1, "Next Level": 2, "Next Table Address": (ROOT + 0x1000) >> 12})
    skip[ROOT + 0x1000] = PDE.encode({"PR": 1, "IR": 1, "IW": 1, "Next Level": 1,
                                      "Next Table Address": (ROOT + 0x2000) >> 12})
    skip[ROOT + 0x2000] = PTE.encode({"PR": 1, "IR": 1, "IW": 1, "Page Address": DATA >> 12})
    # QEMU follows the skip; the spec faults (and logs), and the model's page-directory cache no longer
    # takes a PDE whose walk faulted (models/caches.py pde_fill; fault pde-cache-fills-faulting-skip keeps
    # the old fill, which let the slot serve the address and hid this divergence)
    add("a level skip with the skipped index bits set", "B5 (source)",
        {"skipped-levels-unchecked", "event-log-dead"}, _case("level skip", skip, [EduDma(0, 1 << 30)]))

    nl7 = dict(skip)
    nl7[ROOT + 0x1000] = PTE.encode({"PR": 1, "IR": 1, "IW": 1, "Next Level": 7,
                                     "Page Address": (0x0200_0000 | 0xFF000) >> 12})
    add("a Next Level 7 leaf of its level's default size", "found by diff-qemu",
        {"next-level-7-size-unchecked", "event-log-dead"}, _case("NL7 size", nl7, [EduDma(0, 0x1238)]))

    big: dict[int, int] = {}
    big.update(_dte_words(v1_dte(DOMAIN, ROOT, 3)))
    big[ROOT] = PDE.encode({"PR": 1, "IR": 1, "IW": 1, "Next Level": 2, "Next Table Address": (ROOT + 0x1000) >> 12})
    big[ROOT + 0x1000] = PDE.encode({"PR": 1, "IR": 1, "IW": 1, "Next Level": 1,
                                     "Next Table Address": (ROOT + 0x2000) >> 12})
    big[ROOT + 0x2000 + 8 * 2] = PTE.encode({"PR": 1, "IR": 1, "IW": 1, "Next Level": 7,
                                             "Page Address": (0x0200_0000 | 0x1FF000) >> 12})  # 4 MiB
    add("a Next Level 7 leaf larger than the next level maps", "found by diff-qemu",
        {"next-level-7-size-unchecked", "event-log-dead"}, _case("NL7 beyond", big, [EduDma(0, 0x2010)]))

    passthrough = _dte_words(DTE.encode({"V": 1, "TV": 1, "IR": 1, "IW": 1, "Mode": 0, "DomainID": DOMAIN}))
    collide = (DATA + 0x8) | 1 << (12 + 36 + 3)  # frame bit 39 = bit 3 of DeviceID 0x18 in QEMU's key
    add("IOVA bits above 48 alias the DeviceID in QEMU's IOTLB key", "found by diff-qemu", {"iotlb-key-aliasing"},
        _case("IOTLB key", passthrough, [EduDma(0, DATA + 0x10), EduDma(0, collide, True)]))

    detach = [EduDma(0, IOVA), CpuStore(LAYOUT.dte_address(device_id(0)), memory[LAYOUT.dte_address(device_id(0))] & ~1),
              Commands((inv_devtab(device_id(0)), _wait(1))), EduDma(0, IOVA)]
    add("V cleared and invalidated: the old translation still serves", "§4 (IOTLB by DeviceID)", {"iotlb-before-dte"},
        _case("IOTLB before DTE", memory, detach))

    invalid = dict(memory)
    invalid.update(_dte_words(DTE.encode({"V": 0, "TV": 1, "IR": 1, "IW": 1}) | 1 << 4))  # reserved bit 4
    add("DTE V = 0 with a reserved bit set blocks", "found by diff-qemu", {"dte-reserved-bits-when-invalid"},
        _case("V=0 reserved", invalid, [EduDma(0, DATA + 0x10)]))

    upward = dict(skip)
    upward[ROOT] = PDE.encode({"PR": 1, "IR": 1, "IW": 1, "Next Level": 5, "Next Table Address": (ROOT + 0x3000) >> 12})
    upward[ROOT + 0x3000] = PDE.encode({"PR": 1, "IR": 1, "IW": 1, "Next Level": 1,
                                        "Next Table Address": (ROOT + 0x2000) >> 12})
    add("a PDE whose Next Level is above its own level is followed", "B5", {"next-level-not-below", "event-log-dead"},
        _case("NL above level", upward, [EduDma(0, 0x18)]))

    # combinations found by diff-qemu (shrunk from seed 0 case 77, seed 2 case 23, seed 8 case 56): one
    # mismatch that two known divergences explain only together
    giant = _dte_words(v1_dte(DOMAIN, ROOT, 3))
    giant[ROOT + 8] = PTE.encode({"PR": 1, "IW": 1, "Page Address": GIANT_DATA >> 12})  # 1 GiB, write-only
    giant_dte = giant[LAYOUT.dte_address(device_id(0))]
    add("an IOTLB entry that outlived V cleared lacks the read permission", "found by diff-qemu",
        {"cached-permission-fault", "iotlb-before-dte"},
        _case("cached fault after detach", giant,
              [EduDma(0, GIANT_DATA + 0x8, True), CpuStore(LAYOUT.dte_address(device_id(0)), giant_dte & ~1),
               Commands((inv_devtab(device_id(0)), _wait(1))), EduDma(0, GIANT_DATA + 0x8, True),
               EduDma(0, GIANT_DATA + 0x18)]))

    def skip_to_nl7(skip_bits: int, reserved: int) -> dict[int, int]:
        """Mode 4: a level-4 PDE skipping to level 2 (or not, and carrying ``reserved`` bits) whose PTE is
        a Next Level 7 leaf of 4 GiB at level 2 (the model refuses it: beyond what level 3 maps)."""
        m = _dte_words(v1_dte(DOMAIN, ROOT, 4))
        m[ROOT + 8 * 3] = PDE.encode({"PR": 1, "IR": 1, "IW": 1, "Next Level": 2 if skip_bits else 3,
                                      "Next Table Address": (ROOT + 0x1000) >> 12}) | reserved
        table = ROOT + 0x1000
        if not skip_bits:
            m[table] = PDE.encode({"PR": 1, "IR": 1, "IW": 1, "Next Level": 2, "Next Table Address": (ROOT + 0x2000) >> 12})
            table = ROOT + 0x2000
        m[table + 8 * 189] = PTE.encode({"PR": 1, "IR": 1, "IW": 1, "Next Level": 7, "Page Address": 0x7FFFF})
        return m

    nl7_address = 3 << 39 | 0x17A0_0008  # level-4 index 3, level-3 index 0, level-2 index 189; QEMU: 0x17a00008
    add("a level skip with index bits set, to a Next Level 7 leaf the model refuses", "found by diff-qemu",
        {"skipped-levels-unchecked", "next-level-7-size-unchecked", "event-log-dead"},
        _case("skip to NL7", skip_to_nl7(1, 0), [EduDma(0, nl7_address | 1 << 30)]))
    add("a PDE with a reserved bit set, to a Next Level 7 leaf the model refuses", "found by diff-qemu",
        {"reserved-bits-ignored", "next-level-7-size-unchecked", "event-log-dead"},
        _case("reserved to NL7", skip_to_nl7(0, 1 << 59), [EduDma(0, nl7_address, True)]))

    loop = dict(memory)
    loop[ROOT + 8 * 5] = PDE.encode({"PR": 1, "IR": 1, "IW": 1, "Next Level": 4, "Next Table Address": ROOT >> 12})
    add("a PDE pointing at its own table with Next Level 4 hangs QEMU", "B5", {"walk-loop-hang"},
        _case("walk loop", loop, [EduDma(0, 5 << 39)]))
    add("CMD_BUF_TAIL = ring size hangs QEMU", "B9", {"tail-beyond-ring-hang"},
        _case("tail beyond ring", memory, [RegisterWrite("CMD_BUF_TAIL", LAYOUT.ring_bytes)]))
    return out
