"""check_partial: known fields decode as on ints, and every rule's status is exact.

Exact means: "violated" and "holds" agree with the int validator for every completion of the unknown
bits (checked on the witnesses Z3 returns and on random completions), and "undetermined" comes with
two completions that replay on ints with opposite outcomes.
"""

import random

import pytest
from hypothesis import given, settings, strategies as st

from amdvi.frontend.builtin_examples import CONTROL_AFTER_RESUME, EFR_WITH_EPHSUP, THINKBOOK_DTE_WORDS
from amdvi.spec.bitvec import INT, mask
from amdvi.spec.device_table import DTE
from amdvi.spec.events import IO_PAGE_FAULT
from amdvi.spec.mmio import CONTROL, EFR, register_context
from amdvi.spec.partial import HOLDS, UNDETERMINED, VIOLATED, check_partial

WORD = mask(64)
CONTEXT = {**register_context(EFR, EFR_WITH_EPHSUP), **register_context(CONTROL, CONTROL_AFTER_RESUME)}
THINKBOOK = sum(int(w, 16) << (64 * i) for i, w in enumerate(THINKBOOK_DTE_WORDS))


def breaks(structure, rule, bits, context=None):
    return bool(rule.violated(INT, structure.view(bits), dict(context or {})))


def completions(bits, known_mask, width, rng, n=8):
    for _ in range(n):
        yield (bits & known_mask) | (rng.getrandbits(width) & ~known_mask & mask(width))


def assert_exact(structure, bits, known_mask, context=None, seed=0):
    check = check_partial(structure, bits, known_mask, context)
    rng = random.Random(seed)
    for o in check.outcomes:
        for w in (o.violating, o.holding):
            if w is not None:
                assert w & known_mask == bits & known_mask  # a witness keeps every known bit
        if o.violating is not None:
            assert breaks(structure, o.rule, o.violating, context)
        if o.holding is not None:
            assert not breaks(structure, o.rule, o.holding, context)
        if o.status == UNDETERMINED:
            assert o.violating is not None and o.holding is not None
        else:
            expected = o.status == VIOLATED
            assert (o.violating is None) != expected and (o.holding is None) == expected
            for c in completions(bits, known_mask, structure.width, rng):
                assert breaks(structure, o.rule, c, context) == expected
    return check


def test_complete_value_agrees_with_the_int_validator():
    check = check_partial(DTE, THINKBOOK, mask(256), CONTEXT)
    assert check.complete and check.undetermined == []
    assert [r.name for r in check.violated] == [r.name for r in DTE.validate(THINKBOOK, CONTEXT)]
    assert [r.name for r in check.violated] == ["PPR-without-EPHEn"]
    assert {r.field.name: r.value for r in check.fields} == DTE.decode(THINKBOOK)


def test_first_word_alone_already_shows_the_thinkbook_bug():
    # DTE[0] carries V, TV, PPR and the guest bits: the resume bug is decided without words 1..3.
    check = assert_exact(DTE, THINKBOOK, WORD, CONTEXT)
    status = {o.rule.name: o.status for o in check.outcomes}
    assert status["PPR-without-EPHEn"] == VIOLATED
    assert status["GLX=3"] == HOLDS and status["Mode=7"] == HOLDS and status["reserved[6:2]"] == HOLDS
    assert status["reserved[181:180]"] == UNDETERMINED and status["IntCtl=3"] == UNDETERMINED
    # GPM lives in word 2: whether a 5-level guest table is asked for is open
    assert status["GPM-beyond-GATS"] == UNDETERMINED
    assert check.value("PPR") == 1 and check.value("DomainID") is None and check.value("IntCtl") is None
    assert check.composites["GCR3 Table Root Pointer"] is None  # its [30:15] and [51:31] are in word 1


def test_unknown_fields_are_none_and_keep_their_known_bits():
    known = WORD | mask(16) << 64  # word 0 and DomainID's 16 bits of word 1
    check = check_partial(DTE, THINKBOOK, known)
    by_name = {r.field.name: r for r in check.fields}
    assert by_name["DomainID"].value == 9 and by_name["I"].value is None
    part = by_name["GCR3 Table Root Pointer[30:15]"]  # bits 95:80: none known
    assert part.value is None and part.known_mask == 0
    assert check.bits == THINKBOOK & known


def test_a_rule_reading_only_missing_bits_is_undetermined_and_one_reading_known_bits_is_not():
    # Mode = 7 reads V, TV and Mode (word 0); with word 0 missing it is open, with V = 0 known it holds.
    none_known = check_partial(DTE, 0, 0)
    assert {o.rule.name: o.status for o in none_known.outcomes}["Mode=7"] == UNDETERMINED
    invalid = check_partial(DTE, 0, 0x1)  # only V is known, and it is 0
    assert {o.rule.name: o.status for o in invalid.outcomes}["Mode=7"] == HOLDS


def test_events_decode_partly_too():
    bits = IO_PAGE_FAULT.encode({"DeviceID": 0x2300, "DomainID or PASID[15:0]": 0x17, "Address": 0xC5F3F000})
    known = mask(16) | mask(16) << 32 | 0xF << 60 | mask(64) << 64
    check = check_partial(IO_PAGE_FAULT, bits, known)
    assert check.value("DeviceID") == 0x2300 and check.value("PASID[19:16]") is None


def test_bits_wider_than_the_structure_are_refused():
    with pytest.raises(ValueError):
        check_partial(DTE, 0, 1 << 256)
    with pytest.raises(ValueError):
        check_partial(DTE, -1, 0)


dte_values = st.integers(0, mask(256))
word_masks = st.sets(st.integers(0, 3)).map(lambda ws: sum(WORD << (64 * w) for w in ws))
bit_masks = st.integers(0, mask(256))
contexts = st.one_of(st.none(), st.builds(
    lambda efr, ctl: {**register_context(EFR, efr), **register_context(CONTROL, ctl)},
    st.integers(0, mask(64)), st.integers(0, mask(64))))


@settings(max_examples=25)
@given(dte_values, st.one_of(word_masks, bit_masks), contexts, st.integers(0, 2**32))
def test_every_status_is_exact_on_random_cuts(bits, known_mask, context, seed):
    assert_exact(DTE, bits, known_mask, context, seed)


@settings(max_examples=25)
@given(dte_values, word_masks)
def test_known_fields_decode_as_on_ints(bits, known_mask):
    check = check_partial(DTE, bits, known_mask)
    decoded = DTE.decode(bits)
    for r in check.fields:
        whole = r.known_mask == mask(r.field.width)
        assert r.known == whole
        assert r.known_value == decoded[r.field.name] & r.known_mask
        if whole:
            assert r.value == decoded[r.field.name]
