"""No stale translation, tested by Hypothesis on the IOMMU model (``models.iommu.step``, Python ints).

A :class:`~hypothesis.stateful.RuleBasedStateMachine` drives the one ``step`` function with the moves
of three parties on a small fixed platform:

* software, following the invalidation protocol of 48882 §2.4 (:mod:`amdvi.models.protocol`): every change of a page table or a DTE
  is followed at once by the invalidations it needs (§2.4.2 INVALIDATE_DEVTAB_ENTRY, §2.4.3
  INVALIDATE_IOMMU_PAGES with PDE = 1 when a directory entry changed and one S = 1 range for several
  pages, §2.4.4 INVALIDATE_IOTLB_PAGES for an ATS device of the domain) and a COMPLETION_WAIT (§2.4.1)
  storing the next value of an increasing counter; the change is complete only when software sees
  that value at the semaphore. The stores of one change are one move each, made in one rule (no
  hardware move between them);
* the hardware: command processing (one move at a time, or running until it has nothing to do, with
  or without retiring in-flight invalidations), filling a slot of any cache from a walk of current
  memory or evicting one;
* the devices: untranslated DMA served from a drawn choice of slots, and translated (ATS) DMA from the
  ATS device's own IOTLB.

The property (:func:`amdvi.properties.coherence.agrees`): while no change is outstanding, every DMA
gives what the fresh walk of current memory gives, *however the hardware serves it*. At each access
every choice of valid slots is tried (the model is pure: trying is a call, not a move), and after every
rule an invariant tries, for each valid slot, a read and a write to the address the slot was filled
from, served from that slot: a device may make that access at any moment. The answers are remembered
by the words of memory they read (:func:`served_and_fresh`): the invariant asks the same questions
after nearly every rule (and asks a slot's again only when that slot or memory changed). The command
processor's steps are remembered by what they read too (:func:`stepped`). Each broken model
whose preset names this machine (``presets.caught_by``) breaks the property, and the machine finds an interleaving that shows it within its
default budget (100 examples of at most ``STEP_COUNT`` rules, derandomized in CI).

The platform: devices 0x10 and 0x11 (0x11 with DTE.I = 1), both starting in domain 5; domains 5 and
6, each a 3-level v1 table mapping the pages 0x4000..0x7000 (one level-1 table) and 0x40_0000
(another level-1 table, so a range over all of them spans two page-directory entries) to different
system pages of a pool. Device 0x12 uses guest (v2) translation in domain 7 (DTE.Mode = 0, GV = 1,
a one-level GCR3 table): PASIDs 1 and 2 each have a 4-level guest table mapping the GVAs 0x4000,
0x5000 and 0x40_0000. Its changes go through INVALIDATE_IOMMU_PAGES with GN = 1 and the PASID: a
guest page mapped or unmapped, a guest directory entry replaced, the PASID's GCR3 entry pointed to a
new guest table.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from itertools import combinations_with_replacement, product
from typing import Any, Callable, Iterable, Sequence, TypeVar

from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

from amdvi.models import protocol, software as sw
from amdvi.models.caches import CACHE_NAMES, Caches
from amdvi.models.dma import DmaResult, ServeChoice
from amdvi.models.iommu import (IN_FLIGHT, CpuWrite, Dma, Evict, Fill, IommuState, ProcessCommand, Retire,
                                TranslatedDma, step)
from amdvi.models.registers import ring_offset
from amdvi.spec.bitvec import INT
from amdvi.spec.commands import COMMAND_BYTES, covering_block
from amdvi.spec.device_table import DTE
from amdvi.spec.guest_page_table import GCR3_ENTRY
from amdvi.spec.choices import SPEC, Hardware, hardware
from amdvi.spec.levels import level_shift
from amdvi.spec.translation import Request

try:
    from hypothesis.control import should_note
except ImportError:  # an older Hypothesis: note only in the final (reported) run
    from hypothesis.control import current_build_context

    def should_note() -> bool:
        return current_build_context().is_final

from . import remembered_access
from .counterexample import DIFFERS, Trace

LAYOUT = sw.Layout()
MODE = 3  # v1 table levels
PAGE = 0x1000
DIRECTORY_SPAN = 1 << level_shift(2)  # the IOVA range one level-2 entry covers (2 MiB)

PLAIN_DEVICE, ATS_DEVICE = 0x10, 0x11
DEVICES = (PLAIN_DEVICE, ATS_DEVICE)
DOMAIN_ROOTS = {5: 0x100_0000, 6: 0x110_0000}  # DomainID -> v1 root table
DOMAINS = tuple(DOMAIN_ROOTS)
FIRST_TABLE = 0x120_0000  # further table pages are allocated upward from here
PAGES = (0x4000, 0x5000, 0x6000, 0x7000, 0x40_0000)  # IOVAs; the last under another directory entry
POOL = tuple(0x8000_0000 + PAGE * i for i in range(8))  # system pages the tables map to
INITIAL_ROTATION = {5: 0, 6: 3}  # domain d maps PAGES[i] to POOL[(i + rotation) % len(POOL)]
SLOTS = 1  # slots per cache
COMMANDS_PER_CHANGE = 4  # at most: DEVTAB, PAGES, IOTLB_PAGES, COMPLETION_WAIT
MAX_OUTSTANDING = 2  # software changes in progress at once
CHANGES = ("map_page", "unmap_pages", "replace_directory", "move_device")  # IommuMachine methods
GUEST_CHANGES = ("map_guest_page", "unmap_guest_pages", "replace_guest_directory", "switch_guest_table")
DEVICE_BURST = 3  # accesses one device rule may make in a row
PROCESSOR_BURST = 3  # command-processor moves one rule may make in a row
STEP_COUNT = 40  # default stateful_step_count
# the v2 device: a one-level GCR3 table for PASIDs 1 and 2, each with its own 4-level guest table
GUEST_DEVICE, GUEST_DOMAIN = 0x12, 7
GCR3_TABLE = 0x130_0000
PASIDS = (1, 2)
GUEST_ROOTS = {1: 0x140_0000, 2: 0x150_0000}
GUEST_PAGES = (0x4000, 0x5000, 0x40_0000)
GUEST_INITIAL_ROTATION = {1: 1, 2: 5}
GUEST_LEVELS = 4
ATTACHED, DETACHED, BLOCKED, PASS_THROUGH = "attached", "detached (V = 0)", "blocked (TV = 0)", "pass-through (Mode 0)"
DTE_SHAPES = (ATTACHED, DETACHED, BLOCKED, PASS_THROUGH)

# contiguous runs of PAGES: one page (S = 0) or several (one S = 1 range)
ADDRESSES = tuple(page | 0x10 for page in PAGES)  # what requests ask for (an offset inside each page)
GUEST_ADDRESSES = tuple(page | 0x18 for page in GUEST_PAGES)
GUEST_RUNS = tuple(GUEST_PAGES[i:j + 1] for i, j in combinations_with_replacement(range(len(GUEST_PAGES)), 2))
PAGE_RUNS = tuple(PAGES[i:j + 1] for i, j in combinations_with_replacement(range(len(PAGES)), 2))
DIRECTORY_BASES = tuple(sorted({p & ~(DIRECTORY_SPAN - 1) for p in PAGES}))
T = TypeVar("T")


class StaleTranslation(AssertionError):
    """A DMA, with no software change outstanding, did not give what the fresh walk gives: ``move``
    (tried, not taken) after the machine stepped ``moves`` from :func:`platform` under ``choices``."""

    def __init__(self, message: str, *, move: Any = None, moves: tuple[Any, ...] = (),
                 choices: Hardware = SPEC) -> None:
        super().__init__(message)
        self.move, self.moves, self.choices = move, moves, choices


# -- software's own view of its tables ---------------------------------------------------------------


def entry_address(memory: dict[int, int], root: int, iova: int, level: int) -> int | None:
    """The level-``level`` entry over ``iova`` in the v1 table at ``root`` (None: not reachable)."""
    return sw.entry_on_path(memory, root, iova, level, top=MODE)


def guest_root(memory: dict[int, int], pasid: int) -> int | None:
    """The guest table root of ``pasid`` in the GCR3 table (``None`` when its entry is not valid)."""
    entry = memory.get(sw.gcr3_entry_address(GCR3_TABLE, pasid), 0)
    return GCR3_ENTRY.view(entry)["GCR3"] << 12 if entry & 1 else None


def guest_entry_address(memory: dict[int, int], root: int, gva: int, level: int) -> int | None:
    """The level-``level`` entry over ``gva`` in the guest table at ``root`` (None: not reachable)."""
    return sw.entry_on_path(memory, root, gva, level, top=GUEST_LEVELS, guest=True)


def domain_of(memory: dict[int, int], device_id: int) -> int:
    words = [memory.get(LAYOUT.dte_address(device_id) + 8 * i, 0) for i in range(4)]
    return DTE.view(sum(w << (64 * i) for i, w in enumerate(words)))["DomainID"]


def dte_of(memory: dict[int, int], device_id: int) -> int:
    return sum(memory.get(LAYOUT.dte_address(device_id) + 8 * i, 0) << (64 * i) for i in range(4))


def translates(dte: int) -> bool:
    """The DTE makes the IOMMU translate (V = 1, TV = 1): its DomainID tags what gets cached."""
    v = DTE.view(dte)
    return v["V"] == 1 and v["TV"] == 1


def shaped_dte(shape: str, domain: int, *, ats: bool) -> int:
    """A v1 device's DTE of ``shape`` (one of :data:`DTE_SHAPES`) for ``domain``."""
    if shape == ATTACHED:
        return sw.v1_dte(domain, DOMAIN_ROOTS[domain], MODE, ats=ats)
    if shape == DETACHED:  # requests pass untranslated
        return 0
    if shape == BLOCKED:  # requests fault
        return DTE.encode({"V": 1, "DomainID": domain})
    return sw.v1_dte(domain, 0, 0, ats=ats)  # pass-through: Mode 0, subject to IR/IW


def stores(before: dict[int, int], after: dict[int, int]) -> list[CpuWrite]:
    """The CPU stores that turn memory ``before`` into ``after``."""
    return [CpuWrite(a, after[a]) for a in sorted(a for a, v in after.items() if before.get(a, 0) != v)]


def page_of(address: int) -> int:
    return address & ~(PAGE - 1)


def directory_of(address: int) -> int:
    """The base of the IOVA range the level-2 entry over ``address`` covers."""
    return address & ~(DIRECTORY_SPAN - 1)


def rotated_page(page: int, rotation: int) -> int:
    return POOL[(PAGES.index(page) + rotation) % len(POOL)]


def guest_rotated_page(page: int, rotation: int) -> int:
    return POOL[(GUEST_PAGES.index(page) + rotation) % len(POOL)]


def guest_table(memory: dict[int, int], root: int, rotation: int, next_free: int,
                pages: Iterable[int] = GUEST_PAGES) -> tuple[dict[int, int], int]:
    """``memory`` with ``pages`` mapped in the guest table at ``root``, rotated through the pool."""
    for page in pages:
        m = sw.v2_map(memory, root, page, guest_rotated_page(page, rotation), next_free, levels=GUEST_LEVELS)
        memory, next_free = m.memory, m.next_free
    return memory, next_free


@functools.lru_cache(maxsize=1)
def platform() -> tuple[IommuState, int]:
    """The initial state (both devices in domain 5, nothing cached) and the next free table page."""
    memory: dict[int, int] = {}
    next_free = FIRST_TABLE
    for device in DEVICES:
        memory = sw.write_dte(memory, LAYOUT, device,
                              sw.v1_dte(DOMAINS[0], DOMAIN_ROOTS[DOMAINS[0]], MODE, ats=device == ATS_DEVICE))
    for domain, root in DOMAIN_ROOTS.items():
        for page in PAGES:
            m = sw.v1_map(memory, root, MODE, page, rotated_page(page, INITIAL_ROTATION[domain]), next_free)
            memory, next_free = m.memory, m.next_free
    memory = sw.write_dte(memory, LAYOUT, GUEST_DEVICE, sw.v2_dte(GUEST_DOMAIN, GCR3_TABLE, giov=False))
    for pasid, root in GUEST_ROOTS.items():
        memory[sw.gcr3_entry_address(GCR3_TABLE, pasid)] = sw.gcr3_entry(root)
        memory, next_free = guest_table(memory, root, GUEST_INITIAL_ROTATION[pasid], next_free)
    caches = Caches.empty(**{name: SLOTS for name in CACHE_NAMES})
    return sw.initial_state(LAYOUT, memory, caches), next_free


# -- strategies for the hardware's and the devices' moves --------------------------------------------
# Every choice is one draw from a tuple of candidate values built once per situation: a composite
# strategy (one_of, flatmap, builds) costs Hypothesis several nested draws, which took most of the
# machine's time. A tuple weights its values by how often it holds them (:func:`balanced`), so the
# machine makes the moves it made with composite strategies, in about the same proportions; the
# drawn values differ, so a derandomized run explores other sequences than before.

MAX_OPTIONS = 256  # Hypothesis draws an index below about this uniformly (larger ones lean to small)


def draw(data: st.DataObject, strategy: st.SearchStrategy[T], label: str) -> T:
    """``data.draw(strategy, label=label)``: the same choice, drawn by the test case's own draw.

    ``DataObject.draw`` wraps every draw in checks meant for user strategies (it validates the
    strategy, and copies and compares the whole state of the global random generator before and after
    it, in case the strategy used it): 27 of its 35 us here, where a rule step draws about twice from
    fixed tuples. The drawn values, and so the exploration, are the same; a failing example's report
    notes each draw as ``data.draw`` does."""
    conjecture = getattr(data, "conjecture_data", None)
    if conjecture is None:  # a Hypothesis without it: its public draw
        return data.draw(strategy, label=label)
    value = conjecture.draw(strategy)
    data.count += 1
    if should_note():
        note(f"Draw {data.count} ({label}): {value!r}")
    return value


def balanced(groups: Iterable[Iterable[T]]) -> tuple[T, ...]:
    """The values of the non-empty ``groups``, each group (about) equally likely and its values
    uniformly: every group repeated to a common length, their least common multiple when the whole
    stays within :data:`MAX_OPTIONS`, else the longest group's (rounded)."""
    parts = [tuple(g) for g in groups]
    parts = [g for g in parts if g]
    common = math.lcm(*map(len, parts))
    if common * len(parts) > MAX_OPTIONS:
        common = max(map(len, parts))
    return tuple(v for g in parts for v in g * max(1, round(common / len(g))))


def device_requests(device: int, addresses: tuple[int, ...] = ADDRESSES, ats: bool = False) -> tuple[Request, ...]:
    """Every request of one device (reads and writes); the v2 device's carry a PASID."""
    if device == GUEST_DEVICE:
        return tuple(Request(device, a, write=w, pasid=p, has_pasid=True)
                     for a in GUEST_ADDRESSES for w in (False, True) for p in PASIDS)
    return tuple(Request(device, a, write=w, ats=ats) for a in addresses for w in (False, True))


@functools.lru_cache(maxsize=None)
def any_request(devices: tuple[int, ...], ats: bool = False) -> tuple[Request, ...]:
    """The requests of ``devices``, each once (each device about equally likely: they have 10 or 12)."""
    return tuple(r for d in devices for r in device_requests(d, ats=ats))


SLOTS_DRAWN = tuple(range(SLOTS))
RETIRES = tuple(Retire(i) for i in range(IN_FLIGHT))
FILLED_CACHES = CACHE_NAMES
ALL_DEVICES = (*DEVICES, GUEST_DEVICE)
# the caches that can serve a request of each kind of device (the model's hit conditions check DTE.GV
# and Mode, so a v1 request never hits a guest slot and a v2 request never a host PDE slot)
SERVING = {False: ("dte", "iotlb", "pde"), True: ("dte", "iotlb", "guest_pde", "gcr3")}
DIRECTORY_STEPS = {"pde": range(MODE - 1), "guest_pde": range(GUEST_LEVELS - 1)}  # a fill's step, by cache


def fills(cache: str, slots: Sequence[int] = SLOTS_DRAWN) -> tuple[Fill, ...]:
    """The fills of ``cache``: a slot, a request of a device the cache serves (a translation request
    of the ATS device for its own IOTLB), a directory step."""
    devices = {"pde": DEVICES, "guest_pde": (GUEST_DEVICE,), "gcr3": (GUEST_DEVICE,),
               "device_iotlb": (ATS_DEVICE,)}.get(cache, ALL_DEVICES)
    return tuple(Fill(cache, slot, r, step) for slot in slots for r in any_request(devices, cache == "device_iotlb")
                 for step in DIRECTORY_STEPS.get(cache, (0,)))


FILLS = balanced(fills(cache) for cache in FILLED_CACHES)  # each cache about equally likely
EVICTS = tuple(Evict(cache, slot) for cache in FILLED_CACHES for slot in SLOTS_DRAWN)
# a fill of one cache or an eviction, each of the seven equally likely: what the former one_of(FILLS,
# FILLS, FILLS, EVICTS) drew, as one_of flattens its branches and drops repeated ones; two draws, both
# uniform (the moves in one tuple would be more than MAX_OPTIONS)
CACHE_MOVES = st.one_of(*[st.sampled_from(fills(cache)) for cache in FILLED_CACHES], st.sampled_from(EVICTS))
WARM_UP = st.tuples(*(st.sampled_from(fills(cache, (i,))) for cache in FILLED_CACHES for i in range(SLOTS)))
ROTATIONS = st.sampled_from(balanced([(None,), range(len(POOL))]))  # a new table's rotation, or None: cleared
# built once: a strategy object is validated on its first draw
SPAS, WRITABLE, SHAPES = st.sampled_from(POOL), st.booleans(), st.sampled_from(DTE_SHAPES)


def favoured(values: Sequence[T], near: Callable[[T], bool]) -> st.SearchStrategy[T]:
    """One of ``values``; half the time one of those ``near`` holds for (if any)."""
    return _favoured(tuple(values), tuple(v for v in values if near(v)))


@functools.lru_cache(maxsize=4096)
def _favoured_values(values: tuple[T, ...], chosen: tuple[T, ...]) -> tuple[T, ...]:
    return balanced([chosen, values])


@functools.lru_cache(maxsize=4096)
def _favoured(values: tuple[T, ...], chosen: tuple[T, ...]) -> st.SearchStrategy[T]:
    """The strategy of :func:`favoured`, built once per (values, chosen): Hypothesis validates a new
    strategy object on its first draw, which cost the machine a third of its time when every rule
    built its own."""
    return st.sampled_from(_favoured_values(values, chosen))


@functools.lru_cache(maxsize=4096)
def _requests_near(devices: tuple[int, ...], *known: tuple[Request, ...]) -> st.SearchStrategy[Request]:
    """Requests of ``devices``, or one of each ``known`` group's requests of ``devices`` (untranslated,
    either direction), each group equally likely (see :meth:`IommuMachine.requests`); built once per
    argument (see :func:`_favoured`)."""
    near = (tuple(dataclasses.replace(r, ats=False, write=w) for r in group if r.device_id in devices
                  for w in (False, True)) for group in known)
    return st.sampled_from(balanced([any_request(devices), *near]))


Favoured = tuple[tuple[Any, ...], tuple[Any, ...]]  # (values, those favoured): see favoured()


@functools.lru_cache(maxsize=4096)
def _combinations(parts: tuple[Favoured, ...]) -> tuple[tuple[Any, ...], ...]:
    """A value of each part, drawn independently as :func:`favoured` draws each: all their combinations,
    for one draw."""
    return tuple(product(*(_favoured_values(values, chosen) for values, chosen in parts)))


@functools.lru_cache(maxsize=4096)
def _combined(parts: tuple[Favoured, ...]) -> st.SearchStrategy[tuple[Any, ...]]:
    """One draw of :func:`_combinations` (built once per argument, see :func:`_favoured`)."""
    return st.sampled_from(_combinations(parts))


@functools.lru_cache(maxsize=4096)
def _serve_choices(caches: tuple[str, ...], parts: tuple[Favoured, ...]) -> st.SearchStrategy[ServeChoice]:
    """A slot (or memory) of each of ``caches``, drawn as :func:`_combinations` draws ``parts``."""
    return st.sampled_from(tuple(ServeChoice(**dict(zip(caches, combo))) for combo in _combinations(parts)))


# slot filled from request ``g`` may serve request ``r`` (a guess, to favour choices; the model decides)
SERVES: dict[str, Callable[[Request, Request], bool]] = {
    "dte": lambda g, r: g.device_id == r.device_id,
    "iotlb": lambda g, r: page_of(g.address) == page_of(r.address),
    "pde": lambda g, r: directory_of(g.address) == directory_of(r.address),
    "guest_pde": lambda g, r: g.pasid == r.pasid and directory_of(g.address) == directory_of(r.address),
    "gcr3": lambda g, r: g.device_id == r.device_id and g.pasid == r.pasid,
    "device_iotlb": lambda g, r: g.device_id == r.device_id and page_of(g.address) == page_of(r.address),
}


# -- the machine ----------------------------------------------------------------------------------------


def filled_by(state: IommuState, move: Fill, choices: Hardware) -> Any:
    """The slot ``move`` puts in place on ``state``, remembered (``remembered_access``)."""
    return remembered_access.shared(choices).filled(state, move)


def served_and_fresh(state: IommuState, move: Dma | TranslatedDma, choices: Hardware) -> tuple[DmaResult, bool, Any]:
    """``(served, agrees, fresh)`` for ``move`` tried on ``state``, remembered by the words of memory it
    read (``remembered_access``): the invariant asks the same questions after nearly every rule."""
    return remembered_access.shared(choices).served_and_fresh(state, move)


forget = remembered_access.forget


STEP_PARTS = remembered_access.STEP_PARTS


def stepped(state: IommuState, move: ProcessCommand | Retire, choices: Hardware) -> tuple[IommuState, Any]:
    """``step`` for a command-processor move, remembered by what it reads (``remembered_access``)."""
    return remembered_access.shared(choices).stepped(state, move)


class IommuMachine(RuleBasedStateMachine):
    """Software, hardware and devices taking turns on one :class:`IommuState` (see the module docstring).
    ``choices`` (the hardware's readings and faults) is bound by :func:`machine`.

    Every slot starts filled, and choices favour what the slots were filled from (half the time): a
    stale translation needs a filled slot, a change under it, then an access that uses it."""

    choices: Hardware = SPEC
    max_outstanding = MAX_OUTSTANDING
    commands_per_change = COMMANDS_PER_CHANGE

    def __init__(self) -> None:
        super().__init__()
        self.state, self.next_free = platform()
        self.last_wait_value = 0  # the Store Data of the newest COMPLETION_WAIT queued
        self.ghosts: dict[tuple[str, int], Request] = {}  # (cache, slot) -> the request it was filled from
        self.changed: tuple[Request, ...] = ()  # requests whose translation the latest change may alter
        self.moves: list[Any] = []  # every move stepped, in order: a failure's trace
        self.ghost_requests: tuple[Request, ...] = ()  # the ghosts' requests, each once, in a fixed order
        self._processor_moves: tuple[Any, tuple[Any, ...]] = (None, ())
        self._may_change: tuple[Any, int, bool] = (None, 0, False)
        self._asked: tuple[Any, ...] = (None,) * 4  # what the invariant last held for
        self._held: dict[tuple[str, int], tuple[Any, ...]] = {}  # (cache, slot) -> what its accesses last held for

    def _step(self, move: Any, given: Any = None) -> Any:
        if move.__class__ in STEP_PARTS:
            self.state, outputs = stepped(self.state, move, self.choices)
        else:
            self.state, outputs = step(INT, self.state, move, choices=self.choices, given=given)
        self.moves.append(move)
        return outputs

    def favoured(self, values: Sequence[T], touched: Callable[[T, Request], bool]) -> st.SearchStrategy[T]:
        """One of ``values``; half the time one that ``touched`` relates to a slot's fill request."""
        return favoured(values, lambda v: any(touched(v, r) for r in self.ghosts.values()))

    def domains(self) -> st.SearchStrategy[int]:
        return self.favoured(DOMAINS, lambda d, r: domain_of(self.state.memory, r.device_id) == d)

    # -- software ----------------------------------------------------------------------------------

    def settled(self) -> bool:
        """Software has seen the newest COMPLETION_WAIT's store: no change is outstanding."""
        return sw.semaphore(self.state, LAYOUT) == self.last_wait_value

    def may_change(self) -> bool:
        """Fewer than ``max_outstanding`` changes outstanding, and room in the ring for another (worked
        out once per state, as :meth:`processor_moves` is)."""
        known = self._may_change
        if known[0] is self.state and known[1] == self.last_wait_value:
            return known[2]
        regs = self.state.regs
        used = (ring_offset(INT, regs, "cmd_tail") - ring_offset(INT, regs, "cmd_head")) % LAYOUT.ring_bytes
        free = LAYOUT.ring_bytes // COMMAND_BYTES - 1 - used // COMMAND_BYTES
        outstanding = self.last_wait_value - sw.semaphore(self.state, LAYOUT)
        answer = outstanding < self.max_outstanding and free >= self.commands_per_change
        self._may_change = (self.state, self.last_wait_value, answer)
        return answer

    def ats_devices_in(self, domain: int) -> list[int]:
        return [d for d in DEVICES if d == ATS_DEVICE and domain_of(self.state.memory, d) == domain]

    def change(self, memory: dict[int, int], commands: list[int], changed: Iterable[Request]) -> None:
        """Store what differs from ``memory``, then queue ``commands`` and a COMPLETION_WAIT. The
        change concerns the requests ``changed``."""
        writes = stores(self.state.memory, memory)
        if not writes:
            return
        self.changed = tuple(changed)
        for move in writes:
            self._step(move)
        self.last_wait_value += 1
        wait = sw.completion_wait(LAYOUT.semaphore, self.last_wait_value)
        for move in sw.queue_moves(self.state, LAYOUT, [*commands, wait]):
            self._step(move)

    def page_table_change(self, memory: dict[int, int], domain: int, start: int, size: int, *,
                          directory: bool) -> None:
        """A change of ``domain``'s table over ``[start, start + size)``: one INVALIDATE_IOMMU_PAGES
        (PDE = 1 when a directory entry changed) and one INVALIDATE_IOTLB_PAGES per ATS device in it."""
        ats_devices = [protocol.AtsDevice(d) for d in self.ats_devices_in(domain)]
        commands = protocol.commands_to_send(
            protocol.v1_table_change(INT, domain, covering_block(start, size), ats_devices, directory=directory))
        devices = [d for d in DEVICES if domain_of(self.state.memory, d) == domain]
        self.change(memory, commands, [Request(d, a) for d in devices for a in ADDRESSES if start <= a < start + size])

    @precondition(may_change)
    @rule(data=st.data(), change=st.sampled_from(CHANGES))
    def software(self, data: st.DataObject, change: str) -> None:
        """One change (a method named in ``CHANGES``), with its invalidations and COMPLETION_WAIT."""
        getattr(self, change)(data)

    @precondition(may_change)
    @rule(data=st.data(), change=st.sampled_from(GUEST_CHANGES))
    def guest_software(self, data: st.DataObject, change: str) -> None:
        """One change of the v2 device's tables (a method named in ``GUEST_CHANGES``)."""
        getattr(self, change)(data)

    def map_page(self, data: st.DataObject) -> None:
        """Map a page (or remap it, if mapped); a missing level-1 table is allocated."""
        domain = draw(data, self.domains(), "domain")
        page = draw(data, self.favoured(PAGES, lambda p, r: page_of(r.address) == p), "page")
        spa = draw(data, SPAS, "spa")
        writable = draw(data, WRITABLE, "writable")
        m = sw.v1_map(self.state.memory, DOMAIN_ROOTS[domain], MODE, page, spa, self.next_free, writable=writable)
        self.next_free = m.next_free
        directory = any(self.state.memory.get(a, 0) != m.memory.get(a, 0) for a in m.directory_addresses)
        self.page_table_change(m.memory, domain, page, PAGE, directory=directory)

    def unmap_pages(self, data: st.DataObject) -> None:
        """Clear the PTEs of a run of pages: one invalidation for the whole range (S = 1 if several)."""
        domain = draw(data, self.domains(), "domain")
        run = draw(data, self.favoured(PAGE_RUNS, lambda run, r: page_of(r.address) in run), "pages")
        memory = dict(self.state.memory)
        for page in run:
            leaf = entry_address(memory, DOMAIN_ROOTS[domain], page, 1)
            if leaf is not None:
                memory[leaf] = 0
        self.page_table_change(memory, domain, run[0], run[-1] + PAGE - run[0], directory=False)

    def replace_directory(self, data: st.DataObject) -> None:
        """Point a level-2 entry to a new level-1 table mapping each of its pages rotated by a drawn
        amount through the pool, or clear the entry (rotation None)."""
        domain = draw(data, self.domains(), "domain")
        base = draw(data, self.favoured(DIRECTORY_BASES, lambda b, r: directory_of(r.address) == b), "base")
        rotation = draw(data, ROTATIONS, "rotation")
        root = DOMAIN_ROOTS[domain]
        memory = dict(self.state.memory)
        memory[entry_address(memory, root, base, 2)] = 0
        if rotation is not None:
            for page in (p for p in PAGES if directory_of(p) == base):
                m = sw.v1_map(memory, root, MODE, page, rotated_page(page, rotation), self.next_free)
                memory, self.next_free = m.memory, m.next_free
        self.page_table_change(memory, domain, base, DIRECTORY_SPAN, directory=True)

    def move_device(self, data: st.DataObject) -> None:
        """Rewrite a device's DTE for the other domain: invalidate the DTE, the whole new domain and
        (ATS) the device's IOTLB."""
        device = draw(data, self.favoured(DEVICES, lambda d, r: r.device_id == d), "device")
        old = domain_of(self.state.memory, device)
        new = next(d for d in DOMAINS if d != old)
        dte = sw.v1_dte(new, DOMAIN_ROOTS[new], MODE, ats=device == ATS_DEVICE)
        commands = protocol.commands_to_send(
            protocol.dte_change(INT, device, {"new DomainID": new}, ats=device == ATS_DEVICE))
        self.change(sw.write_dte(self.state.memory, LAYOUT, device, dte), commands,
                    [Request(device, a) for a in ADDRESSES])

    # the v2 device's changes: each followed by INVALIDATE_IOMMU_PAGES with GN = 1 and the PASID (no
    # ATS on this device, so no INVALIDATE_IOTLB_PAGES)

    def pasids(self) -> st.SearchStrategy[int]:
        return self.favoured(PASIDS, lambda p, r: r.has_pasid and r.pasid == p)

    def guest_change(self, memory: dict[int, int], pasid: int, start: int, size: int, *, directory: bool) -> None:
        """A change of ``pasid``'s guest table over ``[start, start + size)``."""
        required = protocol.v2_table_change(INT, GUEST_DOMAIN, pasid, covering_block(start, size), directory=directory)
        self.pasid_change(memory, pasid, required, [a for a in GUEST_ADDRESSES if start <= a < start + size])

    def pasid_change(self, memory: dict[int, int], pasid: int, required: Iterable[protocol.Required],
                     addresses: Iterable[int]) -> None:
        """A change of what ``pasid`` translates at ``addresses``, with its ``required`` invalidations."""
        self.change(memory, protocol.commands_to_send(required),
                    [Request(GUEST_DEVICE, a, pasid=pasid, has_pasid=True) for a in addresses])

    def map_guest_page(self, data: st.DataObject) -> None:
        """Map (or remap) a guest page of a PASID; missing guest tables are allocated."""
        pasid = draw(data, self.pasids(), "pasid")
        root = guest_root(self.state.memory, pasid)
        if root is None:  # the PASID has no guest table now
            return
        page = draw(data, self.favoured(GUEST_PAGES, lambda p, r: r.has_pasid and page_of(r.address) == p), "gva")
        spa = draw(data, SPAS, "spa")
        writable = draw(data, WRITABLE, "writable")
        m = sw.v2_map(self.state.memory, root, page, spa, self.next_free, writable=writable, levels=GUEST_LEVELS)
        self.next_free = m.next_free
        directory = any(self.state.memory.get(a, 0) != m.memory.get(a, 0) for a in m.directory_addresses)
        self.guest_change(m.memory, pasid, page, PAGE, directory=directory)

    def unmap_guest_pages(self, data: st.DataObject) -> None:
        """Clear the guest PTEs of a run of GVAs of a PASID: one range invalidation."""
        pasid = draw(data, self.pasids(), "pasid")
        run = draw(data, self.favoured(GUEST_RUNS, lambda run, r: r.has_pasid and page_of(r.address) in run), "gvas")
        root = guest_root(self.state.memory, pasid)
        memory = dict(self.state.memory)
        for page in run:
            leaf = guest_entry_address(memory, root, page, 1) if root is not None else None
            if leaf is not None:
                memory[leaf] = 0
        self.guest_change(memory, pasid, run[0], run[-1] + PAGE - run[0], directory=False)

    def replace_guest_directory(self, data: st.DataObject) -> None:
        """Point a PASID's level-2 guest entry to a new level-1 table (its pages rotated through the
        pool by a drawn amount), or clear it (rotation None)."""
        pasid = draw(data, self.pasids(), "pasid")
        base = draw(data, self.favoured(DIRECTORY_BASES, lambda b, r: r.has_pasid and directory_of(r.address) == b),
                    "base")
        rotation = draw(data, ROTATIONS, "rotation")
        root = guest_root(self.state.memory, pasid)
        at = guest_entry_address(self.state.memory, root, base, 2) if root is not None else None
        if at is None:
            return
        memory = dict(self.state.memory)
        memory[at] = 0
        if rotation is not None:
            pages = [p for p in GUEST_PAGES if directory_of(p) == base]
            memory, self.next_free = guest_table(memory, root, rotation, self.next_free, pages)
        self.guest_change(memory, pasid, base, DIRECTORY_SPAN, directory=True)

    def switch_guest_table(self, data: st.DataObject) -> None:
        """Point a PASID's GCR3 entry to a newly built guest table (rotated by a drawn amount) or clear
        it (rotation None): INVALIDATE_IOMMU_PAGES of all the PASID's pages with PDE = 1."""
        pasid = draw(data, self.pasids(), "pasid")
        rotation = draw(data, ROTATIONS, "rotation")
        memory = dict(self.state.memory)
        entry = sw.gcr3_entry_address(GCR3_TABLE, pasid)
        if rotation is None:
            memory[entry] = 0
        else:
            root, self.next_free = self.next_free, self.next_free + PAGE
            memory, self.next_free = guest_table(memory, root, rotation, self.next_free)
            memory[entry] = sw.gcr3_entry(root)
        self.pasid_change(memory, pasid, protocol.gcr3_entry_change(INT, GUEST_DOMAIN, pasid), GUEST_ADDRESSES)

    # -- hardware ----------------------------------------------------------------------------------

    def command_pending(self) -> bool:
        regs = self.state.regs
        return ring_offset(INT, regs, "cmd_head") != ring_offset(INT, regs, "cmd_tail")

    def processor_moves(self) -> tuple[ProcessCommand | Retire, ...]:
        """What the command processor can do now: take the next command, retire an in-flight one
        (worked out once per state: Hypothesis asks before choosing each rule)."""
        if self._processor_moves[0] is not self.state:
            take = (ProcessCommand(),) if self.command_pending() else ()
            self._processor_moves = (self.state, take + tuple(RETIRES[i] for i, q in enumerate(self.state.in_flight)
                                                              if q.valid))
        return self._processor_moves[1]

    @precondition(lambda self: self.processor_moves())
    @rule(data=st.data(), count=st.integers(1, PROCESSOR_BURST))
    def command_processor(self, data: st.DataObject, count: int) -> None:
        """Up to ``count`` moves of the command processor, each drawn among those it can make (taking
        the next command half the time, so that a COMPLETION_WAIT may overtake in-flight work when
        the model lets it)."""
        for _ in range(count):
            moves = self.processor_moves()
            if not moves:
                return
            move = draw(data, _favoured(moves, tuple(m for m in moves if isinstance(m, ProcessCommand))), "move")
            self._step(move)

    @precondition(lambda self: self.processor_moves())
    @rule(retire=st.booleans())
    def run(self, retire: bool) -> None:
        """The command processor runs until it has nothing to do: it takes every queued command it may
        take, and, with ``retire``, first retires each in-flight invalidation (what software sees when
        it spins on the semaphore); without, it leaves them in flight (a COMPLETION_WAIT then waits,
        unless the model lets it overtake them)."""
        while True:
            moves = [m for m in self.processor_moves() if retire or isinstance(m, ProcessCommand)]
            before = self.state
            if not moves or self._step(moves[-1]).blocked:  # retire first: a blocked wait waits for it
                return
            if self.state == before:  # stopped (e.g. after an illegal command): nothing more will happen
                return

    @initialize(moves=WARM_UP)
    def warm_up(self, moves: tuple[Fill, ...]) -> None:
        """Fill every slot of every cache."""
        for move in moves:
            self._fill(move)

    @rule(move=CACHE_MOVES)
    def cache(self, move: Fill | Evict) -> None:
        """The hardware fills a slot from a walk of current memory or (once in seven) evicts one."""
        if isinstance(move, Fill):
            self._fill(move)
        else:
            self._step(move)
            self._ghost(move.cache, move.slot, None)

    def _fill(self, move: Fill) -> None:
        self._step(move, given=filled_by(self.state, move, self.choices))
        self._ghost(move.cache, move.slot, move.request)

    def _ghost(self, cache: str, slot: int, request: Request | None) -> None:
        """Slot ``slot`` of ``cache`` was filled from ``request`` (``None``: evicted)."""
        if request is None:
            self.ghosts.pop((cache, slot), None)
        else:
            self.ghosts[cache, slot] = request
        self.ghost_requests = tuple(sorted(set(self.ghosts.values()), key=_repr))

    # -- devices -----------------------------------------------------------------------------------

    def requests(self, devices: tuple[int, ...]) -> st.SearchStrategy[Request]:
        """Requests of ``devices``: to an address the latest change concerns, one a slot was filled
        from, or any (each equally likely when there are such; reads or writes)."""
        return _requests_near(devices, self.changed, self.ghost_requests)

    def slots(self, cache: str, request: Request, candidates: tuple[int | None, ...]) -> Favoured:
        """``candidates`` (slot indices, ``None`` for memory) and those :func:`favoured` favours: the
        slots filled from a request that slot could serve (same device for the DTE cache, same page or
        directory range)."""
        serves, ghosts = SERVES[cache], self.ghosts
        return candidates, tuple(i for i in candidates if i is not None and (ghost := ghosts.get((cache, i)))
                                 is not None and serves(ghost, request))

    def memory_or_valid_slot(self, cache: str, request: Request) -> Favoured:
        """Memory or a valid slot of ``cache`` (an invalid slot serves as memory does)."""
        return self.slots(cache, request, self.valid_slots(cache))

    @rule(data=st.data(), count=st.integers(1, DEVICE_BURST))
    def dma(self, data: st.DataObject, count: int) -> None:
        """``count`` untranslated accesses, each served from a choice of cache slots."""
        for _ in range(count):
            request = draw(data, self.requests(ALL_DEVICES), "request")
            caches = SERVING[request.device_id == GUEST_DEVICE]
            choice = _serve_choices(caches, tuple(self.memory_or_valid_slot(c, request) for c in caches))
            self.access(Dma(request, draw(data, choice, "choice")))

    @rule(data=st.data(), count=st.integers(1, DEVICE_BURST))
    def translated_dma(self, data: st.DataObject, count: int) -> None:
        """``count`` accesses of the ATS device through its own IOTLB."""
        for _ in range(count):
            request = draw(data, self.requests((ATS_DEVICE,)), "request")
            slots = (self.slots("device_iotlb", request, SLOTS_DRAWN), self.memory_or_valid_slot("dte", request))
            slot, dte_slot = draw(data, _combined(slots), "slot, dte slot")
            self.access(TranslatedDma(request, slot, dte_slot))

    def access(self, move: Dma | TranslatedDma) -> None:
        """The device's access. With no change outstanding, it must agree with the fresh walk however
        the hardware serves it: every choice of valid slots is tried (the model is pure, so trying
        costs nothing), then the drawn one is taken."""
        if self.settled():
            for alternative in self.alternatives(move):
                self.check(alternative)
        self._step(move, given=served_and_fresh(self.state, move, self.choices)[0])

    @invariant()
    def cached_requests_fresh(self) -> None:
        """With no change outstanding, a DMA made now to the address a valid slot was filled from (a
        read and a write), served from that slot, agrees with the fresh walk: a device may make it at
        any time."""
        if not self.settled():
            return
        state = self.state
        asked = (state.memory, state.caches, state.regs.dev_tab_bar, self.ghost_requests)
        if all(a is b for a, b in zip(asked, self._asked)):  # nothing it depends on changed since it held
            return
        memory, bar, held = state.memory, state.regs.dev_tab_bar, self._held
        for (cache, slot), ghost in sorted(self.ghosts.items()):
            entry = getattr(state.caches, cache)[slot]
            if not entry.valid:
                continue
            # the two answers depend on the slot, memory and the device table base only: asked of the
            # same ones (the very objects: memory and slots are never changed in place), they held
            last = held.get((cache, slot))
            if last is not None and last[0] is entry and last[1] is memory and last[2] == bar and last[3] == ghost:
                continue
            for move in ghost_accesses(cache, slot, ghost):
                self.check(move)
            held[cache, slot] = (entry, memory, bar, ghost)
        self._asked = asked

    def check(self, move: Dma | TranslatedDma) -> None:
        """``move``, tried without being taken, agrees with the fresh walk (else StaleTranslation)."""
        served, same, fresh = served_and_fresh(self.state, move, self.choices)
        if not same:
            raise StaleTranslation(
                f"{move}: served ok={served.ok} spa={served.spa:#x}, the fresh walk gives "
                f"ok={fresh.ok} spa={fresh.spa:#x} (no software change outstanding)",
                move=move, moves=tuple(self.moves), choices=self.choices)

    def valid_slots(self, cache: str) -> tuple[int | None, ...]:
        """``None`` (read memory) and each valid slot of ``cache``."""
        return (None, *(i for i, s in enumerate(getattr(self.state.caches, cache)) if s.valid))

    def alternatives(self, move: Dma | TranslatedDma) -> Iterable[Dma | TranslatedDma]:
        """``move`` served in each way the hardware may serve it (each choice of valid slots)."""
        if isinstance(move, TranslatedDma):
            for slot, dte in product(SLOTS_DRAWN, self.valid_slots("dte")):
                yield TranslatedDma(move.request, slot, dte, move.data)
            return
        caches = SERVING[move.request.device_id == GUEST_DEVICE]
        for slots in product(*(self.valid_slots(c) for c in caches)):
            yield Dma(move.request, serve_choice(caches, slots), move.data)


@functools.lru_cache(maxsize=4096)
def _repr(request: Request) -> str:
    """``repr(request)``, the order of the ghosts' requests (made once per request: every fill sorts them)."""
    return repr(request)


@functools.lru_cache(maxsize=4096)
def ghost_accesses(cache: str, slot: int, ghost: Request) -> tuple[Dma | TranslatedDma, ...]:
    """A read and a write to the address ``slot`` of ``cache`` was filled from, served from that slot."""
    requests = [dataclasses.replace(ghost, write=write) for write in (False, True)]
    if cache == "device_iotlb":
        return tuple(TranslatedDma(r, slot) for r in requests)
    return tuple(Dma(dataclasses.replace(r, ats=False), serve_choice((cache,), (slot,))) for r in requests)


@functools.lru_cache(maxsize=None)
def serve_choice(caches: tuple[str, ...], slots: tuple[int | None, ...]) -> ServeChoice:
    """The choice of ``slots`` of ``caches`` (made once per combination: alternatives are many)."""
    return ServeChoice(**dict(zip(caches, slots)))


class AttachDetachMachine(IommuMachine):
    """The machine with devices attached, detached (V = 0), blocked (TV = 0) and passed through (Mode 0),
    and the hardware filling caches from what the latest change concerns (a prefetch): DTE changes
    of every shape with the DTE cache in play. Kept apart from :class:`IommuMachine` so that each
    explores its own sequences within its budget."""

    commands_per_change = COMMANDS_PER_CHANGE + 1  # a DTE rewrite may flush both its old and new domain

    @precondition(IommuMachine.may_change)
    @rule(data=st.data())
    def rewrite_dte(self, data: st.DataObject) -> None:
        """Give a device a new DTE of a drawn shape (:data:`DTE_SHAPES`) and domain, then invalidate the
        DTE, every domain whose translations it had or gets, and (ATS) the device's IOTLB."""
        device = draw(data, self.favoured(DEVICES, lambda d, r: r.device_id == d), "device")
        shape = draw(data, SHAPES, "shape")
        domain = draw(data, self.domains(), "domain")
        old = dte_of(self.state.memory, device)
        dte = shaped_dte(shape, domain, ats=device == ATS_DEVICE)
        old_domain = DTE.view(old)["DomainID"] if translates(old) else None
        domains = sorted({DTE.view(d)["DomainID"] for d in (old, dte) if translates(d)})
        roles = {("old DomainID" if d == old_domain else "new DomainID"): d for d in domains}
        commands = protocol.commands_to_send(protocol.dte_change(INT, device, roles, ats=device == ATS_DEVICE))
        self.change(sw.write_dte(self.state.memory, LAYOUT, device, dte), commands,
                    [Request(device, a) for a in ADDRESSES])

    @precondition(lambda self: self.changed)
    @rule(data=st.data())
    def prefetch(self, data: st.DataObject) -> None:
        """The hardware fills a slot from a request the latest change concerns: it may walk right after
        a change, e.g. read a DTE that was just rewritten, before or after its invalidation."""
        self._fill(draw(data, _prefetches(self.changed), "fill"))


@functools.lru_cache(maxsize=4096)
def _prefetches(changed: tuple[Request, ...]) -> st.SearchStrategy[Fill]:
    """A fill from one of ``changed`` (each equally likely), of a cache serving its device (each equally
    likely), into any slot, at any directory step."""
    return st.sampled_from(balanced(
        balanced(tuple(Fill(cache, slot, r, step) for slot in SLOTS_DRAWN for step in DIRECTORY_STEPS.get(cache, (0,)))
                 for cache in SERVING[r.device_id == GUEST_DEVICE])
        for r in changed))


@functools.lru_cache(maxsize=None)
def machine(choices: Hardware = SPEC, base: type[IommuMachine] = IommuMachine) -> type[IommuMachine]:
    """The machine class (``base``) running the model under ``choices`` (the default: the specification)."""
    choices = hardware(choices)
    # named as before choices were typed (a fault by its name): the derandomized exploration depends on it
    parts = [name if value is True else f"{name}_{value}" for name, value in sorted(choices.changed().items())]
    name = base.__name__ + "".join(f"_{part}" for part in parts)
    return type(name.replace("-", "_"), (base,), {"choices": choices})


def run_machine(choices: Hardware = SPEC, *, max_examples: int | None = None,
                stateful_step_count: int = STEP_COUNT, derandomize: bool | None = None,
                shrink: bool = True, machine_class: type[IommuMachine] | None = None) -> Exception | None:
    """Run the machine once under Hypothesis; ``None`` when no run failed, else the failure (a
    :class:`StaleTranslation` when the property broke). Unset settings come from the loaded profile.
    ``machine_class`` (a subclass of ``machine(choices)``) replaces the machine, e.g. to count steps."""
    base = settings.default
    config = settings(
        base, max_examples=base.max_examples if max_examples is None else max_examples,
        stateful_step_count=stateful_step_count,
        derandomize=base.derandomize if derandomize is None else derandomize,
        deadline=None, database=None, report_multiple_bugs=False,
        phases=(Phase.explicit, Phase.generate) + ((Phase.shrink,) if shrink else ()),
        suppress_health_check=[HealthCheck.too_slow])
    try:
        run_state_machine_as_test(machine_class or machine(choices), settings=config)
    except Exception as failure:  # noqa: BLE001 - the caller decides what a failure means
        return failure
    return None


def failure_trace(failure: StaleTranslation) -> Trace:
    """The trace of a machine's failure: from :func:`platform`, the moves it stepped, then the DMA that
    showed the stale translation; replayed exactly (only the trace's own Retire moves carry out work)."""
    state, _ = platform()
    return Trace(f"state machine: a DMA differs from the fresh walk ({failure.choices.label()})", dict(state.memory),
                 (*failure.moves, failure.move), (str(failure),), waits=True, regs=state.regs,
                 cache_slots={name: len(state.caches.slots(name)) for name in CACHE_NAMES}, choices=failure.choices,
                 violation=DIFFERS, retire_at_once=False)


__all__ = ["IommuMachine", "AttachDetachMachine", "StaleTranslation", "failure_trace", "machine", "run_machine",
           "platform", "forget", "STEP_COUNT"]
