"""Parts of the harness that need no QEMU: the qtest watchdog (a fake QEMU that stops answering), the
shrinker, and the deterministic generation of cases."""

import sys
import time

import pytest

from amdvi.difftest import campaign, case as case_format, model_side, shrink
from amdvi.difftest.case import Commands, CpuStore, EduDma
from amdvi.difftest.qtest import QemuError, QemuExited, QemuHang, Qtest

FAKE_QEMU = r"""
import sys, time
for n, line in enumerate(sys.stdin):
    if line.startswith("hang"):
        time.sleep(60)
    if line.startswith("quit"):
        sys.exit(0)
    print("FAIL nope" if line.startswith("bad") else f"OK 0x{n:x}", flush=True)
"""


def _fake(timeout=0.3):
    return Qtest([sys.executable, "-c", FAKE_QEMU], timeout=timeout)


def test_replies_in_order_and_batches():
    q = _fake()
    try:
        assert q.batch(["readq 0x0", "readq 0x8", "readq 0x10"]) == ["0x0", "0x1", "0x2"]
        with pytest.raises(QemuError, match="nope"):
            q.command("bad")
    finally:
        q.close()


def test_the_watchdog_turns_a_hang_into_an_error():
    q = _fake(timeout=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(QemuHang, match="within 0.3 s"):
            q.command("hang")
        assert time.monotonic() - started < 2
    finally:
        q.close()


def test_an_exit_is_reported():
    q = _fake()
    try:
        with pytest.raises(QemuExited):
            q.command("quit")
    finally:
        q.close()


def test_shrink_keeps_the_property_and_drops_the_rest():
    big = campaign.generate(7, 0, 5)[-1]
    target = CpuStore(0x20_0000, 0x1234)
    case = big.with_(steps=big.steps + (target, EduDma(0, 0x1000)), memory=big.memory + ((0x7000_0000, 1),))
    small = shrink.shrink(case, lambda c: target in c.steps)
    assert small.steps == (target,) and small.memory == () and small.ring_start == 0


def test_generation_is_deterministic_for_a_seed_and_differs_between_seeds():
    first, again = campaign.generate(3, 1, 8), campaign.generate(3, 1, 8)
    assert first == again and len(first) == 8
    assert first != campaign.generate(4, 1, 8)


def test_generated_cases_are_valid_files_and_run_on_the_model():
    for c in campaign.generate(11, 0, 10):
        assert case_format.loads(case_format.dumps(c)) == c
        exp = model_side.expect(c)
        assert set(exp.dmas) <= {i for i, s in enumerate(c.steps) if isinstance(s, EduDma)}
        assert set(exp.batches) <= {i for i, s in enumerate(c.steps) if isinstance(s, Commands)}
