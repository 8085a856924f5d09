"""The HW-vIOMMU proofs: they hold for any guest, rest on the hypervisor's invariant, and each broken
model refutes them with a counterexample that names the guest and the host ID it reached."""

import pytest

from amdvi.properties import viommu_invalidation, viommu_isolation
from amdvi.properties.proof import PROVED, REFUTED, prove
from amdvi.spec.choices import Hardware


@pytest.mark.parametrize("guests", [2, 64])
def test_command_isolation_holds_for_any_guest(guests):
    assert viommu_isolation.prove_command_isolation(guests).status == PROVED


def test_command_isolation_rests_on_the_hypervisors_invariant():
    """Without the invariant on what the maps hold, a guest reaches anything: the claim is not vacuous."""
    assumptions, claim, _ = viommu_isolation.build(8)
    assert prove("no invariant", assumptions[:2], claim).status == REFUTED


def test_a_shared_domain_map_is_refuted_naming_another_owner():
    r = viommu_isolation.prove_command_isolation(8, choices=Hardware(viommu_domain_map_shared=True))
    assert r.status == REFUTED and "INVALIDATE_IOMMU_PAGES" in r.detail and "which guest 0 owns" in r.detail


def test_an_untranslated_device_id_is_refuted():
    r = viommu_isolation.prove_command_isolation(8, choices=Hardware(viommu_device_id_untranslated=True))
    assert r.status == REFUTED and "host DeviceID" in r.detail


def test_guest_invalidation_scope_and_wait_ordering_hold_and_their_mutants_break_them():
    assert viommu_invalidation.prove_scope(8).status == PROVED
    assert viommu_invalidation.prove_wait_ordering(8).status == PROVED
    assert viommu_invalidation.prove_scope(8, choices=Hardware(viommu_domain_map_shared=True)).status == REFUTED
    assert viommu_invalidation.prove_wait_ordering(8, choices=Hardware(completion_wait_early=True)).status == REFUTED


@pytest.mark.parametrize("guests", [1, 1 << 17])
def test_a_guest_count_out_of_range_is_refused(guests):
    with pytest.raises(ValueError, match="guests"):
        viommu_isolation.build(guests)


def test_the_proof_rests_on_host_deviceid_0_mapping_nothing():
    """AMD's drivers clear a DeviceID entry by writing host DeviceID 0 with V set: if the hardware took 0 as
    a device, a guest could reach device 00:00.0 through any cleared entry."""
    r = viommu_isolation.prove_command_isolation(8, choices=Hardware(viommu_devid_zero="device-0"))
    assert r.status == REFUTED and "host DeviceID 0x0000" in r.detail


@pytest.mark.parametrize("broken", [Hardware(viommu_domain_map_shared=True), Hardware(viommu_device_id_untranslated=True)])
def test_a_refutation_replays_on_ints_and_not_on_the_correct_model(broken):
    r = viommu_isolation.prove_command_isolation(8, choices=broken)
    assert "it reproduces" in r.detail
    assert viommu_isolation.replay(r.model, r.evidence, broken)
    assert not viommu_isolation.replay(r.model, r.evidence, Hardware())


def test_map_writes_touch_only_their_own_guests_entry_and_a_shared_table_breaks_that():
    from amdvi.properties import viommu_maps

    assert viommu_maps.prove_map_write_isolation(64).status == PROVED
    assert viommu_maps.prove_map_write_isolation(8, choices=Hardware(viommu_domain_map_shared=True)).status == REFUTED
