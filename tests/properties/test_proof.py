"""``prove`` stays honest with narrowed witnesses: a narrowing shows a witness only when the narrower
question has a model, and one that excludes every model makes the proof vacuous, never proved."""

import z3

from amdvi.properties import invalidation
from amdvi.properties.proof import PROVED, VACUOUS, Witness, prove


def test_a_narrowed_witness_that_holds_lets_the_proof_run():
    x, y = z3.BitVecs("x y", 8)
    w = Witness("x is 3 and y above x", z3.UGT(y, x), narrowing=((x, z3.BitVecVal(3, 8)),))
    assert prove("p", [z3.ULT(x, 10)], z3.ULT(x, 11), witnesses=[w]).status == PROVED


def test_a_narrowing_outside_the_assumptions_is_vacuous():
    x = z3.BitVec("x", 8)
    w = Witness("x is 42", z3.BoolVal(True), narrowing=((x, z3.BitVecVal(42, 8)),))
    r = prove("p", [z3.ULT(x, 10)], z3.ULT(x, 11), witnesses=[w])
    assert r.status == VACUOUS and "narrowing" in r.detail


def test_the_every_shape_dte_proofs_are_witnessed_on_attach_detach_and_pass_through():
    q = invalidation.build_query("dte", "dte", "any")
    labels = [w.label for w in invalidation.stale_witnesses(q)]
    for shapes in ("V = 0 -> v1", "v1 -> V = 0", "TV = 0 -> v1", "v1 -> pass-through (Mode 0)"):
        assert any(shapes in label for label in labels), labels
    assert ("dte", "dte", "any", True) in invalidation.QUERIES
    assert {c for c, _, p, _ in invalidation.QUERIES if p == "any"} == {"dte"}


def test_a_dte_query_whose_witness_cannot_hold_is_vacuous_not_proved(monkeypatch):
    # a stale witness that no model satisfies must surface as vacuous, also through the stronger claim
    def impossible(q):
        return [Witness("never", z3.BoolVal(False))]
    monkeypatch.setattr(invalidation, "stale_witnesses", impossible)
    r = invalidation.fresh_after_change("dte", "dte", "v1")
    assert r.status == VACUOUS
