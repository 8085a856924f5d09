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
from amdvi.properties.stateful import StaleTranslation
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


def blind_to_memory(monkeypatch) -> None:
    """Every ReadMemo keyed by the arguments only: blind to memory changes (the broken memo a test must catch)."""
    kept = {}

    def forgetful(self, key, memory, compute):
        if key not in kept:
            kept[key] = compute(memory)
        return kept[key]

    monkeypatch.setattr(ReadMemo, "call", forgetful)


def test_a_memo_that_ignores_memory_is_caught(monkeypatch):
    blind_to_memory(monkeypatch)
    stateful.forget()
    assert _mismatches(60)
    stateful.forget()


def test_only_accesses_and_fills_take_a_given_part():
    m = stateful.IommuMachine()
    with pytest.raises(TypeError, match="ProcessCommand"):
        step(INT, m.state, stateful.ProcessCommand(), given=object())
    move = Fill("iotlb", 0, Request(stateful.PLAIN_DEVICE, 0x4010))
    assert step(INT, m.state, move, given=stateful.filled_by(m.state, move, m.choices)) == step(INT, m.state, move)


# -- the command processor's remembered steps (remembered_access.Answers.stepped) --------------------


def _command_step_mismatches(rounds: int, seed: int) -> tuple[list[str], int]:
    """Drive an attach/detach machine through DTE rewrites of every shape and table changes, its
    command processor taking one drawn move at a time (an illegal command at the end, which logs an
    event); at each state compare every move it could make, remembered, with the plain step.
    Returns the mismatches and how many moves were compared."""
    rng, m, out, compared = random.Random(seed), stateful.AttachDetachMachine(), [], 0

    def compare_all() -> None:
        nonlocal compared
        for move in m.processor_moves():
            compared += 1
            if stateful.stepped(m.state, move, m.choices) != step(INT, m.state, move, choices=m.choices):
                out.append(f"{move} at head {m.state.regs.cmd_head:#x}")

    for i in range(rounds):
        if m.may_change() and rng.random() < 0.5:
            if rng.random() < 0.5:
                device, domain = rng.choice(stateful.DEVICES), rng.choice(stateful.DOMAINS)
                dte = stateful.shaped_dte(rng.choice(stateful.DTE_SHAPES), domain, ats=device == stateful.ATS_DEVICE)
                m.change(stateful.sw.write_dte(m.state.memory, stateful.LAYOUT, device, dte),
                         [stateful.sw.inv_devtab(device), stateful.sw.inv_pages(domain)], [])
            else:
                _random_change(m, rng)
        if i == rounds - 1:  # opcode 00h is undefined: ILLEGAL_COMMAND_ERROR is logged
            for move in stateful.sw.queue_moves(m.state, stateful.LAYOUT, [1]):
                m._step(move)
        for _ in range(rng.randrange(1, 6)):
            if not m.processor_moves():
                break
            compare_all()
            m._step(rng.choice(m.processor_moves()))
        compare_all()
    return out, compared


def _runs_mismatches() -> tuple[list[str], int]:
    """Two runs with one memo: the second meets other commands at the ring positions of the first."""
    (first, n), (second, m) = _command_step_mismatches(40, seed=5), _command_step_mismatches(40, seed=6)
    return first + second, n + m


def test_remembered_command_steps_are_the_models():
    stateful.forget()
    mismatches, compared = _runs_mismatches()
    assert mismatches == [] and compared > 200
    memo = remembered_access.shared(SPEC).memo
    assert memo.hits > 0 and memo.misses > 0


@pytest.mark.parametrize("blind", ["memory", "in-flight queue"])
def test_a_command_step_memo_blind_to_what_it_reads_is_caught(monkeypatch, blind):
    """A memo that ignores the words of the command at the head, or the in-flight queue, gives wrong steps."""
    kept, call = {}, ReadMemo.call

    def forgetful(self, key, memory, compute):
        if not (isinstance(key, tuple) and key and isinstance(key[0], (stateful.ProcessCommand, stateful.Retire))):
            return call(self, key, memory, compute)
        short = key if blind == "memory" else key[:-1]  # the queue is the key's last part
        if short not in kept:
            kept[short] = compute(memory)
        return kept[short]

    monkeypatch.setattr(ReadMemo, "call", forgetful)
    stateful.forget()
    assert _runs_mismatches()[0]
    stateful.forget()


def test_a_command_step_that_reads_more_than_its_key_fails_loudly(monkeypatch):
    """A miss steps a state holding only what the memo is keyed by: a step that read another word of
    memory, or another part of the state, raises instead of being remembered wrongly."""
    m = stateful.IommuMachine()
    monkeypatch.setitem(remembered_access.STEP_PARTS, stateful.Retire, ("in_flight",))  # as if a Retire read no cache
    stateful.forget()
    with pytest.raises(AttributeError):
        stateful.stepped(m.state, stateful.Retire(0), m.choices)
    words = remembered_access._OnlyWords({0x1000: 5})
    assert words.get(0x1000) == 5
    with pytest.raises(LookupError, match="0x2000"):
        words.get(0x2000, 0)


# -- the invariant asks a slot's accesses again only when what they depend on changed --------------------


def test_the_invariant_asks_again_when_a_slot_or_memory_changes():
    """The invariant skips a slot whose entry and memory are the very objects its accesses held for; a
    stale entry put in place (memory unchanged), or memory changed under a kept entry, is caught."""
    request = Request(stateful.PLAIN_DEVICE, 0x5010)
    m = stateful.machine(stateful.Hardware().assign(["invalidate-pages-ignores-size=on"]))()
    m._fill(Fill("iotlb", 0, request))
    stale = m.state.caches.iotlb[0]
    m.cached_requests_fresh()  # holds, and is remembered as held for this entry and memory
    memory = dict(m.state.memory)
    for page in (0x4000, 0x5000):
        memory[stateful.entry_address(memory, stateful.DOMAIN_ROOTS[5], page, 1)] = 0
    m.page_table_change(memory, 5, 0x4000, 0x2000, directory=False)
    m.run(retire=True)
    assert m.settled() and m.state.caches.iotlb[0] is stale  # the broken model kept it: memory changed under it
    with pytest.raises(StaleTranslation, match="iotlb=0"):
        m.cached_requests_fresh()

    correct = stateful.IommuMachine()
    correct._fill(Fill("iotlb", 0, request))
    old = correct.state.caches.iotlb[0]
    remapped = stateful.sw.v1_map(correct.state.memory, stateful.DOMAIN_ROOTS[5], stateful.MODE, 0x5000,
                                  stateful.POOL[-1], correct.next_free)
    correct.page_table_change(remapped.memory, 5, 0x5000, 0x1000, directory=False)
    correct.run(retire=True)
    correct._fill(Fill("iotlb", 0, request))  # a fresh entry: the page's new system page
    assert correct.state.caches.iotlb[0].valid and correct.state.caches.iotlb[0] != old
    correct.cached_requests_fresh()  # holds for it, and is remembered so
    correct.state = correct.state.replace(caches=correct.state.caches.with_slot("iotlb", 0, old))  # memory unchanged
    with pytest.raises(StaleTranslation, match="iotlb=0"):
        correct.cached_requests_fresh()


# -- the draws ------------------------------------------------------------------------------------------


def _explored(monkeypatch, public: bool) -> list[str]:
    runs = []

    class Recording(stateful.machine(base=stateful.AttachDetachMachine)):
        def teardown(self):
            runs.append(repr(self.moves))

    if public:
        monkeypatch.setattr(stateful, "draw", lambda data, strategy, label: data.draw(strategy, label=label))
    assert stateful.run_machine(max_examples=6, derandomize=True, machine_class=Recording) is None
    monkeypatch.undo()
    return runs


def test_the_machine_draws_what_data_draw_draws(monkeypatch):
    """``stateful.draw`` skips ``DataObject.draw``'s checks, not its choices: a derandomized run makes the
    same moves either way."""
    ours = _explored(monkeypatch, public=False)
    assert len(ours) >= 6 and ours == _explored(monkeypatch, public=True)
