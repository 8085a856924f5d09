"""The AMD driver behind the RFC's ioctls (viommu_rfc) and what the HW-vIOMMU then does with it; one test
per RFC defect reading (viommu.md §10), each showing its effect against the intended reading."""

import dataclasses
import errno

from amdvi.frontend import sequence_library as L
from amdvi.models import software as sw
from amdvi.models import system
from amdvi.models.amd_driver import viommu_rfc
from amdvi.models.amd_driver.choices import Driver
from amdvi.models.iommufd import uapi as U
from amdvi.models.iommufd.choices import Iommufd
from amdvi.models.timeline import VfctrlWrite
from amdvi.properties import sequence_check
from amdvi.spec import viommu as V
from amdvi.spec.choices import Hardware
from amdvi.spec.device_table import DTE

SCENARIO = L._scenario(L.NIC, **L.RFC)
GUEST = L._rfc_guest()
SETUP = L._rfc_guest(teardown=False)
INIT = L.rfc_call(U.RfcIommuInit, {"gid": "guest"})
DESTROY = L.rfc_call(U.RfcIommuDestroy, gid="guest")


def with_driver(**choices):
    return dataclasses.replace(SCENARIO, driver=Driver(**choices))


def _hardware(ex, name):
    return next(r.hardware for r in ex.records if getattr(r.step, "name", "") == name)


def _dte(ex, device_id):
    at = sw.Layout().dte_address(device_id)
    return DTE.view(sum(ex.run.state.memory.get(at + 8 * i, 0) << (64 * i) for i in range(4)))


def test_the_rfc_guest_is_programmed_as_the_rfc_says_and_its_commands_are_carried_out():
    ex = sequence_check.execute(SCENARIO, SETUP)
    writes = [w for s in _hardware(ex, "VIOMMU_IOMMU_INIT") if isinstance(s, VfctrlWrite) for w in s.writes]
    assert {V.DOMID_MAP_CONTROL.view(v).HostDomainID for _, o, v in writes if o == 0x08} == {0}  # cleared to 0
    dte = _dte(ex, 0x10)
    assert (dte["vImuEn"], dte["GuestID"], dte["GDeviceID"], dte["GV"]) == (1, 1, L.VIRT_ID, 1)
    attach = [w for s in _hardware(ex, "VIOMMU_DEVICE_ATTACH") if isinstance(s, VfctrlWrite) for w in s.writes]
    assert (1, 0x10, V.MISC_CONTROL.encode(TranslateDeviceID=0x10)) in attach
    domain = _hardware(ex, "VIOMMU_DOMAIN_ATTACH")[0].writes
    assert domain == ((1, 0x08, V.DOMID_MAP_CONTROL.encode(V=1, Write=1, GuestDomainID=L.GDOM_ID,
                                                           HostDomainID=dte["DomainID"])),)
    assert ex.run.hangs == [] and sequence_check.violated(SCENARIO, GUEST, "mapping-table-integrity") is None
    guests = [i.command for i in ex.run.invalidations[-2:]]  # the guest's, carried out with host IDs
    assert guests == [sw.inv_devtab(0x10), sw.inv_pages(dte["DomainID"], L.DATA, L.PAGE)]


def test_the_rfcs_guest_needs_the_private_command_buffer_reading():
    """The RFC gives the hardware no guest-physical base: under the later design's reading the guest's
    commands are never fetched."""
    ex = sequence_check.execute(dataclasses.replace(SCENARIO, hardware=Hardware()), SETUP)
    assert not ex.run.hangs and ex.run.guest_hangs and "never stored" in ex.run.guest_hangs[0][1]


def test_rfc_dispatch_as_coded_masks_the_errors_with_the_vfio_compat_answers():
    """[RFC-21], viommu.md §10.1: only AMD's 0 is returned; a failure's partial work stays."""
    steps = L._rfc_errors()
    masked = dataclasses.replace(SCENARIO, iommufd=Iommufd(viommu_interface="rfc", rfc_dispatch="as-coded"))
    assert [r.errno for r in sequence_check.execute(SCENARIO, steps).records] == [22, 22, errno.ENODEV]
    assert [r.errno for r in sequence_check.execute(masked, steps).records] == [0, errno.ENOTTY, errno.ENOTTY]
    blocked = (L.bind("nic"), INIT, L.rfc_call(U.RfcDeviceAttach, gid="guest", hdev_id=0x10, gdev_id=8))
    record = sequence_check.execute(masked, blocked).records[-1]
    assert record.errno == errno.ENOTTY and record.hardware  # EINVAL in AMD's handler, after its writes
    assert sequence_check.violated(masked, steps, "errno-conformance") is not None
    assert sequence_check.violated(SCENARIO, steps, "errno-conformance") is None


def test_rfc_destroy_as_coded_keeps_the_guest_id_and_the_maps():
    """[RFC-15], viommu.md §10.2: a second DESTROY succeeds; the GuestID is skipped once the counter wraps;
    a guest destroyed with its device still attached keeps a live DeviceID map entry."""
    as_coded = with_driver(rfc_destroy="as-coded")
    twice = (INIT, DESTROY, DESTROY)
    assert [r.errno for r in sequence_check.execute(as_coded, twice).records] == [0, 0, 0]
    assert [r.errno for r in sequence_check.execute(SCENARIO, twice).records] == [0, 0, errno.EINVAL]

    def gid_after_wrap(scenario):
        state, _ = system.boot(scenario)
        for step in (INIT, DESTROY):
            state, _ = system.apply(scenario, state, step)
        state = dataclasses.replace(state, driver=dataclasses.replace(state.driver, rfc_last_gid=viommu_rfc.MAX_GID))
        return system.apply(scenario, state, L.rfc_call(U.RfcIommuInit))[1].out["gid"]
    assert gid_after_wrap(SCENARIO) == 1 and gid_after_wrap(as_coded) == 2

    early = SETUP[:9] + (DESTROY,)  # the device is still attached to the guest
    v = sequence_check.violated(as_coded, early, "mapping-table-integrity")
    assert v is not None and "DeviceID map" in v.what
    assert sequence_check.violated(SCENARIO, early, "mapping-table-integrity") is None


def test_rfc_cmdbuf_stride_as_coded_pins_other_pages():
    """[RFC-19], viommu.md §10.3: page i at hva + (0 + 1 + ... + i) pages."""
    four = SETUP[:8] + (L.rfc_call(U.RfcCmdbufUpdate, gid="guest", cmdbuf_size=0x4000, hva=L.RAM),)

    def pages(scenario):
        state, _ = system.boot(scenario)
        for step in four:
            state, result = system.apply(scenario, state, step)
        return result.errno, state.driver.rfc_guests[1].cmdbuf_pages
    page = L.PAGE
    assert pages(SCENARIO) == (0, tuple(L.RAM + page * i for i in range(4)))
    assert pages(with_driver(rfc_cmdbuf_stride="as-coded")) == (0, tuple(L.RAM + page * i for i in (0, 1, 3, 6)))
    end = L.RAM + 0x100_0000  # the VMM's memory ends there: the as-coded fourth page cannot be pinned
    near_end = four[:-1] + (L.rfc_call(U.RfcCmdbufUpdate, gid="guest", cmdbuf_size=0x4000, hva=end - 0x4000),)
    assert sequence_check.execute(SCENARIO, near_end).records[-1].errno == 0
    assert sequence_check.execute(with_driver(rfc_cmdbuf_stride="as-coded"), near_end).records[-1].errno == 22


def test_rfc_domain_detach_as_coded_leaves_the_callers_entry():
    """[RFC-17], viommu.md §10.4: the library's finding, and the write it makes instead."""
    as_coded = with_driver(rfc_domain_detach="as-coded")
    ex = sequence_check.execute(as_coded, GUEST)
    hdom = _dte(sequence_check.execute(SCENARIO, SETUP), 0x10)["DomainID"]
    detach = _hardware(ex, "VIOMMU_DOMAIN_DETACH")[0].writes
    assert detach == ((hdom, 0x08, V.DOMID_MAP_CONTROL.encode(V=1, Write=1, GuestDomainID=L.GDOM_ID, HostDomainID=1)),)
    assert sequence_check.violated(as_coded, GUEST, "mapping-table-integrity") is not None
    intended = _hardware(sequence_check.execute(SCENARIO, GUEST), "VIOMMU_DOMAIN_DETACH")[0].writes
    assert intended == ((1, 0x08, V.DOMID_MAP_CONTROL.encode(V=1, Write=1, GuestDomainID=L.GDOM_ID)),)


def test_rfc_and_iommufd_guests_never_share_a_guest_id():
    steps = (L.bind("nic"), L.ioas(), L.hwpt("nic", "ioas", "s2", flags=U.HWPT_ALLOC_NEST_PARENT),
             L.viommu("nic", "s2"), INIT)
    both = dataclasses.replace(SCENARIO, driver=Driver(hw_viommu="amd-wip"))
    state, _ = system.boot(both)
    for step in steps:
        state, result = system.apply(both, state, step)
    wip = {v.guest_id for v in state.driver.viommus.values()}
    assert wip == {1} and result.out["gid"] == 2
