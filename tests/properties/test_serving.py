"""The serving questions split into parts (``serving.SPLIT_AT_OWN_FILL``): the parts cover the question,
the served DMA is a function of the slot's fields (the step that joins them), and a broken model the
question refutes is still refuted, with a counterexample of the whole question that replays."""

import dataclasses

import pytest
import z3

from amdvi.properties import serving
from amdvi.properties.counterexample import replay, trace_of
from amdvi.properties.presets import PRESETS
from amdvi.properties.proof import PROVED, REFUTED, prove

SPLIT_STEPS = [(cache, profile, k) for cache, profile in sorted(serving.SPLIT_AT_OWN_FILL)
               for k in serving.slot_steps(cache, profile)]


def _unsat(*assertions):
    s = z3.Solver()
    s.set(timeout=60_000)
    s.add(*assertions)
    return s.check() == z3.unsat


def _expr(x):
    return x if z3.is_expr(x) else z3.BoolVal(x)


def _constant(x):
    """A Python or Z3 constant's value, else None."""
    if not z3.is_expr(x):
        return x
    x = z3.simplify(x)
    return x.as_long() if z3.is_bv_value(x) else (z3.is_true(x) if z3.is_true(x) or z3.is_false(x) else None)


@pytest.mark.parametrize("cache,profile,step", SPLIT_STEPS)
def test_hit_and_miss_together_are_the_whole_premise(cache, profile, step):
    q = serving.serving_step(cache, profile, step)
    (_, miss, _), (_, hit, _), (_, own_valid, _) = q.own_fill_parts()
    whole = z3.And(*q.assumptions)
    assert _unsat(whole != z3.Or(z3.And(*miss), z3.And(*hit)))
    # and on a hit the own fill is valid: the slots agree field by field, validity included
    assert [n for n, _, _ in q.own_fill_parts()] == [f"{q.name}/miss", f"{q.name}/hit-is-own-fill",
                                                      f"{q.name}/own-fill"]
    assert len(own_valid) == 1


@pytest.mark.parametrize("cache,profile,step", SPLIT_STEPS)
def test_the_served_dma_is_the_same_function_of_the_slot_fields(cache, profile, step):
    # the join of the parts: the DMA served with the ghost's slot, its fields replaced by the own fill's,
    # is the DMA served with the own fill
    q = serving.serving_step(cache, profile, step)
    own, own_served = q.own_fill()
    pairs = []
    for f in dataclasses.fields(q.slot):
        ghost, mine = getattr(q.slot, f.name), getattr(own, f.name)
        if _constant(ghost) is not None:  # a known level and its span: the same in both
            assert _constant(ghost) == _constant(mine), f.name
        elif not ghost.eq(mine):
            pairs.append((_expr(ghost), _expr(mine)))
    assert pairs  # the ghost's slot is not the own fill already
    for got, want in ((q.served.ok, own_served.ok), (q.served.spa, own_served.spa)):
        assert _unsat(z3.substitute(_expr(got), *pairs) != _expr(want))


def test_a_broken_hit_is_refuted_through_the_split_with_a_trace_that_replays():
    broken = PRESETS["guest-pde-hit-ignores-pasid"].choices
    cache, profile, step = SPLIT_STEPS[0]
    # the part the bug breaks: a slot of another PASID hits, and it is not the request's own fill
    [part] = [p for p in serving.serving_step(cache, profile, step, choices=broken).own_fill_parts(broken)
              if p[0].endswith("/hit-is-own-fill")]
    assert prove(*part, strategy="bit-blast").status == REFUTED
    # and the whole question, asked when a part fails, gives the counterexample
    r = serving.serves_fresh(cache, profile, choices=broken)
    assert r.status == REFUTED, r.detail
    assert r.evidence.step == step and r.model is not None  # a model of the whole question, not of a part
    shown = replay(trace_of(r.evidence, r.model), choices=broken)
    assert shown.differs
    assert not replay(trace_of(r.evidence, r.model)).differs  # the correct model serves that DMA fresh


@pytest.mark.deep
@pytest.mark.parametrize("cache,profile", sorted(serving.SPLIT_AT_OWN_FILL))
def test_every_split_step_is_proved_in_its_parts(cache, profile):
    results = list(serving.serves_fresh_steps(cache, profile))
    assert all(r.status == PROVED for r in results), [(r.name, r.detail) for r in results]
    assert [r.name for r in results] == [f"{cache}/{profile}/{k}/{part}" for k in serving.slot_steps(cache, profile)
                                         for part in ("miss", "hit-is-own-fill", "own-fill")]
