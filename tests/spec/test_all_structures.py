"""Properties every declared structure must have, checked over the whole catalog.

* round trip: decode(encode(x)) == x and encode(decode(bits)) == bits on the named fields;
* the same round trip proved for all values with Z3 (symbolic fields);
* differential: decode and every legality rule give the same answer on Python ints and Z3 terms;
* every named field says which public sources confirm its position, and conflicts name both sides.
"""

import pytest
import z3
from hypothesis import given, strategies as st

from amdvi.spec import catalog
from amdvi.spec.bitvec import INT, Z3_TERMS as Z3  # terms, never folded: Z3 itself evaluates
from amdvi.spec.fields import SOURCES, Field

STRUCTURES = catalog.STRUCTURES
IDS = [s.name for s in STRUCTURES]
EFR = catalog.find_structure("EFR")
CONTROL = catalog.find_structure("CONTROL")
CONTEXT_REGISTERS = (EFR, CONTROL)  # the registers legality rules may read


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


def _context(values, backend):
    ctx = {}
    for reg, bits in zip(CONTEXT_REGISTERS, values):
        view = reg.view(bits, backend)
        ctx.update({f"{reg.name}.{f.name}": view[f.name] for f in reg.named_fields})
    return ctx


@pytest.mark.parametrize("s", STRUCTURES, ids=IDS)
@given(data=st.data())
def test_int_and_z3_backends_agree(s, data):
    bits = data.draw(st.integers(0, (1 << s.width) - 1))
    regs = [data.draw(st.integers(0, (1 << 64) - 1)) for _ in CONTEXT_REGISTERS]
    sym = z3.BitVecVal(bits, s.width)
    concrete = s.decode(bits)
    symbolic = {k: Z3.value(v) for k, v in s.decode(sym, backend=Z3).items()}
    assert symbolic == concrete
    for comp in s.composites:
        assert Z3.value(s.view(sym, Z3)[comp.name]) == s.view(bits)[comp.name]
    c_checks = s.check(bits, INT, _context(regs, INT))
    z_checks = s.check(sym, Z3, _context([z3.BitVecVal(r, 64) for r in regs], Z3))
    assert [v.rule.name for v in c_checks] == [v.rule.name for v in z_checks]
    for cv, zv in zip(c_checks, z_checks):
        assert bool(cv.condition) == Z3.value(zv.condition), cv.rule.name


@pytest.mark.parametrize("s", STRUCTURES, ids=IDS)
def test_each_rule_can_fire_and_can_hold(s):
    """No rule is vacuous: Z3 finds an instance breaking it and one keeping it (some register values)."""
    bits = z3.BitVec("bits", s.width)
    ctx = _context([z3.BitVec(f"reg_{r.name}", 64) for r in CONTEXT_REGISTERS], Z3)
    checks = s.check(bits, Z3, ctx)
    assert len(checks) == len(s.all_rules()), "a rule needs a register the test does not supply"
    fixed = [s.view(bits, Z3)[f.name] == f.fixed for f in s.named_fields if f.fixed is not None]
    for v in checks:
        for want in (True, False):
            solver = z3.Solver()
            solver.add(*fixed, v.condition == want)
            assert solver.check() == z3.sat, f"{s.name}: rule {v.rule.name} can never be {want}"


# ---- where the facts come from ---------------------------------------------------------------------

@pytest.mark.parametrize("s", STRUCTURES, ids=IDS)
def test_every_named_field_declares_its_sources(s):
    """A new field must say who confirms it: ``sources=()`` is an answer (nobody), leaving it out is not."""
    for f in s.named_fields:
        assert f.sources is not None, f"{s.name}.{f.name} declares no sources"
        assert f.confirmed_by == len(f.sources) == len(set(f.sources))
        assert set(f.sources) <= set(SOURCES)


@pytest.mark.parametrize("s", STRUCTURES, ids=IDS)
def test_every_conflict_names_the_sources_on_each_side(s):
    for f in s.named_fields:
        if f.conflict:
            named = {src for src in SOURCES if src in f.conflict or (src == "AMD-RFC" and "RFC" in f.conflict)}
            assert len(named) >= 2, f"{s.name}.{f.name}: {f.conflict}"


def test_unknown_or_repeated_sources_are_refused():
    with pytest.raises(ValueError, match="sources"):
        Field("A", 1, 0, sources=("Linux", "Wikipedia"))
    with pytest.raises(ValueError, match="sources"):
        Field("A", 1, 0, sources=("Linux", "Linux"))
    assert Field("A", 1, 0).confirmed_by == 0 and Field("A", 1, 0, sources=()).sources == ()


def test_known_source_counts():
    def f(name):
        (m,) = catalog.resolve(name)
        return m.member

    assert f("DTE.V").confirmed_by >= 5 and {"Linux", "QEMU", "Xen", "VirtualBox", "FreeBSD"} <= set(f("DTE.V").sources)
    assert f("GPTE.G").sources == ()  # only the generic x86-64 CPU format backs it, which does not count
    assert f("GCR3.V").sources == ("Linux",)
    assert f("PREFETCH_IOMMU_PAGES.PFCount").sources == ("FreeBSD",)
    assert f("RESET_VMMIO.All").sources == ("AMD-RFC",) and "27" in f("RESET_VMMIO.All").conflict
    assert f("EVENT_COUNTER_ZERO.EventCode").sources == ("FreeBSD", "NOVA")
    assert "0x10" in f("EVENT_COUNTER_ZERO.EventCode").conflict
    assert f("STATUS.EventOverflow").confirmed_by == 7


def test_recorded_conflicts_of_the_research():
    """Each disagreement the source reading found is recorded on the field the model declares."""
    def conflict(name):
        (m,) = catalog.resolve(name)
        return m.member.conflict

    assert "Xen" in conflict("STATUS.GALOverflow") and "DomainIDPNE" in conflict("CONTROL.NumIntRemapMode")
    assert "v2_had_dis_sup" in conflict("EFR.GAUpdateDisSup")
    assert "127:68" in conflict("PAGE_TAB_HARDWARE_ERROR.Address")
    assert "0x11" in conflict("GUEST_EVENT_FAULT.EventCode")
    assert "PASID[19:8]" in conflict("INVALIDATE_IOTLB_PAGES.PASID[7:0]")
    assert "35:32" in conflict("INVALIDATE_IOMMU_ALL.Opcode")
    assert "127:66" in conflict("ILLEGAL_DEV_TABLE_ENTRY.Address")
