"""Attach, detach, map and unmap command sequences (linux-driver-sequences.md §1-§3), decoded with
the spec's command Structures: opcode, DomainID, DeviceID and range."""

from amdvi.models.amd_driver.decode import commands, dte_at, replay
from amdvi.models.timeline import Store, Wait
from amdvi.spec.commands import EVERY_PAGE
from amdvi.spec.device_table import DTE

from driver_helpers import ATS, PLAIN, make, ok, paging

EVERYTHING = (0, 1 << 64)


def names(steps):
    return [c.name for c in commands(steps)]


def setup(driver, device=PLAIN):
    state, handle = paging(driver, driver.initial_state())
    return ok(driver.attach(state, device, handle)).state, handle


def test_attach_writes_a_v1_dte_with_the_domain_id():
    driver = make()
    state, handle = paging(driver, driver.initial_state())
    result = ok(driver.attach(state, PLAIN, handle))
    dte = DTE.view(dte_at(result.state.memory, driver.config.layout.dte_address(PLAIN.device_id)))
    domain = result.state.domains[handle]
    assert (dte["V"], dte["TV"], dte["Mode"], dte["IR"], dte["IW"], dte["I"]) == (1, 1, 3, 1, 1, 0)
    assert dte["DomainID"] == domain.domain_id and dte["Host Page Table Root Pointer"] << 12 == domain.root
    # the clear DTE had V = 1, GV = 0: upper, lower; DEVTAB + wait; device_flush_dte + wait
    assert names(result.steps) == ["INVALIDATE_DEVTAB_ENTRY", "COMPLETION_WAIT", "INVALIDATE_DEVTAB_ENTRY",
                                   "COMPLETION_WAIT"]
    assert ok(driver.attach(result.state, PLAIN, handle)).steps == ()  # same domain: no-op


def test_ats_device_gets_i_bit_and_iotlb_flush_on_its_own_device_id():
    driver = make()
    state, handle = setup(driver, ATS)
    dte = DTE.view(dte_at(state.memory, driver.config.layout.dte_address(ATS.device_id)))
    alias = DTE.view(dte_at(state.memory, driver.config.layout.dte_address(0x11)))
    assert dte["I"] == 1 and alias.bits == dte.bits
    result = ok(driver.map(state, handle, 0x4000, 0x10_0000_0000, 0x1000, readable=True, writable=True))
    result = ok(driver.unmap(result.state, handle, 0x4000, 0x1000))
    cmds = commands(result.steps)
    assert [c.name for c in cmds] == ["INVALIDATE_IOMMU_PAGES", "INVALIDATE_IOTLB_PAGES", "COMPLETION_WAIT"]
    assert cmds[1].fields["DeviceID"] == 0x10 and cmds[1].range() == (0x4000, 0x1000)


def test_map_writes_tables_then_leaves_and_never_flushes_without_np_cache():
    driver = make()
    state, handle = setup(driver)
    result = ok(driver.map(state, handle, 0x20_0000, 0x1_0000_0000, 0x2000, readable=True, writable=False))
    assert all(isinstance(s, Store) and len(s.writes) == 1 for s in result.steps)
    assert [s.what.rsplit(": ", 1)[1] for s in result.steps] == ["directory entry", "directory entry",
                                                                  "pt_install_leaf_entry", "pt_install_leaf_entry"]


def test_unmap_flushes_the_covering_block_with_pde_then_waits():
    driver = make()
    state, handle = setup(driver)
    state = ok(driver.map(state, handle, 0x3000, 0x1_0000_0000, 0x3000, readable=True, writable=True)).state
    result = ok(driver.unmap(state, handle, 0x3000, 0x3000))
    assert result.value is True
    clears = [s for s in result.steps if isinstance(s, Store)]
    assert len(clears) == 3 and all(v == 0 for s in clears for _, v in s.writes)
    cmds = commands(result.steps)
    flush = cmds[0]
    assert flush.name == "INVALIDATE_IOMMU_PAGES" and flush.fields["PDE"] == 1 and flush.fields["S"] == 1
    assert flush.fields["DomainID"] == state.domains[handle].domain_id
    assert flush.range() == (0x0, 0x8000)  # [0x3000, 0x6000) rounded to the aligned 32 KiB block
    assert cmds[-1].name == "COMPLETION_WAIT" and isinstance(result.steps[-1], Wait)


def test_unmap_of_a_whole_table_frees_it_only_after_the_flush():
    driver = make()
    state, handle = setup(driver)
    state = ok(driver.map(state, handle, 0x20_0000, 0x1_0000_0000, 0x1000, readable=True, writable=True)).state
    used_before = state.pool_used
    result = ok(driver.unmap(state, handle, 0x20_0000, 0x20_0000))  # the whole 2 MiB level-1 table
    whats = [s.what.rsplit(": ", 1)[1] for s in result.steps if isinstance(s, Store)]
    assert whats == ["clear PTE", "clear directory entry"]
    assert len(result.state.pool_used) == len(used_before) - 1
    assert commands(result.steps)[0].range() == (0x20_0000, 0x20_0000)


def test_unmap_on_a_domain_without_devices_queues_nothing():
    driver = make()
    state, handle = paging(driver, driver.initial_state())
    state = ok(driver.map(state, handle, 0, 0x1_0000_0000, 0x1000, readable=True, writable=True)).state
    assert commands(ok(driver.unmap(state, handle, 0, 0x1000)).steps) == []


def test_block_detaches_disables_ats_clears_the_dte_and_flushes_the_whole_domain():
    driver = make()
    state, handle = setup(driver, ATS)
    result = ok(driver.block(state, ATS))
    cmds = commands(result.steps)
    domain_flush = [c for c in cmds if c.name == "INVALIDATE_IOMMU_PAGES"]
    assert domain_flush[0].range() == EVERYTHING and domain_flush[0].fields["DomainID"] == 1
    assert not any(c.name == "INVALIDATE_IOTLB_PAGES" for c in cmds)  # ATS disabled before the DTE is cleared
    dte = DTE.view(dte_at(result.state.memory, driver.config.layout.dte_address(ATS.device_id)))
    assert (dte["V"], dte["TV"], dte["DomainID"]) == (1, 0, 0)
    assert result.state.domains[handle].dev_list == () and result.state.domains[handle].iommu_refs == 0


def test_attach_to_another_domain_detaches_first():
    driver = make()
    state, first = setup(driver)
    state, second = paging(driver, state)
    result = ok(driver.attach(state, PLAIN, second))
    cmds = commands(result.steps)
    flush = next(c for c in cmds if c.name == "INVALIDATE_IOMMU_PAGES")
    assert flush.fields["DomainID"] == 1 and flush.range() == EVERYTHING
    dte = DTE.view(dte_at(result.state.memory, driver.config.layout.dte_address(PLAIN.device_id)))
    assert dte["DomainID"] == 2


def test_old_domain_id_in_a_boot_dte_is_flushed_after_attach():
    boot = DTE.encode({"V": 1, "TV": 1, "Mode": 3, "DomainID": 9, "IR": 1, "IW": 1})
    driver = make(boot_dtes=((PLAIN.device_id, boot),))
    state, handle = paging(driver, driver.initial_state())
    cmds = commands(ok(driver.attach(state, PLAIN, handle)).steps)
    assert [c.name for c in cmds[-2:]] == ["INVALIDATE_IOMMU_PAGES", "COMPLETION_WAIT"]
    assert cmds[-2].fields["DomainID"] == 9 and cmds[-2].range() == EVERYTHING


def test_np_cache_map_flushes_in_naturally_aligned_chunks():
    driver = make(np_cache=True, lazy=True)
    assert driver.config.strict  # NpCache forces strict mode
    state, handle = setup(driver)
    result = ok(driver.map(state, handle, 0x3000, 0x1_0000_0000, 0x5000, readable=True, writable=True))
    ranges = [c.range() for c in commands(result.steps) if c.name == "INVALIDATE_IOMMU_PAGES"]
    assert ranges == [(0x3000, 0x1000), (0x4000, 0x4000)]
    assert names(result.steps)[-1] == "COMPLETION_WAIT"


def test_lazy_unmap_parks_then_drain_flushes_all_and_releases():
    driver = make(lazy=True)
    state, handle = setup(driver)
    state = ok(driver.map(state, handle, 0x1000, 0x1_0000_0000, 0x1000, readable=True, writable=True)).state
    result = ok(driver.unmap(state, handle, 0x1000, 0x1000))
    assert result.value is False and commands(result.steps) == []
    drained = ok(driver.flush_queue_drain(result.state))
    assert drained.value == ((handle, 0x1000, 0x1000),)
    cmds = commands(drained.steps)
    assert cmds[0].name == "INVALIDATE_IOMMU_PAGES" and cmds[0].range() == EVERYTHING
    assert cmds[-1].name == "COMPLETION_WAIT" and drained.state.flush_queue == ()


def test_growth_past_512_gib_rebuilds_every_dte_then_maps():
    driver = make()
    state, handle = setup(driver, ATS)
    root = state.domains[handle].root
    result = ok(driver.map(state, handle, 1 << 40, 0x1_0000_0000, 0x1000, readable=True, writable=True))
    domain = result.state.domains[handle]
    assert domain.mode == 4 and domain.root != root
    first = result.steps[0]
    assert isinstance(first, Store) and "increase_top" in first.what  # new top -> old top first
    address = driver.config.layout.dte_address(ATS.device_id)
    images = [dte_at(m, address) for m in replay(state.memory, result.steps)]
    modes = [DTE.view(i)["Mode"] for i in images]
    assert modes[0] == 3 and modes[-1] == 4
    whats = [c.what for c in commands(result.steps)]
    assert any("amd_iommu_change_top" in w and "device_flush_dte" in w for w in whats)
    leaf = [s for s in result.steps if isinstance(s, Store) and "leaf" in s.what]
    last_wait = max(i for i, s in enumerate(result.steps) if isinstance(s, Wait))
    assert result.steps.index(leaf[0]) > last_wait  # the PTE is written once the new top is live


def test_map_past_the_host_levels_is_erange():
    driver = make(host_levels=4)
    state, handle = setup(driver)
    import errno
    result = driver.map(state, handle, 1 << 50, 0, 0x1000, readable=True, writable=True)
    assert result.errno == errno.ERANGE and result.state is state and result.steps == ()
