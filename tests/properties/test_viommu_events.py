"""Guest event writes stay in the guest: the proof holds for any guest, rests on the hypervisor's invariant,
and the broken model that writes a guest's log at its untranslated base refutes it with a replayable
counterexample."""

import pytest
import z3

from amdvi.properties import catalog, presets, viommu_events
from amdvi.properties.proof import PROVED, REFUTED, prove
from amdvi.spec.choices import Hardware

BROKEN = Hardware(viommu_guest_event_log_untranslated=True)


@pytest.mark.parametrize("guests", [2, 64])
def test_guest_event_writes_stay_in_the_guest_for_any_guest(guests):
    assert viommu_events.prove_event_isolation(guests).status == PROVED


@pytest.mark.parametrize("choices", [Hardware(viommu_guest_event_device_id="unchanged"),
                                     Hardware(viommu_refused_command="skip")])
def test_it_holds_under_the_other_readings(choices):
    assert viommu_events.prove_event_isolation(8, choices=choices).status == PROVED


def test_the_untranslated_log_base_is_refuted_and_the_counterexample_replays_only_on_the_broken_model():
    r = viommu_events.prove_event_isolation(8, choices=BROKEN)
    assert r.status == REFUTED and "which no translation through its stage 2 gave" in r.detail
    assert "it reproduces" in r.detail
    assert viommu_events.replay(r.model, r.evidence, BROKEN)
    assert not viommu_events.replay(r.model, r.evidence, Hardware())


def test_the_proof_rests_on_the_hypervisors_invariant():
    """Without the invariant (a guest's block names a translate DeviceID it owns), a guest's log could be
    translated through another guest's stage 2: the claim is not vacuous."""
    assumptions, claim, q = viommu_events.build(8)
    bounds = [a for a in assumptions if not z3.is_implies(a)]  # the GuestID ranges and the alignment
    assert len(bounds) < len(assumptions)
    assert prove("no invariant", bounds, claim).status == REFUTED


def test_the_witnesses_are_reachable_and_with_insert_none_the_insert_witness_is_not():
    """Each situation the proof is about can happen; under viommu-insert-guest-event=none INSERT_GUEST_EVENT
    writes nothing, so its witness cannot hold and the proof says so (vacuous), not proved."""
    r = viommu_events.prove_event_isolation(8, choices=Hardware(viommu_insert_guest_event="none"))
    assert r.status == "vacuous" and "INSERT_GUEST_EVENT" in r.detail


def test_the_preset_and_the_property_are_registered():
    assert presets.PRESETS["viommu-guest-event-log-untranslated"].refuted_by == ("viommu-guest-event-isolation",)
    assert "viommu-guest-event-isolation" in catalog.DEFAULT
    outcome = catalog.run_property("viommu-guest-event-isolation", choices=BROKEN)
    assert outcome.result.status == REFUTED
