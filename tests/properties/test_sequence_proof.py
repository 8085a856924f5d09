"""The Z3 guest-isolation proof at a sequence's end: proved on the correct nested device, refuted when
the driver takes the guest's stage 2, and not run where there is nothing nested to prove."""

import pytest

from amdvi.frontend import sequence_library as library
from amdvi.properties import sequence_check, sequence_proof
from amdvi.properties.isolation import GUEST_DTE_FIELDS, host_layout
from amdvi.spec.bitvec import INT
from amdvi.spec.device_table import DTE


def _execution(file: str) -> sequence_check.Execution:
    entry = next(e for e in library.ENTRIES if e.file == file)
    seq = entry.loaded()
    return sequence_check.execute(seq.scenario, seq.steps, probes=seq.probes)


def test_a_layout_from_a_run_keeps_the_host_fields_and_takes_the_guests():
    ex = _execution("nested-device.json")
    [device] = sequence_proof.nested_devices(ex)
    layout = sequence_proof.host_layout_at(ex, len(ex.run.boundaries) - 1, device)
    dte = layout.dte_bits
    guest = {name: DTE.view(dte)[name] for name in GUEST_DTE_FIELDS}
    assert layout.guest_dte(guest, INT) == dte  # the guest's own fields give the DTE back
    changed = layout.guest_dte({**guest, "GLX": 1}, INT)
    assert DTE.view(changed)["GLX"] == 1 and DTE.view(changed)["Host Page Table Root Pointer"] == \
        DTE.view(dte)["Host Page Table Root Pointer"]
    assert layout.mapped and all(lo < hi for lo, hi in layout.regions)
    assert host_layout().guest_dte(guest, INT) == DTE.encode({**host_layout().dte_fixed, **guest})


def test_nothing_nested_nothing_to_prove():
    ex = _execution("plain-device.json")
    assert sequence_proof.nested_devices(ex) == []
    g = sequence_proof.guest_isolation(ex, ex.scenario.devices[0])
    assert g.query is None and "not a nested" in g.why


@pytest.mark.deep
def test_the_nested_device_is_isolated_from_any_guest():
    ex = _execution("nested-device.json")
    [device] = sequence_proof.nested_devices(ex)
    g = sequence_proof.guest_isolation(ex, device)
    assert g.query.result.status == "proved"


@pytest.mark.deep
def test_a_guest_chosen_stage_2_is_refuted_with_an_escaping_access():
    from amdvi.properties.isolation import escapes

    ex = _execution("bug-gdte-not-validated.json")
    [device] = sequence_proof.nested_devices(ex)
    g = sequence_proof.guest_isolation(ex, device)
    assert g.query.result.status == "refuted"
    assert escapes(g.query.image, g.query.request, g.query.layout)  # the Z3 model replays on Python ints
