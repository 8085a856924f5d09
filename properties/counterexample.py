"""From a refuted invalidation query to a concrete trace a person can replay step by step.

The solver's model fixes every free variable: the memory words the walks read, the ghost request,
the changed word and the commands software sent. :func:`trace_from` turns that into moves of the
IOMMU model (``models.iommu``): the initial memory image, a cache fill from the ghost request, the
software change, the commands queued and processed (each invalidation carried out), the
COMPLETION_WAIT observed, and finally the ghost's DMA served from the filled slot. :func:`replay`
runs those moves on Python ints and compares the last DMA with a fresh walk of current memory: a
refutation is believed only when the replay shows the stale access.

A trace carries what its replay needs: the registers, the number of slots of each cache, the choices
it was found under and the violation it claims (:data:`VIOLATIONS`). ``amdvi replay`` reads one back
(``amdvi.frontend.trace_format``) and :func:`replay` keeps each step's state change for it to show.
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import z3

from amdvi.models import software
from amdvi.models.caches import CACHE_NAMES, Caches
from amdvi.models.dma import ServeChoice
from amdvi.models.iommu import (
    CpuWrite, Dma, Fill, IommuState, Outputs, ProcessCommand, Retire, TranslatedDma, in_flight_count, step,
)
from amdvi.models.registers import Registers, base_address, ring_size
from amdvi.spec.bitvec import INT, Z3
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.commands import COMPLETION_WAIT, OPCODE_HI, OPCODE_LO
from amdvi.spec.records import fast_init
from amdvi.spec.translation import Outcome, Request, translate
from amdvi.spec.walk_types import GUEST

from .invalidation import LAYOUT, REGS, Query, _apply
from .isolation import IsolationQuery
from .remembered_access import Answers
from .serving import ServingQuery

SEMAPHORE_VALUE = 1


STALE, DIFFERS, ESCAPE = "stale", "differs", "escape"
VIOLATIONS = {  # what a trace may claim its last DMA shows
    STALE: "the last DMA reaches an address a fresh walk of current memory would not",
    DIFFERS: "the last DMA's result (success, and address) differs from a fresh walk of current memory",
    ESCAPE: "the last DMA reads or reaches an address outside the frames the trace gives",
}
ONE_SLOT_EACH: Mapping[str, int] = {name: 1 for name in CACHE_NAMES}


@dataclass(frozen=True)
class Trace:
    """A replayable counterexample: an initial image and the moves that follow it."""

    title: str
    memory: dict[int, int]
    moves: tuple[Any, ...]
    notes: tuple[str, ...] = ()
    waits: bool = True  # software waited for its newest COMPLETION_WAIT: the replay must see its store
    # the frames (system address, bytes) the last DMA may reach and read its guest tables from; given,
    # the violation the trace shows is an escape from them rather than a stale translation
    inside: tuple[tuple[int, int], ...] | None = None
    regs: Registers = REGS  # the registers at the start (the command ring and event log are found there)
    cache_slots: Mapping[str, int] = field(default_factory=lambda: dict(ONE_SLOT_EACH))  # slots per cache
    choices: Hardware = SPEC  # the hardware choices the trace was found under
    violation: str | None = None  # one of VIOLATIONS; None: ESCAPE when ``inside`` is given, else STALE
    # after each ProcessCommand the hardware carries out every invalidation it accepted before the next
    # move (prove's traces); False: only the trace's own Retire moves do (the state machine's traces)
    retire_at_once: bool = True

    @property
    def claimed_violation(self) -> str:
        return self.violation or (ESCAPE if self.inside is not None else STALE)

    @property
    def ring(self) -> tuple[int, int]:
        """The command ring (base, bytes) the registers point to: writes there are commands."""
        return (base_address(INT, self.regs, "cmd_buf_bar", "ComBase"),
                ring_size(INT, self.regs, "cmd_buf_bar", "ComLen"))

    def initial_state(self) -> IommuState:
        return IommuState(memory=dict(self.memory), regs=self.regs, caches=Caches.empty(**self.cache_slots))


@fast_init
@dataclass(frozen=True)
class Step:
    """One move of a replay: the states around it, what the model output, and (a DMA) the fresh walk."""

    move: Any
    before: IommuState
    after: IommuState
    outputs: Outputs
    retired: tuple[int, ...] = ()  # in-flight entries carried out at once after it (``retire_at_once``)
    fresh: Outcome | None = None  # a DMA: the fresh walk of the memory it met


@dataclass(frozen=True)
class Replay:
    """What replaying a trace showed: the last DMA and the fresh walk it is compared with."""

    stale: bool  # the DMA reached an address a fresh walk would not
    differs: bool  # the DMA's result differs from the fresh walk's in any way (also a wrong fault)
    served_ok: bool
    served_spa: int
    fresh_ok: bool
    fresh_spa: int
    states: tuple[IommuState, ...]
    escaped: tuple[int, ...] = ()  # addresses outside the trace's ``inside`` frames the DMA read or reached
    steps: tuple[Step, ...] = ()
    claimed: str = STALE  # the violation the trace claims
    unfinished_wait: str = ""  # the trace waits, but its COMPLETION_WAIT's store is not in memory: why

    @property
    def violated(self) -> bool:
        """The trace shows what it was written for: an escape, or else a stale access."""
        return bool(self.escaped) or self.stale

    @property
    def reproduces(self) -> bool:
        """Software's wait (if any) completed, and the last DMA shows the violation the trace claims."""
        shown = {STALE: self.stale, DIFFERS: self.differs, ESCAPE: bool(self.escaped)}[self.claimed]
        return shown and not self.unfinished_wait

    def summary(self) -> str:
        served = f"reaches {self.served_spa:#x}" if self.served_ok else "faults"
        if self.escaped:
            return (f"ESCAPES: the DMA {served}, reading or reaching "
                    f"{', '.join(hex(a) for a in self.escaped)} outside its host mapping")
        fresh = f"would reach {self.fresh_spa:#x}" if self.fresh_ok else "would fault"
        verdict = "STALE" if self.stale else ("DIFFERENT" if self.differs else "fresh")
        unfinished = f" (but {self.unfinished_wait})" if self.unfinished_wait else ""
        return f"{verdict}: the DMA {served}; a fresh walk of current memory {fresh}{unfinished}"


def _value(model: z3.ModelRef, term: Any) -> int:
    if isinstance(term, bool):
        return int(term)
    if isinstance(term, int):
        return term
    v = model.eval(term, model_completion=True)
    return int(z3.is_true(v)) if z3.is_bool(v) else v.as_long()


def _request(model: z3.ModelRef, r: Request) -> Request:
    return Request(device_id=_value(model, r.device_id), address=_value(model, r.address),
                   write=bool(_value(model, r.write)), pasid=_value(model, r.pasid),
                   has_pasid=bool(_value(model, r.has_pasid)), user=bool(_value(model, r.user)),
                   execute=bool(_value(model, r.execute)), ats=bool(_value(model, r.ats)))


def _read_words(model: z3.ModelRef, memory: Any, outcome: Any) -> dict[int, int]:
    words = {}
    for s in outcome.steps:
        if not _value(model, s.active):
            continue
        base = _value(model, s.entry_address)
        for i in range(4 if s.table == "DTE" else 1):
            words[base + 8 * i] = _value(model, Z3.read64(memory, Z3.const(base + 8 * i, 64)))
    return words


def trace_from(query: Query, model: z3.ModelRef) -> Trace:
    """The concrete trace a refuted ``query`` stands for (see the module docstring)."""
    v = query.symbols
    ghost = _request(model, v.ghost)
    before = translate(Z3, v.memory, REGS.dev_tab_bar, v.ghost)
    after = translate(Z3, _apply(v.memory, query.situation), REGS.dev_tab_bar, v.ghost)
    memory = _read_words(model, v.memory, before)
    walks = [after] + ([query.served.outcome] if query.served is not None else [])
    for walk in walks:  # words read after the change (also through a stale slot) hold their old value
        for address, word in _read_words(model, v.memory, walk).items():
            memory.setdefault(address, word)
    writes = [CpuWrite(_value(model, a), _value(model, w)) for a, w in query.situation.writes]
    for w in writes:  # the image holds the words before the change
        memory[w.address] = _value(model, Z3.read64(v.memory, Z3.const(w.address, 64)))
    commands = [_value(model, r.command) for r in query.commands if _value(model, r.when)]
    commands.append(software.completion_wait(LAYOUT.semaphore, SEMAPHORE_VALUE))
    probe = Request(ghost.device_id, ghost.address, ghost.write, ghost.pasid, ghost.has_pasid, False, False, False)
    if query.cache == "device_iotlb":
        last: Any = TranslatedDma(probe, slot=0)
    else:
        last = Dma(probe, ServeChoice(**{query.cache: 0}))
    moves: list[Any] = [Fill(query.cache, 0, ghost, query.step), *writes]
    state = IommuState(memory=dict(memory), regs=REGS, caches=Caches.empty(**{n: 1 for n in CACHE_NAMES}))
    for w in writes:
        state, _ = step(INT, state, w)
    moves += software.queue_moves(state, LAYOUT, commands)
    moves += [ProcessCommand()] * len(commands)  # placeholders, expanded by ``replay``
    moves.append(last)
    title = f"{query.change} change, {query.cache} slot ({query.profile} DTE)"
    sent = [r.label for r in query.commands if _value(model, r.when)]
    notes = (f"software sent: {', '.join(sent) or 'nothing'}, then COMPLETION_WAIT",)
    return Trace(title, memory, tuple(moves), notes)


def serving_trace(query: ServingQuery, model: z3.ModelRef) -> Trace:
    """A refuted serving query as a trace: a slot filled from the ghost request, then another request
    of the same device served from it, on the same memory (no software change at all)."""
    v = query.symbols
    ghost, served = _request(model, v.ghost), _request(model, query.served)
    memory: dict[int, int] = {}
    walks = [translate(Z3, v.memory, REGS.dev_tab_bar, request) for request in (v.ghost, query.served)]
    for walk in walks + ([query.walk] if query.walk is not None else []):
        memory.update(_read_words(model, v.memory, walk))
    last: Any = (TranslatedDma(served, slot=0) if query.cache == "device_iotlb"
                 else Dma(served, ServeChoice(**{query.cache: 0})))
    return Trace(f"{query.cache} slot serving another request ({query.profile} DTE)", memory,
                 (Fill(query.cache, 0, ghost, query.step), last), ("no software change: the slot is fresh",),
                 waits=False)


def isolation_trace(query: IsolationQuery) -> Trace:
    """A refuted isolation query as a trace: the guest's memory image and one DMA of its device, no
    cache involved (what the walk itself does with the guest's tables)."""
    return Trace("nested isolation: a guest leads its device outside the host mapping", dict(query.image),
                 (Dma(query.request),), ("the image holds the hypervisor's tables and what the guest wrote",),
                 waits=False, inside=query.layout.mapped)


def ordering_trace(moves: tuple[Any, ...], choices: Hardware) -> Trace:
    """A bounded-model-checking refutation of the wait (``bmc.check_wait``) as a trace: the setup, the
    command processor's moves the solver found, then the detached device's DMA looked up in the DTE
    slot the invalidation should have cleared by the time software saw its wait complete."""
    from . import bmc  # the checker builds on the models only; imported here to keep this module light

    memory, setup = bmc.wait_setup(LAYOUT)
    last = Dma(Request(bmc.WAIT_DEVICE, bmc.WAIT_PAGE | 0x10), ServeChoice(dte=0))
    return Trace("COMPLETION_WAIT seen before the DTE invalidation took effect", memory,
                 (*setup, *moves, last), ("found by bounded model checking over the command processor's moves",),
                 choices=choices, retire_at_once=False)


# which trace a refuted query's evidence stands for
TRACE_BUILDERS: dict[type, Callable[[Any, z3.ModelRef], Trace]] = {Query: trace_from, ServingQuery: serving_trace}


def trace_of(evidence: Any, model: z3.ModelRef) -> Trace:
    """The trace of a refuted query, from the evidence it carries."""
    return TRACE_BUILDERS[type(evidence)](evidence, model)


def _queued_wait(trace: Trace, state: IommuState, move: Any) -> tuple[int, int] | None:
    """(store address, data) when ``move`` completed a COMPLETION_WAIT with S = 1 in the command ring."""
    if not isinstance(move, CpuWrite) or move.address % 16 != 8:
        return None  # (before decoding the ring's registers: most moves of a long trace are DMAs)
    base, size = trace.ring
    if not base <= move.address - 8 < base + size:
        return None
    bits = state.memory.get(move.address - 8, 0) | move.value << 64
    wait = COMPLETION_WAIT.view(bits)
    if (bits >> OPCODE_LO) & ((1 << (OPCODE_HI - OPCODE_LO + 1)) - 1) != COMPLETION_WAIT.field("Opcode").fixed \
            or not wait["S"]:
        return None
    return wait["Store Address"] << COMPLETION_WAIT.field("Store Address").unit_shift, wait["Store Data"]


@contextlib.contextmanager
def _no_cycle_collection():
    """The cyclic garbage collector paused: a replay allocates records it keeps (each step's states and
    walks, for the person reading the trace) and makes no cycles, so the collector would only walk
    the growing heap again and again (a quarter of a long replay's time). Restored on the way out."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def replay(trace: Trace, *, choices: Hardware | None = None) -> Replay:
    """Run ``trace`` on Python ints under ``choices`` (default: the trace's own). With
    ``retire_at_once``, after each ProcessCommand that accepts an invalidation the hardware carries it
    out (Retire) before going on; the last move must be a DMA. Each access's served result and fresh
    walk are remembered by the words of memory they read (``remembered_access``), so a long trace
    asking again what it asked costs those reads."""
    with _no_cycle_collection():
        return _replay(trace, trace.choices if choices is None else choices)


def _replay(trace: Trace, choices: Hardware) -> Replay:
    state = trace.initial_state()
    states, steps, wait = [state], [], None
    answers = Answers(choices, compiled=True)  # a long trace asks the same walks again over the same words

    def access(state: IommuState, move: Any) -> tuple[IommuState, Outputs, Outcome]:
        served, _, fresh = answers.served_and_fresh(state, move)
        state, out = step(INT, state, move, choices=choices, given=served)
        return state, out, fresh

    for move in trace.moves[:-1]:
        before = state
        if isinstance(move, (Dma, TranslatedDma)):
            state, out, fresh = access(state, move)
        else:
            state, out = step(INT, state, move, choices=choices)
            fresh = None
        retired = []
        if trace.retire_at_once and isinstance(move, ProcessCommand):
            while in_flight_count(state):
                index = next(i for i, q in enumerate(state.in_flight) if q.valid)
                state, _ = step(INT, state, Retire(index), choices=choices)
                retired.append(index)
        wait = _queued_wait(trace, state, move) or wait
        steps.append(Step(move, before, state, out, tuple(retired), fresh))
        states.append(state)
    unfinished = ""
    if trace.waits and wait is not None and state.memory.get(wait[0], 0) != wait[1]:
        unfinished = (f"the COMPLETION_WAIT did not complete: {wait[0]:#x} holds {state.memory.get(wait[0], 0):#x}, "
                      f"not {wait[1]:#x}, so software is still waiting")
    last = trace.moves[-1]
    before = state
    state, out, fresh = access(state, last)
    steps.append(Step(last, before, state, out, (), fresh))
    states.append(state)
    served = out.dma
    differs = bool(served.ok) != bool(fresh.ok) or (bool(fresh.ok) and served.spa != fresh.spa)
    stale = bool(served.ok) and (not fresh.ok or served.spa != fresh.spa)
    escaped: tuple[int, ...] = ()
    if trace.inside is not None:
        def outside(a: int) -> bool:
            return not any(lo <= a < lo + size for lo, size in trace.inside)
        reads = [s.entry_address for s in served.outcome.steps if s.active and s.dimension == GUEST]
        escaped = tuple(a for a in reads + ([served.spa] if served.ok else []) if outside(a))
    return Replay(stale, differs, bool(served.ok), served.spa, bool(fresh.ok), fresh.spa, tuple(states), escaped,
                  tuple(steps), trace.claimed_violation, unfinished)
