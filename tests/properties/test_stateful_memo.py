"""The state machine's remembered answers (``stateful.served_and_fresh``, ``filled_by``: ``remembered_access``)
against the model itself, on the states of a seeded random run: every access served, every fill and
the fresh walk are what the model gives without the memo (on the reference engine), and a step given
the remembered part is the plain step. A memo that does not follow the words it read is caught."""

from __future__ import annotations

import random

import pytest

from amdvi.models.iommu import Dma, Fill, TranslatedDma, dma_result, filled, step
from amdvi.properties import remembered_access, stateful
from amdvi.properties.read_memo import ReadMemo
from amdvi.spec import staged
from amdvi.spec.bitvec import INT
from amdvi.spec.choices import SPEC
from amdvi.spec.translation import Request, translate

REQUESTS = stateful.any_request(stateful.ALL_DEVICES)


def _random_change(m, rng):
    """Clear a random level-1 or level-2 entry of a domain's table, with its invalidations, and run
    (retiring or not): the memory changes under what the slots hold."""
    memory = dict(m.state.memory)
    domain, page = rng.choice(stateful.DOMAINS), rng.choice(stateful.PAGES)
    at = stateful.entry_address(memory, stateful.DOMAIN_ROOTS[domain], page, rng.choice((1, 2)))
    if at is not None:
        memory[at] = 0
        m.page_table_change(memory, domain, stateful.directory_of(page), stateful.DIRECTORY_SPAN, directory=True)
    if m.processor_moves():
        m.run(retire=rng.random() < 0.7)


def _mismatches(rounds: int, seed: int = 3) -> list[str]:
    """Walk a machine through fills, changes and accesses; at each state compare the remembered answers
    with the model's own (and each remembered step with the plain step)."""
    rng, m, out = random.Random(seed), stateful.IommuMachine(), []
    for _ in range(rounds):
        r = rng.random()
        if r < 0.45:
            move = rng.choice(stateful.FILLS)
            with staged.use_reference():
                want = filled(INT, m.state, move.cache, move.request, move.step, choices=m.choices)
            if stateful.filled_by(m.state, move, m.choices) != want:
                out.append(f"fill {move}")
            m._fill(move)
        elif r < 0.65:
            _random_change(m, rng)
        for request in rng.sample(REQUESTS, 4):
            moves = list(m.alternatives(Dma(request)))
            if request.device_id == stateful.ATS_DEVICE:
                moves += m.alternatives(TranslatedDma(Request(request.device_id, request.address, request.write, ats=True), 0))
            for move in moves:
                served, same, fresh = stateful.served_and_fresh(m.state, move, m.choices)
                with staged.use_reference():
                    want_served = dma_result(INT, m.state, move, choices=m.choices)
                    want_fresh = translate(INT, m.state.memory, m.state.regs.dev_tab_bar, move.request)
                if not (staged.same(served, want_served) and staged.same(fresh, want_fresh)):
                    out.append(f"access {move}")
                if step(INT, m.state, move, given=served) != step(INT, m.state, move):
                    out.append(f"step {move}")
    return out


def test_remembered_answers_are_the_models():
    stateful.forget()
    assert _mismatches(60) == []
    memo = remembered_access.shared(SPEC).memo
    assert memo.hits > memo.misses > 0  # the run asked again what it had asked (the memo was used)


def test_a_memo_that_ignores_memory_is_caught(monkeypatch):
    kept = {}

    def forgetful(self, key, memory, compute):  # keyed by the arguments only: blind to memory changes
        if key not in kept:
            kept[key] = compute(memory)
        return kept[key]

    monkeypatch.setattr(ReadMemo, "call", forgetful)
    stateful.forget()
    assert _mismatches(60)
    stateful.forget()


def test_only_accesses_and_fills_take_a_given_part():
    m = stateful.IommuMachine()
    with pytest.raises(TypeError, match="ProcessCommand"):
        step(INT, m.state, stateful.ProcessCommand(), given=object())
    move = Fill("iotlb", 0, Request(stateful.PLAIN_DEVICE, 0x4010))
    assert step(INT, m.state, move, given=stateful.filled_by(m.state, move, m.choices)) == step(INT, m.state, move)
