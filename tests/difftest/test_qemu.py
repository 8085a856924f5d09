"""Against a real QEMU (marker ``qemu``; skipped, with the reason, when qemu-system-x86_64 is absent):
the feasibility study's findings reproduce as the known divergences they are listed as, the watchdog
turns QEMU's CMD_BUF_TAIL hang into a finding, a short run is deterministic for its seed, and no QEMU
outlives a campaign, even one that is killed."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from amdvi.difftest import campaign as campaign_module, known, study
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
    return known.explained_ids(v.classified), v


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
    assert [m.observable for m, _ in v.classified][:1] == ["hang"]


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


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, command name, state) of every process (Linux /proc)."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            out[int(entry)] = (int(rest[1]), name, rest[0])
    return out


def _descendants(pid: int) -> dict[int, str]:
    table, out, todo = _processes(), {}, [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, name, _) in table.items():
            if ppid == parent and child not in out:
                out[child] = name
                todo.append(child)
    return out


def _running(pids) -> set[int]:
    table = _processes()
    return {p for p in pids if p in table and table[p][2] != "Z"}


def _campaign(tmp_path, cases: int) -> subprocess.Popen:
    argv = ["diff-qemu", "--cases", str(cases), "--seed", "3", "--workers", "2", "--out", str(tmp_path)]
    code = f"from amdvi.frontend.main import main; raise SystemExit(main({argv!r}))"
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for_qemus(campaign: subprocess.Popen, count: int) -> dict[int, str]:
    """The campaign's descendants once ``count`` QEMUs run under it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and campaign.poll() is None:
        below = _descendants(campaign.pid)
        if sum(name.startswith("qemu") for name in below.values()) >= count:
            return below
        time.sleep(0.02)
    raise AssertionError("the campaign never ran its QEMUs")


def _gone_within(pids, seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while _running(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _running(pids)


@pytest.mark.parametrize("killed", [False, True], ids=["finished", "killed"])
def test_no_qemu_outlives_a_campaign(tmp_path, killed):
    campaign = _campaign(tmp_path, 400 if killed else campaign_module.CHUNK + 1)  # two chunks: two QEMUs
    below = {}
    try:
        below = _wait_for_qemus(campaign, 2)  # two workers, each with its QEMU
        if killed:
            campaign.send_signal(signal.SIGKILL)  # no finaliser runs: only the death signals can act
        assert campaign.wait(timeout=60) == (-signal.SIGKILL if killed else 0)
        # the workers die with the campaign, and each QEMU with its worker
        assert _gone_within(below, 5) == set(), {p: below[p] for p in _running(below)}
    finally:
        if campaign.poll() is None:
            campaign.kill()
            campaign.wait()
        for pid in _running(below):  # only this test's processes, by pid, and only when it failed
            os.kill(pid, signal.SIGKILL)
