"""Against a real QEMU (marker ``qemu``; skipped, with the reason, when qemu-system-x86_64 is absent):
the feasibility study's findings reproduce as the known divergences they are listed as, the watchdog
turns QEMU's CMD_BUF_TAIL hang into a finding, and a short run is deterministic for its seed."""

import json

import pytest

from amdvi.difftest import known, study
from amdvi.difftest.campaign import Worker
from amdvi.difftest.machine import find_binary, version
from amdvi.frontend.main import main

BINARY = find_binary()
pytestmark = [pytest.mark.qemu,
              pytest.mark.skipif(BINARY is None, reason="qemu-system-x86_64 not found: install qemu-system-x86 "
                                                        "(apt-get install qemu-system-x86) to run the differential tests")]
VERSION = version(BINARY) if BINARY else ""
SLOW = {"walk loop"}  # a walk that never ends: the watchdog's full timeout
STUDY = {sc.case.title: sc for sc in study.cases()}


def _shown(sc, timeout=0.5):
    worker = Worker(BINARY, timeout, VERSION)
    try:
        v = worker.judge(sc.case)
    finally:
        worker.close()
    entries = known.load(VERSION)
    return known.explained_ids(known.Context(sc.case, v.expectation, v.observation), v.classified, entries), v


@pytest.mark.parametrize("title", [t if t not in SLOW else pytest.param(t, marks=pytest.mark.deep) for t in STUDY])
def test_study_findings_reproduce_as_listed(title):
    if not VERSION.startswith("7.2"):
        pytest.skip(f"the known list pinned here is QEMU 7.2's; this is {VERSION}")
    sc = STUDY[title]
    shown, v = _shown(sc)
    assert not v.new, [m.line() for m in v.new]
    assert shown == set(sc.expected)


def test_the_watchdog_turns_the_tail_hang_into_a_finding():
    sc = STUDY["tail beyond ring"]
    _, v = _shown(sc, timeout=0.5)
    assert v.observation.hang is not None and v.observation.hang[0] == 0
    assert [m.observable for m in v.new + [m for m, _ in v.classified]][:1] == ["hang"]


def _run(capsys, *argv):
    code = main(["diff-qemu", "--json", *argv])
    data = json.loads(capsys.readouterr().out)
    data.pop("seconds")
    return code, data


def test_a_short_run_is_deterministic_for_its_seed(capsys, tmp_path):
    first = _run(capsys, "--cases", "12", "--seed", "5", "--workers", "1", "--out", str(tmp_path / "a"))
    again = _run(capsys, "--cases", "12", "--seed", "5", "--workers", "2", "--out", str(tmp_path / "b"))
    assert first[1]["cases"] == 12
    assert first[1]["agree"] + first[1]["known_only"] + first[1]["new"] == 12
    for data in (first[1], again[1]):
        for f in data["findings"]:
            f.pop("file")
    assert first == again


@pytest.mark.deep
def test_a_long_run_finds_nothing_new_on_7_2(capsys, tmp_path):
    if not VERSION.startswith("7.2"):
        pytest.skip(f"the known list pinned here is QEMU 7.2's; this is {VERSION}")
    code, data = _run(capsys, "--cases", "600", "--seed", "1", "--out", str(tmp_path))
    assert data["new_shapes"] == {} and code == 0
