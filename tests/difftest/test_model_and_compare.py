"""The model's side (outcome sets over the cache windows) and the comparison with a fake QEMU: an ideal
one agrees, one that diverges in a new way is reported as new, one that shows a known divergence is
reported as that divergence. No QEMU needed."""

import dataclasses

import pytest

from amdvi.difftest import compare, known, model_side, qemu_side, study
from amdvi.difftest.case import Case, Commands, CpuStore, EduDma, RegisterWrite
from amdvi.difftest.compare import UNOBSERVABLE, expected_word
from amdvi.difftest.model_side import Allowed
from amdvi.difftest.layout import DATA, GIANT_DATA, LAYOUT, TABLE_POOL, device_id, semaphore_slot
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
    return CpuStore(leaf, PTE.encode({"PR": 1, "IR": 1, "IW": 1, "Page Address": B >> 12}))


def _spas(exp, step):
    return {(a.ok, a.spa) for a in exp.dmas[step].allowed}


def test_old_or_new_until_invalidated_and_waited_then_new_only():
    memory, leaf = _memory()
    steps = [EduDma(0, IOVA), _remap(leaf), EduDma(0, IOVA),
             Commands((inv_pages(DOMAIN + 1, IOVA, 4096), completion_wait(semaphore_slot(1), 1))), EduDma(0, IOVA),
             Commands((inv_pages(DOMAIN, IOVA, 4096),)), EduDma(0, IOVA),
             Commands((completion_wait(semaphore_slot(2), 2),)), EduDma(0, IOVA)]
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
    case = _case([EduDma(0, IOVA), _remap(leaf), EduDma(0, IOVA, True),
                  Commands((inv_pages(DOMAIN, IOVA, 4096), completion_wait(semaphore_slot(1), 1))),
                  EduDma(0, IOVA), RegisterWrite("EXCL_BASE", 0x5000)], memory)
    exp = model_side.expect(case)
    assert _verdict(case, exp, ideal(case, exp)).status == "agree"


def test_a_stale_translation_after_a_completed_wait_is_new():
    memory, leaf = _memory()
    case = _case([EduDma(0, IOVA), _remap(leaf),
                  Commands((inv_pages(DOMAIN, IOVA, 4096), completion_wait(semaphore_slot(1), 1))),
                  EduDma(0, IOVA)], memory)
    exp = model_side.expect(case)
    obs = ideal(case, exp)
    obs.dmas[3] = dataclasses.replace(obs.dmas[3], value=obs.dmas[0].value)  # still page A
    v = _verdict(case, exp, obs)
    assert v.status == "new" and v.shapes() == ["dma-read:other-page"]


def test_a_known_divergence_is_expected_not_new():
    memory, _ = _memory(leaf_fields={"PR": 0, "IR": 1, "IW": 1, "Page Address": A >> 12})
    case = _case([EduDma(0, IOVA)], memory)
    exp = model_side.expect(case)
    assert _spas(exp, 0) == {(False, 0)}
    obs = ideal(case, exp)
    obs.dmas[0] = dataclasses.replace(obs.dmas[0], value=expected_word(case, exp.dmas[0].memory, A))  # QEMU: page A
    obs.events = []  # and, like 7.2, no event
    v = _verdict(case, exp, obs)
    assert v.status == "known"
    assert sorted(k.id for _, ks in v.classified for k in ks) == ["event-log-dead", "leaf-present-ignored"]
    # the same result with the leaf present would be a plain agreement: the recogniser is specific
    obs.dmas[0] = dataclasses.replace(obs.dmas[0], value=expected_word(case, exp.dmas[0].memory, B))
    assert _verdict(case, exp, obs).shapes() == ["dma-read:qemu-ok/spec-blocked"]


def test_a_hang_is_a_finding_and_known_when_the_tail_is_beyond_the_ring():
    memory, _ = _memory()
    case = _case([RegisterWrite("CMD_BUF_TAIL", LAYOUT.ring_bytes)], memory)
    exp = model_side.expect(case)
    obs = Observation(hang=(0, "no reply"))
    v = _verdict(case, exp, obs)
    assert [(m.observable, [k.id for k in ks]) for m, ks in v.classified] == [("hang", ["tail-beyond-ring-hang"])]
    other = _case([EduDma(0, IOVA)], memory)
    v = _verdict(other, model_side.expect(other), Observation(hang=(0, "no reply")))
    assert v.status == "new" and v.shapes() == ["hang:dma"]


# -- a mismatch two known divergences explain together (found by diff-qemu; QEMU 7.2's results recorded) --

STUDY = {sc.case.title: sc for sc in study.cases()}


def _recorded(title, qemu_dma=None):
    """The study case with QEMU 7.2's recorded results: the model's walk everywhere except ``qemu_dma``
    (step -> (write?, the word reached or None))."""
    case = STUDY[title].case
    exp = model_side.expect(case)
    obs = ideal(case, exp)
    obs.events = []  # 7.2 writes no event (event-log-dead)
    for step, spa in (qemu_dma or {}).items():
        d = exp.dmas[step]
        obs.dmas[step] = DmaSeen(step, True, landed=spa) if d.write else \
            DmaSeen(step, False, value=expected_word(case, d.memory, spa) if spa is not None else 0)
    return case, exp, obs


def _names(case, exp, obs, entries=KNOWN):
    mismatches = compare.compare(case, exp, obs)
    return [(m.step, tuple(k.id for k in ks)) for m, ks in known.classify(known.Context(case, exp, obs), mismatches, entries)]


def _without(name):
    return [k for k in KNOWN if k.id != name]


def test_a_cached_entry_that_outlived_a_dte_change_and_lacks_the_permission_is_known_by_both():
    # seed 0 case 77: a write through a write-only 1 GiB leaf, V cleared and invalidated, then a read of the
    # same 4 KiB frame: QEMU's IOTLB entry (filled by the write, kept past the DTE change) refuses the read
    recorded = _recorded("cached fault after detach", {4: None})
    assert _names(*recorded) == [(4, ("cached-permission-fault", "iotlb-before-dte"))]
    # either divergence alone does not explain it: the mismatch is new, not silently half-explained
    assert _names(*recorded, entries=_without("iotlb-before-dte")) == [(4, ())]
    assert _names(*recorded, entries=_without("cached-permission-fault")) == [(4, ())]
    # and the recogniser is specific: a leaf that grants the read leaves nothing to explain a refusal
    giant = STUDY["cached fault after detach"].case
    readable = dict(giant.memory)
    readable[TABLE_POOL + 8] = PTE.encode({"PR": 1, "IR": 1, "IW": 1, "Page Address": GIANT_DATA >> 12})
    case = giant.with_(memory=tuple(sorted(readable.items())))
    exp = model_side.expect(case)
    obs = ideal(case, exp)
    obs.dmas[4] = DmaSeen(4, False, value=0)
    assert _names(case, exp, obs) == [(4, ())]


@pytest.mark.parametrize("title, step, spa, partner", [
    ("skip to NL7", 0, 0x57A0_0008, "skipped-levels-unchecked"),  # seed 2 case 23 (a read there)
    ("reserved to NL7", 0, 0x17A0_0008, "reserved-bits-ignored"),  # seed 8 case 56
])
def test_a_walk_divergence_leading_to_a_refused_next_level_7_leaf_is_known_by_both(title, step, spa, partner):
    recorded = _recorded(title, {step: spa})
    assert dict(_names(*recorded))[step] == (partner, "next-level-7-size-unchecked")
    assert dict(_names(*recorded, entries=_without(partner)))[step] == ()
    assert dict(_names(*recorded, entries=_without("next-level-7-size-unchecked")))[step] == ()
    other_page = _recorded(title, {step: spa + 0x1000})  # not where the 4 GiB page leads
    assert dict(_names(*other_page))[step] == ()


# -- the event log, as read from a QEMU that writes it (7.2 never does: event-log-dead) ----------------------

class EventWritingMachine:
    """A stand-in for :class:`~amdvi.difftest.machine.Machine` whose IOMMU blocks every DMA (a read gets
    0) and whose event log holds ``records`` (16 bytes each, little-endian, as the IOMMU writes them)."""

    def __init__(self, records):
        self.log = b"".join(r.to_bytes(16, "little") for r in records)
        self.memory = {}

    def reset(self): pass
    def enable(self, ring_start=0): pass
    def disable(self): pass
    def load_buffer(self, device, words): pass
    def device_read(self, device, iova, slot): pass
    def store_words(self, words): self.memory.update(words)
    def read_words(self, addresses): return [self.memory.get(a, 0) for a in addresses]
    def read_registers(self, names): return {n: 0 for n in names}
    def unload_buffer(self, device, count): return [0] * count

    def read_bytes(self, address, size):
        assert address == LAYOUT.event_log
        return self.log.ljust(size, b"\0")


def test_event_records_from_qemu_are_compared_with_the_models():
    memory, _ = _memory()
    case = _case([EduDma(0, IOVA + 0x2000)], memory)  # not mapped: IO_PAGE_FAULT, one record
    exp = model_side.expect(case)
    (record,) = exp.certain_events

    def verdict(records):
        obs = qemu_side.run(EventWritingMachine(records), case, exp)
        return obs, _verdict(case, exp, obs)

    obs, v = verdict([record])
    assert obs.events == [record] and v.status == "agree"
    other = record ^ (1 << 64)  # another address in the record
    obs, v = verdict([other])
    assert [(m.observable, m.shape, ks) for m, ks in v.classified] == [
        ("event-missing", "event-missing", ()), ("event-unexpected", "event-unexpected", ())]
    assert f"{other:#034x}" in v.classified[1][0].seen
    _, v = verdict([record, other])  # the right one and an extra
    assert [(m.observable, ks) for m, ks in v.classified] == [("event-unexpected", ())]
    _, v = verdict([])  # 7.2: nothing written, which the known list explains
    assert [(m.observable, [k.id for k in ks]) for m, ks in v.classified] == [("event-missing", ["event-log-dead"])]


# -- two shapes a 10,000-case campaign met once QEMU's recorded answers were classified (seed 0) --------

def _case_of(memory, steps, devices=1):
    from amdvi.difftest.case import from_json
    return from_json({"kind": "amdvi-qemu-case", "version": 1, "title": "t", "devices": devices, "ring_start": "0x0",
                      "memory": {hex(a): hex(v) for a, v in memory.items()}, "steps": steps})


def _dma_step(device, address, access):
    return {"op": "dma", "device": device, "address": hex(address), "access": access}


def _qemu(case, results):
    """QEMU 7.2's results: the model's walk except at ``results`` (step -> DmaSeen), no event."""
    exp = model_side.expect(case)
    obs = ideal(case, exp)
    obs.events = []
    obs.dmas.update(results)
    return case, exp, obs


# case 1397: a Mode 0 write to 0x20000049fda840 (bit 53 set, beyond RAM), then a read of 0x49fdaa58 by the
# same device 00:04.0 (DeviceID 0x20): QEMU's IOTLB key of both is frame | 0x20 << 36, so the read is
# served by the write's entry, at 0x20000049fdaa58, where nothing is (it reads 0)
PASSTHROUGH_DTE = {0x100400: 0x6000000000000003}


def test_an_aliased_iotlb_entry_that_leads_beyond_ram_is_known():
    first = 0x20000049FDA840
    recorded = _qemu(_case_of(PASSTHROUGH_DTE, [_dma_step(1, first, "write"), _dma_step(1, 0x49FDAA58, "read")],
                              devices=2), {0: DmaSeen(0, True, landed=None), 1: DmaSeen(1, False, value=0)})
    assert _names(*recorded) == [(1, ("iotlb-key-aliasing",))]
    assert _names(*recorded, entries=_without("iotlb-key-aliasing")) == [(1, ())]
    # bit 52 instead: the keys differ (0x10000049fda | 0x20 << 36), nothing explains the aborted read
    other = _qemu(_case_of(PASSTHROUGH_DTE, [_dma_step(1, 0x10000049FDA840, "write"), _dma_step(1, 0x49FDAA58, "read")],
                           devices=2), {0: DmaSeen(0, True, landed=None), 1: DmaSeen(1, False, value=0)})
    assert _names(*other) == [(1, ())]


# case 3673: the DTE grants only IW, the 4 GiB Next Level 7 leaf only IR; a write faults (both walks refuse
# it), software makes the leaf writable without an invalidation, the write again: QEMU's IOTLB kept the
# leaf's own permissions (IR) from the first walk and faults on them; the model walks again
WRITE_ONLY_DTE, READ_ONLY_GIANT = 0x4000000000200403, 0x200000000BFFFE01


@pytest.mark.parametrize("leaf, explained", [
    (READ_ONLY_GIANT, ("cached-permission-fault", "cached-permissions-from-leaf")),
    (READ_ONLY_GIANT & ~(1 << 61), ()),  # a leaf granting nothing: no cached permission to fault on
])
def test_a_cached_fault_on_the_leafs_own_permissions_is_known_by_both(leaf, explained):
    memory = {0x100300: WRITE_ONLY_DTE, 0x200000: leaf}
    steps = [_dma_step(0, 0, "write"), {"op": "store", "address": "0x200000", "value": hex(leaf | 1 << 62)},
             _dma_step(0, 0, "write")]
    recorded = _qemu(_case_of(memory, steps), {0: DmaSeen(0, True, landed=None), 2: DmaSeen(2, True, landed=None)})
    assert dict(_names(*recorded))[2] == explained
    if explained:
        assert dict(_names(*recorded, entries=_without("cached-permissions-from-leaf")))[2] == ()
