"""The declaration mechanism itself: it refuses broken tables and derives what it promises."""

import pytest
import z3

from amdvi.spec.bitvec import INT, Z3_TERMS as Z3  # terms, never folded: Z3 itself evaluates
from amdvi.spec.fields import Composite, Field, Rule, Structure, flag, reserved


def make(fields, **kw):
    return Structure(name="T", title="test", width=16, section="§0", fields=tuple(fields), **kw)


def test_overlapping_fields_are_refused():
    with pytest.raises(ValueError, match="overlap"):
        make([Field("A", 7, 0), Field("B", 15, 7)])


def test_undeclared_bits_are_refused():
    with pytest.raises(ValueError, match="not declared"):
        make([Field("A", 7, 0), Field("B", 14, 8)])


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError, match="twice"):
        make([Field("A", 7, 0), Field("a", 15, 8)])


def test_bits_outside_width_are_refused():
    with pytest.raises(ValueError, match="outside"):
        make([Field("A", 16, 0)])


def test_composite_must_name_declared_fields():
    with pytest.raises(ValueError, match="unknown field"):
        make([Field("A", 15, 0)], composites=(Composite("C", (("Nope", 0),), ""),))


def test_encode_refuses_unknown_names_and_wide_values():
    s = make([Field("A", 7, 0), Field("B", 15, 8)])
    with pytest.raises(ValueError, match="no field"):
        s.encode(C=1)
    with pytest.raises(ValueError, match="does not fit"):
        s.encode(A=0x100)


def test_fixed_fields_are_encoded_without_being_given():
    s = make([Field("Code", 15, 12, fixed=0xA), Field("X", 11, 0)])
    assert s.encode(X=1) == 0xA001


def test_derived_rules_fire_on_reserved_bits_and_illegal_values():
    s = make([Field("M", 2, 0, illegal={7: "reserved mode"}), reserved(15, 3)], reserved_event="EV")
    assert [r.name for r in s.validate(0b111)] == ["M=7"]
    assert sorted(r.name for r in s.validate(0b1111)) == ["M=7", "reserved[15:3]"]
    assert sorted(r.name for r in s.validate(0b1000)) == ["reserved[15:3]"]
    assert s.validate(0b011) == []
    assert all(r.event == "EV" for r in s.all_rules())


def test_rules_with_missing_context_are_not_checked():
    rule = Rule("r", "needs X", lambda b, v, ctx: b.eq(ctx["X"], 1), event="EV", section="§0", needs=("X",))
    s = make([flag("A", 0, ""), reserved(15, 1)], rules=(rule,))
    assert s.validate(0) == []
    assert [r.name for r in s.validate(0, {"X": 1})] == ["r"]


def test_view_reads_the_same_fields_on_both_backends():
    s = make([Field("A", 7, 0), Field("B", 15, 8)], composites=(Composite("AB", (("A", 0), ("B", 8)), ""),))
    bits = s.encode(A=0x12, B=0x34)
    sym = s.view(z3.BitVecVal(bits, 16), Z3)
    assert Z3.value(sym["B"]) == s.view(bits, INT)["B"] == 0x34
    assert Z3.value(sym["AB"]) == s.view(bits)["AB"] == 0x3412


def test_composites_encode_through_their_pieces():
    s = make([Field("A", 7, 0), Field("B", 15, 8)], composites=(Composite("AB", (("A", 0), ("B", 8)), ""),))
    assert s.encode(AB=0x3412) == s.encode(A=0x12, B=0x34)
    assert s.view(s.encode(AB=0xBEEF))["AB"] == 0xBEEF
    with pytest.raises(ValueError, match="outside"):
        s.encode(AB=0x1_0000)
    sym = s.encode({"AB": z3.BitVec("ab", 16)}, backend=Z3)
    assert Z3.value(z3.substitute(sym, (z3.BitVec("ab", 16), z3.BitVecVal(0x3412, 16)))) == 0x3412


def test_dte_gcr3_root_encodes_from_the_address():
    from amdvi.spec.device_table import DTE

    bits = DTE.encode({"GCR3 Table Root Pointer": 0xABCDEF5000})
    assert DTE.view(bits)["GCR3 Table Root Pointer"] == 0xABCDEF5000
    with pytest.raises(ValueError):
        DTE.encode({"GCR3 Table Root Pointer": 0xABCDEF5008})  # not 4 KiB aligned
