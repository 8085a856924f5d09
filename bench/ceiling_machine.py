"""BENCHMARK-ONLY ceiling: a Hypothesis state machine with the IOMMU machine's rules and draws and no work.

It has the rules of ``properties.stateful.IommuMachine`` with the same arguments and, per rule, about
as many ``data.draw`` calls from strategies built once (the machine's own are built once too), an
invariant, and nothing else: no model step, no check. Its rule steps per second are what Hypothesis
itself allows on this machine with this shape of rule, the bound the real machine is measured
against (issue 15.1). Never used by the tool.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

_SMALL = st.integers(0, 7)
_PICK = st.sampled_from(tuple(range(6))) | st.sampled_from(tuple(range(3)))  # like stateful.favoured
_BURST = st.integers(1, 3)


class CeilingMachine(RuleBasedStateMachine):
    """Draws what the IOMMU machine draws per rule; does nothing with it."""

    @initialize(moves=st.tuples(*[_SMALL] * 6))
    def warm_up(self, moves: tuple[int, ...]) -> None:
        self.drawn = sum(moves)

    @precondition(lambda self: True)
    @rule(data=st.data(), change=st.sampled_from(("a", "b", "c", "d")))
    def software(self, data: st.DataObject, change: str) -> None:
        for label in ("what", "where", "to"):
            self.drawn += data.draw(_PICK, label=label)

    @precondition(lambda self: True)
    @rule(data=st.data(), change=st.sampled_from(("a", "b", "c", "d")))
    def guest_software(self, data: st.DataObject, change: str) -> None:
        for label in ("pasid", "where", "to"):
            self.drawn += data.draw(_PICK, label=label)

    @precondition(lambda self: True)
    @rule(data=st.data(), count=_BURST)
    def command_processor(self, data: st.DataObject, count: int) -> None:
        for _ in range(count):
            self.drawn += data.draw(_PICK, label="move")

    @precondition(lambda self: True)
    @rule(retire=st.booleans())
    def run(self, retire: bool) -> None:
        self.drawn += retire

    @rule(move=st.one_of(_SMALL, _SMALL, _SMALL, _BURST))
    def cache(self, move: int) -> None:
        self.drawn += move

    @rule(data=st.data(), count=_BURST)
    def dma(self, data: st.DataObject, count: int) -> None:
        for _ in range(count):
            self.drawn += data.draw(st.tuples(_PICK, st.booleans()), label="request")[0]
            self.drawn += data.draw(st.tuples(_PICK, _PICK, _PICK), label="choice")[0]

    @rule(data=st.data(), count=_BURST)
    def translated_dma(self, data: st.DataObject, count: int) -> None:
        for label in ("request", "slot", "dte slot") * count:
            self.drawn += data.draw(_PICK, label=label)

    @invariant()
    def nothing(self) -> None:
        pass
