"""Bounded model checking of the IOMMU model: can a state predicate fail within k moves?

From an initial :class:`~amdvi.models.iommu.IommuState` (concrete, or with symbolic parts), each of k
steps takes a move whose kind is itself a choice among a tuple of templates (``models.moves``:
``Retire(0)``, ``ProcessCommand()``, ``CpuWrite(ANY, ANY)`` ...), stepped by ``models.iommu.step_any``,
so the k steps are one formula rather than one solver run per sequence of kinds. Z3 is asked for a
sequence after which the predicate fails (in any of the states 0..k).

Statuses: ``bounded`` (no sequence of at most k moves breaks it: a proof for k steps, not beyond),
``refuted`` (with the concrete moves, decoded from the model and replayed on Python ints, which must
show the failure), ``unknown`` (timeout, with the solver's reason), ``vacuous`` (a witness, a situation
the property is about, cannot be reached within k steps: nothing was shown). Solving goes through
:func:`amdvi.properties.proof.prove`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import z3

from amdvi.models import software
from amdvi.models.caches import Caches
from amdvi.models.iommu import Fill, IommuState, ProcessCommand, Retire, step, step_any
from amdvi.models.moves import SymbolicMove, decode, describe_template, symbolic_move
from amdvi.spec.bitvec import INT, Z3
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.translation import Request

from .proof import PROVED, REFUTED, Witness, prove

BOUNDED = "bounded"

StatePredicate = Callable[[Any, IommuState], Any]  # (backend, state) -> backend boolean


@dataclass(frozen=True)
class BmcResult:
    name: str
    status: str  # BOUNDED, REFUTED, or proof's UNKNOWN / VACUOUS
    depth: int  # k: the number of moves checked
    seconds: float
    detail: str = ""
    moves: tuple[Any, ...] = ()  # refuted: the moves after which the predicate fails
    states: tuple[IommuState, ...] = field(default=(), compare=False, repr=False)  # refuted: their replay


def symbolic_state(state: IommuState) -> IommuState:
    """``state`` with a dict memory made symbolic (``Z3.memory_image``: reads at known addresses fold)."""
    if isinstance(state.memory, dict):
        return state.replace(memory=Z3.memory_image(state.memory))
    return state


def unroll(initial: IommuState, templates: Sequence[Any], depth: int, *, choices: Hardware = SPEC,
           context: Any = None, name: str = "move") -> tuple[list[IommuState], list[SymbolicMove]]:
    """The states 0..``depth`` after ``depth`` symbolic moves drawn from ``templates``, and the moves."""
    states, moves = [symbolic_state(initial)], []
    for t in range(depth):
        move = symbolic_move(templates, f"{name}{t + 1}")
        state, _ = step_any(Z3, states[-1], move, templates, context=context, choices=choices)
        states.append(state)
        moves.append(move)
    return states, moves


def replay(initial: IommuState, moves: Sequence[Any], *, choices: Hardware = SPEC,
           context: Any = None) -> tuple[IommuState, ...]:
    """The states a concrete run of ``moves`` from ``initial`` goes through (``initial`` first)."""
    states = [initial]
    for move in moves:
        states.append(step(INT, states[-1], move, context=context, choices=choices)[0])
    return tuple(states)


def check(name: str, initial: IommuState, templates: Sequence[Any], invariant: StatePredicate, depth: int, *,
          witnesses: Sequence[tuple[str, StatePredicate]] = (), choices: Hardware = SPEC, context: Any = None,
          timeout_ms: int = 60_000) -> BmcResult:
    """Whether ``invariant`` holds in every state reachable from ``initial`` by at most ``depth`` moves
    drawn from ``templates``; each witness ``(label, predicate)`` must hold in some such state first.

    A refutation's moves are the shortest prefix of the model's sequence that breaks the invariant;
    when ``initial`` is concrete they are replayed on Python ints, and a replay that does not break it
    is an error (the symbolic and concrete models disagree), never a result.
    """
    states, moves = unroll(initial, templates, depth, choices=choices, context=context)
    holds = [invariant(Z3, s) for s in states]
    shown = [Witness(label, z3.Or(*[_bool(p(Z3, s)) for s in states])) for label, p in witnesses]
    result = prove(name, [], z3.And(*[_bool(h) for h in holds]), witnesses=shown, timeout_ms=timeout_ms)
    if result.status == PROVED:
        return BmcResult(name, BOUNDED, depth, result.seconds, f"no sequence of at most {depth} moves breaks it")
    if result.status != REFUTED:
        return BmcResult(name, result.status, depth, result.seconds, result.detail)
    model = result.model
    value_of = lambda term: _value(model, term)  # noqa: E731
    first = next(t for t, h in enumerate(holds) if not value_of(_bool(h)))
    found = tuple(decode(templates, m, value_of) for m in moves[:first])
    replayed: tuple[IommuState, ...] = ()
    if isinstance(initial.memory, dict):
        replayed = replay(initial, found, choices=choices, context=context)
        if invariant(INT, replayed[-1]):
            raise AssertionError(f"{name}: the counterexample {found} does not replay on Python ints")
    kinds = ", ".join(describe_template(t) for t in templates)
    return BmcResult(name, REFUTED, depth, result.seconds,
                     f"broken after {first} moves drawn from {kinds}", found, replayed)


def _bool(c: Any) -> Any:
    return z3.BoolVal(c) if isinstance(c, bool) else c


def _value(model: z3.ModelRef, term: Any) -> Any:
    if isinstance(term, (bool, int)):
        return term
    v = model.eval(term, model_completion=True)
    return z3.is_true(v) if z3.is_bool(v) else v.as_long()


# -- the completion-wait scenario: software invalidated a DTE and waits ------------------------------

WAIT_DEVICE = 0x10
WAIT_VALUE = 0x1


WAIT_ROOT, WAIT_PAGE, WAIT_FRAME = 0x50_0000, 0x1000, 0x7000_0000  # the old DTE's table maps WAIT_PAGE


def wait_setup(layout: software.Layout = software.Layout()) -> tuple[dict[int, int], list[Any]]:
    """The memory and the moves that lead to :func:`invalidation_then_wait` from empty caches: device
    ``WAIT_DEVICE`` has a DTE whose 3-level table maps ``WAIT_PAGE`` to ``WAIT_FRAME``, the hardware
    caches it in DTE slot 0, software clears the DTE (a detach) and queues INVALIDATE_DEVTAB_ENTRY and a
    COMPLETION_WAIT (store ``WAIT_VALUE`` at the semaphore)."""
    memory = software.write_dte({}, layout, WAIT_DEVICE, software.v1_dte(1, WAIT_ROOT, 3))
    memory = software.v1_map(memory, WAIT_ROOT, 3, WAIT_PAGE, WAIT_FRAME, WAIT_ROOT + 0x1000).memory
    state = software.initial_state(layout, memory, Caches.empty())
    moves: list[Any] = [Fill("dte", 0, Request(WAIT_DEVICE, 0)), *software.dte_moves(layout, WAIT_DEVICE, 0)]
    for move in moves:
        state, _ = step(INT, state, move)
    commands = [software.inv_devtab(WAIT_DEVICE), software.completion_wait(layout.semaphore, WAIT_VALUE)]
    return memory, moves + software.queue_moves(state, layout, commands)


def invalidation_then_wait(layout: software.Layout = software.Layout()) -> IommuState:
    """The IOMMU after :func:`wait_setup`'s moves; no command has been processed yet."""
    memory, moves = wait_setup(layout)
    state = software.initial_state(layout, memory, Caches.empty())
    for move in moves:
        state, _ = step(INT, state, move)
    return state


def wait_seen(layout: software.Layout = software.Layout()) -> StatePredicate:
    """The semaphore holds ``WAIT_VALUE``: software sees its COMPLETION_WAIT complete."""
    def seen(b: Any, state: IommuState) -> Any:
        return b.eq(b.read64(state.memory, b.const(layout.semaphore, 64)), b.const(WAIT_VALUE, 64))
    return seen


def wait_means_invalidated(layout: software.Layout = software.Layout()) -> StatePredicate:
    """If software sees the wait complete, no invalidation is in flight and DTE slot 0 is cleared."""
    seen = wait_seen(layout)

    def holds(b: Any, state: IommuState) -> Any:
        done = b.all_of(*[b.lnot(q.valid) for q in state.in_flight], b.lnot(state.caches.dte[0].valid))
        return b.implies(seen(b, state), done)
    return holds


PROCESSOR_MOVES = (ProcessCommand(), Retire(0), Retire(1))


def check_wait(depth: int, *, choices: Hardware = SPEC, timeout_ms: int = 60_000,
               witnessed: bool = True) -> BmcResult:
    """:func:`wait_means_invalidated` within ``depth`` moves of the command processor from
    :func:`invalidation_then_wait`; ``witnessed``: the wait must be seen within ``depth`` moves."""
    witnesses = [("software sees the wait complete", wait_seen())] if witnessed else []
    return check(f"wait-means-invalidated-{depth}", invalidation_then_wait(), PROCESSOR_MOVES,
                 wait_means_invalidated(), depth, witnesses=witnesses, choices=choices, timeout_ms=timeout_ms)
