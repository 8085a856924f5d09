"""The backend: each operation gives the same answer on Python ints and on Z3 terms."""

import pytest
import z3
from hypothesis import given, strategies as st

from amdvi.spec.bitvec import INT, Z3, Z3_TERMS, BackendError, Shape, ShapedMemory

W = 64
bv = st.integers(0, (1 << W) - 1)
small = st.integers(0, 70)


def z(x, w=W):
    return z3.BitVecVal(x, w)


# Z3_TERMS builds terms that Z3 evaluates; Z3 (folding) must agree with both.
SYMBOLIC = pytest.mark.parametrize("Z", [Z3, Z3_TERMS], ids=["z3-folding", "z3-terms"])


@SYMBOLIC
@given(a=bv, b=bv)
def test_arithmetic_and_logic_agree(Z, a, b):
    for op in ("add", "sub"):
        assert Z.value(getattr(Z, op)(z(a), z(b), W)) == getattr(INT, op)(a, b, W)
    for op in ("band", "bor", "bxor"):
        assert Z.value(getattr(Z, op)(z(a), z(b))) == getattr(INT, op)(a, b)
    assert Z.value(Z.bnot(z(a), W)) == INT.bnot(a, W)
    for op in ("eq", "ne", "ult", "ule", "ugt", "uge"):
        assert Z.value(getattr(Z, op)(z(a), z(b))) == getattr(INT, op)(a, b)


@SYMBOLIC
@given(a=bv, n=small)
def test_shifts_agree(Z, a, n):
    assert Z.value(Z.shl(z(a), n, W)) == INT.shl(a, n, W)
    assert Z.value(Z.lshr(z(a), n, W)) == INT.lshr(a, n, W)
    assert Z.value(Z.shl(z(a), z(n), W)) == INT.shl(a, n, W)


@SYMBOLIC
@given(a=bv, hi=st.integers(0, 63), lo=st.integers(0, 63), v=bv)
def test_bit_ranges_agree(Z, a, hi, lo, v):
    hi, lo = max(hi, lo), min(hi, lo)
    assert Z.value(Z.extract(z(a), hi, lo)) == INT.extract(a, hi, lo)
    part = v & ((1 << (hi - lo + 1)) - 1)
    assert Z.value(Z.deposit(z(a), hi, lo, z(part, hi - lo + 1), W)) == INT.deposit(a, hi, lo, part, W)
    assert Z.value(Z.concat((z(a), W), (z(v), W))) == INT.concat((a, W), (v, W))
    assert Z.value(Z.zext(Z.extract(z(a), hi, lo), W)) == INT.zext(INT.extract(a, hi, lo), W)


@SYMBOLIC
@given(c=st.booleans(), d=st.booleans(), a=bv, b=bv)
def test_booleans_and_ite_agree(Z, c, d, a, b):
    zc, zd = z3.BoolVal(c), z3.BoolVal(d)
    assert Z.value(Z.all_of(zc, zd)) == INT.all_of(c, d)
    assert Z.value(Z.any_of(zc, zd)) == INT.any_of(c, d)
    assert Z.value(Z.implies(zc, zd)) == INT.implies(c, d)
    assert Z.value(Z.lnot(zc)) == INT.lnot(c)
    assert Z.value(Z.ite(zc, z(a), z(b))) == INT.ite(c, a, b)
    assert Z.value(Z.ite(zc, a, z(b))) == INT.ite(c, a, b)


@SYMBOLIC
@given(words=st.dictionaries(st.integers(0, 1 << 20).map(lambda a: a * 8), bv, max_size=8),
       probe=st.integers(0, 1 << 20).map(lambda a: a * 8), value=bv)
def test_memory_reads_and_writes_agree(Z, words, probe, value):
    before = dict(words)
    sym = Z.memory_from(words)
    assert Z.value(Z.read64(sym, probe)) == INT.read64(words, probe)
    after = INT.write64(words, probe, value)
    assert Z.value(Z.read64(Z.write64(sym, probe, value), probe)) == INT.read64(after, probe) == value
    assert words == before  # write64 is pure: the input memory is unchanged


def test_unaligned_access_is_refused_on_concrete_memory():
    with pytest.raises(BackendError):
        INT.read64({}, 4)
    with pytest.raises(BackendError):
        INT.write64({}, 12, 0)


def test_symbolic_width_mismatch_is_refused():
    with pytest.raises(BackendError):
        Z3.add(z3.BitVecVal(1, 8), z3.BitVecVal(1, 16), 8)


@SYMBOLIC
@given(x=st.integers(0, (1 << 40) - 1), c=st.booleans())
def test_trailing_ones_and_bit_agree(Z, x, c):
    assert Z.value(Z.trailing_ones(z(x, 40), 40)) == INT.trailing_ones(x, 40)
    assert INT.trailing_ones((1 << 40) - 1, 40) == 40 and INT.trailing_ones(0b0111, 40) == 3
    assert Z.value(Z.bit(z3.BoolVal(c), 4)) == INT.bit(c, 4)
    assert Z.value(Z.ite(z3.BoolVal(c), 5, 9, width=8)) == INT.ite(c, 5, 9, width=8)


SHAPE = Shape(0x1000, 0x1000 + 32 * 5, keep=(0xFF00, 0, 1 << 63, (1 << 64) - 1), fixed=(0x3, 0x77, 0, 0))


@given(words=st.dictionaries(st.integers(0x1000 // 8 - 4, 0x1000 // 8 + 24).map(lambda a: a * 8), bv, max_size=8),
       probe=st.integers(0x1000 // 8 - 4, 0x1000 // 8 + 24).map(lambda a: a * 8))
def test_a_shaped_region_reads_its_entries_masked_at_known_and_symbolic_addresses(words, probe):
    shaped = ShapedMemory(Z3.memory_from(words), (SHAPE, Shape(0x1000 + 32 * 5, 0x1000 + 32 * 6, (0,), (0,))))
    word = INT.read64(words, probe)
    k = (probe - 0x1000) // 8 % 4
    expected = (word & SHAPE.keep[k] | SHAPE.fixed[k] if 0x1000 <= probe < 0x1000 + 32 * 5
                else 0 if 0x1000 + 32 * 5 <= probe < 0x1000 + 32 * 6 else word)
    assert Z3.value(Z3.read64(shaped, probe)) == expected  # a known address: folded
    at = z3.BitVec("at", 64)  # a symbolic one: the same word once the address is known
    assert Z3.value(z3.substitute(Z3.read64(shaped, at), (at, z(probe)))) == expected
