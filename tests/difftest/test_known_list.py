"""The known-divergence list of QEMU 7.2: well formed, and every entry reproduced by a study case (the
one exception says why)."""

import json
from importlib import resources

import pytest

from amdvi.difftest import known, study

ENTRIES = known.load("7.2.22")
NOT_IN_STUDY: set[str] = set()  # every known divergence has a study case that shows it


def test_entries_are_complete_and_unique():
    assert len({k.id for k in ENTRIES}) == len(ENTRIES) >= 12
    for k in ENTRIES:
        assert k.section.startswith("§") and k.qemu_source.startswith("hw/i386/amd_iommu.")
        assert k.classification in known.CLASSES and k.title and k.summary and k.study
        assert k.recogniser in known.KNOWN_NAMES


def test_the_list_is_found_by_the_series_and_only_there():
    assert [k.id for k in known.load("7.2.1")] == [k.id for k in ENTRIES]
    assert known.load("9.9.0") == []


def test_every_entry_is_reproduced_by_a_study_case():
    expected = set().union(*(sc.expected for sc in study.cases()))
    assert {k.id for k in ENTRIES} - expected == NOT_IN_STUDY
    assert expected <= {k.id for k in ENTRIES}


def test_not_reproduced_items_give_reasons():
    items = known.not_reproduced("7.2.22")
    assert {i["study"].split()[0] for i in items} >= {"B2", "B7", "B11"}
    assert all(len(i["reason"]) > 20 for i in items)


def test_an_unknown_recogniser_is_refused():
    text = resources.files("amdvi.difftest").joinpath("known", "qemu-7.2.json").read_text()
    obj = json.loads(text)
    obj["divergences"][0]["recogniser"] = "nope"
    with pytest.raises(ValueError, match="unknown recogniser 'nope'"):
        known.parse(obj, "test")
