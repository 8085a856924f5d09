"""Invalidation completeness, proved with Z3 as an inductive step over symbolic states and changes.

For each kind of software change (:data:`CHANGES`: a v1 table entry, a v2 table entry, a GCR3 table
entry, a DTE) the query is, for one arbitrary slot of one cache:

    the slot is fresh on memory M (``coherence.slot_is_fresh``: it holds what a fill from its ghost
    request gives now)
    and the change writes memory M -> M' and belongs where software says (``owns``: the changed word
    is read by the ghost's walk only as that kind of entry, of that DomainID / PASID / range)
    and the invalidations the change requires (``models.protocol``, on symbolic operands) take effect
    (the model's ``caches.invalidate``)
  => the slot is still fresh on M'.

Everything else is symbolic: all of memory (an uninterpreted function: any tables, anywhere), the
slot's contents, the ghost request (any device, address, PASID, access), the changed address and its
new value, the DomainID, PASID and the range. The caches act on each slot separately, so one slot
stands for any number; filling and evicting keep slots fresh by construction, and
``serving.serves_fresh`` shows that fresh slots serve only fresh results. COMPLETION_WAIT ordering
(``ordering``) is what lets software know the invalidations have taken effect.

Each proof first shows its assumptions satisfiable together with a *stale* witness: the change
really can make such a slot stale when the invalidations are left out (so the proof is not vacuous).
Leaving out a required command, or corrupting one (``variants``), must refute the claim.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import z3

from amdvi.models import protocol, software
from amdvi.models.caches import CACHE_NAMES, Caches, cache_kind, invalidate
from amdvi.models.protocol import AtsDevice, Required
from amdvi.spec.bitvec import Z3, OverlayMemory, Shape, ShapedMemory, log2
from amdvi.spec.commands import INVALIDATE_DEVTAB_ENTRY, INVALIDATE_IOMMU_PAGES, INVALIDATE_IOTLB_PAGES
from amdvi.spec.device_table import DTE, ENTRY_BYTES
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.translation import Outcome, Request, guest_path, translate
from amdvi.spec.host_translation import MAX_LEVELS
from amdvi.spec.walk_types import HOST, low_mask

from amdvi.models.dma import ServeChoice, serve, serve_translated

from .coherence import filled_slot, reaches_only_fresh, same_slot
from .proof import PROVED, REFUTED, VACUOUS, ProofResult, Witness, prove

b = Z3
LAYOUT = software.Layout()
REGS = software.registers(LAYOUT)


DEVICE = 0x10  # the ghost request's device: the one whose DTE the query describes


@dataclass(frozen=True)
class Profile:
    """The kind of DTE the ghost device has: fixed fields (``fixed``) and free ones (``free``)."""

    name: str
    fixed: dict[str, int]
    free: tuple[str, ...]


GCR3_PARTS = ("GIoV", "GCR3 Table Root Pointer[14:12]", "GCR3 Table Root Pointer[30:15]",
              "GCR3 Table Root Pointer[51:31]")
COMMON_FREE = ("DomainID", "Host Page Table Root Pointer", "IR", "IW", "I")
# the fields that give a DTE its shape: valid or not, translation valid or not, host depth, guest or not
SHAPE = ("V", "TV", "Mode", "GV", "GLX", "GPM")
PROFILES = {
    "v1": Profile("v1", {"V": 1, "TV": 1, "Mode": 2}, COMMON_FREE),
    "v2": Profile("v2", {"V": 1, "TV": 1, "Mode": 0, "GV": 1, "GLX": 0, "GPM": 0},
                  COMMON_FREE + GCR3_PARTS),
    "nested": Profile("nested", {"V": 1, "TV": 1, "Mode": 2, "GV": 1, "GLX": 0, "GPM": 0},
                      COMMON_FREE + GCR3_PARTS),
    # every shape at once: V = 0 (untranslated), TV = 0, Mode 0-7, GV, any GLX and guest depth
    "any": Profile("any", {}, COMMON_FREE + GCR3_PARTS + SHAPE),
}

# Host (v1) tables of every depth Linux builds (48882 §2.2.3: DTE.Mode 1..6 levels; Linux grows a v1
# table up to EFR.HATS + 4 levels, shared/reference/page-tables.md §2): "v1" above is Mode 2, these are
# the others. A table of three or more levels can skip levels, which Mode 2 cannot show.
HOST_DEPTHS = (1, 3, 4, 5, 6)
PROFILES.update({f"v1-mode{m}": Profile(f"v1-mode{m}", {"V": 1, "TV": 1, "Mode": m}, COMMON_FREE)
                 for m in HOST_DEPTHS})

# Shapes of a DTE, as values of SHAPE (the rest 0), for the witnesses of the "any" profile
SHAPES = {
    "V = 0": {"V": 0},
    "TV = 0": {"V": 1, "TV": 0},
    "pass-through (Mode 0)": {"V": 1, "TV": 1, "Mode": 0},
    "v1": PROFILES["v1"].fixed,
    "v2": PROFILES["v2"].fixed,
}
# (before, after) shape changes shown able to make a slot stale when the invalidations are left out
TRANSITIONS = {
    "dte": (("V = 0", "v1"), ("v1", "V = 0"), ("TV = 0", "v1"), ("v1", "pass-through (Mode 0)"),
            ("pass-through (Mode 0)", "v2")),
    "iotlb": (("v1", "V = 0"),),
    "device_iotlb": (("v1", "V = 0"),),
    "gcr3": (("v2", "TV = 0"),),
}


def profile_dte(profile: Profile, prefix: str) -> Any:
    """A 256-bit DTE of ``profile``: its fixed fields, its free fields as variables, every other bit 0."""
    values: dict[str, Any] = dict(profile.fixed)
    for name in profile.free:
        values[name] = z3.BitVec(f"{prefix}_{name.replace(' ', '_')}", DTE.field(name).width)
    # simplified to a concatenation of constants and variables, so that fixed fields fold when read
    return z3.simplify(DTE.encode(values, backend=b))


@dataclass(frozen=True)
class Sizes:
    """How many devices, DomainIDs and PASIDs one query ranges over (``bench/bench_scale.py`` times the
    queries against each). The default is the catalog's query: one device (``DEVICE``), any DomainID,
    any PASID.

    ``devices``: the device table holds that many DTEs of the profile (DeviceIDs ``DEVICE`` onwards, 128
    to a page), each with its own free fields (:func:`device_table`; a read at a symbolic address costs
    the same whatever their number); the ghost stays ``DEVICE``'s. A DTE change rewrites the DTE of any
    one of them (a symbolic DeviceID: its four words stored at that DTE's address, its old DomainID read
    there), and a table change's DomainID may tag any of them, so software sends INVALIDATE_IOTLB_PAGES
    to each (one command per device: that part of the query grows with the number). ``domains``: the DomainIDs of
    every DTE (before and after a DTE change) and of the change lie in 1..domains. ``pasids``: the
    ghost's PASID and the change's lie in 0..pasids - 1 (PASID 0 is also a request without one), so the
    guest walk reads one of that many GCR3 table entries."""

    devices: int = 1
    domains: int | None = None
    pasids: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.devices <= 128 * LAYOUT.dev_tab_pages - DEVICE:
            raise ValueError(f"devices: 1 to {128 * LAYOUT.dev_tab_pages - DEVICE} (the device table's DTEs "
                             f"from DeviceID {DEVICE:#x})")
        if self.domains is not None and not 1 <= self.domains < 1 << DTE.field("DomainID").width:
            raise ValueError("domains: 1 to 65535 (DomainIDs 1 to domains)")
        if self.pasids is not None and not 1 <= self.pasids < 1 << 20:
            raise ValueError("pasids: 1 to 2^20 - 1 (PASIDs 0 to pasids - 1)")


@dataclass(frozen=True)
class Symbols:
    """The free variables of one query."""

    memory: Any
    dte: Any  # the ghost device's DTE before the change
    address: Any  # the changed word (8-byte aligned)
    value: Any
    dte_value: Any  # the changed device's new DTE (the "dte" change)
    domain: Any
    pasid: Any
    base: Any  # the changed entry covers [base, base + 2^shift)
    shift: Any
    ghost: Request
    others: tuple[tuple[int, Any], ...] = ()  # (DeviceID, DTE) of the other devices (``Sizes.devices``)
    changed_device: Any = DEVICE  # whose DTE the "dte" change rewrites
    bounds: tuple[Any, ...] = ()  # the ranges ``Sizes`` gives the variables, as assumptions


def _dte_domain(dte: Any) -> Any:
    return b.extract(dte, DTE.field("DomainID").hi, DTE.field("DomainID").lo)


def _dte_shape(profile: Profile) -> Shape:
    """The words of a DTE of ``profile`` as a :class:`Shape`: its free fields' bits kept, its fixed
    fields' values, every other bit 0 (what :func:`profile_dte` builds from variables)."""
    ones = {name: (1 << DTE.field(name).width) - 1 for name in profile.free}
    zeros = DTE.encode({**profile.fixed, **{name: 0 for name in profile.free}})
    keep = DTE.encode({**profile.fixed, **ones}) ^ zeros
    words = lambda x: tuple((x >> 64 * i) & (1 << 64) - 1 for i in range(4))  # noqa: E731
    return Shape(0, 0, words(keep), words(zeros))


def device_table(profile: Profile, sizes: Sizes, dte: Any) -> Any:
    """Memory (free: the function ``memory``) whose device table holds the ghost's DTE ``dte`` and
    ``sizes.devices - 1`` more of ``profile`` (DeviceIDs ``DEVICE + 1`` onwards), every other word of
    the table 0. The others' free fields are ``memory``'s bits at their words: each DTE its own, any
    values, as if each had its own variables, but a read at a symbolic address costs the same
    whatever their number (:class:`ShapedMemory`)."""
    start, end = LAYOUT.dev_tab, LAYOUT.dev_tab + 0x1000 * LAYOUT.dev_tab_pages
    ghost, others = LAYOUT.dte_address(DEVICE), LAYOUT.dte_address(DEVICE + 1)
    last = LAYOUT.dte_address(DEVICE + sizes.devices)
    zero = ((0,), (0,))
    shape = _dte_shape(profile)
    regions = ((start, ghost, *zero), (others, last, shape.keep, shape.fixed), (last, end, *zero))
    shaped = ShapedMemory(Z3.memory_function("memory"), tuple(Shape(*r) for r in regions if r[0] < r[1]))
    words = {ghost + 8 * i: b.extract(dte, 64 * i + 63, 64 * i) for i in range(4)}
    return OverlayMemory(shaped, ((ghost, ghost + ENTRY_BYTES),), words)


def _dte_address(device: Any) -> Any:
    """Where the DTE of ``device`` (a 16-bit constant or term) lies: a constant for a constant."""
    return b.add(LAYOUT.dev_tab, b.shl(b.zext(device, 64), log2(ENTRY_BYTES), 64), 64)


def read_dte(memory: Any, device: Any) -> Any:
    """The 256-bit DTE of ``device`` (a 16-bit constant or term) in ``memory``."""
    at = _dte_address(device)
    return b.concat(*((b.read64(memory, b.add(at, 8 * i, 64)), 64) for i in reversed(range(4))))


def symbols(profile: Profile, sizes: Sizes = Sizes()) -> Symbols:
    v = lambda name, width: z3.BitVec(name, width)  # noqa: E731
    ghost = Request(device_id=b.const(DEVICE, 16), address=v("ghost_address", 64), write=z3.Bool("ghost_write"),
                    pasid=v("ghost_pasid", 20), has_pasid=z3.Bool("ghost_has_pasid"), user=z3.Bool("ghost_user"),
                    execute=z3.Bool("ghost_execute"), ats=z3.Bool("ghost_ats"))
    dte = profile_dte(profile, "dte")
    memory = device_table(profile, sizes, dte)
    others = tuple((d, read_dte(memory, d)) for d in range(DEVICE + 1, DEVICE + sizes.devices))
    changed = DEVICE if not others else v("changed_device", 16)
    domain, pasid, dte_value = v("domain", 16), v("pasid", 20), profile_dte(profile, "new_dte")
    bounds: list[Any] = []
    if others:
        bounds += [b.uge(changed, DEVICE), b.ult(changed, DEVICE + sizes.devices)]
    if sizes.domains is not None:
        for d in (domain, *(_dte_domain(x) for x in (dte, dte_value, *(x for _, x in others)))):
            bounds += [b.uge(d, 1), b.ule(d, sizes.domains)]
    if sizes.pasids is not None:
        bounds += [b.ult(p, sizes.pasids) for p in (pasid, ghost.pasid)]
    return Symbols(memory=memory, dte=dte, address=v("changed_address", 64), value=v("new_value", 64),
                   dte_value=dte_value, domain=domain, pasid=pasid, base=v("range_base", 64),
                   shift=v("range_shift", 8), ghost=ghost, others=others, changed_device=changed,
                   bounds=tuple(bounds))


# -- the changes ------------------------------------------------------------------------------------


def _in_range(x: Any, base: Any, shift: Any) -> Any:
    return b.eq(b.band(x, b.bnot(low_mask(b, shift), 64)), base)


@dataclass(frozen=True)
class Situation:
    """One change, as the query sees it."""

    writes: tuple[tuple[Any, Any], ...]  # (address, word)
    assumptions: tuple[Any, ...]  # what software guarantees about the change (the range is aligned, ...)
    owns: Any  # the ghost's walk reads the changed words only as the change's kind allows
    required: tuple[Required, ...]
    device_table: bool = False  # the writes are a DTE's (else page-table words, outside the device table)


def _reads(outcome: Outcome, address: Any, tables: tuple[str, ...] | None = None, dte_too: bool = True) -> Any:
    """The walk read the word at ``address`` (as one of ``tables`` when given)."""
    hits = []
    for s in outcome.steps:
        if s.table == "DTE":
            if dte_too:
                hits.append(b.all_of(s.active, b.uge(address, s.entry_address),
                                     b.ult(address, b.add(s.entry_address, ENTRY_BYTES, 64))))
        elif tables is None or s.table in tables:
            hits.append(b.all_of(s.active, b.eq(s.entry_address, address)))
    return b.any_of(*hits)


def _aligned_range(v: Symbols) -> tuple[Any, ...]:
    return (b.uge(v.shift, 12), b.ule(v.shift, 64), b.eq(b.band(v.base, low_mask(b, v.shift)), 0),
            b.eq(b.band(v.address, 7), 0))


def _ghost_if_in_domain(v: Symbols, fresh: Outcome) -> tuple[AtsDevice, ...]:
    """The ATS devices of the DomainID: the ghost's device, when the domain is its DTE's, and each
    other device of the table whose DTE names it."""
    return (AtsDevice(v.ghost.device_id, when=b.eq(fresh.domain_id, v.domain)),
            *(AtsDevice(b.const(d, 16), when=b.eq(_dte_domain(dte), v.domain)) for d, dte in v.others))


def v1_entry(v: Symbols, fresh: Outcome) -> Situation:
    """A host (v1) page-table entry of DomainID ``domain`` covering [base, base + 2^shift) changes
    (a PTE or a page-directory entry; a nested walk's host steps read it too)."""
    g = v.ghost
    as_entry = b.implies(_reads(fresh, v.address, ("PDE/PTE",), dte_too=False),
                         b.all_of(b.eq(fresh.domain_id, v.domain),
                                  b.any_of(fresh.guest, _in_range(g.address, v.base, v.shift))))
    owns = b.all_of(as_entry, b.lnot(_reads(fresh, v.address, ("DTE", "GCR3", "GPTE"))))
    return Situation(((v.address, v.value),), _aligned_range(v), owns,
                     protocol.v1_table_change(b, v.domain, (v.base, v.shift), _ghost_if_in_domain(v, fresh)))


def v2_entry(v: Symbols, fresh: Outcome) -> Situation:
    """A guest (v2) page-table entry of PASID ``pasid`` under DomainID ``domain`` covering
    [base, base + 2^shift) of guest virtual addresses changes."""
    g = v.ghost
    _, pasid = guest_path(b, _dte_of(fresh), g)
    as_entry = b.implies(_reads(fresh, v.address, ("GPTE",), dte_too=False),
                         b.all_of(b.eq(fresh.domain_id, v.domain), fresh.guest, b.eq(pasid, v.pasid),
                                  _in_range(g.address, v.base, v.shift)))
    owns = b.all_of(as_entry, b.lnot(_reads(fresh, v.address, ("DTE", "GCR3", "PDE/PTE"))))
    return Situation(((v.address, v.value),), _aligned_range(v), owns,
                     protocol.v2_table_change(b, v.domain, v.pasid, (v.base, v.shift), _ghost_if_in_domain(v, fresh)))


def gcr3_entry(v: Symbols, fresh: Outcome) -> Situation:
    """The GCR3 table entry of PASID ``pasid`` under DomainID ``domain`` changes (a new guest table)."""
    g = v.ghost
    _, pasid = guest_path(b, _dte_of(fresh), g)
    as_entry = b.implies(_reads(fresh, v.address, ("GCR3",), dte_too=False),
                         b.all_of(b.eq(fresh.domain_id, v.domain), fresh.guest, b.eq(pasid, v.pasid)))
    owns = b.all_of(as_entry, b.lnot(_reads(fresh, v.address, ("DTE", "GPTE", "PDE/PTE"))))
    return Situation(((v.address, v.value),), (b.eq(b.band(v.address, 7), 0),), owns,
                     protocol.gcr3_entry_change(b, v.domain, v.pasid, _ghost_if_in_domain(v, fresh)))


def dte_entry(v: Symbols, fresh: Outcome) -> Situation:
    """The DTE of the changed device (the ghost's, or with ``Sizes.devices`` any of the table's) is
    rewritten (to another DTE of the same profile: new DomainID, tables, permissions; on the "any"
    profile also a new shape: attach, detach, pass-through, another depth); ``domain`` is its DomainID
    before."""
    old = read_dte(v.memory, v.changed_device)
    at = _dte_address(v.changed_device)
    writes = tuple((b.add(at, 8 * i, 64), b.extract(v.dte_value, 64 * i + 63, 64 * i)) for i in range(4))
    owns = b.lnot(b.any_of(*[_reads(fresh, a, ("GCR3", "GPTE", "PDE/PTE"), dte_too=False) for a, _ in writes]))
    return Situation(writes, (b.eq(_dte_domain(old), v.domain),), owns,
                     protocol.dte_change(b, v.changed_device, {"old DomainID": v.domain}), device_table=True)


def _dte_of(fresh: Outcome) -> Any:
    return fresh.steps[0].entry


CHANGE_TITLES = {
    "v1-entry": "a host (v1) page-table entry (PTE or PDE) of a DomainID changes",
    "v2-entry": "a guest (v2) page-table entry of a PASID changes",
    "gcr3-entry": "the GCR3 table entry of a PASID changes",
    "dte": "a device table entry is rewritten (new DomainID, tables, permissions)",
}

CHANGES: dict[str, Callable[[Symbols, Outcome], Situation]] = {
    "v1-entry": v1_entry,
    "v2-entry": v2_entry,
    "gcr3-entry": gcr3_entry,
    "dte": dte_entry,
}


RESERVED = (LAYOUT.dev_tab, LAYOUT.semaphore + 0x1000)  # device table, rings, event log, semaphore


def _apart_from_rings(fresh: Outcome, situation: Situation) -> Any:
    """Software keeps its tables apart from the device table and the rings: the ghost's walk reads
    no page-table word there, and a table change writes none there."""
    def outside(a: Any) -> Any:
        return b.any_of(b.ult(a, RESERVED[0]), b.uge(a, RESERVED[1]))
    reads = [b.implies(s.active, outside(s.entry_address)) for s in fresh.steps if s.table != "DTE"]
    writes = [] if situation.device_table else [outside(a) for a, _ in situation.writes if b.constant(a) is None]
    return b.all_of(*reads, *writes)


def _apply(memory: Any, situation: Situation) -> Any:
    """``memory`` after the change's stores. A store at a constant address inside the overlay (the
    ghost's DTE) replaces that word; a DTE store at a symbolic address (any device's) goes on top; a
    page-table store goes beneath the overlay, which is exact because the query assumes such a store
    lies outside the device table (``_apart_from_rings``)."""
    words, base = dict(memory.words), memory.base
    on_top = []
    for address, word in situation.writes:
        at = b.constant(address)
        if at is not None and memory.inside(at):
            words[at] = word
        elif situation.device_table:
            on_top.append((address, word))
        else:
            base = b.write64(base, address, word)
    after = OverlayMemory(base, memory.regions, words)
    for address, word in on_top:
        after = b.write64(after, address, word)
    return after


@dataclass(frozen=True)
class Query:
    """One inductive-step query, kept so that a refutation can be replayed as a concrete trace."""

    change: str
    cache: str
    profile: str
    step: int  # a PDE slot's directory level index (``slot_steps``)
    symbols: Symbols
    situation: Situation
    commands: tuple[Required, ...]  # what software sent (after ``drop`` / ``corrupt``)
    slot: Any
    refill: Any
    assumptions: tuple[Any, ...]
    claim: Any
    stale: Any
    served: Any = None  # observe mode: the DMA served from the surviving slot on the changed memory
    cleared: Any = None  # the invalidations left the slot invalid (stronger than the claim)


def build_query(change: str, cache: str, profile: str = "v1", step: int = 0, *, choices: Hardware = SPEC,
                drop: str | None = None, corrupt: Callable[[Required], Required] | None = None,
                observe: bool = False, sizes: Sizes = Sizes(),
                situation_of: Callable[[Symbols, Outcome], Situation] | None = None) -> Query:
    """``observe``: claim only that the ghost's DMA, served from the surviving slot, reaches nothing
    a fresh walk would not (weaker than freshness; a refutation is then a stale *access*);
    ``sizes``: the devices, DomainIDs and PASIDs the query ranges over; ``situation_of``: the change
    as another module describes it (``change`` then only names it), instead of ``CHANGES[change]``."""
    v = symbols(PROFILES[profile], sizes)
    g = v.ghost
    fresh = translate(b, v.memory, REGS.dev_tab_bar, g)
    situation = (situation_of or CHANGES[change])(v, fresh)
    # a fresh slot is what a fill from the ghost gives (an invalid slot cannot go stale)
    slot = filled_slot(b, v.memory, REGS, cache, g, step, walk=fresh, choices=choices)
    after_memory = _apply(v.memory, situation)
    caches = Caches(**{n: (slot,) if n == cache else () for n in CACHE_NAMES})
    sent = tuple((corrupt(r) if corrupt else r) for r in situation.required if r.label != drop)
    for r in sent:
        caches = invalidate(b, caches, r.command, when=r.when, choices=choices)
    survivor = caches.slots(cache)[0]
    refill = filled_slot(b, after_memory, REGS, cache, g, step, choices=choices)
    assumptions = (slot.valid, situation.owns, *situation.assumptions, _apart_from_rings(fresh, situation), *v.bounds)
    claim = b.implies(survivor.valid, same_slot(b, slot, refill))
    served = None
    if observe:
        probe = dataclasses.replace(g, user=False, execute=False, ats=False)
        if cache == "device_iotlb":
            served = serve_translated(b, after_memory, REGS.dev_tab_bar, caches, probe, 0)
        else:
            served = serve(b, after_memory, REGS.dev_tab_bar, caches, probe, ServeChoice(**{cache: 0}))
        claim = b.implies(survivor.valid,
                          reaches_only_fresh(b, served, translate(b, after_memory, REGS.dev_tab_bar, probe)))
    return Query(change, cache, profile, step, v, situation, sent, slot, refill, assumptions, claim,
                 z3.Not(same_slot(b, slot, refill)), served, b.lnot(survivor.valid))


@functools.lru_cache(maxsize=None)
def slot_steps(cache: str, profile: str) -> range:
    """Which entry of the ghost's walk a slot of ``cache`` may hold: for a PDE cache, each directory
    level of its dimension (the last entry a walk reads is a leaf); one choice for the other caches."""
    if cache_kind(cache).directory_of is None:
        return range(1)
    v = symbols(PROFILES[profile])
    steps = translate(b, v.memory, REGS.dev_tab_bar, v.ghost).steps
    if cache == "pde":  # a pure v1 walk's host entries
        host = sum(1 for st in steps if st.dimension == HOST)
        if "Mode" in PROFILES[profile].fixed:
            return range(host - 1)
        # Mode free: the pure v1 walk is the last MAX_LEVELS host steps (the nested walks' come first)
        return range(host - MAX_LEVELS, host - 1)
    return range(sum(1 for st in steps if st.table == "GPTE") - 1)


def _shape_narrowing(before: dict[str, int], after: dict[str, int]) -> tuple[tuple[Any, Any], ...]:
    """The ghost DTE's shape fields fixed before and after the change (``profile_dte``'s variables)."""
    return tuple((z3.BitVec(f"{prefix}_{name}", DTE.field(name).width),
                  z3.BitVecVal(values.get(name, 0), DTE.field(name).width))
                 for prefix, values in (("dte", before), ("new_dte", after)) for name in SHAPE)


def stale_witnesses(q: Query) -> list[Witness]:
    """Situations the query is about: the change can make its slot stale without the invalidations.
    On the "any" profile, one per shape change (so the proof covers attach, detach, pass-through, ...
    not vacuously); each fixes the shapes first (``Witness.narrowing``), which keeps it quick."""
    if q.profile != "any":
        return [Witness("a slot the change makes stale", q.stale)]
    if q.cache == "pde":  # the k-th pure v1 step is a directory when the table has k + 2 levels
        host = slot_steps("pde", "any")
        depth = q.step - host.start + 2
        pairs = [(dict(SHAPES["v1"], Mode=depth), SHAPES["V = 0"], f"v1 ({depth} levels) -> V = 0")]
    elif q.cache == "guest_pde":  # a 5-level guest table has four directory levels
        pairs = [(dict(SHAPES["v2"], GPM=1), SHAPES["V = 0"], "v2 (5 levels) -> V = 0")]
    else:
        pairs = [(SHAPES[x], SHAPES[y], f"{x} -> {y}") for x, y in TRANSITIONS[q.cache]]
    return [Witness(f"a slot made stale by {label}", q.stale, narrowing=_shape_narrowing(x, y))
            for x, y, label in pairs]


def fresh_after_change(change: str, cache: str, profile: str = "v1", *, choices: Hardware = SPEC,
                       drop: str | None = None, corrupt: Callable[[Required], Required] | None = None,
                       timeout_ms: int = 300_000, stale_possible: bool = True, observe: bool = False,
                       sizes: Sizes = Sizes()) -> ProofResult:
    """The inductive step for one change kind and one cache (see the module docstring): every slot step
    of :func:`fresh_after_change_steps`, combined.

    ``drop``: leave out the required command with that label; ``corrupt``: replace each required
    command by ``corrupt(required)`` (e.g. a wrong DomainID); ``choices``: the hardware's readings and faults (a broken model);
    ``stale_possible``: the change can make such a slot stale (then that is shown possible first);
    ``sizes``: the devices, DomainIDs and PASIDs it ranges over (default: the catalog's query).
    A refutation carries its :class:`Query` as ``evidence`` (see ``counterexample``).
    """
    return _combine(f"{change}/{cache}/{profile}", list(fresh_after_change_steps(
        change, cache, profile, choices=choices, drop=drop, corrupt=corrupt, timeout_ms=timeout_ms,
        stale_possible=stale_possible, observe=observe, sizes=sizes)))


def fresh_after_change_steps(change: str, cache: str, profile: str = "v1", *, choices: Hardware = SPEC,
                             drop: str | None = None, corrupt: Callable[[Required], Required] | None = None,
                             timeout_ms: int = 300_000, stale_possible: bool = True, observe: bool = False,
                             sizes: Sizes = Sizes()) -> Iterator[ProofResult]:
    """:func:`fresh_after_change` one slot step at a time (``change/cache/profile/k``, an obligation of its
    own), up to the first that is not proved. The steps are independent: a slot holds the entry of one
    step (``slot_steps``), so together they are every slot of the cache."""
    for k in slot_steps(cache, profile):
        q = build_query(change, cache, profile, k, choices=choices, drop=drop, corrupt=corrupt, observe=observe,
                        sizes=sizes)
        witnesses = stale_witnesses(q) if stale_possible else []
        name = f"{change}/{cache}/{profile}/{k}"
        r = None
        if change in CLEARS_EVERY_SLOT and not observe:
            # the stronger claim, when it holds, needs no walk of the changed memory: far quicker
            strong = prove(name, q.assumptions, q.cleared, witnesses=witnesses, timeout_ms=timeout_ms)
            if strong.status in (PROVED, VACUOUS):  # vacuous: a witness cannot hold, whatever the claim
                r = strong if strong.status == VACUOUS else dataclasses.replace(
                    strong, detail="every slot it could fill is cleared")
            elif strong.status == REFUTED:
                witnesses = []  # shown by the stronger run (it checks them before the claim)
        if r is None and profile == "any":
            r = _refute_on_named_shapes(q, name, timeout_ms)
        if r is None:
            r = prove(name, q.assumptions, q.claim, witnesses=witnesses, timeout_ms=timeout_ms, strategy="bit-blast")
        yield dataclasses.replace(r, evidence=q)
        if r.status != PROVED:
            return


def _refute_on_named_shapes(q: Query, name: str, timeout_ms: int) -> ProofResult | None:
    """A refutation of the claim on the "any" profile, searched for on each pair of named DTE shapes
    (:data:`SHAPES`, before and after) in turn: small questions where the whole one may time out. Sound
    (a model of a narrower question is one of the whole); None when no pair refutes it."""
    for before, after in itertools.product(SHAPES, repeat=2):
        fixed = [var == value for var, value in _shape_narrowing(SHAPES[before], SHAPES[after])]
        r = prove(name, (*q.assumptions, *fixed), q.claim, timeout_ms=timeout_ms, strategy="narrowed-bit-blast")
        if r.status == REFUTED:
            return dataclasses.replace(r, detail=f"{r.detail} ({before} -> {after})")
    return None


def _combine(name: str, results: list[ProofResult]) -> ProofResult:
    seconds = sum(r.seconds for r in results)
    for r in results:
        if r.status != PROVED:
            return ProofResult(name, r.status, seconds, f"{r.name}: {r.detail}", r.model, r.evidence)
    return ProofResult(name, PROVED, seconds)


# -- the matrix of queries ----------------------------------------------------------------------------

# changes after which software invalidates everything the old state could have cached (by device and
# old DomainID), so the stronger claim "the slot is cleared" is tried first
CLEARS_EVERY_SLOT = ("dte",)

# (change, cache, profile, whether the change can make such a slot stale at all)
QUERIES: tuple[tuple[str, str, str, bool], ...] = (
    ("v1-entry", "iotlb", "v1", True),
    ("v1-entry", "pde", "v1", True),
    ("v1-entry", "device_iotlb", "v1", True),
    ("v1-entry", "dte", "v1", False),
    ("v1-entry", "iotlb", "nested", True),
    ("v1-entry", "gcr3", "nested", True),
    ("v1-entry", "guest_pde", "nested", True),
    ("v2-entry", "iotlb", "v2", True),
    ("v2-entry", "device_iotlb", "v2", True),
    ("v2-entry", "gcr3", "v2", False),
    ("v2-entry", "guest_pde", "v2", True),
    ("gcr3-entry", "gcr3", "v2", True),
    ("gcr3-entry", "iotlb", "v2", True),
    ("gcr3-entry", "device_iotlb", "v2", True),
    ("gcr3-entry", "guest_pde", "v2", True),
    ("dte", "dte", "v1", True),
    ("dte", "iotlb", "v1", True),
    ("dte", "pde", "v1", True),
    ("dte", "device_iotlb", "v1", True),
    ("dte", "gcr3", "v2", True),
    ("dte", "guest_pde", "v2", True),
    # every DTE shape before and after: attach from V = 0 or TV = 0, detach, pass-through, any depth
    ("dte", "dte", "any", True),
    ("dte", "iotlb", "any", True),
    ("dte", "pde", "any", True),
    ("dte", "device_iotlb", "any", True),
    ("dte", "gcr3", "any", True),
    ("dte", "guest_pde", "any", True),
)


# The v1-entry queries on host tables of every other depth (``HOST_DEPTHS``; a one-level table has
# no directory to cache). The DTE change is covered at every depth by its "any" profile above.
DEPTH_QUERIES: tuple[tuple[str, str, str, bool], ...] = tuple(
    ("v1-entry", cache, f"v1-mode{m}", stale) for m in HOST_DEPTHS
    for cache, stale in (("iotlb", True), ("pde", True), ("device_iotlb", True), ("dte", False))
    if not (cache == "pde" and m == 1))


def required_labels(change: str, profile: str = "v1") -> tuple[str, ...]:
    """The labels of the invalidations ``change`` requires (as the queries build them)."""
    v = symbols(PROFILES[profile])
    fresh = translate(b, v.memory, REGS.dev_tab_bar, v.ghost)
    return tuple(r.label for r in CHANGES[change](v, fresh).required)


def _with_field(structure: Any, command: Any, field: str, fn: Callable[[Any], Any]) -> Any:
    f = structure.field(field)
    return b.deposit(command, f.hi, f.lo, fn(b.extract(command, f.hi, f.lo)), 128)


def _corrupt_field(what: str, fields: tuple[tuple[Any, str], ...],
                   fn: Callable[[Any, int], Any]) -> Callable[[Required], Required]:
    def corrupt(req: Required) -> Required:
        command, label = req.command, req.label
        for structure, field in fields:
            is_it = b.eq(structure.field("Opcode").read(command, b), structure.field("Opcode").fixed)
            if b.known_false(is_it if isinstance(is_it, bool) else z3.simplify(is_it)):  # not that command
                continue
            changed = _with_field(structure, command, field, lambda x: fn(x, structure.field(field).width))
            command = b.ite(is_it, changed, command, width=128)
            label = f"{req.label} with {what}"
        return Required(label, command, req.when)
    return corrupt


# Wrong operands (each applied to every required command that has the field)
CORRUPTIONS: dict[str, Callable[[Required], Required]] = {
    name: _corrupt_field(name, fields, fn) for name, fields, fn in (
        ("wrong DomainID", ((INVALIDATE_IOMMU_PAGES, "DomainID"),), lambda x, w: b.add(x, 1, w)),
        ("wrong PASID", ((INVALIDATE_IOMMU_PAGES, "PASID"), (INVALIDATE_IOTLB_PAGES, "PASID[7:0]")),
         lambda x, w: b.bxor(x, b.const(1, w))),
        ("S bit clear", ((INVALIDATE_IOMMU_PAGES, "S"), (INVALIDATE_IOTLB_PAGES, "S")), lambda x, w: b.const(0, w)),
        ("PDE bit clear", ((INVALIDATE_IOMMU_PAGES, "PDE"),), lambda x, w: b.const(0, w)),
        ("wrong DeviceID", ((INVALIDATE_DEVTAB_ENTRY, "DeviceID"), (INVALIDATE_IOTLB_PAGES, "DeviceID")),
         lambda x, w: b.add(x, 1, w)),
    )
}
