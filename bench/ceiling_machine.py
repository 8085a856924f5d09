"""BENCHMARK-ONLY ceiling: a Hypothesis state machine with the IOMMU machine's rules and draws and no work.

It has the rules of ``properties.stateful.IommuMachine`` with the same arguments and, per rule, as many
draws as the machine makes (through ``properties.stateful.draw``, as it does), each one value of a tuple
built once (the machine draws each choice from such a tuple: a request, the slots serving it, a fill),
an invariant, and nothing else: no model step, no check. Its rule steps per second are what Hypothesis
itself allows on this machine with this shape of rule, the bound the real machine is measured against
(issue 15.1). Never used by the tool.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from amdvi.properties.stateful import draw

_FILL = st.sampled_from(tuple(range(40)))  # one cache's fills (warm-up)
# a fill of one of six caches or an eviction (seven distinct branches: one_of drops repeated ones)
_CACHE_MOVE = st.one_of(*[st.sampled_from(tuple(range(n))) for n in (32, 32, 40, 36, 12, 10, 6)])
_REQUEST = st.sampled_from(tuple(range(108)))  # a request, near a change or a slot's or any
_CHOICE = st.sampled_from(tuple(range(64)))  # the slots serving it, all caches at once
_PICK = st.sampled_from(tuple(range(8)))  # a favoured value (domain, page, PASID, processor move, ...)
_BURST = st.integers(1, 3)


class CeilingMachine(RuleBasedStateMachine):
    """Draws what the IOMMU machine draws per rule; does nothing with it."""

    @initialize(moves=st.tuples(*[_FILL] * 6))
    def warm_up(self, moves: tuple[int, ...]) -> None:
        self.drawn = sum(moves)

    @precondition(lambda self: True)
    @rule(data=st.data(), change=st.sampled_from(("a", "b", "c", "d")))
    def software(self, data: st.DataObject, change: str) -> None:
        for label in ("domain", "page", "spa"):  # 1 to 4 draws by change: about 2.5
            self.drawn += draw(data, _PICK, label)

    @precondition(lambda self: True)
    @rule(data=st.data(), change=st.sampled_from(("a", "b", "c", "d")))
    def guest_software(self, data: st.DataObject, change: str) -> None:
        for label in ("pasid", "gva", "spa"):
            self.drawn += draw(data, _PICK, label)

    @precondition(lambda self: True)
    @rule(data=st.data(), count=_BURST)
    def command_processor(self, data: st.DataObject, count: int) -> None:
        for _ in range(count):
            self.drawn += draw(data, _PICK, "move")

    @precondition(lambda self: True)
    @rule(retire=st.booleans())
    def run(self, retire: bool) -> None:
        self.drawn += retire

    @rule(move=_CACHE_MOVE)
    def cache(self, move: int) -> None:
        self.drawn += move

    @rule(data=st.data(), count=_BURST)
    def dma(self, data: st.DataObject, count: int) -> None:
        for _ in range(count):
            self.drawn += draw(data, _REQUEST, "request")
            self.drawn += draw(data, _CHOICE, "choice")

    @rule(data=st.data(), count=_BURST)
    def translated_dma(self, data: st.DataObject, count: int) -> None:
        for _ in range(count):
            self.drawn += draw(data, _REQUEST, "request")
            self.drawn += draw(data, _PICK, "slot, dte slot")

    @invariant()
    def nothing(self) -> None:
        pass
