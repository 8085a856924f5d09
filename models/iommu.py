"""The IOMMU as one pure state machine: ``step(b, state, input) -> (state', outputs)``.

State (:class:`IommuState`): system memory, the registers, the translation caches
(``models.caches``) and the invalidations the command processor has accepted but not yet carried
out (``in_flight``). Inputs are the moves of software, devices and the hardware's own choices:

* software: :class:`CpuWrite` (a store to memory: tables, the command ring) and :class:`SetTail`
  (the CMD_BUF_TAIL register write that hands commands to the IOMMU);
* the command processor: :class:`ProcessCommand` takes the command at the head (``command_buffer``);
  an invalidation is accepted into ``in_flight`` and takes effect later, at a :class:`Retire` of the
  hardware's choosing (in any order). COMPLETION_WAIT is not processed while an earlier invalidation is
  still in flight (48882 §2.4.1: it completes when all earlier commands have completed), so its store
  tells software that every earlier invalidation has taken effect;
* hardware choices: :class:`Fill` (a cache slot takes what a walk of current memory gives) and
  :class:`Evict`;
* devices: :class:`Dma` (an untranslated request served from the chosen cache slots or a walk; a write
  stores its data) and :class:`TranslatedDma` (an ATS device using its own IOTLB).

Written once over the backend. The moves are frozen dataclasses declared in ``models.moves``
(:data:`~amdvi.models.moves.MOVE_KINDS`); :func:`step` dispatches on a move's kind through
:data:`STEP_BY_KIND`, and :func:`step_any` takes a move whose kind is itself a symbolic choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

from amdvi.spec.commands import (
    COMPLETION_WAIT, INVALIDATE_DEVTAB_ENTRY, INVALIDATE_INTERRUPT_TABLE, INVALIDATE_IOMMU_ALL,
    INVALIDATE_IOMMU_PAGES, INVALIDATE_IOTLB_PAGES, OPCODE_HI, OPCODE_LO,
)
from amdvi.spec.choices import SPEC, Hardware, hardware
from amdvi.spec.records import fast_init, merge, replace as replace_record
from amdvi.spec.translation import Outcome, Request, read_dte, translate

from . import rings
from .caches import Caches, cache_kind, evict, invalidate
from .command_buffer import COMMAND_WIDTH, OPCODE_WIDTH, Effect, fetch_command, pending, step_command
from .dma import DmaResult, serve, serve_translated
from .event_log import log_event
from .moves import (
    MOVE_KINDS, CpuWrite, Dma, Evict, Fill, ProcessCommand, Retire, SetTail, SymbolicMove, TranslatedDma, instantiate,
    kind_of,
)
from .registers import Registers, with_ring_offset
from .rings import COMMAND_BUFFER

INVALIDATIONS = (INVALIDATE_DEVTAB_ENTRY, INVALIDATE_IOMMU_PAGES, INVALIDATE_IOTLB_PAGES,
                 INVALIDATE_INTERRUPT_TABLE, INVALIDATE_IOMMU_ALL)
IN_FLIGHT = 2  # invalidations the processor may hold before it must carry one out


@dataclass(frozen=True)
class InFlight:
    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = {"command": COMMAND_WIDTH}

    valid: Any = False
    command: Any = 0


@fast_init
@dataclass(frozen=True)
class IommuState:
    memory: Any
    regs: Registers
    caches: Caches
    in_flight: tuple[InFlight, ...] = tuple(InFlight() for _ in range(IN_FLIGHT))

    def replace(self, **kw: Any) -> "IommuState":
        return replace_record(self, **kw)


# -- inputs: the moves (``models.moves``) ------------------------------------------------------


@fast_init
@dataclass(frozen=True)
class Outputs:
    effect: Effect | None = None  # ProcessCommand: what the command processor did
    accepted: Any = False  # ProcessCommand: an invalidation entered in_flight
    blocked: Any = False  # ProcessCommand: a command is pending but must wait
    dma: DmaResult | None = None

    def complete(self, b: Any) -> "Outputs":
        """These outputs with each absent part (``None``) replaced by one saying nothing happened, so
        the outputs of any two moves can be merged."""
        effect = self.effect if self.effect is not None else _no_effect(b)
        return Outputs(effect=effect, accepted=self.accepted, blocked=self.blocked,
                       dma=self.dma if self.dma is not None else DmaResult.none(b))


def _no_effect(b: Any) -> Effect:
    """The command processor did nothing."""
    zero = lambda width: b.const(0, width)  # noqa: E731
    return Effect(processed=b.false(), illegal=b.false(), opcode=zero(OPCODE_WIDTH), command=zero(COMMAND_WIDTH),
                  address=zero(64), store=b.false(), store_address=zero(64), store_data=zero(64),
                  interrupt=b.false())


def is_invalidation(b: Any, opcode: Any) -> Any:
    return b.any_of(*[b.eq(opcode, c.field("Opcode").fixed) for c in INVALIDATIONS])


def queue_full(b: Any, state: IommuState) -> Any:
    return b.all_of(*[q.valid for q in state.in_flight])


def any_in_flight(b: Any, state: IommuState) -> Any:
    return b.any_of(*[q.valid for q in state.in_flight])


def enqueue(b: Any, in_flight: tuple[InFlight, ...], command: Any, when: Any) -> tuple[InFlight, ...]:
    """``command`` in the first free entry (where ``when`` holds)."""
    out, placed = [], b.lnot(when)
    for q in in_flight:
        take = b.all_of(b.lnot(placed), b.lnot(q.valid))
        out.append(InFlight(valid=b.any_of(q.valid, take), command=b.ite(take, command, q.command, width=128)))
        placed = b.any_of(placed, take)
    return tuple(out)


def process_command(b: Any, state: IommuState, *, context: Any = None,
                    choices: Hardware = SPEC) -> tuple[IommuState, Outputs]:
    """Take the command at the head, unless it must wait: a COMPLETION_WAIT while an invalidation is in
    flight, or an invalidation while ``in_flight`` is full."""
    bits, _ = fetch_command(b, state.memory, state.regs)
    opcode = b.extract(bits, OPCODE_HI, OPCODE_LO)
    is_wait = b.eq(opcode, COMPLETION_WAIT.field("Opcode").fixed)
    is_inval = is_invalidation(b, opcode)
    wait_blocked = b.false() if choices.completion_wait_early else b.all_of(is_wait, any_in_flight(b, state))
    blocked = b.all_of(pending(b, state.regs), b.any_of(wait_blocked, b.all_of(is_inval, queue_full(b, state))))
    memory, regs, effect = step_command(b, state.memory, state.regs, context, choices)
    # a blocked command leaves memory and registers alone, and nothing happened
    if not b.known_false(blocked):
        memory, regs, effect = merge(b, blocked, (state.memory, state.regs, _nothing_done(effect)),
                                     (memory, regs, effect))
    accepted = b.all_of(effect.processed, is_inval)
    in_flight = enqueue(b, state.in_flight, bits, accepted)
    return state.replace(memory=memory, regs=regs, in_flight=in_flight), Outputs(effect=effect, accepted=accepted,
                                                                                  blocked=blocked)


def _nothing_done(effect: Effect) -> Effect:
    """``effect`` with nothing processed, logged, stored or signalled (the command it read is kept)."""
    return replace_record(effect, processed=False, illegal=False, store=False, interrupt=False)


def retire(b: Any, state: IommuState, index: int, *, choices: Hardware = SPEC) -> IommuState:
    """In-flight invalidation ``index`` takes effect on the caches (nothing if that entry is empty)."""
    q = state.in_flight[index]
    caches = invalidate(b, state.caches, q.command, when=q.valid, choices=choices)
    in_flight = tuple(InFlight() if i == index else e for i, e in enumerate(state.in_flight))
    return state.replace(caches=caches, in_flight=in_flight)


def fill(b: Any, state: IommuState, cache: str, slot: int, request: Request, step: int = 0, *,
         context: Any = None, walk: Outcome | None = None, choices: Hardware = SPEC) -> IommuState:
    """Cache ``slot`` takes what a fresh walk of current memory gives for ``request`` (``walk``: that
    walk, when the caller already made it; symbolic callers save rebuilding it)."""
    new = filled(b, state, cache, request, step, context=context, walk=walk, choices=choices)
    return state.replace(caches=state.caches.with_slot(cache, slot, new))


def filled(b: Any, state: IommuState, cache: str, request: Request, step: int = 0, *, context: Any = None,
           walk: Outcome | None = None, choices: Hardware = SPEC) -> Any:
    """The slot of ``cache`` a fill from ``request`` gives on ``state`` (what :func:`fill` puts in place)."""
    kind = cache_kind(cache)
    bar = state.regs.dev_tab_bar
    fresh = walk if walk is not None else translate(b, state.memory, bar, request, context=context, choices=choices)
    dte, _, _ = read_dte(b, state.memory, bar, request.device_id)
    return kind.fill(b, request, fresh, step, choices, dte)


def _dma_store(b: Any, state: IommuState, result: DmaResult, request: Request, data: Any) -> Any:
    """Memory after the access: a successful write stores ``data`` at the (8-byte aligned) address."""
    store = b.all_of(result.ok, request.write)
    if b.known_false(store):
        return state.memory
    aligned = b.band(result.spa, b.bnot(b.const(7, 64), 64))
    return b.ite(store, b.write64(state.memory, aligned, data), state.memory)


def _cpu_write(b: Any, state: IommuState, move: CpuWrite, **_: Any) -> tuple[IommuState, Outputs]:
    return state.replace(memory=b.write64(state.memory, move.address, move.value)), Outputs()


def _set_tail(b: Any, state: IommuState, move: SetTail, **_: Any) -> tuple[IommuState, Outputs]:
    return state.replace(regs=with_ring_offset(b, state.regs, "cmd_tail", move.offset)), Outputs()


def _process_command(b: Any, state: IommuState, move: ProcessCommand, *, context: Any,
                     choices: Hardware) -> tuple[IommuState, Outputs]:
    return process_command(b, state, context=context, choices=choices)


def _retire(b: Any, state: IommuState, move: Retire, *, choices: Hardware, **_: Any) -> tuple[IommuState, Outputs]:
    return retire(b, state, move.index, choices=choices), Outputs()


def _fill(b: Any, state: IommuState, move: Fill, *, context: Any, choices: Hardware,
          given: Any = None) -> tuple[IommuState, Outputs]:
    if given is None:
        return fill(b, state, move.cache, move.slot, move.request, move.step, context=context, choices=choices), Outputs()
    return state.replace(caches=state.caches.with_slot(move.cache, move.slot, given)), Outputs()


def _evict(b: Any, state: IommuState, move: Evict, **_: Any) -> tuple[IommuState, Outputs]:
    slots = state.caches.slots(move.cache)
    return state.replace(caches=state.caches.with_slot(move.cache, move.slot, evict(b, slots[move.slot]))), Outputs()


def _access(b: Any, state: IommuState, result: DmaResult, move: Dma | TranslatedDma,
            choices: Hardware) -> tuple[IommuState, Outputs]:
    """A device access served as ``result``: a write stores its data, a fault is logged."""
    memory = _dma_store(b, state, result, move.request, move.data)
    memory, regs = log_event(b, memory, state.regs, result.event, when=result.logged, choices=choices)
    if memory is state.memory and regs is state.regs:  # a read that logged nothing: the state stays
        return state, Outputs(dma=result)
    return state.replace(memory=memory, regs=regs), Outputs(dma=result)


def dma_result(b: Any, state: IommuState, move: Dma | TranslatedDma, *, context: Any = None,
               choices: Hardware = SPEC) -> DmaResult:
    """How a device access is served (``step``'s ``outputs.dma`` for ``move``), without its effects on
    memory and the event log: what a checker compares with the fresh walk."""
    bar = state.regs.dev_tab_bar
    if isinstance(move, TranslatedDma):
        return serve_translated(b, state.memory, bar, state.caches, move.request, move.slot, move.dte_slot,
                                context=context, choices=choices)
    return serve(b, state.memory, bar, state.caches, move.request, move.choice, context=context, choices=choices)


def _dma(b: Any, state: IommuState, move: Dma | TranslatedDma, *, context: Any, choices: Hardware,
         given: DmaResult | None = None) -> tuple[IommuState, Outputs]:
    served = given if given is not None else dma_result(b, state, move, context=context, choices=choices)
    return _access(b, state, served, move, choices)


# how each kind of move (``models.moves.MOVE_KINDS``) steps the state
STEP_BY_KIND: dict[str, Callable[..., tuple[IommuState, Outputs]]] = {
    "CpuWrite": _cpu_write, "SetTail": _set_tail, "ProcessCommand": _process_command, "Retire": _retire,
    "Fill": _fill, "Evict": _evict, "Dma": _dma, "TranslatedDma": _dma,
}
if STEP_BY_KIND.keys() != MOVE_KINDS.keys():
    raise ImportError("every kind of move in models.moves.MOVE_KINDS needs a step in STEP_BY_KIND")


def step(b: Any, state: IommuState, move: Any, *, context: Any = None, choices: Hardware = SPEC,
         given: Any = None) -> tuple[IommuState, Outputs]:
    """One move of software, the hardware or a device (see the module docstring).

    ``given``: what the move computes from ``state`` before it takes effect, when the caller already
    has it (a checker that remembers it by the words of memory it read): for a device access its
    :func:`dma_result`, for a fill the :func:`filled` slot. Not allowed for other moves."""
    choices = hardware(choices)
    if given is not None:
        if not isinstance(move, GIVEN_KINDS):
            raise TypeError(f"no part of a {kind_of(move)} move can be given")
        return STEP_BY_KIND[kind_of(move)](b, state, move, context=context, choices=choices, given=given)
    return STEP_BY_KIND[kind_of(move)](b, state, move, context=context, choices=choices)


GIVEN_KINDS = (Dma, TranslatedDma, Fill)  # the moves whose computed part step() accepts


def step_any(b: Any, state: IommuState, move: SymbolicMove, templates: Sequence[Any], *, context: Any = None,
             choices: Hardware = SPEC) -> tuple[IommuState, Outputs]:
    """One move whose kind is a choice: ``templates[move.kind]`` with its holes filled from ``move.args``
    (``models.moves``). Every template is stepped and the results merged under ``kind == i`` (an index
    past the end takes the last template); a known kind steps that template alone. The outputs are
    :meth:`Outputs.complete`."""
    known = b.constant(move.kind)
    if known is not None:
        chosen = templates[min(known, len(templates) - 1)]
        state, out = step(b, state, instantiate(chosen, move.args), context=context, choices=choices)
        return state, out.complete(b)
    results = [step(b, state, instantiate(t, move.args), context=context, choices=choices) for t in templates]
    merged_state, merged_out = results[-1][0], results[-1][1].complete(b)
    width = move.kind.size()
    for i in reversed(range(len(templates) - 1)):
        chosen = b.eq(move.kind, b.const(i, width))
        merged_state = merge(b, chosen, results[i][0], merged_state)
        merged_out = merge(b, chosen, results[i][1].complete(b), merged_out)
    return merged_state, merged_out


def command_ring_empty(b: Any, state: IommuState) -> Any:
    """Backend boolean: head == tail."""
    return rings.is_empty(b, state.regs, COMMAND_BUFFER)


def idle(b: Any, state: IommuState) -> Any:
    """Nothing left to do: no pending command and nothing in flight."""
    return b.all_of(b.lnot(pending(b, state.regs)), b.lnot(any_in_flight(b, state)))


def in_flight_count(state: IommuState) -> int:
    """Concrete only: how many invalidations are in flight."""
    return sum(1 for q in state.in_flight if q.valid)


__all__ = [
    "IommuState", "InFlight", "CpuWrite", "SetTail", "ProcessCommand", "Retire", "Fill", "Evict", "Dma",
    "TranslatedDma", "Outputs", "step", "dma_result", "filled", "process_command", "retire", "fill", "idle",
    "command_ring_empty", "in_flight_count", "IN_FLIGHT", "step_any", "STEP_BY_KIND", "MOVE_KINDS",
]
