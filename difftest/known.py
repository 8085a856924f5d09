"""Known divergences of a QEMU version: the facts as data (``known/qemu-<major>.<minor>.json``: each with
its class, 48882 section and QEMU source line), the recognisers as code (:data:`RECOGNISERS`).

A recogniser says whether one mismatch is that divergence, by asking the model a what-if question
with the same functions the comparison uses: "does QEMU's result equal the walk with the leaf's PR
bit set?", "... of the address cut to the mode's range?", "... under the reading
``illegal_command=continue``?". The walk divergences are *transforms* of the memory image or the address
(:data:`TRANSFORMS`), and a walk may end at a step no spec walk takes (:data:`TERMINALS`: a Next Level 7
size the model refuses, a Next Level not below its level); a DMA may need several at once (an address
beyond the mode's range that reaches a non-present leaf, a level skip to a refused Next Level 7 leaf), so
the smallest set that explains it is searched. A DMA served from QEMU's IOTLB with what an earlier,
divergent, walk found is attributed to that walk's divergences. A recogniser may name partners too (a
cached entry lacking the access's permission that outlived a DTE change). A mismatch is reported with
every divergence that takes part in explaining it; one nothing claims is new.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable

from amdvi.models.software import registers
from amdvi.spec.bitvec import INT
from amdvi.spec.device_table import DTE
from amdvi.spec.host_page_table import PDE, PTE
from amdvi.spec.host_translation import host_entry
from amdvi.spec.levels import level_shift
from amdvi.spec.mmio import STATUS
from amdvi.spec.translation import Request, translate

from .case import Case, Commands, EduDma, RegisterWrite
from .compare import Mismatch, dma_consistent
from .layout import LAYOUT, device_id, pattern_address
from .model_side import Allowed, DmaExpected, Expectation, expect
from .qemu_side import Observation

CLASSES = {
    "qemu-differs": "QEMU differs from the spec",
    "model-differs": "the model differs from the spec",
    "spec-silent": "the spec is silent",
    "qemu-hangs": "QEMU hangs (whatever the spec says, the machine stops)",
}
PR, IR, IW = PDE.field("PR").mask, PDE.field("IR").mask, PDE.field("IW").mask


@dataclass(frozen=True)
class Known:
    id: str
    title: str
    classification: str
    section: str
    qemu_source: str
    summary: str
    recogniser: str
    study: str = ""  # the feasibility study's name for it (B1..B11)


@dataclass
class Context:
    case: Case
    expectation: Expectation
    observation: Observation

    @functools.cached_property
    def continuing(self) -> Expectation:
        """The case under the reading QEMU implements for illegal commands (processing goes on)."""
        choices = dataclasses.replace(self.expectation.choices, illegal_command="continue")
        return expect(self.case, choices)


def _walk(dma: DmaExpected, memory: dict[int, int], address: int) -> Any:
    request = Request(device_id=device_id(dma.device), address=address, write=dma.write)
    return translate(INT, memory, registers(LAYOUT).dev_tab_bar, request)


def _allowed(outcome: Any) -> Allowed:
    ok = bool(outcome.ok)
    return Allowed(ok, int(outcome.spa) if ok else 0, bool(outcome.logged), int(outcome.event), "what-if walk")


def _host_steps(outcome: Any) -> list[Any]:
    return [s for s in outcome.steps if s.active and s.table == "PDE/PTE"]


def _dma(m: Mismatch) -> bool:
    return m.observable == "dma" and m.step is not None


# -- what-if transforms of a DMA: (ctx, dma, memory, address, walk) -> (memory, address) or None -------------

Transform = Callable[[Context, DmaExpected, dict[int, int], int, Any], "tuple[dict[int, int], int] | None"]


def address_beyond_mode(ctx: Context, dma: DmaExpected, memory: dict[int, int], address: int,
                        walk: Any) -> tuple[dict[int, int], int] | None:
    """The address cut to the range of DTE.Mode (QEMU ignores the bits above it)."""
    mode = DTE.view(memory.get(LAYOUT.dte_address(device_id(dma.device)), 0))["Mode"]
    if not 1 <= mode <= 5 or address >> level_shift(mode + 1) == 0:
        return None
    return memory, address & ((1 << level_shift(mode + 1)) - 1)


def reserved_bits_ignored(ctx: Context, dma: DmaExpected, memory: dict[int, int], address: int,
                          walk: Any) -> tuple[dict[int, int], int] | None:
    """The walk's entries with their reserved bits cleared (QEMU does not check them)."""
    def reserved(entry: int) -> int:
        return PTE.reserved_mask if (entry >> 9) & 7 in (0, 7) else PDE.reserved_mask

    changed = False
    for _ in range(6):  # the walk goes one level further each time a cleared entry lets it
        steps = [s for s in _host_steps(walk) if s.entry & reserved(s.entry)]
        if not steps:
            break
        memory, changed = dict(memory), True
        for s in steps:
            memory[s.entry_address] = s.entry & ~reserved(s.entry)
        walk = _walk(dma, memory, address)
    return (memory, address) if changed else None


def skipped_levels_unchecked(ctx: Context, dma: DmaExpected, memory: dict[int, int], address: int,
                             walk: Any) -> tuple[dict[int, int], int] | None:
    """The address with the index bits of levels a PDE skips cleared (QEMU does not check them)."""
    cut = address
    for s in _host_steps(walk):
        nl = (s.entry >> 9) & 7
        if s.entry & PR and 1 <= nl < s.level - 1:
            cut &= ~(((1 << level_shift(s.level)) - 1) & ~((1 << level_shift(nl + 1)) - 1))
    return (memory, cut) if cut != address else None


def leaf_present_ignored(ctx: Context, dma: DmaExpected, memory: dict[int, int], address: int,
                         walk: Any) -> tuple[dict[int, int], int] | None:
    """The non-present entry the walk stopped at, made present (QEMU does not check a leaf's PR)."""
    steps = _host_steps(walk)
    if not steps or steps[-1].entry & PR or not steps[-1].entry:
        return None
    memory = dict(memory)
    memory[steps[-1].entry_address] = steps[-1].entry | PR
    return memory, address


def permissions_from_leaf(ctx: Context, dma: DmaExpected, memory: dict[int, int], address: int,
                          walk: Any) -> tuple[dict[int, int], int] | None:
    """The DTE's and directory entries' IR/IW set, once the device has accessed the page before (QEMU's
    IOTLB keeps the leaf's permissions from that walk, whether the access itself was let through)."""
    earlier = [i for i, s in enumerate(ctx.case.steps[:dma.step]) if isinstance(s, EduDma)
               and s.device == dma.device and s.address >> 12 == dma.address >> 12 and i in ctx.observation.dmas]
    if not earlier or seen_word(ctx.observation.dmas[dma.step]) is None:
        return None  # it widens: only an access QEMU let through
    if memory == dma.memory and not any(isinstance(s, Commands) for s in ctx.case.steps[earlier[-1]:dma.step]):
        # no command since QEMU filled its entry: the tables as they were then (a stale entry is allowed)
        memory = ctx.expectation.dmas[earlier[-1]].memory if earlier[-1] in ctx.expectation.dmas else memory
    memory = dict(memory)
    dte_at = LAYOUT.dte_address(device_id(dma.device))
    memory[dte_at] = memory.get(dte_at, 0) | DTE.field("IR").mask | DTE.field("IW").mask
    for s in _host_steps(walk)[:-1]:
        memory[s.entry_address] = s.entry | IR | IW
    return memory, address


TRANSFORMS: dict[str, Transform] = {f.__name__.replace("_", "-"): f for f in (
    address_beyond_mode, reserved_bits_ignored, skipped_levels_unchecked,
    leaf_present_ignored, permissions_from_leaf)}


def explain_dma(ctx: Context, m: Mismatch, names: list[str]) -> tuple[str, ...] | None:
    """The smallest set of the ``names`` transforms (each applied, on the walk the others leave, until none
    applies any more), with at most one of the :data:`TERMINALS` judging the walk they leave, under which
    QEMU's result is explained; None when no set explains it. (A transform leads QEMU's walk somewhere the
    spec's walk does not go; a terminal is where QEMU then takes a step no spec walk takes.)"""
    if not _dma(m):
        return None
    dma = ctx.expectation.dmas[m.step]
    seen = ctx.observation.dmas[m.step]
    usable = [n for n in TRANSFORMS if n in names] + [n for n in TERMINALS if n in names]
    for size in range(1, len(usable) + 1):
        for combo in itertools.combinations(usable, size):
            terminals = [n for n in combo if n in TERMINALS]
            transforms = [n for n in combo if n in TRANSFORMS]
            if len(terminals) > 1:
                continue
            # apply the set's transforms until none applies: one may only become applicable after another
            # (a level skip followed, then the reserved bits of the entry it leads to)
            memory, address, used = dma.memory, dma.address, set()
            for _ in range(2 * len(transforms) + 2):
                progressed = False
                for name in transforms:
                    changed = TRANSFORMS[name](ctx, dma, memory, address, _walk(dma, memory, address))
                    if changed is not None and changed != (memory, address):
                        memory, address = changed
                        used.add(name)
                        progressed = True
                if not progressed:
                    break
            if used != set(transforms):
                continue
            walk = _walk(dma, memory, address)
            if terminals:
                if TERMINALS[terminals[0]](ctx, dma, walk, seen):
                    return combo
            elif dma_consistent(ctx.case, dma.memory, (_allowed(walk),), seen):
                return combo
    return None


def translation_not_valid_identity(ctx: Context, m: Mismatch) -> bool:
    """DTE V = 1, TV = 0: QEMU passes the address through, filtered by the DTE's IR/IW."""
    if not _dma(m):
        return False
    dma = ctx.expectation.dmas[m.step]
    dte = DTE.view(dma.memory.get(LAYOUT.dte_address(device_id(dma.device)), 0) & ((1 << 64) - 1))
    if dte["V"] != 1 or dte["TV"] != 0:
        return False
    permitted = dte["IW"] if dma.write else dte["IR"]
    alternative = Allowed(bool(permitted), dma.address if permitted else 0, False, 0, "identity")
    return dma_consistent(ctx.case, dma.memory, (alternative,), ctx.observation.dmas[m.step])


def _dte_words(memory: Any, device: int) -> tuple[int, ...]:
    base = LAYOUT.dte_address(device_id(device))
    return tuple(memory.get(base + 8 * k, 0) for k in range(4))


def iotlb_before_dte(ctx: Context, m: Mismatch) -> bool:
    """QEMU gave what an earlier DMA of the same device and IOVA page got, although the device's DTE
    changed in between (and was invalidated): its IOTLB, keyed by DeviceID, answers before the DTE is read."""
    if not _dma(m):
        return False
    dma = ctx.expectation.dmas[m.step]
    seen = ctx.observation.dmas[m.step]
    got = seen_word(seen)
    blocked = (seen.landed is None) if seen.write else (seen.value == 0)
    for j in range(m.step - 1, -1, -1):  # the latest earlier access that gave the same, under another DTE
        s = ctx.case.steps[j]
        before = ctx.observation.dmas.get(j)
        if not isinstance(s, EduDma) or s.device != dma.device or s.address >> 12 != dma.address >> 12 or before is None:
            continue
        had = seen_word(before)
        same = (got is None and had is None and blocked) or (got is not None and had is not None and got >> 12 == had >> 12)
        if not same:
            return False
        if _dte_words(ctx.expectation.dmas[j].memory, dma.device) != _dte_words(dma.memory, dma.device):
            return True
    return False


def _blocked(seen: Any) -> bool:
    return (seen.landed is None) if seen.write else seen.value == 0


def _served_by(ctx: Context, step: int, memory: dict[int, int]) -> bool:
    """QEMU's result at DMA ``step`` is what a walk of ``memory`` gives that access."""
    d = ctx.expectation.dmas[step]
    return dma_consistent(ctx.case, d.memory, (_allowed(_walk(d, memory, d.address)),), ctx.observation.dmas[step])


def cached_permission_fault(ctx: Context, m: Mismatch) -> bool | tuple[str, ...]:
    """QEMU blocked an access the current tables allow, and a walk of the memory at an earlier access by
    the same device to the same page (when QEMU filled its IOTLB) reaches the page without this access's
    permission: QEMU faults on the cached permissions, the model re-walks (its IOTLB hit needs the
    permission: models/caches.py _iotlb_hit). The fill is the latest such access, or an earlier one when
    QEMU's results at the accesses since are all what that fill gives (its entry served them); when the
    device's DTE changed since the fill, the entry outlived the change and iotlb-before-dte takes part;
    when the DTE refused both accesses at the fill but the leaf grants the other one, QEMU cached the
    leaf's permissions (permissions-from-leaf, B4, takes part)."""
    if not _dma(m):
        return False
    dma = ctx.expectation.dmas[m.step]
    if not _blocked(ctx.observation.dmas[m.step]):
        return False
    since: list[int] = []  # the same page's accesses after the candidate fill
    for j in range(m.step - 1, -1, -1):
        s = ctx.case.steps[j]
        if not (isinstance(s, EduDma) and s.device == dma.device and s.address >> 12 == dma.address >> 12):
            continue
        before = ctx.expectation.dmas.get(j)
        if before is None or j not in ctx.observation.dmas:
            return False
        fill = dict(before.memory)
        walk = _walk(dma, fill, dma.address)
        other = _walk(dataclasses.replace(dma, write=not dma.write), fill, dma.address)
        from_leaf = False
        if not walk.ok and not other.ok:  # the DTE's IR/IW refused both: QEMU caches the leaf's own (B4)
            leaf_only = _with_dte_permissions(fill, dma.device)
            from_leaf = (not _walk(dma, leaf_only, dma.address).ok
                         and bool(_walk(dataclasses.replace(dma, write=not dma.write), leaf_only, dma.address).ok))
        if not walk.ok and (bool(other.ok) or from_leaf) and all(_served_by(ctx, i, fill) for i in since):
            names = ("cached-permission-fault",) + (("permissions-from-leaf",) if from_leaf else ())
            if _dte_words(before.memory, dma.device) != _dte_words(dma.memory, dma.device):
                names += ("iotlb-before-dte",)
            return names if len(names) > 1 else True
        since.append(j)
    return False


def _with_dte_permissions(memory: dict[int, int], device: int) -> dict[int, int]:
    """``memory`` with the device's DTE granting IR and IW: what a walk gives when only the tables'
    permissions count, as in QEMU 7.2's page walk (it returns the leaf's IR/IW, cached-permissions-from-leaf)."""
    out = dict(memory)
    base = LAYOUT.dte_address(device_id(device))
    both = DTE.field("IR").mask | DTE.field("IW").mask
    if both >> 64:
        raise AssertionError("DTE.IR and DTE.IW are expected in the entry's first word")
    out[base] = out.get(base, 0) | both
    return out


QEMU_IOTLB_DEVID_SHIFT = 36  # QEMU 7.2 hw/i386/amd_iommu.h AMDVI_DEVID_SHIFT: key = IOVA frame | DeviceID << 36


def iotlb_key_aliasing(ctx: Context, m: Mismatch) -> bool:
    """QEMU gave what an earlier access of another (device, IOVA page) reached whose IOTLB key is the same:
    QEMU 7.2 keys its IOTLB by ``frame | DeviceID << 36``, so IOVA bits 48 and up collide with the
    DeviceID."""
    if not _dma(m):
        return False
    dma = ctx.expectation.dmas[m.step]
    word = seen_word(ctx.observation.dmas[m.step])

    def key(device: int, address: int) -> int:
        return ((address >> 12) | (device_id(device) << QEMU_IOTLB_DEVID_SHIFT)) & ((1 << 64) - 1)

    for j in range(m.step - 1, -1, -1):
        s = ctx.case.steps[j]
        before = ctx.observation.dmas.get(j)
        if not isinstance(s, EduDma) or before is None or (s.device, s.address >> 12) == (dma.device, dma.address >> 12):
            continue
        if key(s.device, s.address) == key(dma.device, dma.address):
            had = seen_word(before)
            fresh = ctx.expectation.dmas[j].fresh
            if had is None and fresh.ok:  # a word the harness cannot name: the walk's, which QEMU agreed with
                had = int(fresh.spa)
            if had is None:
                return word is None
            if word is not None and had >> 12 == word >> 12:
                return True
            # the page the earlier access reached, at this access's offset: where the shared entry sends it
            # (a page the harness does not watch, beyond RAM say, reads as nothing recognisable)
            reached = (had & ~0xFFF) | (dma.address & 0xFFF)
            return dma_consistent(ctx.case, dma.memory, (Allowed(True, reached, False, 0, "the aliased entry"),),
                                  ctx.observation.dmas[m.step])
    return False


def next_level_7_size_unchecked(ctx: Context, dma: DmaExpected, walk: Any, seen: Any) -> bool:
    """The walk faulted at a Next Level 7 leaf whose encoded size the model refuses (not above the level's
    default, or above the next level's), and QEMU reached the page that size gives: the leaf's page and
    size as the spec's own entry decoding reads them (spec.host_translation.host_entry), the offset from
    the whole address (QEMU adds the untranslated offset bits to the page)."""
    steps = _host_steps(walk)
    if walk.ok or not steps or (steps[-1].entry >> 9) & 7 != 7:
        return False
    entry = host_entry(INT, steps[-1].entry, steps[-1].level)
    if not entry.bad_encoding:
        return False
    spa = entry.address | (dma.address & ((1 << entry.page_shift) - 1))
    return dma_consistent(ctx.case, dma.memory, (Allowed(True, spa, False, 0, "as encoded"),), seen)


def dte_reserved_bits_when_invalid(ctx: Context, m: Mismatch) -> bool:
    """DTE V = 0 with a reserved bit set: QEMU blocks (it validates the reserved bits before it looks at
    V); the spec does not use an entry whose V = 0, so the access passes untranslated."""
    if not _dma(m):
        return False
    dma = ctx.expectation.dmas[m.step]
    base = LAYOUT.dte_address(device_id(dma.device))
    dte = sum(dma.memory.get(base + 8 * k, 0) << (64 * k) for k in range(4))
    seen = ctx.observation.dmas[m.step]
    blocked = seen.landed is None if seen.write else seen.value == 0
    return blocked and dte & 1 == 0 and bool(dte & DTE.reserved_mask)


def next_level_not_below(ctx: Context, dma: DmaExpected, walk: Any, seen: Any) -> bool:
    """The walk met a present directory entry whose Next Level is not below its own level (the spec: an
    invalid level encoding, IO_PAGE_FAULT with RZ = 1) and QEMU's access went through: QEMU walks on to
    a table of that level. Recognised by the walk alone (QEMU's page is not recomputed: no spec walk
    takes such a step)."""
    steps = _host_steps(walk)
    if not steps or walk.ok:
        return False
    last = steps[-1]
    nl = (last.entry >> 9) & 7
    return bool(last.entry & PR) and 1 <= nl <= 6 and nl >= last.level and seen_word(seen) is not None


TERMINALS: dict[str, Callable[[Context, DmaExpected, Any, Any], bool]] = {
    f.__name__.replace("_", "-"): f for f in (next_level_7_size_unchecked, next_level_not_below)}


def illegal_command_continues(ctx: Context, m: Mismatch) -> bool:
    """After an illegal command QEMU goes on with the next one: the mismatch vanishes under the reading
    ``illegal_command=continue`` (the event it would log aside: see the event-log entry)."""
    if m.step is None or m.observable.startswith("event") or m.observable == "status.EventLogInt":
        return False
    if not any(b.status.get("CmdBufRun") == 0 for i, b in ctx.expectation.batches.items() if i <= m.step):
        return False  # the model's processor never stopped: the reading cannot make a difference
    cont = ctx.continuing
    seen = ctx.observation
    if m.observable == "head":
        want = cont.batches.get(m.step)
        return want is not None and want.head is not None and seen.batches[m.step].head == want.head
    if m.observable.startswith("status."):
        name = m.observable.split(".", 1)[1]
        want = cont.batches.get(m.step)
        return want is not None and seen.batches[m.step].status.get(name) == want.status[name]
    if m.observable == "store":
        want = cont.batches.get(m.step)
        return want is not None and all(seen.batches[m.step].stores.get(a) == v for a, v in want.stores.items())
    return False


def head_written_before_wrap(ctx: Context, m: Mismatch) -> bool:
    """CMD_BUF_HEAD reads as the ring's size where the head wrapped to 0 (either reading of illegal
    commands)."""
    if m.observable != "head":
        return False
    if ctx.observation.batches[m.step].head != LAYOUT.ring_bytes:
        return False
    for expectation in (lambda: ctx.expectation, lambda: ctx.continuing):  # the second only when needed
        want = expectation().batches.get(m.step)
        if want is not None and want.head == 0:
            return True
    return False


def status_not_writable(ctx: Context, m: Mismatch) -> bool:
    """Writing 1 to an RW1C Status bit leaves it set (and it stays set at the later batches)."""
    if m.observable == "register.STATUS":
        return True
    if not m.observable.startswith("status.") or m.step is None:
        return False
    name = m.observable.split(".", 1)[1]
    field = STATUS.field(name)
    cleared = any(isinstance(s, RegisterWrite) and s.name == "STATUS" and s.value & field.mask
                  for s in ctx.case.steps[:m.step])
    return cleared and ctx.observation.batches[m.step].status.get(name) == 1


def exclusion_base_not_writable(ctx: Context, m: Mismatch) -> bool:
    return m.observable == "register.EXCL_BASE" and ctx.observation.registers[m.step].value == 0


def event_log_dead(ctx: Context, m: Mismatch) -> bool:
    """No record is ever written: the missing records, and EventLogInt never set."""
    if m.observable == "event-missing":
        return not ctx.observation.events
    if m.observable == "status.EventLogInt":
        return ctx.observation.batches[m.step].status.get("EventLogInt") == 0
    return False


def walk_loop_hang(ctx: Context, m: Mismatch) -> bool:
    """QEMU stopped answering during a DMA whose walk meets a directory entry with Next Level not below its
    own level."""
    if m.observable != "hang" or m.step is None or not isinstance(ctx.case.steps[m.step], EduDma):
        return False
    dma = ctx.expectation.dmas.get(m.step)
    if dma is None:
        return False
    for s in _host_steps(dma.fresh):
        nl = (s.entry >> 9) & 7
        if s.entry & PR and 1 <= nl <= 6 and nl >= s.level:
            return True
    return False


def tail_beyond_ring_hang(ctx: Context, m: Mismatch) -> bool:
    if m.observable != "hang" or m.step is None:
        return False
    s = ctx.case.steps[m.step]
    return isinstance(s, RegisterWrite) and s.name == "CMD_BUF_TAIL" and s.value >= LAYOUT.ring_bytes


# a recogniser answers True (that divergence alone explains the mismatch), a tuple of names (these
# divergences together explain it: its own first) or False
RECOGNISERS: dict[str, Callable[[Context, Mismatch], "bool | tuple[str, ...]"]] = {
    f.__name__.replace("_", "-"): f for f in (
        translation_not_valid_identity, iotlb_before_dte, dte_reserved_bits_when_invalid,
        cached_permission_fault, iotlb_key_aliasing,
        illegal_command_continues, head_written_before_wrap, status_not_writable,
        exclusion_base_not_writable, event_log_dead, walk_loop_hang, tail_beyond_ring_hang)
}
KNOWN_NAMES = set(RECOGNISERS) | set(TRANSFORMS) | set(TERMINALS)


def series(version: str) -> str:
    """``7.2.22`` -> ``7.2``: known lists are kept per major.minor release."""
    return ".".join(version.split(".")[:2])


def load(version: str) -> list[Known]:
    """The known divergences of QEMU ``version`` (empty when no list exists for its series)."""
    name = f"qemu-{series(version)}.json"
    try:
        text = resources.files("amdvi.difftest").joinpath("known", name).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return []
    return parse(json.loads(text), name)


def parse(obj: Any, source: str) -> list[Known]:
    out = []
    for i, entry in enumerate(obj.get("divergences", [])):
        known = Known(**entry)
        if known.recogniser not in KNOWN_NAMES:
            raise ValueError(f"{source}: divergence {known.id}: unknown recogniser {known.recogniser!r}")
        if known.classification not in CLASSES:
            raise ValueError(f"{source}: divergence {known.id}: unknown class {known.classification!r}")
        out.append(known)
    return out


def not_reproduced(version: str) -> list[dict[str, str]]:
    """The study's items the harness does not show as divergences, each with the reason."""
    name = f"qemu-{series(version)}.json"
    try:
        text = resources.files("amdvi.difftest").joinpath("known", name).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return []
    return list(json.loads(text).get("not_reproduced", []))


def explain(ctx: Context, m: Mismatch, known: list[Known]) -> tuple[Known, ...]:
    """The known divergences that together explain ``m`` (empty: it is new). A mismatch two divergences
    explain only together (an address beyond the mode's range reaching a non-present leaf; a cached entry
    that outlived a DTE change and lacks the access's permission) names both."""
    by_recogniser = {k.recogniser: k for k in known}
    for k in known:
        if k.recogniser not in RECOGNISERS:
            continue
        answer = RECOGNISERS[k.recogniser](ctx, m)
        if answer is True:
            return (k,)
        if answer and all(name in by_recogniser for name in answer):
            return tuple(by_recogniser[name] for name in answer)
    if _dma(m):
        names = list(by_recogniser)
        combo = explain_dma(ctx, m, names) or _served_from_divergent_fill(ctx, m, names)
        if combo:
            return tuple(by_recogniser[name] for name in combo)
    return ()


def classify(ctx: Context, mismatches: list[Mismatch], known: list[Known]) -> list[tuple[Mismatch, tuple[Known, ...]]]:
    """Each mismatch with the known divergences that explain it (none: new)."""
    return [(m, explain(ctx, m, known)) for m in mismatches]


def seen_word(seen: Any) -> int | None:
    """The system word QEMU's DMA reached, when the harness can name it."""
    if seen.write:
        return seen.landed
    return pattern_address(seen.value) if seen.value is not None else None


def _served_from_divergent_fill(ctx: Context, m: Mismatch, names: list[str]) -> tuple[str, ...] | None:
    """QEMU served the DMA with the page an earlier access of the same device and IOVA page reached, and
    that earlier result is itself explained by known divergences of the walk (whether or not the model's
    caches made it look allowed then): QEMU's IOTLB keeps what its walk found, so this is a consequence of
    them."""
    word = seen_word(ctx.observation.dmas[m.step])
    if word is None:
        return None
    dma = ctx.expectation.dmas[m.step]
    for j in range(m.step - 1, -1, -1):
        s = ctx.case.steps[j]
        before = ctx.observation.dmas.get(j)
        if not isinstance(s, EduDma) or s.device != dma.device or s.address >> 12 != dma.address >> 12:
            continue
        had = seen_word(before) if before is not None else None
        if had is None or had >> 12 != word >> 12:
            continue
        combo = explain_dma(ctx, Mismatch(j, "dma", "", "", ""), names)
        if combo:
            return combo
    return None


def explained_ids(classified: list[tuple[Mismatch, tuple[Known, ...]]]) -> set[str]:
    """Every known divergence that takes part in explaining the mismatches."""
    return {k.id for _, ks in classified for k in ks}
