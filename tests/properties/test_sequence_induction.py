"""Isolation by induction along a run (properties.sequence_induction): proved on a correct sequence,
refuted (and confirmed on ints) when the driver skips a flush, and never called refuted when the exact
enumeration does not confirm Z3's access."""

from __future__ import annotations

import pytest

from amdvi.frontend.sequence_library import ATS_NIC, IOVA, NIC, RAM, _scenario, attach, bind, dma, ioas, map_fixed, unmap
from amdvi.models.amd_driver.choices import Driver
from amdvi.properties import sequence_check, sequence_induction
from amdvi.properties.cache_windows import Windows
from amdvi.properties.proof import PROVED, REFUTED, UNKNOWN


def _run(device=NIC, **driver):
    steps = (bind(device.name), ioas(), map_fixed(IOVA, RAM, 0x1000), attach(device.name, "ioas"),
             dma(device.name, IOVA), unmap(IOVA, 0x1000), dma(device.name, IOVA))
    return sequence_check.execute(_scenario(device, driver=Driver(**driver)), steps)


def test_correct_sequence_is_proved_at_every_boundary():
    ex = _run()
    proof = sequence_induction.prove_isolation(ex)
    assert proof.proved, proof.failed
    assert len(proof.steps) >= 5 and all(s.result.status == PROVED for s in proof.steps)
    assert "every address" in sequence_induction.INVARIANT


def test_unmap_without_flush_is_refuted_and_confirmed():
    ex = _run(unmap_skips_flush=True)
    proof = sequence_induction.prove_isolation(ex)
    failed = proof.failed
    assert failed is not None and failed.result.status == REFUTED
    assert failed.confirmed is not None and failed.confirmed.address >> 12 == IOVA >> 12
    assert "reached 0x10000000" in failed.result.detail
    # the exact enumeration of the same run agrees
    assert not sequence_check.check(ex, ("isolation",))[0].holds


def test_ats_device_iotlb_not_flushed_is_refuted():
    ex = _run(ATS_NIC, skip_device_iotlb_flush=True)
    failed = sequence_induction.prove_isolation(ex).failed
    assert failed is not None and failed.result.status == REFUTED, failed
    assert "device_iotlb" in failed.result.detail


def test_an_unconfirmed_access_is_not_called_refuted(monkeypatch):
    ex = _run(unmap_skips_flush=True)
    monkeypatch.setattr(Windows, "outcomes", lambda self, at, request: [])  # the enumeration shows nothing
    failed = sequence_induction.prove_isolation(ex).failed
    assert failed is not None and failed.result.status == UNKNOWN
    assert failed.result.detail.startswith("not proved")


@pytest.mark.parametrize("at_least", [1])
def test_fills_are_shared_between_steps(at_least):
    ex = _run()
    fills = sequence_induction._Fills(ex.run.state.regs.dev_tab_bar, ex.run.choices)
    windows = Windows(ex.run, (), ats_control=True)
    last = len(ex.run.boundaries) - 1
    sequence_induction.prove_step(ex, windows, last - 1, NIC.device_id, fills=fills)
    built = len(fills._slots)
    sequence_induction.prove_step(ex, windows, last, NIC.device_id, fills=fills)
    assert built >= at_least and len(fills._slots) - built <= built  # the later step reuses the earlier walks


def test_a_spent_budget_is_unknown_never_proved():
    ex = _run()
    proof = sequence_induction.prove_isolation(ex, budget_seconds=0.0)
    assert not proof.proved
    assert proof.failed.result.status == UNKNOWN and "budget" in proof.failed.result.detail


@pytest.mark.deep
@pytest.mark.parametrize("entry", [e for e in __import__("amdvi.frontend.sequence_library", fromlist=["ENTRIES"]).ENTRIES],
                         ids=lambda e: e.file)
def test_induction_agrees_with_the_exact_check(entry):
    """Differential: the induction never proves what the exact enumeration refutes, and a refutation it
    reports is one the enumeration shows (it may give up: unknown, or the budget)."""
    ex = sequence_check.execute(entry.scenario, entry.steps, probes=entry.probes)
    exact = sequence_check.check(ex, ("isolation",))[0].holds
    proof = sequence_induction.prove_isolation(ex, budget_seconds=600)
    status = PROVED if proof.proved else proof.failed.result.status
    if exact:
        assert status in (PROVED, UNKNOWN), proof.failed
    else:
        assert status in (REFUTED, UNKNOWN), "proved what the enumeration refutes"


def test_a_device_iotlb_fill_is_possible_wherever_ats_was_on():
    """ats-reattach-kept-atc: the page's memory is the same before and after ATS Enable is cleared; a
    fill of the device's IOTLB is possible at the boundaries where it was still set (a first version
    looked only at the last boundary with that memory, where ATS was off, and proved the step)."""
    from amdvi.frontend import sequence_library

    entry = next(e for e in sequence_library.ENTRIES if e.file == "ats-reattach-kept-atc.json")
    ex = sequence_check.execute(entry.scenario, entry.steps, probes=entry.probes)
    windows = Windows(ex.run, (), ats_control=True)
    violation = sequence_check.check(ex, ("isolation",))[0].violation
    step = sequence_induction.prove_step(ex, windows, violation.at, violation.request.device_id, ats=True)
    assert step.result.status == REFUTED and "device_iotlb" in step.result.detail


@pytest.mark.deep
def test_a_stage_2_unmap_under_a_guest_is_proved_and_the_missed_hdomid_refuted():
    """Stage-2 change reaches every guest, by induction along the run (minutes each on 2 cores): the
    parent's flush of an unmapped page the guest table uses covers the guest's hDomID (proved at every
    boundary), and the driver whose parent flush misses the hDomIDs is refuted, confirmed on ints."""
    from amdvi.frontend.sequence_library import ENTRIES
    for name, want in (("nested-stage2-unmap.json", PROVED), ("bug-parent-flush-misses-hdomids.json", REFUTED)):
        seq = next(e for e in ENTRIES if e.file == name).loaded()
        ex = sequence_check.execute(seq.scenario, seq.steps, probes=seq.probes)
        proof = sequence_induction.prove_isolation(ex)
        if want == PROVED:
            assert proof.proved, (name, proof.failed)
        else:
            assert proof.failed is not None and proof.failed.result.status == REFUTED, name
            assert proof.failed.confirmed is not None
