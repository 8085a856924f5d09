"""Properties every declared structure must have, checked over the whole catalog.

* round trip: decode(encode(x)) == x and encode(decode(bits)) == bits on the named fields;
* the same round trip proved for all values with Z3 (symbolic fields);
* differential: decode and every legality rule give the same answer on Python ints and Z3 terms.
"""

import pytest
import z3
from hypothesis import given, strategies as st

from amdvi.spec import catalog
from amdvi.spec.bitvec import INT, Z3
from amdvi.spec.fields import FIELD

STRUCTURES = catalog.STRUCTURES
IDS = [s.name for s in STRUCTURES]
EFR = catalog.find_structure("EFR")


def named_mask(s):
    return sum(f.mask for f in s.named_fields)


def with_fixed(s, bits):
    for f in s.named_fields:
        if f.fixed is not None:
            bits = INT.deposit(bits, f.hi, f.lo, f.fixed, s.width)
    return bits


def field_values(s):
    return st.fixed_dictionaries({
        f.name: (st.just(f.fixed) if f.fixed is not None else st.integers(0, (1 << f.width) - 1))
        for f in s.named_fields
    })


def test_catalog_is_not_empty_and_names_are_unique():
    assert len(STRUCTURES) >= 40
    assert len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("s", STRUCTURES, ids=IDS)
def test_every_structure_cites_a_section_and_explains_its_fields(s):
    assert s.section.startswith("§")
    for f in s.named_fields:
        assert f.meaning, f"{s.name}.{f.name} has no meaning"


@pytest.mark.parametrize("s", STRUCTURES, ids=IDS)
@given(data=st.data())
def test_decode_of_encode_is_identity(s, data):
    values = data.draw(field_values(s))
    assert s.decode(s.encode(values)) == values


@pytest.mark.parametrize("s", STRUCTURES, ids=IDS)
@given(data=st.data())
def test_encode_of_decode_keeps_every_named_bit(s, data):
    bits = with_fixed(s, data.draw(st.integers(0, (1 << s.width) - 1)))
    assert s.encode(s.decode(bits)) == bits & named_mask(s)


@pytest.mark.parametrize("s", STRUCTURES, ids=IDS)
def test_round_trip_holds_for_all_values_symbolically(s):
    fields = {f.name: z3.BitVec(f"f_{i}", f.width) for i, f in enumerate(s.named_fields) if f.fixed is None}
    decoded = s.decode(s.encode(fields, backend=Z3), backend=Z3)
    solver = z3.Solver()
    solver.add(z3.Or([decoded[name] != var for name, var in fields.items()]))
    assert solver.check() == z3.unsat


def _symbolic_context(efr_bits):
    view = EFR.view(z3.BitVecVal(efr_bits, 64), Z3)
    return {f"EFR.{f.name}": view[f.name] for f in EFR.named_fields}


def _concrete_context(efr_bits):
    view = EFR.view(efr_bits)
    return {f"EFR.{f.name}": view[f.name] for f in EFR.named_fields}


@pytest.mark.parametrize("s", STRUCTURES, ids=IDS)
@given(data=st.data())
def test_int_and_z3_backends_agree(s, data):
    bits = data.draw(st.integers(0, (1 << s.width) - 1))
    efr = data.draw(st.integers(0, (1 << 64) - 1))
    sym = z3.BitVecVal(bits, s.width)
    concrete = s.decode(bits)
    symbolic = {k: Z3.value(v) for k, v in s.decode(sym, backend=Z3).items()}
    assert symbolic == concrete
    for comp in s.composites:
        assert Z3.value(s.view(sym, Z3)[comp.name]) == s.view(bits)[comp.name]
    c_checks = s.check(bits, INT, _concrete_context(efr))
    z_checks = s.check(sym, Z3, _symbolic_context(efr))
    assert [v.rule.name for v in c_checks] == [v.rule.name for v in z_checks]
    for cv, zv in zip(c_checks, z_checks):
        assert bool(cv.condition) == Z3.value(zv.condition), cv.rule.name


@pytest.mark.parametrize("s", STRUCTURES, ids=IDS)
def test_each_rule_can_fire_and_can_hold(s):
    """No rule is vacuous: Z3 finds an instance breaking it and one keeping it (some EFR)."""
    bits = z3.BitVec("bits", s.width)
    efr = z3.BitVec("efr", 64)
    ctx = {f"EFR.{f.name}": EFR.view(efr, Z3)[f.name] for f in EFR.named_fields}
    fixed = [s.view(bits, Z3)[f.name] == f.fixed for f in s.named_fields if f.fixed is not None]
    for v in s.check(bits, Z3, ctx):
        for want in (True, False):
            solver = z3.Solver()
            solver.add(*fixed, v.condition == want)
            assert solver.check() == z3.sat, f"{s.name}: rule {v.rule.name} can never be {want}"
