"""The generic merge of records: on Z3 under a symbolic condition it gives, once the condition is known,
what INT gives (the record chosen); declared widths, gated tuples and refusals."""

import dataclasses

import pytest
import z3
from hypothesis import given, strategies as st

from amdvi.spec.bitvec import INT, Z3, Z3_TERMS, BackendError, mask
from amdvi.spec.records import concrete_value, map_terms, merge
from amdvi.spec.walk_types import FaultState, WalkResult, WalkStep


def _fault(draw):
    return FaultState(raised=draw(st.booleans()), dimension=draw(st.integers(0, 3)),
                      address=draw(st.integers(0, mask(64))), pr=draw(st.booleans()), rz=draw(st.booleans()),
                      pe=draw(st.booleans()), us=draw(st.booleans()), nx=draw(st.booleans()))


def _step(draw):
    return WalkStep("PDE/PTE", 3, draw(st.integers(0, 7)), draw(st.integers(0, mask(64))),
                    draw(st.integers(0, mask(64))), draw(st.booleans()), draw(st.booleans()), draw(st.booleans()))


@st.composite
def walk_results(draw):
    return WalkResult(ok=draw(st.booleans()), spa=draw(st.integers(0, mask(64))), page_shift=draw(st.integers(12, 64)),
                      readable=draw(st.booleans()), writable=draw(st.booleans()), fault=_fault(draw),
                      steps=tuple(_step(draw) for _ in range(draw(st.integers(0, 3)))))


def as_terms(record, lift):
    """``record`` with each Python value made a Z3 constant where ``lift`` says (mixed records)."""
    widths = {"spa": 64, "page_shift": 8, "dimension": 2, "address": 64, "level": 3, "entry_address": 64, "entry": 64}

    def visit(x, name=None):
        if dataclasses.is_dataclass(x):
            return dataclasses.replace(x, **{f.name: visit(getattr(x, f.name), f.name) for f in dataclasses.fields(x)
                                             if f.name not in ("table", "dimension") or not isinstance(x, WalkStep)})
        if isinstance(x, tuple):
            return tuple(visit(v) for v in x)
        if not lift():
            return x
        if isinstance(x, bool):
            return z3.BoolVal(x)
        return z3.BitVecVal(x, widths[name])
    return visit(record)


def evaluated(record, cond, value):
    return map_terms(record, lambda t: concrete_value(z3.substitute(t, (cond, z3.BoolVal(value)))))


def happened(result):
    """A walk result with its gated steps reduced to those that happened (what a merge must keep)."""
    return dataclasses.replace(result, steps=tuple(s for s in result.steps if s.active))


@given(walk_results(), walk_results(), st.booleans(), st.lists(st.booleans(), min_size=64, max_size=64))
def test_merge_on_z3_is_the_int_choice(then, otherwise, value, coins):
    picks = iter(coins * 4)
    lift = lambda: next(picks)  # noqa: E731
    cond = z3.Bool("c")
    for b in (Z3, Z3_TERMS):
        symbolic = merge(b, cond, as_terms(then, lift), as_terms(otherwise, lift))
        expected = merge(INT, value, then, otherwise)
        assert happened(evaluated(symbolic, cond, value)) == happened(expected)


def test_int_merge_returns_the_chosen_record_itself():
    a, c = FaultState.none(INT), FaultState.none(INT).with_(raised=True)
    assert merge(INT, True, a, c) is a and merge(INT, False, a, c) is c


def test_equal_fields_stay_as_they_are():
    x = z3.BitVec("x", 64)
    a = FaultState.none(Z3).with_(address=x + 1)
    c = FaultState.none(Z3).with_(address=x + 1, raised=z3.Bool("r"))
    out = merge(Z3, z3.Bool("c"), a, c)
    assert out.address.eq(x + 1) and not out.dimension.decl().name() == "if"


def test_python_ints_take_their_declared_width():
    a = FaultState(False, 1, 0x1000, False, False, False, False, False)
    c = FaultState(False, 2, 0x2000, False, False, False, False, False)
    out = merge(Z3, z3.Bool("c"), a, c)
    assert out.dimension.size() == 2 and out.address.size() == 64


def test_refusals_name_the_field():
    @dataclasses.dataclass(frozen=True)
    class Undeclared:
        value: int

    with pytest.raises(BackendError, match=r"Undeclared\.value.*width"):
        merge(Z3, z3.Bool("c"), Undeclared(1), Undeclared(2))
    with pytest.raises(BackendError, match="different shapes"):
        merge(Z3, z3.Bool("c"), (1, 2), (1,))
    with pytest.raises(BackendError, match="dict memory"):
        merge(Z3, z3.Bool("c"), {0: 1}, {0: 2})
    with pytest.raises(BackendError, match="cannot merge a"):
        merge(Z3, z3.Bool("c"), FaultState.none(Z3), WalkResult(True, 0, 12, True, True, FaultState.none(Z3), ()))


def test_memories_merge_as_memories():
    c = z3.Bool("c")
    a = Z3.write64(Z3.memory_var("m"), Z3.const(8, 64), Z3.const(1, 64))
    out = merge(Z3, c, a, Z3.memory_var("m"))
    assert concrete_value(z3.substitute(Z3.read64(out, Z3.const(8, 64)), (c, z3.BoolVal(True)))) == 1
    f = Z3.memory_function("f")
    chosen = merge(Z3, c, Z3.write64(f, Z3.const(8, 64), Z3.const(1, 64)), f)
    assert z3.is_expr(Z3.read64(chosen, Z3.const(8, 64)))


# -- replace: dataclasses.replace made directly for plain records ----------------------------------


@given(walk_results(), st.booleans(), st.integers(0, mask(64)))
def test_replace_is_dataclasses_replace(result, ok, spa):
    from amdvi.spec.records import replace
    got, want = replace(result, ok=ok, spa=spa), dataclasses.replace(result, ok=ok, spa=spa)
    assert got == want and type(got) is type(want) and vars(got) == vars(want)
    assert vars(result)["ok"] is result.ok  # the original is unchanged


def test_replace_drops_a_remembered_hash_and_refuses_unknown_fields():
    from amdvi.models.caches import TlbSlot
    from amdvi.spec.records import replace
    slot = TlbSlot(valid=True, owner=5, page=0x4000, spa=0x8000_0000)
    hash(slot)  # remembered in the instance
    evicted = replace(slot, valid=False)
    assert hash(evicted) == hash(dataclasses.replace(slot, valid=False)) != hash(slot)
    with pytest.raises(TypeError):
        replace(slot, colour=1)


# -- fast_init: the same records, made without object.__setattr__ per field -------------------------------

def test_fast_init_makes_the_dataclasses_own_records():
    import dataclasses as dc
    import inspect

    from amdvi.spec.records import fast_init, replace

    def declare():
        @dc.dataclass(frozen=True)
        class Sample:
            a: int
            b: int = 2
            c: list = dc.field(default_factory=lambda: [1, 2])
        return Sample

    plain, fast = declare(), fast_init(declare())
    assert inspect.signature(fast.__init__).parameters.keys() == inspect.signature(plain.__init__).parameters.keys()
    for args, kw in (((1,), {}), ((1, 5), {}), ((1,), {"c": [9]}), ((), {"a": 3, "b": 4, "c": []})):
        got, want = fast(*args, **kw), plain(*args, **kw)
        assert dc.asdict(got) == dc.asdict(want) and vars(got) == vars(want)
    assert fast(1).c is not fast(1).c  # the factory runs per instance
    with pytest.raises(dc.FrozenInstanceError):
        fast(1).a = 2
    with pytest.raises(TypeError):
        fast()  # a field without a default must be given
    assert replace(fast(1), b=7) == fast(1, 7)


def test_fast_init_refuses_what_it_cannot_make():
    import dataclasses as dc

    from amdvi.spec.records import fast_init

    @dc.dataclass(frozen=True)
    class Checked:
        a: int

        def __post_init__(self):
            assert self.a >= 0

    @dc.dataclass
    class Mutable:
        a: int

    for cls in (Checked, Mutable):
        with pytest.raises(TypeError, match="fast_init"):
            fast_init(cls)
