"""The model's side (outcome sets over the cache windows) and the comparison with a fake QEMU: an ideal
one agrees, one that diverges in a new way is reported as new, one that shows a known divergence is
reported as that divergence. No QEMU needed."""

import dataclasses

from amdvi.difftest import compare, known, model_side
from amdvi.difftest.case import Case, Commands, DeviceDma, RegisterWrite, Store
from amdvi.difftest.compare import UNOBSERVABLE, expected_word
from amdvi.difftest.model_side import Allowed
from amdvi.difftest.layout import DATA, LAYOUT, TABLE_POOL, device_id, semaphore_slot
from amdvi.difftest.qemu_side import BatchSeen, DmaSeen, Observation, RegisterSeen
from amdvi.difftest.verdict import Verdict
from amdvi.models.software import completion_wait, inv_pages, v1_dte, v1_map
from amdvi.spec.choices import SPEC
from amdvi.spec.host_page_table import PTE

IOVA, DOMAIN, A, B = 0x1234_5678_9000, 7, DATA, DATA + 0x1000
KNOWN = known.load("7.2.22")


def _memory(leaf_fields=None, dte=None):
    m = v1_map({}, TABLE_POOL, 4, IOVA, A, TABLE_POOL + 0x1000)
    memory = dict(m.memory)
    if leaf_fields is not None:
        memory[m.leaf_address] = PTE.encode(leaf_fields)
    d = v1_dte(DOMAIN, TABLE_POOL, 4) if dte is None else dte
    for k in range(4):
        if (d >> (64 * k)) & ((1 << 64) - 1):
            memory[LAYOUT.dte_address(device_id(0)) + 8 * k] = (d >> (64 * k)) & ((1 << 64) - 1)
    return memory, m.leaf_address


def _case(steps, memory):
    return Case(1, tuple(sorted(memory.items())), tuple(steps))


def _remap(leaf):
    return Store(leaf, PTE.encode({"PR": 1, "IR": 1, "IW": 1, "Page Address": B >> 12}))


def _spas(exp, step):
    return {(a.ok, a.spa) for a in exp.dmas[step].allowed}


def test_old_or_new_until_invalidated_and_waited_then_new_only():
    memory, leaf = _memory()
    steps = [DeviceDma(0, IOVA), _remap(leaf), DeviceDma(0, IOVA),
             Commands((inv_pages(DOMAIN + 1, IOVA, 4096), completion_wait(semaphore_slot(1), 1))), DeviceDma(0, IOVA),
             Commands((inv_pages(DOMAIN, IOVA, 4096),)), DeviceDma(0, IOVA),
             Commands((completion_wait(semaphore_slot(2), 2),)), DeviceDma(0, IOVA)]
    exp = model_side.expect(_case(steps, memory))
    assert _spas(exp, 0) == {(True, A)}
    assert _spas(exp, 2) == {(True, A), (True, B)}  # changed, not invalidated
    assert _spas(exp, 4) == {(True, A), (True, B)}  # another domain's invalidation
    assert _spas(exp, 6) == {(True, A), (True, B)}  # invalidated, but no completed wait yet
    assert _spas(exp, 8) == {(True, B)}  # the wait completed: only the new translation
    assert exp.batches[3].head == 32 and exp.batches[3].stores[semaphore_slot(1)] == 1


def test_illegal_command_stops_the_model_unless_the_reading_says_continue():
    memory, _ = _memory()
    case = _case([Commands((0, completion_wait(semaphore_slot(1), 5)))], memory)
    stop = model_side.expect(case)
    go = model_side.expect(case, dataclasses.replace(SPEC, illegal_command="continue"))
    assert stop.batches[0].head == 0 and stop.batches[0].status["CmdBufRun"] == 0
    assert stop.batches[0].stores[semaphore_slot(1)] == 0 and len(stop.batches[0].events) == 1
    assert go.batches[0].head == 32 and go.batches[0].stores[semaphore_slot(1)] == 5


def ideal(case, exp, choose=None):
    """A fake QEMU that shows, for each DMA, the allowed outcome ``choose`` picks (default: the fresh walk)."""
    obs = Observation(events=sorted(exp.certain_events))
    for i, d in exp.dmas.items():
        a = choose(i, d) if choose else Allowed(bool(d.fresh.ok), int(d.fresh.spa), False, 0, "fresh")
        want = expected_word(case, d.memory, a.spa) if a.ok else 0
        value = 0 if want is UNOBSERVABLE else want
        obs.dmas[i] = DmaSeen(i, True, landed=a.spa & ~7 if a.ok else None) if d.write else DmaSeen(i, False, value=value)
    for i, b in exp.batches.items():
        obs.batches[i] = BatchSeen(i, b.head, dict(b.status), dict(b.stores))
    for i, r in exp.registers.items():
        obs.registers[i] = RegisterSeen(i, r.name, r.value)
    return obs


def _verdict(case, exp, obs):
    mismatches = compare.compare(case, exp, obs)
    return Verdict(case, exp, obs, known.classify(known.Context(case, exp, obs), mismatches, KNOWN))


def test_an_ideal_qemu_agrees():
    memory, leaf = _memory()
    case = _case([DeviceDma(0, IOVA), _remap(leaf), DeviceDma(0, IOVA, True),
                  Commands((inv_pages(DOMAIN, IOVA, 4096), completion_wait(semaphore_slot(1), 1))),
                  DeviceDma(0, IOVA), RegisterWrite("EXCL_BASE", 0x5000)], memory)
    exp = model_side.expect(case)
    assert _verdict(case, exp, ideal(case, exp)).status == "agree"


def test_a_stale_translation_after_a_completed_wait_is_new():
    memory, leaf = _memory()
    case = _case([DeviceDma(0, IOVA), _remap(leaf),
                  Commands((inv_pages(DOMAIN, IOVA, 4096), completion_wait(semaphore_slot(1), 1))),
                  DeviceDma(0, IOVA)], memory)
    exp = model_side.expect(case)
    obs = ideal(case, exp)
    obs.dmas[3] = dataclasses.replace(obs.dmas[3], value=obs.dmas[0].value)  # still page A
    v = _verdict(case, exp, obs)
    assert v.status == "new" and v.shapes() == ["dma-read:other-page"]


def test_a_known_divergence_is_expected_not_new():
    memory, _ = _memory(leaf_fields={"PR": 0, "IR": 1, "IW": 1, "Page Address": A >> 12})
    case = _case([DeviceDma(0, IOVA)], memory)
    exp = model_side.expect(case)
    assert _spas(exp, 0) == {(False, 0)}
    obs = ideal(case, exp)
    obs.dmas[0] = dataclasses.replace(obs.dmas[0], value=expected_word(case, exp.dmas[0].memory, A))  # QEMU: page A
    obs.events = []  # and, like 7.2, no event
    v = _verdict(case, exp, obs)
    assert v.status == "known"
    assert sorted(k.id for _, k in v.classified) == ["event-log-dead", "leaf-present-ignored"]
    # the same result with the leaf present would be a plain agreement: the recogniser is specific
    obs.dmas[0] = dataclasses.replace(obs.dmas[0], value=expected_word(case, exp.dmas[0].memory, B))
    assert _verdict(case, exp, obs).shapes() == ["dma-read:qemu-ok/spec-blocked"]


def test_a_hang_is_a_finding_and_known_when_the_tail_is_beyond_the_ring():
    memory, _ = _memory()
    case = _case([RegisterWrite("CMD_BUF_TAIL", LAYOUT.ring_bytes)], memory)
    exp = model_side.expect(case)
    obs = Observation(hang=(0, "no reply"))
    v = _verdict(case, exp, obs)
    assert [(m.observable, k.id) for m, k in v.classified] == [("hang", "tail-beyond-ring-hang")]
    other = _case([DeviceDma(0, IOVA)], memory)
    v = _verdict(other, model_side.expect(other), Observation(hang=(0, "no reply")))
    assert v.status == "new" and v.shapes() == ["hang:DeviceDma"]
