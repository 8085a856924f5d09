"""Hypothesis strategies for differential cases (:func:`cases`).

Every table is built from the spec's encoders (``DTE``, ``PDE``, ``PTE``, the command structures), so a
generated word means what its fields say. What is drawn:

* up to four ``edu`` devices, each with a DTE of one shape: v1 translation (Mode 1-6), pass-through
  (Mode 0), V = 0, V = 1 with TV = 0, the reserved Mode 7; DomainIDs from a small set so devices share
  domains; now and then SA/SE or a reserved DTE bit;
* v1 tables with leaves at levels 1-3 (4 KiB, 2 MiB, 1 GiB) and Next Level 7 sizes (a legal size, or
  an illegal one), level skips (with the skipped index bits zero or not), PR, IR and IW drawn at every
  level, reserved bits, and a Next Level not below its level (pointing down the tree: never a cycle,
  which would hang QEMU: the hang is a test of its own);
* steps: DMA reads and writes at mapped addresses, their neighbours, bits above the mode's range, and
  other devices' addresses; changes of leaves, directory entries and DTE words; command batches of
  every opcode with S and PDE variants, right and wrong DomainIDs and DeviceIDs, reserved bits,
  illegal opcodes, a ring whose head starts near its end so batches wrap it; STATUS and EXCL_BASE writes; and the pattern
  "DMA, change, DMA, invalidate + wait, DMA".

Addresses in [2 GiB, 4 GiB) are never used for DMA: untranslated, they would reach QEMU's MMIO (edu's
own registers among them) rather than memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

from amdvi.models import protocol
from amdvi.spec.bitvec import INT
from amdvi.spec.commands import (
    COMPLETE_PPR_REQUEST, COMPLETION_WAIT, INVALIDATE_INTERRUPT_TABLE, INVALIDATE_IOMMU_ALL, PREFETCH_IOMMU_PAGES,
    covering_block,
)
from amdvi.spec.device_table import DTE, ENTRY_BYTES
from amdvi.spec.host_page_table import PDE, PTE
from amdvi.spec.levels import level_shift

from .case import Case, Commands, CpuStore, EduDma, RegisterWrite
from .layout import (
    DATA, DATA_FRAMES, EDU_SLOTS, GIANT_DATA, LARGE_DATA, LAYOUT, RAM_BYTES, TABLE_POOL, TABLE_POOL_PAGES,
    device_id, semaphore_slot,
)

MMIO_HOLE = (RAM_BYTES, 1 << 32)
WORD = (1 << 64) - 1


@dataclass(frozen=True)
class Mapping:
    device: int
    iova: int
    size_shift: int  # the page size the leaf maps (log2)
    leaf_at: int  # the leaf entry's address
    path: tuple[int, ...]  # directory entry addresses, top first


@dataclass
class Builder:
    """Allocates tables and frames and records what was built (concrete ints)."""

    memory: dict[int, int] = field(default_factory=dict)
    next_table: int = TABLE_POOL
    next_frame: int = DATA
    next_large: int = LARGE_DATA
    mappings: list[Mapping] = field(default_factory=list)
    domains: dict[int, int] = field(default_factory=dict)  # device -> DomainID
    modes: dict[int, int] = field(default_factory=dict)

    def table(self) -> int:
        if self.next_table >= TABLE_POOL + TABLE_POOL_PAGES * 4096:
            raise OverflowError("table pool exhausted")
        at, self.next_table = self.next_table, self.next_table + 4096
        return at

    def frame(self) -> int:
        at = self.next_frame
        self.next_frame = DATA + ((self.next_frame - DATA + 4096) % (DATA_FRAMES * 4096))
        return at

    def large(self, shift: int) -> int:
        """A frame of 2^shift bytes, aligned (2 MiB..1 GiB)."""
        if shift >= 30:
            return GIANT_DATA
        size = 1 << max(shift, 21)
        at = (self.next_large + size - 1) & ~(size - 1)
        self.next_large = at + size if at + size < GIANT_DATA else LARGE_DATA
        return at


def _safe(address: int) -> int:
    """``address`` moved out of the MMIO hole (bit 31 cleared)."""
    return address & ~(1 << 31) if MMIO_HOLE[0] <= address < MMIO_HOLE[1] else address


def _often(draw: st.DrawFn, p_in_8: int) -> bool:
    """True with probability about ``p_in_8``/8 (shrinks to False)."""
    return draw(st.integers(0, 7)) < p_in_8


def _rare(draw: st.DrawFn, one_in: int) -> bool:
    """True with probability 1/``one_in`` (shrinks to False)."""
    return draw(st.integers(0, one_in - 1)) == one_in - 1


def _index(draw: st.DrawFn) -> int:
    return draw(st.one_of(st.integers(0, 3), st.integers(0, 511)))


def _leaf(draw: st.DrawFn, b: Builder, level: int) -> tuple[int, int]:
    """A leaf entry at ``level`` and the page size it maps (log2)."""
    fields = {"PR": 1, "IR": 1, "IW": 1, "Next Level": 0}
    shift = level_shift(level)
    if _often(draw, 2) and level <= 2:  # Next Level 7: the size is encoded in the address
        legal = list(range(level_shift(level) + 1, level_shift(level + 1) + 1))
        illegal = [level_shift(level), level_shift(level + 1) + 1]
        shift = draw(st.sampled_from(legal)) if not _often(draw, 1) else draw(st.sampled_from(illegal))
        base = b.large(shift) if shift > 12 else b.frame()
        ones = ((1 << (shift - 1)) - 1) & ~0xFFF
        fields.update({"Next Level": 7, "Page Address": (base | ones) >> 12})
    else:
        base = b.frame() if level == 1 else b.large(shift) if level <= 3 else 0
        fields["Page Address"] = base >> 12
    if _often(draw, 1):
        fields["PR"] = 0
    if _often(draw, 1):
        fields["IR"] = draw(st.integers(0, 1))
        fields["IW"] = draw(st.integers(0, 1))
    entry = PTE.encode(fields)
    if _rare(draw, 16):
        entry |= 1 << draw(st.integers(52, 58))  # a reserved PTE bit
    return entry, shift


def _map(draw: st.DrawFn, b: Builder, device: int, root: int, mode: int) -> None:
    """One mapping in the ``mode``-level table at ``root`` (shared tables are reused)."""
    leaf_level = draw(st.integers(1, min(mode, 3)))
    if mode == 6 and leaf_level == 6:
        leaf_level = 5
    iova, table, level, path = 0, root, mode, []
    while True:
        idx = _index(draw) if level < 6 else draw(st.integers(0, 127))
        iova |= idx << level_shift(level)
        at = table + 8 * idx
        if level == leaf_level:
            entry, shift = _leaf(draw, b, level)
            if at in b.memory:
                return  # another mapping owns this slot
            b.memory[at] = entry
            b.mappings.append(Mapping(device, _safe(iova), shift, at, tuple(path)))
            return
        existing = b.memory.get(at)
        if existing is not None:
            nl = (existing >> 9) & 7
            if not existing & 1 or nl in (0, 7) or nl >= level or nl < leaf_level:
                return
            path.append(at)
            table, level = PDE.view(existing)["Next Table Address"] << 12, nl
            continue
        target = level - 1
        if target > leaf_level and _often(draw, 1):
            target = draw(st.integers(leaf_level, level - 1))  # a level skip
            if target < level - 1 and _often(draw, 2):  # index bits of a skipped level not zero
                iova |= draw(st.integers(1, 511)) << level_shift(level - 1)
        nl = target
        if _rare(draw, 24):
            nl = draw(st.integers(level, 6))  # an invalid level encoding, pointing down the tree all the same
        fields = {"PR": 1, "IR": 1, "IW": 1, "Next Level": nl}
        nxt = b.table()
        fields["Next Table Address"] = nxt >> 12
        if _rare(draw, 16):
            fields["PR"] = 0
        if _rare(draw, 12):
            fields["IR"], fields["IW"] = draw(st.integers(0, 1)), draw(st.integers(0, 1))
        entry = PDE.encode(fields)
        if _rare(draw, 24):
            entry |= 1 << draw(st.integers(52, 60))  # a reserved PDE bit
        b.memory[at] = entry
        path.append(at)
        table, level = nxt, target


def _device(draw: st.DrawFn, b: Builder, device: int, roots: dict[int, tuple[int, int]]) -> None:
    shape = draw(st.sampled_from(("v1", "v1", "v1", "v1", "v1", "mode0", "invalid", "tv0", "mode7")))
    domain = draw(st.integers(1, 3))
    b.domains[device] = domain
    fields = {"V": 1, "TV": 1, "IR": 1, "IW": 1, "DomainID": domain, "Mode": 0}
    if shape == "v1":
        if domain in roots and _often(draw, 4):  # the same domain's table
            root, mode = roots[domain]
        else:
            mode = draw(st.one_of(st.sampled_from((3, 4)), st.integers(1, 6)))
            root = b.table()
            roots.setdefault(domain, (root, mode))
        fields.update({"Mode": mode, "Host Page Table Root Pointer": root >> 12})
        for _ in range(draw(st.integers(1, 3))):
            _map(draw, b, device, root, mode)
        b.modes[device] = mode
    elif shape == "invalid":
        fields["V"] = 0
    elif shape == "tv0":
        fields["TV"] = 0
    elif shape == "mode7":
        fields.update({"Mode": 7, "Host Page Table Root Pointer": b.table() >> 12})
    if _often(draw, 1):
        fields["IR"], fields["IW"] = draw(st.integers(0, 1)), draw(st.integers(0, 1))
    if _rare(draw, 16):
        fields[draw(st.sampled_from(("SA", "SE")))] = 1
    dte = DTE.encode(fields)
    if _rare(draw, 24):
        dte |= 1 << draw(st.sampled_from((2, 3, 4, 5, 6, 63)))  # a reserved DTE bit
    base = LAYOUT.dte_address(device_id(device))
    for k in range(ENTRY_BYTES // 8):
        word = (dte >> (64 * k)) & WORD
        if word:
            b.memory[base + 8 * k] = word


def _address(draw: st.DrawFn, b: Builder, device: int) -> int:
    mine = [m for m in b.mappings if m.device == device] or b.mappings
    if not mine or _often(draw, 1):
        return _safe(draw(st.sampled_from((DATA, DATA + 0x1000, LARGE_DATA, 0x1000))) + 8 * draw(st.integers(0, 7)))
    m = draw(st.sampled_from(mine))
    offset = 8 * draw(st.one_of(st.integers(0, 3), st.integers(0, (1 << min(m.size_shift, 30)) // 8 - 1)))
    address = m.iova + offset
    variant = draw(st.integers(0, 9))
    if variant == 0:
        address += 1 << draw(st.integers(12, 20))  # a neighbour
    elif variant == 1:
        mode = b.modes.get(device, 4)
        if mode < 6:
            address |= 1 << draw(st.integers(level_shift(mode + 1), 63))  # beyond the mode's range
    return _safe(address & WORD)


def _change(draw: st.DrawFn, b: Builder) -> CpuStore | None:
    """A CPU store changing a leaf, a directory entry or a DTE word."""
    target = draw(st.integers(0, 5))
    if b.mappings and target <= 2:
        m = draw(st.sampled_from(b.mappings))
        old = b.memory.get(m.leaf_at, 0)
        how = draw(st.integers(0, 3))
        if how == 0:  # remap to another frame of the same size
            view = PTE.view(old)
            size = 1 << m.size_shift
            base = b.frame() if m.size_shift == 12 else b.large(m.size_shift)
            encoded = (old >> 12) & ((size - 1) >> 12) if view["Next Level"] == 7 else 0
            new = (old & ~(((1 << 52) - 1) & ~0xFFF)) | ((base >> 12 | encoded) << 12)
        elif how == 1:
            new = old ^ PTE.field("PR").mask
        elif how == 2:
            new = old ^ (PTE.field("IW").mask if draw(st.booleans()) else PTE.field("IR").mask)
        else:
            new = 0
        b.memory[m.leaf_at] = new
        return CpuStore(m.leaf_at, new)
    if b.mappings and target == 3:
        m = draw(st.sampled_from(b.mappings))
        if m.path:
            at = draw(st.sampled_from(m.path))
            old = b.memory.get(at, 0)
            new = old ^ draw(st.sampled_from((PDE.field("PR").mask, PDE.field("IW").mask, PDE.field("IR").mask)))
            b.memory[at] = new
            return CpuStore(at, new)
    if b.domains:
        device = draw(st.sampled_from(sorted(b.domains)))
        base = LAYOUT.dte_address(device_id(device))
        if draw(st.booleans()):
            old = b.memory.get(base, 0)
            flip = draw(st.sampled_from(("V", "TV", "IR", "IW")))
            new = old ^ DTE.field(flip).mask
            b.memory[base] = new
            return CpuStore(base, new)
        new_domain = draw(st.integers(1, 3))
        old = b.memory.get(base + 8, 0)
        new = (old & ~0xFFFF) | new_domain
        b.memory[base + 8] = new
        b.domains[device] = new_domain
        return CpuStore(base + 8, new)
    return None


@dataclass
class Counter:
    """Semaphore slots and store values, unique in a case."""

    waits: int = 0

    def wait(self) -> int:
        self.waits += 1
        return protocol.completion_wait(INT, semaphore_slot(self.waits), self.waits)


def _command(draw: st.DrawFn, b: Builder, counter: Counter, focus: int | None) -> int:
    kind = draw(st.integers(0, 15))
    if kind in (10, 11) and draw(st.integers(0, 3)):  # illegal commands stop the model's processor: keep them rare
        kind = 12
    devices = sorted(b.domains) or [0]
    device = draw(st.sampled_from(devices))
    address = focus if focus is not None else _address(draw, b, device)
    if kind <= 3:  # INVALIDATE_IOMMU_PAGES: this domain or another, one page or a range, PDE or not
        domain = b.domains.get(device, 1) if kind <= 2 else draw(st.integers(0, 4))
        shift = draw(st.sampled_from((12, 12, 13, 21, 30, 64)))
        block = (0, 64) if shift == 64 else covering_block(address & ~((1 << shift) - 1), 1 << shift)
        return protocol.invalidate_iommu_pages(INT, domain, block, pde=draw(st.booleans()))
    if kind <= 5:
        target = device_id(device) if kind == 4 else device_id(draw(st.integers(0, len(EDU_SLOTS) - 1)))
        return protocol.invalidate_devtab_entry(INT, target)
    if kind == 6:
        return INVALIDATE_IOMMU_ALL.encode({})
    if kind == 7:
        shift = draw(st.sampled_from((12, 21, 64)))
        block = (0, 64) if shift == 64 else covering_block(address & ~((1 << shift) - 1), 1 << shift)
        return protocol.invalidate_iotlb_pages(INT, device_id(device), block)
    if kind == 8:
        return draw(st.sampled_from((
            INVALIDATE_INTERRUPT_TABLE.encode({"DeviceID": device_id(device)}),
            PREFETCH_IOMMU_PAGES.encode({"DeviceID": device_id(device), "Address": address >> 12}),
            COMPLETE_PPR_REQUEST.encode({"DeviceID": device_id(device)}))))
    if kind == 9:  # COMPLETION_WAIT variants: interrupt, neither S nor I
        return COMPLETION_WAIT.encode({"I": draw(st.integers(0, 1)), "S": 0})
    if kind == 10:  # an undefined opcode
        return (draw(st.sampled_from((0, 9, 10, 11, 12, 13, 14, 15))) << 60) | draw(st.integers(0, 0xFFFF))
    if kind == 11:  # a reserved bit in an otherwise good command
        return protocol.invalidate_devtab_entry(INT, device_id(device)) | (1 << draw(st.integers(16, 59)))
    return counter.wait()


def _batch(draw: st.DrawFn, b: Builder, counter: Counter, focus: int | None = None) -> Commands:
    commands = [_command(draw, b, counter, focus) for _ in range(draw(st.integers(1, 4)))]
    if not _often(draw, 1):
        commands.append(counter.wait())
    return Commands(tuple(commands))


@st.composite
def cases(draw: st.DrawFn, max_devices: int = 3, max_steps: int = 10) -> Case:
    """A differential case (see the module docstring)."""
    b = Builder()
    roots: dict[int, tuple[int, int]] = {}
    devices = draw(st.integers(1, max_devices))
    for d in range(devices):
        _device(draw, b, d, roots)
    initial = tuple(sorted((a, v) for a, v in b.memory.items() if v))
    counter = Counter()
    steps: list = []
    for _ in range(draw(st.integers(1, max_steps))):
        kind = draw(st.integers(0, 14))
        device = draw(st.integers(0, devices - 1))
        if kind <= 5:
            steps.append(EduDma(device, _address(draw, b, device), draw(st.booleans())))
        elif kind <= 7:
            change = _change(draw, b)
            if change is not None:
                steps.append(change)
        elif kind <= 10:
            steps.append(_batch(draw, b, counter))
        elif kind == 11:
            name = draw(st.sampled_from(("STATUS", "EXCL_BASE")))
            value = 1 << 2 if name == "STATUS" else draw(st.integers(0, (1 << 40) - 1)) << 12
            steps.append(RegisterWrite(name, value))
        else:  # DMA, change, DMA, invalidate and wait, DMA
            address = _address(draw, b, device)
            write = draw(st.booleans())
            change = _change(draw, b)
            steps += [EduDma(device, address, write)] + ([change] if change else [])
            steps += [EduDma(device, address, write), _batch(draw, b, counter, focus=address),
                      EduDma(device, address, write)]
    ring_start = draw(st.one_of(st.just(0), st.integers(LAYOUT.ring_bytes // 16 - 8, LAYOUT.ring_bytes // 16 - 1),
                                st.integers(0, LAYOUT.ring_bytes // 16 - 1))) * 16
    return Case(devices, initial, tuple(steps), ring_start=ring_start)
