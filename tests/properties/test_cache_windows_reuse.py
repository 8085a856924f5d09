"""Checkers decide on ways found the same at an earlier boundary (``Windows.ways``) instead of
enumerating every boundary again. The verdicts must be exactly those of enumerating everywhere: on
every library sequence, and in bounded searches that hold and that find a bug. A reuse that ignored
a changed word is caught by the same comparison."""

import pytest

from amdvi.frontend import sequence_library
from amdvi.models.amd_driver.choices import Driver
from amdvi.models.iommufd.driver_api import PciDevice
from amdvi.models.system import Scenario
from amdvi.properties import cache_windows, sequence_bmc, sequence_check

NIC, DISK = PciDevice("nic", 0x10, ats=True), PciDevice("disk", 0x18, aliases=(0x19,))
SMALL = sequence_bmc.Bounds(iovas=(0x10_0000,), lengths=(0x1000, 0x2000), user_pages=(0x1000_0000,))


def _never_same(self, at, request):
    return None


def _verdicts(entry):
    seq = entry.loaded()
    ex = sequence_check.execute(seq.scenario, seq.steps, probes=seq.probes)
    return [(v.property, None if v.violation is None else (v.violation.at, v.violation.request, v.violation.what))
            for v in sequence_check.check(ex)]


@pytest.mark.parametrize("entry", sequence_library.ENTRIES, ids=lambda e: e.file)
def test_every_library_verdict_is_the_one_enumeration_gives(entry, monkeypatch):
    reused = _verdicts(entry)
    monkeypatch.setattr(cache_windows.Windows, "_same_as_before", _never_same)
    assert reused == _verdicts(entry)


def _search(scenario):
    counted = []
    result = sequence_bmc.search(scenario, 3, bounds=SMALL, progress=lambda d: counted.append((d.checked, d.states)))
    found = None if result.violation is None else (result.violation[0], result.violation[1].at,
                                                   result.violation[1].request, result.violation[2])
    return counted, found


@pytest.mark.parametrize("driver", [Driver(), Driver(unmap_skips_flush=True), Driver(skip_device_iotlb_flush=True)],
                         ids=["correct", "unmap-skips-flush", "skip-device-iotlb-flush"])
def test_a_bounded_search_finds_what_enumeration_finds(driver, monkeypatch):
    scenario = Scenario(devices=(NIC, DISK), driver=driver)
    calls = []
    same = cache_windows.Windows._same_as_before
    monkeypatch.setattr(cache_windows.Windows, "_same_as_before",
                        lambda self, at, r: calls.append(x := same(self, at, r)) or x)
    reused = _search(scenario)
    assert any(x is not None for x in calls)  # the reuse is taken, not dead code
    monkeypatch.setattr(cache_windows.Windows, "_same_as_before", _never_same)
    assert reused == _search(scenario)
    assert (reused[1] is None) == (driver == Driver())


def test_a_reuse_that_ignores_changed_words_is_caught(monkeypatch):
    """Broken on purpose: an earlier boundary's ways taken whatever memory and the caches now hold.
    Some bug example's verdict then changes (a violation its new ways show is missed), which the
    comparison with enumeration catches."""
    bugs = [e for e in sequence_library.ENTRIES if e.file.startswith("bug-")]
    want = [_verdicts(e) for e in bugs]

    def blind(self, at, request):
        earlier = [w for w in self._enumerated.get(request, ()) if w.at < at]
        return earlier[-1]._replace(at=at) if earlier else None

    monkeypatch.setattr(cache_windows.Windows, "_same_as_before", blind)
    assert [_verdicts(e) for e in bugs] != want
