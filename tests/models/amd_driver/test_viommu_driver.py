"""The driver's HW-vIOMMU programming (AMD's work-in-progress flow) and what the hardware then does with it."""

import dataclasses

from amdvi.frontend import sequence_library as L
from amdvi.models import software as sw
from amdvi.models import viommu as vi
from amdvi.models.amd_driver.choices import Driver
from amdvi.models.timeline import VfctrlWrite
from amdvi.properties import sequence_check
from amdvi.spec import viommu as V
from amdvi.spec.bitvec import INT
from amdvi.spec.device_table import DTE

SETUP = L._hw_viommu(teardown=False)
SCENARIO = L._scenario(L.NIC, **L.HW_VIOMMU)


def _records(scenario=SCENARIO, steps=SETUP):
    return sequence_check.execute(scenario, steps)


def _call_steps(ex, name):
    return next(r.hardware for r in ex.records if getattr(r.step, "name", "") == name)


def test_viommu_alloc_resets_the_guest_prefills_its_maps_and_points_the_translate_dte_at_the_stage_2():
    ex = _records()
    hw = _call_steps(ex, "IOMMU_VIOMMU_ALLOC")
    writes = [w for s in hw if isinstance(s, VfctrlWrite) for w in s.writes]
    domain_fill = [w for w in writes if w[1] == 0x08]
    assert len(domain_fill) == 64 and {V.DOMID_MAP_CONTROL.view(v).HostDomainID for _, _, v in domain_fill} == {1}
    assert (1, 0x10, V.MISC_CONTROL.encode(TranslateDeviceID=0x7F)) in writes
    translate = DTE.view(sum(ex.run.state.memory.get(sw.Layout().dte_address(0x7F) + 8 * i, 0) << (64 * i)
                             for i in range(4)))
    parent = next(d for h, d in ex.state.driver.domains.items() if h > 0 and getattr(d, "nest_parent", False))
    assert translate["DomainID"] == parent.domain_id and translate["Mode"] == parent.mode
    assert translate["Host Page Table Root Pointer"] == parent.root >> 12


def test_the_hardware_carries_out_the_guests_invalidation_with_the_nested_domains_host_id():
    """End to end: the maps the driver programmed, read by the vIOMMU hardware for a guest command."""
    ex = _records()
    state = ex.run.state
    base = L.RAM + L.CMDBUF  # the guest's command buffer (GPA CMDBUF) in system memory
    command = sw.inv_pages(L.GDOM_ID, L.GVA, 0x1000)
    memory = {**state.memory, base: command & (2 ** 64 - 1), base + 8: command >> 64}
    state = vi.vf_write(INT, state.replace(memory=memory), 1, 0x08, V.VF_CMD_TAIL.encode(Pointer=1))
    _, effect = vi.process_guest_command(INT, state, 1)
    hdom, _ = next(iter(ex.state.driver.viommus.values())).gdom_ids[L.GDOM_ID]
    assert effect.accepted and effect.domain == hdom


def test_the_nested_dte_carries_the_viommu_bits():
    ex = _records()
    dte = DTE.view(sum(ex.run.state.memory.get(sw.Layout().dte_address(0x10) + 8 * i, 0) << (64 * i) for i in range(4)))
    assert (dte["vImuEn"], dte["GuestID"], dte["GDeviceID"]) == (1, 1, L.VIRT_ID)


def test_a_vdevice_left_in_the_map_after_destroy_breaks_mapping_table_integrity():
    kept = dataclasses.replace(SCENARIO, driver=Driver(hw_viommu="amd-wip", devid_map_on_destroy="kept"))
    steps = SETUP + (L.attach("nic", "s2"), L.destroy("nested", expect=0), L.destroy("nic_vdev", expect=0))
    v = sequence_check.violated(kept, steps, "mapping-table-integrity")
    assert v is not None and "DeviceID map" in v.what
    assert sequence_check.violated(SCENARIO, steps, "mapping-table-integrity") is None


def test_a_guest_id_past_the_models_bound_and_a_bad_queue_are_refused():
    errno_of = lambda steps: sequence_check.execute(SCENARIO, steps).records[-1].errno  # noqa: E731
    assert errno_of(SETUP[:8] + (L.vdevice("nic", 64),)) == 22
    assert errno_of(SETUP[:9] + (L.hw_queue(L.CMDBUF, 0x1800),)) == 22
    mainline = dataclasses.replace(SCENARIO, driver=Driver())
    assert sequence_check.execute(mainline, SETUP[:10]).records[-1].errno == 95  # no HW-vIOMMU: EOPNOTSUPP
