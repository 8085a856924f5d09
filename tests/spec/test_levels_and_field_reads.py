"""The level geometry is stated once (spec/levels.py), and the walks read entries through the field
tables: a bit position restated by hand in a walk is a second source of truth that can drift."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from amdvi.spec import host_translation
from amdvi.spec.bitvec import INT, Z3
from amdvi.spec.guest_page_table import GCR3_ENTRY, GPTE
from amdvi.spec.host_page_table import PDE, PTE
from amdvi.spec.levels import gcr3_index_bits, index_bits, level_shift

ROOT = Path(__file__).resolve().parents[2]  # the source tree (the package may be installed elsewhere)
SPEC = ROOT / "spec"

# the values the walks used before the formula was gathered into spec/levels.py
LEVEL_SHIFTS = {1: 12, 2: 21, 3: 30, 4: 39, 5: 48, 6: 57}
INDEX_BITS = {1: (20, 12), 2: (29, 21), 3: (38, 30), 4: (47, 39), 5: (56, 48), 6: (63, 57)}
GCR3_INDEX_BITS = {0: (8, 0), 1: (17, 9), 2: (19, 18)}


@pytest.mark.parametrize("level", sorted(LEVEL_SHIFTS))
def test_level_shift_and_index_bits_have_the_known_values(level):
    assert level_shift(level) == LEVEL_SHIFTS[level]
    assert index_bits(level) == INDEX_BITS[level]


def test_one_table_covers_what_an_entry_one_level_up_maps():
    for level in range(1, 6):
        hi, lo = index_bits(level)
        assert lo == level_shift(level) and hi + 1 == level_shift(level + 1)


@pytest.mark.parametrize("level", sorted(GCR3_INDEX_BITS))
def test_gcr3_index_bits_split_the_20_bit_pasid(level):
    assert gcr3_index_bits(level) == GCR3_INDEX_BITS[level]


def test_the_host_walk_reads_fields_pde_and_pte_place_alike():
    """The walk reads PR, Next Level, IR, IW and the address before it knows the entry's kind."""
    for f in (host_translation.PRESENT, host_translation.NEXT_LEVEL, host_translation.READABLE,
              host_translation.WRITABLE):
        assert (PDE.field(f.name).hi, PDE.field(f.name).lo) == (f.hi, f.lo) == (PTE.field(f.name).hi, PTE.field(f.name).lo)
    address = host_translation.ADDRESS_FIELD
    assert (PDE.field("Next Table Address").hi, PDE.field("Next Table Address").lo) == (address.hi, address.lo)


def test_field_read_is_the_field_views_value_on_both_backends():
    e = 0x8000_0000_1234_50A7
    for structure in (GPTE, GCR3_ENTRY, PTE):
        for f in structure.named_fields:
            assert f.read(e) == structure.view(e)[f.name]
            assert f.read(Z3.const(e, 64), Z3).as_long() == structure.view(e, INT)[f.name]


# -- no bit position by hand in the walks --------------------------------------------------------------

SCANNED = ("host_translation.py", "guest_translation.py", "translation.py", "mmio.py")
# extract calls with two literal positions that are not a structure's field, and why
ALLOWED = {
    ("translation.py", "b.extract(pasid, 19, 16)"):
        "the PASID's own bits, split as the event record's PASID[19:16] field names them",
    ("translation.py", "b.extract(pasid, 15, 0)"):
        "the PASID's own bits, split as the event record's PASID[15:0] field names them",
}


def _literal_extracts(path: Path) -> list[str]:
    calls = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "extract"
                and len(node.args) == 3
                and all(isinstance(a, ast.Constant) and isinstance(a.value, int) for a in node.args[1:])):
            calls.append(ast.unparse(node))
    return calls


@pytest.mark.parametrize("name", SCANNED)
def test_no_extract_with_literal_bit_positions(name):
    found = _literal_extracts(SPEC / name)
    unexplained = [c for c in found if (name, c) not in ALLOWED]
    assert not unexplained, f"{name}: read these through the field tables or spec/levels.py: {unexplained}"


def test_the_allow_list_has_no_stale_entry():
    found = {(name, c) for name in SCANNED for c in _literal_extracts(SPEC / name)}
    assert set(ALLOWED) <= found


def test_the_level_span_formula_is_written_only_in_levels():
    """``12 + 9 * (level - 1)`` and its variants live in spec/levels.py alone (the tests' independent
    reference walker restates them on purpose and is not scanned)."""
    formula = re.compile(r"\b12\s*\+\s*9\s*\*|\b9\s*\*\s*\(\s*\w+\s*-\s*1\s*\)|\b9\s*\*\s*n\b")
    offenders = [f"{p.relative_to(ROOT)}:{i}" for folder in ("spec", "models", "properties", "frontend")
                 for p in sorted((ROOT / folder).glob("*.py")) if p.name != "levels.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if formula.search(line)]
    assert not offenders, offenders
