"""Each fault switch changes the emitted steps as its description says (the correct driver is the
same scenario with the switch off)."""

from amdvi.models.amd_driver import Driver
from amdvi.models.amd_driver.decode import commands, dte_at
from amdvi.spec.device_table import DTE

from driver_helpers import ATS, PLAIN, make, ok, paging
from test_nested import GOOD, data, world


def unmapped(fault=None, device=PLAIN, **config):
    driver = make(choices=Driver(**({fault: True} if fault else {})), **config)
    state, handle = paging(driver, driver.initial_state())
    state = ok(driver.attach(state, device, handle)).state
    state = ok(driver.map(state, handle, 0x4000, 0x1_0000_0000, 0x4000, readable=True, writable=True)).state
    return ok(driver.unmap(state, handle, 0x4000, 0x4000))


def names(result):
    return [c.name for c in commands(result.steps)]


def test_unmap_skips_flush():
    assert names(unmapped()) == ["INVALIDATE_IOMMU_PAGES", "COMPLETION_WAIT"]
    assert names(unmapped("unmap_skips_flush")) == []


def test_flush_range_too_small():
    assert commands(unmapped().steps)[0].range() == (0x4000, 0x4000)
    assert commands(unmapped("flush_range_too_small").steps)[0].range() == (0x4000, 0x1000)


def test_skip_device_iotlb_flush():
    assert "INVALIDATE_IOTLB_PAGES" in names(unmapped(device=ATS))
    assert "INVALIDATE_IOTLB_PAGES" not in names(unmapped("skip_device_iotlb_flush", device=ATS))


def test_skip_alias_flush():
    def attached(**choices):
        driver = make(choices=Driver(**choices))
        state, handle = paging(driver, driver.initial_state())
        result = ok(driver.attach(state, ATS, handle))
        return driver, result
    driver, good = attached()
    _, bad = attached(skip_alias_flush=True)
    alias = driver.config.layout.dte_address(0x11)
    assert DTE.view(dte_at(good.state.memory, alias))["TV"] == 1
    assert DTE.view(dte_at(bad.state.memory, alias))["TV"] == 1  # the DTE is cloned, only its flush is missing
    assert 0x11 in [c.fields["DeviceID"] for c in commands(good.steps) if c.name == "INVALIDATE_DEVTAB_ENTRY"]
    devtab = [c.fields["DeviceID"] for c in commands(bad.steps) if c.name == "INVALIDATE_DEVTAB_ENTRY"]
    assert 0x11 not in devtab


def test_domain_id_freed_before_flush_reuses_the_id_with_no_flush():
    def reuse(**choices):
        driver = make(choices=Driver(**choices))
        state, handle = paging(driver, driver.initial_state())
        state = ok(driver.attach(state, PLAIN, handle)).state
        blocked = ok(driver.block(state, PLAIN))
        state = ok(driver.domain_free(blocked.state, handle)).state
        state, again = paging(driver, state)
        return blocked, state.domains[again].domain_id
    good, good_id = reuse()
    bad, bad_id = reuse(domain_id_freed_before_flush=True)
    assert good_id == bad_id == 1
    assert [c.fields["DomainID"] for c in commands(good.steps) if c.name == "INVALIDATE_IOMMU_PAGES"] == [1]
    assert "INVALIDATE_IOMMU_PAGES" not in [c.name for c in commands(bad.steps)]


def test_gdte_not_validated_accepts_and_copies_a_guest_stage_2():
    driver = make(choices=Driver(gdte_not_validated=True))
    state, parent, viommu = world(driver)
    guest = {**GOOD, "Mode": 4, "Host Page Table Root Pointer": 0xABC, "GLX": 3}
    correct = make()
    good_state, _, good_viommu = world(correct)
    assert correct.domain_alloc_nested(good_state, PLAIN, good_viommu, 3, data(guest)).errno == 22
    result = ok(driver.domain_alloc_nested(state, PLAIN, viommu, 3, data(guest)))
    state = ok(driver.attach(result.state, PLAIN, result.value)).state
    dte = DTE.view(dte_at(state.memory, driver.config.layout.dte_address(PLAIN.device_id)))
    assert (dte["Mode"], dte["Host Page Table Root Pointer"], dte["GLX"]) == (4, 0xABC, 3)


def test_flush_queue_releases_early():
    def lazy_unmap(**choices):
        driver = make(lazy=True, choices=Driver(**choices))
        state, handle = paging(driver, driver.initial_state())
        state = ok(driver.attach(state, PLAIN, handle)).state
        state = ok(driver.map(state, handle, 0x20_0000, 0x1_0000_0000, 0x1000, readable=True, writable=True)).state
        return state, ok(driver.unmap(state, handle, 0x20_0000, 0x20_0000))
    before, good = lazy_unmap()
    _, bad = lazy_unmap(flush_queue_releases_early=True)
    assert good.value is False and good.state.pool_used == before.pool_used
    assert bad.value is True and len(bad.state.pool_used) == len(before.pool_used) - 1
    assert commands(bad.steps) == []  # released with no flush yet


def test_parent_flush_misses_hdomids():
    def parent_unmap(**choices):
        driver = make(choices=Driver(**choices))
        state, parent, viommu = world(driver)
        state = ok(driver.domain_alloc_nested(state, PLAIN, viommu, 3, data(GOOD))).state
        state = ok(driver.map(state, parent, 0, 0x1_0000_0000, 0x1000, readable=True, writable=True)).state
        return [c.fields["DomainID"] for c in commands(ok(driver.unmap(state, parent, 0, 0x1000)).steps)
                if c.name == "INVALIDATE_IOMMU_PAGES"]
    assert len(parent_unmap()) == 2 and parent_unmap(parent_flush_misses_hdomids=True) == [1]


def test_np_cache_map_no_flush():
    def mapped(**choices):
        driver = make(np_cache=True, choices=Driver(**choices))
        state, handle = paging(driver, driver.initial_state())
        state = ok(driver.attach(state, PLAIN, handle)).state
        return ok(driver.map(state, handle, 0, 0x1_0000_0000, 0x1000, readable=True, writable=True))
    assert names(mapped()) == ["INVALIDATE_IOMMU_PAGES", "COMPLETION_WAIT"]
    assert names(mapped(np_cache_map_no_flush=True)) == []


def test_nested_shares_parent_domain_id():
    def nested_dte(**choices):
        driver = make(choices=Driver(**choices))
        state, parent, viommu = world(driver)
        result = ok(driver.domain_alloc_nested(state, PLAIN, viommu, 3, data(GOOD)))
        state = ok(driver.attach(result.state, PLAIN, result.value)).state
        return DTE.view(dte_at(state.memory, driver.config.layout.dte_address(PLAIN.device_id)))["DomainID"], \
            state.domains[parent].domain_id
    good, parent_id = nested_dte()
    bad, _ = nested_dte(nested_shares_parent_domain_id=True)
    assert good != parent_id and bad == parent_id


def test_every_fault_is_tested_here():
    import inspect
    import sys

    import test_dte_update
    source = inspect.getsource(sys.modules[__name__]) + inspect.getsource(test_dte_update)
    for name, option in Driver.options().items():
        if option.kind == "fault":
            assert name in source, name


def test_choices_parse_and_reading_detached():
    choices = Driver().assign(["unmap-skips-flush=on", "nested-attach-previous=detached"])
    assert choices.faults() == ("unmap-skips-flush",) and choices.nested_attach_previous == "detached"
    driver = make(choices=Driver(nested_attach_previous="detached"))
    state, parent, viommu = world(driver)
    result = ok(driver.domain_alloc_nested(state, PLAIN, viommu, 3, data(GOOD)))
    attached = ok(driver.attach(result.state, PLAIN, result.value))
    assert attached.state.devices[PLAIN.device_id].domain is None
    assert attached.state.domains[parent].dev_list == ()
