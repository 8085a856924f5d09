"""Nested isolation against an adversarial guest: proved on the specification, refuted (with a
replayable image) on the mutant that skips translating guest table pointers through v1."""

import z3

from amdvi.properties.isolation import escapes, good_guest_image, host_layout, nested_isolation
from amdvi.properties.proof import PROVED, REFUTED, UNKNOWN, VACUOUS, Witness, prove
from amdvi.spec.bitvec import INT
from amdvi.spec.choices import Hardware
from amdvi.spec.translation import translate

MUTANT = Hardware(guest_table_pointer_untranslated=True)


def test_nested_walk_stays_inside_the_host_mapping_for_any_guest():
    q = nested_isolation()
    assert q.result.status == PROVED, q.result.detail


def test_the_well_behaved_guest_used_as_witness_really_translates():
    layout = host_layout()
    image, dte_fields, request = good_guest_image()
    from amdvi.properties.isolation import DEVICE, DEVICE_TABLE
    from amdvi.spec.device_table import DTE
    memory = {**layout.words, **image}
    dte = DTE.encode({**layout.dte_fixed, **dte_fields})
    for i in range(4):
        memory[DEVICE_TABLE + DEVICE * 32 + 8 * i] = (dte >> (64 * i)) & ((1 << 64) - 1)
    out = translate(INT, memory, layout.dev_tab_bar, request)
    assert out.ok and out.spa == 0x4000_6000


def test_prove_reports_each_status_honestly():
    x = z3.BitVec("x", 8)
    assert prove("p", [z3.ULT(x, 10)], z3.ULT(x, 11)).status == PROVED
    refuted = prove("r", [z3.ULT(x, 10)], z3.ULT(x, 5))
    assert refuted.status == REFUTED and refuted.model is not None
    # assumptions that cannot hold prove nothing
    assert prove("v", [z3.ULT(x, 10), z3.UGT(x, 20)], x == x).status == VACUOUS
    # a witness the assumptions exclude: also vacuous
    w = Witness("x is big", z3.UGT(x, 200))
    assert prove("w", [z3.ULT(x, 10)], z3.ULT(x, 11), witnesses=[w]).status == VACUOUS
    # a witness given as an assignment is checked by evaluation
    ok = Witness("x is 3", x == 3, ((x, z3.BitVecVal(3, 8)),))
    assert prove("a", [z3.ULT(x, 10)], z3.ULT(x, 11), witnesses=[ok]).status == PROVED


def test_a_timeout_is_unknown_never_proved():
    a, b = z3.BitVec("a", 64), z3.BitVec("b", 64)
    hard = z3.Implies(z3.And(a * b == 0x1D9F_5A3B_7C11_E4C3, a != 1, b != 1), a * b != 0x1D9F_5A3B_7C11_E4C3)
    result = prove("factor", [], hard, timeout_ms=1)
    assert result.status in (UNKNOWN, REFUTED)  # never PROVED: the claim is false or undecided
    assert result.status != PROVED


def test_mutant_that_skips_translating_a_guest_table_pointer_is_refuted_with_a_replayable_image():
    """One refutation (the query is the slow part), checked as an image and as a trace of the catalog."""
    from amdvi.properties import catalog
    from amdvi.properties.counterexample import replay
    outcome = catalog.run_property("nested-isolation", choices=MUTANT)
    assert outcome.result.status == REFUTED
    # the counterexample is concrete: replayed on Python ints it escapes with the mutant, not without
    image, request = outcome.trace.memory, outcome.trace.moves[-1].request
    assert escapes(image, request, host_layout(), MUTANT)
    assert not escapes(image, request, host_layout())
    assert outcome.replay is not None and outcome.replay.escaped, outcome.replay.summary()
    assert not replay(outcome.trace).escaped  # the correct model keeps the same guest inside
