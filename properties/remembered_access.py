"""The IOMMU model's answers to device accesses, fills and command steps, remembered by the words of
memory they read.

A device access (``models.iommu.dma_result``), a fill (``models.iommu.filled``) and the fresh walk
are pure functions of memory and a few other arguments, so :class:`ReadMemo` keeps them: asked again
where the words they read hold the same values, the answer costs those reads and a look-up, not a
walk. Two checkers ask the same questions many times: the state machines (their invariant after
nearly every rule) and a long replay (the same requests over tables that mostly stay put). A miss
runs the model itself, on the reference engine (a machine's short runs meet many path shapes once:
compiling each would cost more than it saves) or on the compiled walks (a long replay meets few
shapes many times). ``iommu.step(given=...)`` takes the remembered part, so no rule is restated. A
command processor's step (ProcessCommand, Retire) is remembered by the parts of the state it reads and
the command's words (:meth:`Answers.stepped`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Mapping

from amdvi.models.caches import CACHE_NAMES, Caches
from amdvi.models.dma import NO_SLOTS, DmaResult, ServeChoice
from amdvi.models.command_buffer import fetch_command
from amdvi.models.iommu import (Dma, Fill, IommuState, ProcessCommand, Retire, TranslatedDma, dma_result, filled,
                               step)
from amdvi.spec import staged
from amdvi.spec.bitvec import INT
from amdvi.spec.choices import SPEC, Hardware, hardware
from amdvi.spec.translation import Request, translate

from .coherence import agrees
from .read_memo import ReadMemo

MEMO_KEYS = 1 << 15  # distinct questions remembered before the memo starts afresh (a machine's long runs)
_CHOICE_FIELDS = tuple(f.name for f in dataclasses.fields(ServeChoice))


def read_slots(move: Dma | TranslatedDma) -> tuple[tuple[str, int], ...]:
    """The (cache, slot) pairs a device access may be served from: those its move names."""
    if isinstance(move, TranslatedDma):
        return (("device_iotlb", move.slot),) + ((("dte", move.dte_slot),) if move.dte_slot is not None else ())
    choice = move.choice
    if choice is NO_SLOTS:
        return ()
    return tuple((name, i) for name in _CHOICE_FIELDS if (i := getattr(choice, name)) is not None)


# the parts of the state besides memory that a remembered move reads and changes (see stepped)
STEP_PARTS: dict[type, tuple[str, ...]] = {ProcessCommand: ("regs", "in_flight"), Retire: ("caches", "in_flight")}


class _Noting(Mapping[int, int]):
    """``memory`` read word by word (``get``), each word read kept in ``words``."""

    def __init__(self, memory: Mapping[int, int]) -> None:
        self.memory, self.words = memory, {}

    def get(self, address: int, default: Any = None) -> Any:  # noqa: D401 - the Mapping API
        value = self.words[address] = self.memory.get(address, default)
        return value

    def __getitem__(self, address: int) -> int:
        return self.get(address)

    def __iter__(self):
        raise TypeError("read word by word")

    def __len__(self) -> int:
        return len(self.memory)


class _OnlyWords(dict):
    """A memory holding only ``words``: reading any other word is an error, not a 0 (so a remembered
    step that read more than it is keyed by fails loudly). Copied (as a write copies), it is a dict."""

    def get(self, address: int, default: Any = None) -> Any:
        if address not in self:
            raise LookupError(f"a remembered step read {address:#x}, not one of the words it is keyed by")
        return dict.get(self, address)

    def __getitem__(self, address: int) -> int:
        return self.get(address)


class Answers:
    """Remembered answers under one set of hardware ``choices``. ``compiled``: for a long replay, a miss
    runs the compiled walks rather than the reference engine (the same results, ``spec.staged``) and
    a question is remembered from its second ask (a stream of new addresses pays no recording)."""

    def __init__(self, choices: Hardware, *, compiled: bool = False) -> None:
        self.choices, self.compiled = choices, compiled
        self.memo = self._new_memo()
        self._blank: tuple[Any, Any] = (None, None)
        # under the specification's own choices, a walk from no slot is the fresh walk's very call
        self.plain_walk_is_fresh = hardware(choices) == SPEC

    def _new_memo(self) -> ReadMemo:
        return ReadMemo(from_second_ask=self.compiled)

    def _engine(self) -> Any:
        return contextlib.nullcontext() if self.compiled else staged.use_reference()

    def _memo(self) -> ReadMemo:
        if len(self.memo) > MEMO_KEYS:
            self.memo = self._new_memo()
        return self.memo

    def fresh(self, memory: Any, dev_tab_bar: int, request: Request) -> Any:
        """The fresh walk of ``request`` (the specification's, whatever the hardware choices); ``memory``
        may be a memo's recording memory, which then records the words it read too."""

        def compute(m: Any) -> Any:
            with self._engine():
                return translate(INT, m, dev_tab_bar, request)

        return self._memo().call(("fresh", request, dev_tab_bar), memory, compute)

    def served_and_fresh(self, state: IommuState, move: Dma | TranslatedDma) -> tuple[DmaResult, bool, Any]:
        """``(served, agrees, fresh)`` for ``move`` tried on ``state``: the model's ``dma_result``,
        whether it agrees with the fresh walk, and the fresh walk. Keyed by the request, the slots the
        move may use (and their contents) and the device table base; a miss computes it over caches
        holding only those slots (any other is ``None``, so a look-up outside them fails loudly)."""
        pairs = read_slots(move)
        caches, regs = state.caches, state.regs
        slots = tuple(getattr(caches, name)[i] for name, i in pairs)
        key = (move.__class__, move.request, pairs, slots, regs.dev_tab_bar)

        def compute(memory: Any) -> tuple[DmaResult, bool, Any]:
            if memory is state.memory and not pairs:  # a first ask (not remembered): the state as it is
                asked = state
            else:
                asked = IommuState(memory=memory, regs=regs, caches=self._only(caches, pairs))
            with self._engine():
                served = dma_result(INT, asked, move, choices=self.choices)
            if not pairs and self.plain_walk_is_fresh and move.__class__ is Dma:
                # served from no slot under the specification's choices: dma_result's walk is
                # translate(memory, base, request), the call the fresh walk makes
                fresh = served.outcome
            else:
                fresh = self.fresh(memory, regs.dev_tab_bar, move.request)  # shared by the ways of serving it
            return served, bool(agrees(INT, served, fresh)), fresh

        return self._memo().call(key, state.memory, compute)

    def _only(self, caches: Caches, pairs: tuple[tuple[str, int], ...]) -> Caches:
        """``caches`` holding only the slots ``pairs`` names (the others ``None``); with none named,
        the blank caches of this geometry, kept while the caches stay the same object."""
        if pairs:
            return Caches(**{name: tuple(s if (name, i) in pairs else None for i, s in enumerate(getattr(caches, name)))
                             for name in CACHE_NAMES})
        if self._blank[0] is not caches:
            self._blank = (caches, Caches(**{name: (None,) * len(getattr(caches, name)) for name in CACHE_NAMES}))
        return self._blank[1]

    def filled(self, state: IommuState, move: Fill) -> Any:
        """The slot ``move`` puts in place on ``state`` (the model's ``filled``; a fill reads no slot)."""
        regs = state.regs

        def compute(memory: Any) -> Any:
            with self._engine():
                return filled(INT, IommuState(memory=memory, regs=regs, caches=state.caches), move.cache,
                              move.request, move.step, choices=self.choices)

        return self._memo().call((Fill, move.cache, move.request, move.step, regs.dev_tab_bar), state.memory, compute)

    def stepped(self, state: IommuState, move: ProcessCommand | Retire) -> tuple[IommuState, Any]:
        """``step(INT, state, move, choices=self.choices)`` for a command-processor move, remembered by what it
        reads: the parts of the state :data:`STEP_PARTS` names and, for a ProcessCommand, the words of the
        command at the head (as ``fetch_command`` reads them). A miss steps a state holding only those
        (any other part ``None``, memory only those words), so a step that read more would fail loudly,
        and keeps what changed: those parts and the words written (a COMPLETION_WAIT's store, an event
        record). A run takes the same few commands at the same registers again and again, and a command
        step costs about 50 us on Python ints (a remembered one 6)."""
        parts = STEP_PARTS[move.__class__]
        known = tuple(getattr(state, p) for p in parts)

        def compute(memory: Any) -> tuple[dict[int, int], tuple[Any, ...], Any]:
            seen = _Noting(memory)
            if isinstance(move, ProcessCommand):
                fetch_command(INT, seen, state.regs)
            words = _OnlyWords(seen.words)
            bare = IommuState(memory=words, regs=None, caches=None, in_flight=None).replace(**dict(zip(parts, known)))
            after, outputs = step(INT, bare, move, choices=self.choices)
            if any(getattr(after, p) is not getattr(bare, p) for p in ("regs", "caches", "in_flight") if p not in parts):
                raise ValueError(f"a {move.__class__.__name__} changed a part of the state it is not keyed by")
            written = {a: v for a, v in after.memory.items() if a not in words or dict.get(words, a) != v}
            return written, tuple(getattr(after, p) for p in parts), outputs

        written, changed, outputs = self._memo().call((move, *known), state.memory, compute)
        memory = {**state.memory, **written} if written else state.memory
        return state.replace(memory=memory, **dict(zip(parts, changed))), outputs


_SHARED: dict[Hardware, Answers] = {}  # the state machines' answers, per choices, kept across runs


def shared(choices: Hardware) -> Answers:
    """The answers the state machines share under ``choices`` (reference engine on a miss)."""
    answers = _SHARED.get(choices)
    if answers is None:
        answers = _SHARED[choices] = Answers(choices)
    return answers


def forget() -> None:
    """Drop every shared answer (a benchmark that compares runs starts each from the same point)."""
    _SHARED.clear()
