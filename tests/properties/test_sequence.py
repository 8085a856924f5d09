"""The properties along a run of software steps: each fails on a broken sequence and holds on the right one."""

import pytest

from amdvi.models import software as sw
from amdvi.models.timeline import Queue, Store, Wait
from amdvi.properties import sequence, timeline_run as tr
from amdvi.properties.cache_windows import Windows, requests_for
from amdvi.spec.choices import Hardware

L = sw.Layout()
ROOT, DOMAIN, DEVICE = 0x50_0000, 5, 1
IOVA, FRAME, OTHER = 0x1000, 0x90_0000, 0x91_0000
MAPPED = sequence.Frames(((FRAME, 0x1000, True, True),))
BLOCKED_DTE = sw.dte(V=1, TV=1)  # what Linux writes into every DTE at boot


def _dte_words(dte: int) -> list[tuple[int, int]]:
    return [(L.dte_address(DEVICE) + 8 * i, (dte >> (64 * i)) & (2 ** 64 - 1)) for i in range(4)]


def _flush(seq: int, commands: list[int]) -> list:
    return [Queue(tuple(commands + [sw.completion_wait(L.semaphore, seq)])), Wait(seq, L.semaphore)]


def _run(unmap_commands: list[int], *, choices: Hardware = Hardware(), remap: bool = False):
    """Attach (v1, Mode 3), map IOVA -> FRAME, unmap with ``unmap_commands``; ``remap``: then map IOVA
    to OTHER. Returns the run and the promise (frames allowed, settled points)."""
    mapped = sw.v1_map({}, ROOT, 3, IOVA, FRAME, ROOT + 0x1000)
    run = tr.start(L, dict(_dte_words(BLOCKED_DTE)), choices=choices)
    promise = sequence.Promise(requester_ids=(DEVICE,))
    words = _dte_words(sw.v1_dte(DOMAIN, ROOT, 3))

    def allow(frames_before, frames_after, steps, label):
        start = run.now
        tr.perform(run, steps, label)
        promise.frames.extend([{DEVICE: frames_before | frames_after}] * (run.now - start))
        promise.frames[-1] = {DEVICE: frames_after}
        promise.settled.append(run.now)

    promise.frames.append({DEVICE: sequence.Frames()})
    allow(sequence.Frames(), MAPPED, [Store(tuple(sorted(mapped.memory.items())))], "map")
    allow(MAPPED, MAPPED, [Store(tuple(words[2:])), Store(tuple(words[:2]))]
          + _flush(1, [sw.inv_devtab(DEVICE)]), "attach")
    allow(MAPPED, sequence.Frames(), [Store(((mapped.leaf_address, 0),))] + _flush(2, unmap_commands), "unmap")
    if remap:
        again = sw.v1_map(mapped.memory, ROOT, 3, IOVA, OTHER, ROOT + 0x3000)
        other = sequence.Frames(((OTHER, 0x1000, True, True),))
        allow(sequence.Frames(), other, [Store(((again.leaf_address, again.memory[again.leaf_address]),))],
              "map again")
    tr.finish(run)
    return Windows(run, requests_for([DEVICE], [IOVA])), promise


def test_unmap_with_flush_and_wait_keeps_isolation_and_flushes():
    windows, promise = _run([sw.inv_pages(DOMAIN, IOVA, 0x1000)])
    assert sequence.check(windows, promise) == {name: [] for name in sequence.SEQUENCE_PROPERTIES}


def test_unmap_without_flush_is_refuted_with_a_stale_iotlb_or_pde_entry():
    windows, promise = _run([])
    found = sequence.check(windows, promise)
    [v] = found[sequence.ISOLATION]
    assert v.request.address == IOVA and v.served.result.spa == FRAME and v.served.used
    assert found[sequence.FLUSH]


def test_a_flush_of_another_domain_does_not_count():
    windows, promise = _run([sw.inv_pages(DOMAIN + 1, IOVA, 0x1000)])
    assert sequence.isolation(windows, promise)


def test_an_early_completion_wait_leaves_the_flush_unforced():
    """Under the completion-wait-early fault, the wait says nothing about the invalidation."""
    windows, promise = _run([sw.inv_pages(DOMAIN, IOVA, 0x1000)], choices=Hardware(completion_wait_early=True))
    assert sequence.isolation(windows, promise)


def test_remapping_an_unflushed_iova_serves_the_old_frame():
    windows, promise = _run([], remap=True)
    v = sequence.isolation(windows, promise)[0]
    assert v.served.result.spa == FRAME


def test_dte_invalidation_missing_leaves_the_blocked_dte_cached_and_the_tables_disagree():
    mapped = sw.v1_map({}, ROOT, 3, IOVA, FRAME, ROOT + 0x1000)
    run = tr.start(L, dict(_dte_words(BLOCKED_DTE)))
    words = _dte_words(sw.v1_dte(DOMAIN, ROOT, 3))
    tr.perform(run, [Store(tuple(sorted(mapped.memory.items()))), Store(tuple(words[2:])), Store(tuple(words[:2]))]
               + _flush(1, []))
    tr.finish(run)
    windows = Windows(run, requests_for([DEVICE], [IOVA]))
    promise = sequence.Promise(frames=[{DEVICE: MAPPED}] * (run.now + 1), settled=[run.now], requester_ids=(DEVICE,))
    [v] = sequence.flush_completeness(windows, promise)
    assert [kind for kind, _, _ in v.served.used] == ["dte"] and not v.served.ok


def test_torn_dte_is_a_half_written_entry_that_translates_elsewhere():
    """A driver that passes through a DTE with another root on its way: a DMA between the stores is
    translated by tables neither the old nor the new DTE names."""
    other_root = 0x60_0000
    memory = {**sw.v1_map({}, ROOT, 3, IOVA, FRAME, ROOT + 0x1000).memory,
              **sw.v1_map({}, other_root, 3, IOVA, OTHER, other_root + 0x1000).memory, **dict(_dte_words(BLOCKED_DTE))}
    run = tr.start(L, memory)
    detour, final = _dte_words(sw.v1_dte(DOMAIN, other_root, 3)), _dte_words(sw.v1_dte(DOMAIN, ROOT, 3))
    tr.perform(run, [Store(tuple(detour[:2])), Store(tuple(final[:2]))])
    tr.finish(run)
    windows = Windows(run, requests_for([DEVICE], [IOVA]))
    promise = sequence.Promise(dte_updates=[sequence.DteUpdate(DEVICE, 1, 2, "test")], requester_ids=(DEVICE,))
    [v] = sequence.torn_dte(windows, promise)
    assert v.at == 1
    right = tr.start(L, memory)
    tr.perform(right, [Store(tuple(final[:2]))])
    assert sequence.torn_dte(Windows(tr.finish(right), requests_for([DEVICE], [IOVA])),
                             sequence.Promise(dte_updates=[sequence.DteUpdate(DEVICE, 1, 1)])) == []


def test_one_domain_id_for_two_tables_at_once_is_refuted():
    second = 2
    other_root = 0x60_0000
    dte_a, dte_b = sw.v1_dte(DOMAIN, ROOT, 3), sw.v1_dte(DOMAIN, other_root, 3)
    run = tr.start(L, {**dict(_dte_words(dte_a)),
                       **{L.dte_address(second) + 8 * i: (dte_b >> (64 * i)) & (2 ** 64 - 1) for i in range(4)}})
    tr.finish(run)
    windows = Windows(run, [])
    assert sequence.domain_ids(windows, sequence.Promise(requester_ids=(DEVICE, second)))
    assert sequence.domain_ids(windows, sequence.Promise(requester_ids=(DEVICE,))) == []


def test_a_hang_is_recorded_when_the_processor_stops():
    run = tr.start(L)
    bad = 0x0F << 60  # an undefined opcode: the processor stops (illegal-command reading "stop")
    tr.perform(run, [Queue((bad, sw.completion_wait(L.semaphore, 1))), Wait(1, L.semaphore)])
    assert run.hangs and "never stored" in run.hangs[0][1]
    go_on = tr.start(L, choices=Hardware(illegal_command="continue"))
    tr.perform(go_on, [Queue((bad, sw.completion_wait(L.semaphore, 1))), Wait(1, L.semaphore)])
    assert not go_on.hangs


@pytest.mark.parametrize("wrapped", [False, True])
def test_many_commands_wrap_the_ring_and_each_window_is_recorded(wrapped):
    run = tr.start(L)
    n = 300 if wrapped else 10  # the ring holds 255
    for k in range(n):
        tr.perform(run, [Queue((sw.inv_pages(DOMAIN),))])
    tr.perform(run, [Queue((sw.completion_wait(L.semaphore, 7),)), Wait(7, L.semaphore)])
    tr.finish(run)
    assert len(run.invalidations) == n and not run.hangs
    assert all(q.queued_at <= q.completed_at for q in run.invalidations)


def test_a_value_refilled_after_its_invalidation_outlives_it():
    """A fill may happen at any boundary where a walk gives the value, also after an invalidation that
    cleared an earlier fill of it, while memory stays the same: an unmap that then skips its flush is
    refuted although the only recomputed walk came before that invalidation."""
    mapped = sw.v1_map({}, ROOT, 3, IOVA, FRAME, ROOT + 0x1000)
    words = _dte_words(sw.v1_dte(DOMAIN, ROOT, 3))

    def run_with(unmap_commands):
        run = tr.start(L, {**mapped.memory, **dict(_dte_words(BLOCKED_DTE))})
        tr.perform(run, [Store(tuple(words[2:])), Store(tuple(words[:2]))]
                   + _flush(1, [sw.inv_devtab(DEVICE), sw.inv_pages(DOMAIN, IOVA, 0x1000)]))
        mapped_until = run.now
        tr.perform(run, [Store(((mapped.leaf_address, 0),))] + _flush(2, unmap_commands))
        tr.finish(run)
        frames = [{DEVICE: MAPPED}] * (mapped_until + 1) + [{DEVICE: MAPPED}] * (run.now - mapped_until - 1)
        promise = sequence.Promise(frames=frames + [{DEVICE: sequence.Frames()}], settled=[mapped_until, run.now],
                                   requester_ids=(DEVICE,))
        return Windows(run, requests_for([DEVICE], [IOVA])), promise

    windows, promise = run_with([])
    [v] = sequence.flush_completeness(windows, promise)
    assert v.served.used and v.served.result.spa == FRAME
    assert sequence.flush_completeness(*run_with([sw.inv_pages(DOMAIN, IOVA, 0x1000)])) == []
