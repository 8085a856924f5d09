"""A replay's remembered answers (``counterexample.replay`` through ``remembered_access.Answers``)
against the plain model: every step of a long seeded random trace (fills, table changes with their
invalidations, accesses served from every choice of slots, the same requests asked again and again)
is what ``iommu.step`` gives without a memo, and each fresh walk is the specification's. A memo blind
to memory, or a fresh walk shared where the hardware's choices walk differently, is caught."""

from __future__ import annotations

import gc
import random

import pytest

from amdvi.models import software as sw
from amdvi.models.iommu import Dma, TranslatedDma, step
from amdvi.properties import stateful
from amdvi.properties.counterexample import Trace, replay
from amdvi.properties.read_memo import ReadMemo
from amdvi.properties.remembered_access import Answers
from amdvi.spec import staged
from amdvi.spec.bitvec import INT
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.translation import Request, translate

from test_stateful_memo import REQUESTS, _random_change, blind_to_memory  # tests/properties is on the path


def _long_trace(rounds: int = 40, seed: int = 5) -> Trace:
    """A machine's random walk as a trace: fills, changes, and after each a few requests asked through
    every choice of slots, several times over (so the replay asks again what it asked)."""
    rng, m = random.Random(seed), stateful.IommuMachine()
    start = m.state
    for _ in range(rounds):
        if rng.random() < 0.5:
            m._fill(rng.choice(stateful.FILLS))
        elif rng.random() < 0.5:
            _random_change(m, rng)
        asked = rng.sample(REQUESTS, 3)
        for _ in range(3):
            for request in asked:
                for move in list(m.alternatives(Dma(request)))[:4]:
                    m._step(move)
                if request.device_id == stateful.ATS_DEVICE:
                    m._step(TranslatedDma(Request(request.device_id, request.address, request.write, ats=True), 0))
    m._step(Dma(REQUESTS[0]))
    return Trace("random walk", dict(start.memory), tuple(m.moves), waits=False, regs=start.regs,
                 cache_slots={name: len(start.caches.slots(name)) for name in stateful.CACHE_NAMES},
                 retire_at_once=False)


def _differences(trace: Trace) -> list[str]:
    result, out = replay(trace), []
    for i, s in enumerate(result.steps):
        with staged.use_reference():
            after, outputs = step(INT, s.before, s.move, choices=trace.choices)
            fresh = (translate(INT, s.before.memory, s.before.regs.dev_tab_bar, s.move.request)
                     if isinstance(s.move, (Dma, TranslatedDma)) else None)
        if after != s.after or not staged.same(outputs, s.outputs):
            out.append(f"step {i + 1} {s.move}")
        if (fresh is None) != (s.fresh is None) or (fresh is not None and not staged.same(fresh, s.fresh)):
            out.append(f"fresh walk {i + 1} {s.move}")
    return out


def test_a_long_replay_is_the_plain_models():
    trace = _long_trace()
    accesses = sum(isinstance(m, (Dma, TranslatedDma)) for m in trace.moves)
    assert accesses > 300 and len({m.request for m in trace.moves if isinstance(m, Dma)}) < accesses / 4
    assert _differences(trace) == []


def test_a_replay_memo_blind_to_memory_is_caught(monkeypatch):
    blind_to_memory(monkeypatch)
    assert _differences(_long_trace())


def test_a_question_is_remembered_from_its_second_ask():
    memo, memory, seen = ReadMemo(from_second_ask=True), {0x10: 1}, []

    def compute(m):
        seen.append(m)
        return m.get(0x10, 0) + 1

    assert [memo.call("k", memory, compute) for _ in range(3)] == [2, 2, 2]
    assert seen[0] is memory and seen[1] is not memory  # the first over memory itself, the second recorded
    assert (len(seen), memo.hits) == (2, 1)
    memory[0x10] = 5
    assert memo.call("k", memory, compute) == 6  # a word it read changed: computed again


def test_the_walk_is_shared_as_the_fresh_one_only_under_the_specifications_choices():
    """Under the "blocked" reading a V = 0 DTE aborts the access while the specification's fresh walk
    passes it untranslated: the fresh walk must be computed on its own there."""
    state, _ = stateful.platform()
    state = state.replace(memory=sw.write_dte(state.memory, stateful.LAYOUT, stateful.PLAIN_DEVICE, 0))
    move, blocked = Dma(Request(stateful.PLAIN_DEVICE, 0x4010)), Hardware(invalid_dte="blocked")
    want = translate(INT, state.memory, state.regs.dev_tab_bar, move.request)
    served, agrees, fresh = Answers(blocked, compiled=True).served_and_fresh(state, move)
    assert not served.ok and fresh.ok and not agrees and staged.same(fresh, want)
    assert Answers(SPEC, compiled=True).plain_walk_is_fresh and not Answers(blocked).plain_walk_is_fresh
    careless = Answers(blocked, compiled=True)
    careless.plain_walk_is_fresh = True  # sharing the walk regardless of the choices
    assert not careless.served_and_fresh(state, move)[2].ok


@pytest.mark.parametrize("enabled", [True, False])
def test_a_replay_leaves_the_collector_as_it_found_it(enabled):
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        replay(_long_trace(rounds=2))
        assert gc.isenabled() == enabled
        bad = Trace("ends in a write", {}, (stateful.CpuWrite(0, 0),), waits=False)
        with pytest.raises(AttributeError):
            replay(bad)
        assert gc.isenabled() == enabled
    finally:
        (gc.enable if was else gc.disable)()
