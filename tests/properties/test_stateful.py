"""The Hypothesis state machine on the IOMMU model: it passes on the correct model and, within its
default budget (derandomized, as in CI), finds the stale translation of every broken model."""

import dataclasses

import pytest

from amdvi.models.iommu import Dma, Fill, TranslatedDma
from amdvi.models.dma import ServeChoice
from amdvi.properties import stateful
from amdvi.properties.presets import ATTACH_DETACH_MACHINE, IOMMU_MACHINE, PRESETS, caught_by
from amdvi.properties.stateful import StaleTranslation, run_machine
from amdvi.spec.choices import Hardware
from amdvi.spec.translation import Request

BUDGET = dict(max_examples=100, derandomize=True)  # the default budget, as CI runs it


def _choices(presets):
    """The choices with every fault of ``presets`` on."""
    return Hardware().assign(f"{fault}=on" for p in presets for fault in PRESETS[p].choices.faults())


def test_correct_model_serves_only_fresh_translations():
    assert run_machine(**BUDGET) is None


@pytest.mark.parametrize("preset", caught_by(IOMMU_MACHINE))
def test_each_broken_model_is_caught_within_the_default_budget(preset):
    failure = run_machine(PRESETS[preset].choices, shrink=False, **BUDGET)
    assert isinstance(failure, StaleTranslation), failure
    assert "no software change outstanding" in str(failure)


def test_a_caught_failure_shrinks_to_a_short_replayable_trace():
    failure = run_machine(PRESETS["devtab-invalidation-ignored"].choices, **BUDGET)
    assert isinstance(failure, StaleTranslation)
    # the rule steps (Hypothesis also prints the invariant after each and the teardown at the end)
    steps = [n for n in failure.__notes__ if n.startswith("state.")
             and "cached_requests_fresh" not in n and not n.startswith("state.teardown(")]
    # warm-up fills, the DTE rewrite with its commands, the hardware running them; then the stale DMA
    # (which DMAs the shrunk example keeps depends on the draws, and those on where the package is
    # installed: Hypothesis takes constants from the source of modules outside site-packages)
    assert any("move_device" in s for s in steps) and any("state.run(" in s for s in steps), steps
    assert len(steps) <= 5, steps


@pytest.mark.deep
def test_correct_model_holds_under_a_deep_random_exploration():
    assert run_machine(max_examples=2000, derandomize=False) is None


def _machine_with(*presets):
    m = stateful.machine(_choices(presets))()
    return m


def _stale_iotlb_setup(m):
    """Slot 0 of the IOTLB filled for page 0x5000 of device 0x10; then that page is unmapped with a
    two-page range (0x4000..0x5fff) invalidation, and the hardware runs everything."""
    request = Request(stateful.PLAIN_DEVICE, 0x5010)
    m._fill(Fill("iotlb", 0, request))
    memory = dict(m.state.memory)
    for page in (0x4000, 0x5000):
        memory[stateful.entry_address(memory, stateful.DOMAIN_ROOTS[5], page, 1)] = 0
    m.page_table_change(memory, 5, 0x4000, 0x2000, directory=False)
    assert not m.settled()
    m.run(retire=True)
    assert m.settled()
    return request


def test_the_check_tells_a_stale_slot_from_a_fresh_one():
    correct = _machine_with()
    request = _stale_iotlb_setup(correct)
    correct.cached_requests_fresh()  # the slot was invalidated: nothing to report
    correct.access(Dma(request))

    broken = _machine_with("invalidate-pages-ignores-size")
    request = _stale_iotlb_setup(broken)
    with pytest.raises(StaleTranslation, match="iotlb=0"):
        broken.cached_requests_fresh()
    with pytest.raises(StaleTranslation):
        broken.access(Dma(request))  # served from memory as drawn, but the IOTLB may serve it


def test_every_way_of_serving_an_access_is_tried():
    m = _machine_with()
    request = Request(stateful.PLAIN_DEVICE, 0x4010)
    for cache in ("dte", "iotlb", "pde"):
        m._fill(Fill(cache, 0, request))
    choices = {dataclasses.astuple(a.choice) for a in m.alternatives(Dma(request))}
    assert len(choices) == 8  # memory or slot 0, for each of three caches
    translated = list(m.alternatives(TranslatedDma(dataclasses.replace(request, ats=True), 0)))
    assert {a.dte_slot for a in translated} == {None, 0}
    # the v2 device's requests: memory or slot 0 of the DTE, IOTLB, guest page-directory and GCR3 caches
    guest = Request(stateful.GUEST_DEVICE, 0x5018, pasid=1, has_pasid=True)
    for cache in ("iotlb", "guest_pde", "gcr3"):
        m._fill(Fill(cache, 0, guest))
    assert all(m.state.caches.slots(c)[0].valid for c in ("guest_pde", "gcr3"))
    choices = {dataclasses.astuple(a.choice) for a in m.alternatives(Dma(guest))}
    assert len(choices) == 16


def _stale_guest_directory_setup(m):
    """A guest page-directory slot for PASID 1's level-2 entry over GVA 0x5018; software then clears
    that entry (unmapping the 2 MiB region) with its PDE = 1 invalidation, and the hardware runs it."""
    request = Request(stateful.GUEST_DEVICE, 0x5018, pasid=1, has_pasid=True)
    m._fill(Fill("guest_pde", 0, request, step=2))
    assert m.state.caches.guest_pde[0].valid
    memory = dict(m.state.memory)
    root = stateful.guest_root(memory, 1)
    memory[stateful.guest_entry_address(memory, root, 0x5018, 2)] = 0
    m.guest_change(memory, 1, 0, stateful.DIRECTORY_SPAN, directory=True)
    m.run(retire=True)
    assert m.settled()
    return request


def test_the_v2_device_and_its_guest_directory_cache_are_checked():
    correct = _machine_with()
    request = _stale_guest_directory_setup(correct)
    assert not correct.state.caches.guest_pde[0].valid
    correct.cached_requests_fresh()
    correct.access(Dma(request))

    broken = _machine_with("invalidate-pages-keeps-pde-cache")
    request = _stale_guest_directory_setup(broken)
    with pytest.raises(StaleTranslation, match="guest_pde=0"):
        broken.cached_requests_fresh()


def test_outstanding_changes_are_not_checked_until_their_wait_completes():
    broken = _machine_with("invalidate-pages-ignores-size")
    request = Request(stateful.PLAIN_DEVICE, 0x5010)
    broken._fill(Fill("iotlb", 0, request))
    memory = dict(broken.state.memory)
    memory[stateful.entry_address(memory, stateful.DOMAIN_ROOTS[5], 0x5000, 1)] = 0
    broken.page_table_change(memory, 5, 0x5000, 0x1000, directory=False)
    broken.cached_requests_fresh()  # stale, but software has not seen its wait complete
    broken.access(Dma(request))


def test_the_processor_run_ends_when_processing_has_stopped():
    from amdvi.models import software as sw
    m = _machine_with()
    bad = 1  # opcode 00h is undefined: ILLEGAL_COMMAND_ERROR, and processing stops
    for move in sw.queue_moves(m.state, stateful.LAYOUT, [bad]):
        m._step(move)
    m.run(retire=True)  # returns although the command stays at the head
    assert m.command_pending()


def _attach_detach(*presets):
    return stateful.machine(_choices(presets), stateful.AttachDetachMachine)


def test_attach_detach_machine_holds_on_the_correct_model_and_catches_a_devtab_bug():
    assert run_machine(machine_class=_attach_detach(), **BUDGET) is None
    assert caught_by(ATTACH_DETACH_MACHINE)
    for preset in caught_by(ATTACH_DETACH_MACHINE):
        failure = run_machine(machine_class=_attach_detach(preset), shrink=False, **BUDGET)
        assert isinstance(failure, StaleTranslation), (preset, failure)


def _attach_after_detach(m):
    """Device 0x10 detached (V = 0) and its DTE cached as such; software then attaches it to domain 5
    with INVALIDATE_DEVTAB_ENTRY, and the hardware runs everything."""
    request = Request(stateful.PLAIN_DEVICE, 0x4010)
    detached = stateful.shaped_dte(stateful.DETACHED, 5, ats=False)
    m.change(stateful.sw.write_dte(m.state.memory, stateful.LAYOUT, stateful.PLAIN_DEVICE, detached),
             [stateful.sw.inv_devtab(stateful.PLAIN_DEVICE), stateful.sw.inv_pages(5)], [request])
    m.run(retire=True)
    m._fill(Fill("dte", 0, request))
    assert m.state.caches.dte[0].valid and m.state.caches.dte[0].dte == 0
    attached = stateful.shaped_dte(stateful.ATTACHED, 5, ats=False)
    m.change(stateful.sw.write_dte(m.state.memory, stateful.LAYOUT, stateful.PLAIN_DEVICE, attached),
             [stateful.sw.inv_devtab(stateful.PLAIN_DEVICE)], [request])
    m.run(retire=True)
    assert m.settled()
    return request


def test_attaching_a_detached_device_clears_its_cached_v0_entry():
    correct = _attach_detach()()
    request = _attach_after_detach(correct)
    assert not correct.state.caches.dte[0].valid
    correct.cached_requests_fresh()
    correct.access(Dma(request))

    broken = _attach_detach("devtab-invalidation-skips-invalid")()
    _attach_after_detach(broken)
    with pytest.raises(StaleTranslation, match="dte=0"):  # the device DMAs untranslated after the attach
        broken.cached_requests_fresh()


def test_every_dte_shape_is_drawn_and_some_do_not_translate():
    shapes = {stateful.shaped_dte(s, 6, ats=True) for s in stateful.DTE_SHAPES}
    assert len(shapes) == len(stateful.DTE_SHAPES)
    assert {stateful.translates(d) for d in shapes} == {True, False}
    rules = {name for name, f in vars(stateful.AttachDetachMachine).items() if hasattr(f, "hypothesis_stateful_rule")}
    assert rules == {"rewrite_dte", "prefetch"}


# -- the draws: one value of a tuple per choice, weighted as the composite strategies were --------


def test_balanced_groups_are_equally_likely_and_uniform_within():
    values = stateful.balanced([("a",), ("b", "c"), (), ("d", "e", "f")])
    counts = {v: values.count(v) for v in set(values)}
    assert counts["a"] == 2 * counts["b"] == 3 * counts["d"]
    assert counts["b"] == counts["c"] and counts["d"] == counts["e"] == counts["f"]
    big = stateful.balanced([tuple(range(7)), tuple(range(100, 111)), tuple(range(200, 213))])  # lcm too large
    assert len(big) <= 2 * stateful.MAX_OPTIONS and set(big) == set(range(7)) | set(range(100, 111)) | set(range(200, 213))


def test_favoured_values_are_drawn_half_the_time():
    values = stateful._favoured_values((1, 2, 3, 4, 5), (2,))  # half the time 2, half any of the five
    assert sum(v == 2 for v in values) / len(values) == pytest.approx(0.5 + 0.5 / 5)
    assert stateful._favoured_values((1, 2, 3), ()) == (1, 2, 3)


def test_the_draws_cover_every_move_the_composite_strategies_made():
    fills = {(f.cache, f.slot, f.request, f.step) for f in stateful.FILLS}
    for cache in stateful.FILLED_CACHES:
        devices = {"pde": stateful.DEVICES, "guest_pde": (stateful.GUEST_DEVICE,), "gcr3": (stateful.GUEST_DEVICE,),
                   "device_iotlb": (stateful.ATS_DEVICE,)}.get(cache, stateful.ALL_DEVICES)
        ats = cache == "device_iotlb"
        for device in devices:
            for request in stateful.device_requests(device, ats=ats):
                for step in stateful.DIRECTORY_STEPS.get(cache, (0,)):
                    assert (cache, 0, request, step) in fills
    branches = stateful.CACHE_MOVES.element_strategies  # each equally likely: a cache's fills, or an eviction
    assert [set(b.elements) for b in branches].count(set(stateful.EVICTS)) == 1 and len(branches) == 7
    assert set().union(*(b.elements for b in branches)) == set(stateful.FILLS) | set(stateful.EVICTS)
    # requests: any request of the devices, and each group near a change or a slot, in both directions
    near = Request(stateful.PLAIN_DEVICE, 0x5010, ats=True)
    drawn = set(stateful._requests_near(stateful.ALL_DEVICES, (near,), ()).elements)
    assert set(stateful.any_request(stateful.ALL_DEVICES)) <= drawn
    assert {Request(stateful.PLAIN_DEVICE, 0x5010, write=w) for w in (False, True)} <= drawn
    # every tuple drawn from is short enough for Hypothesis to draw its index uniformly
    for values in (drawn, stateful.FILLS, *(b.elements for b in branches),
                   stateful._requests_near(stateful.ALL_DEVICES, tuple(stateful.any_request((0x10,))[:10]),
                                           tuple(stateful.device_requests(0x12)[:6])).elements):
        assert len(values) <= stateful.MAX_OPTIONS
    # the slots serving an access: every combination of memory and a valid slot per cache
    choices = set(stateful._serve_choices(("dte", "iotlb"), (((None, 0), (0,)), ((None, 0), ()))).elements)
    assert choices == {ServeChoice(dte=d, iotlb=i) for d in (None, 0) for i in (None, 0)}
