"""A stage-2 change reaches every guest: the Z3 hardware half holds for any guest and is refuted when the
host's flush misses the maps' DomainIDs or by a broken invalidation; the driver half holds in every state
the search reaches on the correct driver, and the parent-flush fault is found with calls that replay."""

import dataclasses

import pytest

from amdvi.models.amd_driver.choices import Driver
from amdvi.models.iommufd import uapi as U
from amdvi.properties import catalog, parent_flush_search as search, presets, viommu_stage2
from amdvi.properties.proof import PROVED, REFUTED
from amdvi.spec.choices import Hardware

GCR3 = ("gcr3",)  # the quickest obligation (the whole hardware half is the deep test's)


def _statuses(guests, **kw):
    return [r.status for r in viommu_stage2.steps(guests, **kw)]


@pytest.mark.parametrize("guests", [2, 64])
def test_the_hardware_half_holds_for_any_guest(guests):
    assert _statuses(guests, caches=GCR3) == [PROVED]


def test_a_host_flush_of_another_domain_id_leaves_a_guest_slot_stale():
    """The premise carries it: flushing some DomainID other than the ones the maps give is refuted."""
    assert _statuses(8, caches=GCR3, flush_named="other") == [REFUTED]


def test_a_flush_that_keeps_the_pde_cache_is_refuted():
    assert _statuses(8, caches=GCR3, choices=Hardware(invalidate_pages_keeps_pde_cache=True)) == [REFUTED]


def test_a_guest_count_out_of_range_is_refused():
    with pytest.raises(ValueError, match="guests"):
        list(viommu_stage2.steps(1 << 16, caches=GCR3))


@pytest.mark.deep
@pytest.mark.parametrize("guests", [2, 64])
def test_the_whole_hardware_half_holds_and_a_size_blind_flush_refutes_it(guests):
    assert viommu_stage2.prove_hardware(guests).status == PROVED
    broken = viommu_stage2.prove_hardware(guests, choices=Hardware(invalidate_pages_ignores_size=True))
    assert broken.status == REFUTED and "iotlb" in broken.detail


# -- the driver half ---------------------------------------------------------------------------------

DETACHED = Driver(nested_attach_previous="detached")


@pytest.mark.parametrize("reading", ["off", "amd-wip"])
def test_the_correct_driver_flushes_every_guest_domain_id_in_every_state_reached(reading):
    r = search.search(search.Universe(driver=dataclasses.replace(DETACHED, hw_viommu=reading)), 4)
    assert r.holds and r.depth == 4 and r.states > 900 and r.tried > r.states


@pytest.mark.parametrize("reading", ["off", "amd-wip"])
def test_a_parent_flush_that_misses_the_hdomids_is_found_and_replays(reading):
    broken = search.Universe(driver=dataclasses.replace(DETACHED, hw_viommu=reading, parent_flush_misses_hdomids=True))
    r = search.search(broken, 4)
    assert not r.holds
    calls, missed = r.violation
    assert calls[-1].name == U.HwptAlloc.name and any("maps to it" in m.why for m in missed)
    assert search.replay(broken, calls)[0] == list(missed)
    correct = dataclasses.replace(broken, driver=dataclasses.replace(broken.driver, parent_flush_misses_hdomids=False))
    assert search.replay(correct, calls)[0] == []


def _back_to_parent(u):
    """nested-back-to-parent.json's calls: the device on the parent, then nested, then back on the parent
    (seen as no change under the default reading), then the nested HWPT destroyed."""
    a = search.alphabet(u)
    pick = lambda name, **kw: next(c for c in a if c.name == name and all(c.args.get(k) == v for k, v in kw.items()))  # noqa: E731
    return (*search.prefix(u), pick(U.ViommuAlloc.name, hwpt_id=search.PARENT),
            pick(U.HwptAlloc.name, pt_id="viommu0"), pick(U.DeviceAttach.name, device="nic", pt_id=search.PARENT),
            pick(U.DeviceAttach.name, device="nic", pt_id="nested0"),
            pick(U.DeviceAttach.name, device="nic", pt_id=search.PARENT), pick(U.Destroy.name, id="nested0"))


def test_under_the_default_reading_a_device_back_on_its_parent_keeps_an_unflushed_hdomid():
    """The finding of nested-back-to-parent.json seen from the parent: the device's DTE still translates
    with the parent's table under the freed hDomID, which no flush of the parent names."""
    kept = search.Universe()
    claim, stale, _ = search.replay(kept, _back_to_parent(kept))
    assert claim == [] and [m.why for m in stale] == ["the DTE of DeviceID 0x0010 translates with the parent's table"]
    assert search.replay(search.Universe(driver=DETACHED), _back_to_parent(kept))[:2] == ([], [])


def test_the_driver_half_claims_under_detached_and_names_the_default_readings_finding():
    r = viommu_stage2.prove_driver(depth=3)
    assert r.status == PROVED and "under nested-attach-previous=detached" in r.detail
    assert "under the default reading, kept: finding: after" in viommu_stage2.prove_driver(depth=5).detail


def test_the_translate_dte_is_reported_apart_and_only_with_the_hw_viommu():
    wip = search.search(search.Universe(driver=dataclasses.replace(DETACHED, hw_viommu="amd-wip")), 1)
    assert wip.holds and "translate DTE" in wip.translate_misses[1][0].why
    assert search.search(search.Universe(driver=DETACHED), 1).translate_misses is None


def test_a_guest_domain_map_entry_is_read_as_the_hardware_reads_it():
    """With the HW-vIOMMU, the required set holds the hDomID the DomainID map gives for the gDomID."""
    u = search.Universe(driver=dataclasses.replace(DETACHED, hw_viommu="amd-wip"))
    calls = _back_to_parent(u)[:8]  # up to the nested attach, which writes the map entry
    node = search.Node(search.system.boot(u.scenario())[0])
    for c in calls:
        node = search._apply(u.scenario(), node, c, Hardware())
    parent = next(h for h, d in node.system.driver.domains.items() if getattr(d, "nest_parent", False))
    must, _, _ = search.required(u.scenario(), node, parent)
    assert any("DomainID map gives it for gDomID 1" in m.why for m in must)


# -- the catalog and the presets ---------------------------------------------------------------------------


def test_the_driver_preset_is_registered_and_refutes_the_property():
    p = presets.PRESETS["parent-flush-misses-hdomids"]
    assert p.refuted_by == (catalog.STAGE_2,) and p.driver.parent_flush_misses_hdomids and not p.choices.faults()
    assert "hDomIDs" in p.description
    outcome = catalog.run_property(catalog.STAGE_2, p.choices, driver=p.driver)
    assert outcome.result.status == REFUTED and "driver half" in outcome.result.detail


@pytest.mark.parametrize("reading", ["off", "amd-wip"])
def test_a_nested_dte_tagged_with_the_parents_domain_id_is_found(reading):
    """The hardware half assumes a nested DTE carries its map entry's host DomainID: a driver that tags it
    with the parent's breaks that, and (with no device on the parent itself) the parent's flush misses it."""
    r = search.search(search.Universe(driver=dataclasses.replace(DETACHED, hw_viommu=reading,
                                                                 nested_shares_parent_domain_id=True)), 4)
    assert not r.holds and r.violation[0][-1].name == U.DeviceAttach.name
    assert any("its guest's map gives" in m.why for m in r.violation[1])
    assert presets.PRESETS["nested-shares-parent-domain-id"].refuted_by == (catalog.STAGE_2,)


@pytest.mark.deep
@pytest.mark.parametrize("reading", ["off", "amd-wip"])
def test_the_correct_driver_holds_one_call_deeper_than_amdvi_prove(reading):
    r = search.search(search.Universe(driver=dataclasses.replace(DETACHED, hw_viommu=reading)),
                      viommu_stage2.SEARCH_DEPTH + 1)
    assert r.holds and r.depth == viommu_stage2.SEARCH_DEPTH + 1
