"""Invalidation completeness (Z3 inductive step), its minimality, COMPLETION_WAIT ordering, and the
broken models and sequences that must refute them, with counterexamples replayed on Python ints."""

import pytest

from amdvi.properties import catalog, invalidation, ordering, serving
from amdvi.properties.counterexample import replay, trace_from
from amdvi.properties.proof import PROVED, REFUTED
from amdvi.properties.presets import PRESETS
from amdvi.spec.choices import Hardware

SLOW = {("v1-entry", "iotlb", "nested"), ("v1-entry", "guest_pde", "nested")}


def _query_params():
    for change, cache, profile, stale in invalidation.QUERIES:
        marks = [pytest.mark.deep] if (change, cache, profile) in SLOW else []
        yield pytest.param(change, cache, profile, stale, id=f"{change}/{cache}/{profile}", marks=marks)


@pytest.mark.parametrize("change,cache,profile,stale", list(_query_params()))
def test_required_invalidations_keep_every_slot_fresh(change, cache, profile, stale):
    # a stale witness is shown satisfiable first where the change can affect the cache (not vacuous)
    r = invalidation.fresh_after_change(change, cache, profile, stale_possible=stale)
    assert r.status == PROVED, r.detail


@pytest.mark.parametrize("change,cache,profile", [("v1-entry", "iotlb", "v1"), ("gcr3-entry", "gcr3", "v2"),
                                                  ("dte", "dte", "v1")])
def test_without_any_invalidation_the_slot_goes_stale(change, cache, profile):
    labels = invalidation.required_labels(change, profile)
    r = invalidation.fresh_after_change(change, cache, profile, stale_possible=False, observe=True,
                                        corrupt=lambda req: invalidation.Required(req.label, req.command, False))
    assert r.status == REFUTED
    result = replay(trace_from(r.evidence, r.model))
    assert result.stale, result.summary()
    assert labels  # the change does require something


def test_every_fault_switch_is_a_preset_with_a_property_to_refute_it():
    """Every hardware fault; and the driver faults a property with a driver half refutes (the others are
    refuted by `amdvi check` on the library's bug sequences)."""
    faults = {n.replace("_", "-") for n, o in Hardware.options().items() if o.kind == "fault"}
    assert {name for name, p in PRESETS.items() if not p.driver.faults()} == faults
    for p in PRESETS.values():
        assert p.refuted_by and set(p.refuted_by) <= set(catalog.PROPERTIES), p.name
        assert len(p.choices.faults()) + len(p.driver.faults()) == 1, p.name
        assert not p.driver.faults() or all(catalog.PROPERTIES[n].takes_driver for n in p.refuted_by), p.name


@pytest.mark.parametrize("preset,name", [(p.name, n) for p in PRESETS.values() for n in p.refuted_by
                                         if n != "nested-isolation"])  # that one: test_isolation.py
def test_each_broken_model_refutes_its_properties(preset, name):
    # holding on the correct model: the query tests above (and -m deep)
    outcome = catalog.run_property(name, choices=PRESETS[preset].choices, driver=PRESETS[preset].driver)
    assert outcome.result.status == REFUTED, outcome.result.detail
    if outcome.trace is not None:  # a stale access replayed on the broken model ...
        assert outcome.replay.stale and outcome.replay.reproduces, outcome.replay.summary()
        # ... and the same trace does not show it on the correct model
        assert not replay(outcome.trace, choices=Hardware()).reproduces


def test_completion_wait_ordering_holds_and_its_mutant_breaks_it():
    assert ordering.wait_after_invalidations().status == PROVED
    assert ordering.wait_after_invalidations(choices=Hardware(completion_wait_early=True)).status == REFUTED


@pytest.mark.parametrize("change", list(invalidation.CHANGES))
def test_every_required_invalidation_is_needed(change):
    outcome = catalog.run_property(f"{change}-minimal")
    assert outcome.result.status == PROVED, outcome.result.detail
    assert outcome.parts and all(p.status == REFUTED for p in outcome.parts)
    assert all(p.detail.startswith("STALE") for p in outcome.parts)
    # the list: a missing PDE flush after a directory change, a range without its S bit
    names = {p.name for p in outcome.parts}
    if change == "v1-entry":
        assert {"v1-entry: PDE bit clear", "v1-entry: S bit clear", "v1-entry: wrong DomainID"} <= names
    if change == "v2-entry":  # the guest-dimension directory cache needs PDE = 1 too
        assert {"v2-entry: PDE bit clear", "v2-entry: S bit clear", "v2-entry: wrong PASID"} <= names


def test_the_surviving_slot_of_the_pde_mutant_on_a_guest_change_is_a_guest_directory_slot():
    outcome = catalog.run_property("v2-entry-invalidation", choices=Hardware(invalidate_pages_keeps_pde_cache=True))
    assert outcome.result.status == REFUTED and "/guest_pde/" in outcome.result.detail


SLOW_SERVING = {("iotlb", "nested"), ("gcr3", "nested"), ("guest_pde", "nested")}


@pytest.mark.parametrize("cache,profile", [
    pytest.param(c, p, id=f"{c}/{p}", marks=[pytest.mark.deep] if (c, p) in SLOW_SERVING else [])
    for c, p in serving.QUERIES])
def test_a_fresh_slot_serves_every_request_as_the_fresh_walk(cache, profile):
    r = serving.serves_fresh(cache, profile)  # its witness: a filled slot serving another address
    assert r.status == PROVED, r.detail


def test_a_cached_host_directory_serves_fresh_on_a_table_that_can_skip_levels():
    # three levels: the root may skip to level 1; the fill refuses an entry the walk faults on
    # (skipped-level address bits set), which the pde-cache-fills-faulting-skip preset caches
    broken = PRESETS["pde-cache-fills-faulting-skip"].choices
    assert serving.serves_fresh("pde", "v1-mode3").status == PROVED
    assert serving.serves_fresh("pde", "v1-mode3", choices=broken).status == REFUTED
    # two levels leave nothing to skip: the Mode 2 queries alone hold on the broken fill too
    assert serving.serves_fresh("pde", "v1", choices=broken).status == PROVED


def test_every_host_depth_is_covered_once():
    depths = {int(p.removeprefix("v1-mode")) for _, p in serving.DEPTH_QUERIES}
    assert depths | {invalidation.PROFILES["v1"].fixed["Mode"]} == set(range(1, 7))
    assert {p for *_, p, _ in invalidation.DEPTH_QUERIES} == {p for _, p in serving.DEPTH_QUERIES}
    assert "every-host-depth" in catalog.PROPERTIES and "every-host-depth" not in catalog.DEFAULT


@pytest.mark.deep
def test_every_host_depth_proved():
    outcome = catalog.run_property("every-host-depth")
    assert outcome.result.status == PROVED, outcome.result.detail


def test_a_gcr3_entry_the_walk_faults_on_is_not_cached():
    # found by the serving query: a cached entry with reserved bits set used to skip the walk's check
    from amdvi.models.caches import gcr3_fill
    from amdvi.spec.bitvec import INT
    from amdvi.spec.guest_page_table import GCR3_ENTRY
    from amdvi.spec.translation import Outcome, Request
    from amdvi.spec.walk_types import GUEST, WalkStep

    def slot_for(entry):
        step = WalkStep("GCR3", GUEST, 0, 0x1000, entry, True, True, True)
        fresh = Outcome(ok=False, spa=0, page_shift=12, readable=True, writable=True, domain_id=1, logged=True,
                        event=0, dimension=GUEST, steps=(step,), guest=True, walked=True)
        return gcr3_fill(INT, Request(0x10, 0, pasid=1, has_pasid=True), fresh)

    good = GCR3_ENTRY.encode(V=1, GCR3=0x2000 >> 12)
    assert slot_for(good).valid
    assert not slot_for(good | GCR3_ENTRY.reserved_mask & -GCR3_ENTRY.reserved_mask).valid  # one reserved bit


@pytest.mark.deep
@pytest.mark.parametrize("name", catalog.DEFAULT)
def test_every_default_property_proved(name):
    assert catalog.run_property(name).result.status == PROVED


# --- the sizes a query ranges over (bench/bench_scale.py) -----------------------------------------------

def _holds(*facts):
    import z3
    s = z3.Solver()
    s.add(*facts)
    return s.check() == z3.sat


def test_more_devices_put_their_dtes_in_the_table_and_their_iotlb_invalidations_in_the_protocol():
    b, v1 = invalidation.b, invalidation.PROFILES["v1"]
    four = invalidation.build_query("v1-entry", "device_iotlb", "v1", sizes=invalidation.Sizes(devices=4))
    memory, ghost = four.symbols.memory, invalidation.DEVICE
    view = lambda device: invalidation.DTE.view(invalidation.read_dte(memory, device), b)  # noqa: E731
    # each of the four is a v1 DTE with its own free DomainID; the next DeviceID's entry is all zero
    assert not _holds(invalidation.read_dte(memory, ghost) != four.symbols.dte)
    assert _holds(view(ghost + 1).domainid == 5, view(ghost + 3).domainid == 7, view(ghost + 3).v == 1)
    assert not _holds(view(ghost + 3).mode != 2) and not _holds(invalidation.read_dte(memory, ghost + 4) != 0)
    one = invalidation.build_query("v1-entry", "device_iotlb", "v1")
    ats = [r for r in four.situation.required if r.label == invalidation.protocol.EACH_ATS_DEVICE]
    assert len(ats) == 4 and len(four.situation.required) == len(one.situation.required) + 3
    # the changed DTE may be any of the four (its four words stored at its address), not a fifth
    dte = invalidation.build_query("dte", "dte", "v1", sizes=invalidation.Sizes(devices=4))
    first = dte.situation.writes[0][0]
    assert len(dte.situation.writes) == 4 and dte.situation.device_table
    for device, possible in ((ghost, True), (ghost + 3, True), (ghost + 4, False)):
        assert _holds(*dte.symbols.bounds, first == invalidation.LAYOUT.dte_address(device)) == possible
    assert v1.fixed["Mode"] == 2


@pytest.mark.parametrize("profile", list(invalidation.PROFILES))
def test_a_shaped_dte_is_exactly_a_dte_of_its_profile(profile):
    # the device table's other DTEs (free memory under the shape) are the DTEs profile_dte builds
    import z3
    p = invalidation.PROFILES[profile]
    shape = invalidation._dte_shape(p)
    keep = sum(k << 64 * i for i, k in enumerate(shape.keep))
    fixed = sum(f << 64 * i for i, f in enumerate(shape.fixed))
    built = invalidation.profile_dte(p, "t")
    assert not _holds(built & ~keep != fixed)  # every DTE of the profile has the shape ...
    x = z3.BitVec("x", 256)  # ... and every word with the shape is one (its fields read back)
    fields = {name: invalidation.DTE.field(name).read(x, invalidation.b) for name in p.free}
    again = invalidation.DTE.encode({**p.fixed, **fields}, backend=invalidation.b)
    assert not _holds(x & ~keep == fixed, again != x)


def test_at_64_devices_the_dte_change_is_proved_and_an_ignored_invalidation_replays_stale():
    sizes = invalidation.Sizes(devices=64)
    assert invalidation.fresh_after_change("dte", "dte", "v1", sizes=sizes).status == PROVED
    broken = PRESETS["devtab-invalidation-ignored"].choices
    r = invalidation.fresh_after_change("dte", "dte", "v1", choices=broken, observe=True, sizes=sizes)
    assert r.status == REFUTED
    trace = trace_from(r.evidence, r.model)
    assert replay(trace, choices=broken).reproduces and not replay(trace, choices=Hardware()).reproduces


@pytest.mark.parametrize("sizes,variable,inside,outside", [
    (invalidation.Sizes(domains=4), "domain", 4, 5), (invalidation.Sizes(domains=4), "domain", 1, 0),
    (invalidation.Sizes(pasids=4), "pasid", 3, 4), (invalidation.Sizes(devices=4), "changed_device", 0x13, 0x14)])
def test_the_sizes_bound_the_query_variables(sizes, variable, inside, outside):
    import z3
    v = invalidation.symbols(invalidation.PROFILES["v2" if variable == "pasid" else "v1"], sizes)
    for value, sat in ((inside, z3.sat), (outside, z3.unsat)):
        s = z3.Solver()
        s.add(*v.bounds, getattr(v, variable) == value)
        assert s.check() == sat


def test_a_query_assumes_its_bounds():
    q = invalidation.build_query("v2-entry", "iotlb", "v2", sizes=invalidation.Sizes(domains=3, pasids=5))
    assert q.symbols.bounds and all(any(bound.eq(a) for a in q.assumptions) for bound in q.symbols.bounds)


def test_sizes_out_of_range_are_refused():
    for bad in ({"devices": 0}, {"devices": 200}, {"domains": 0}, {"pasids": 1 << 20}):
        with pytest.raises(ValueError):
            invalidation.Sizes(**bad)
