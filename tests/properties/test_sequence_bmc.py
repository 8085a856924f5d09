"""Bounded model checking of ioctl sequences: it finds a fault's shortest counterexample and holds on
the correct model, over small bounds (one device, one IOVA, one length, one page: 4 steps to try)."""

import pytest

from amdvi.models.amd_driver.choices import Driver
from amdvi.models.iommufd.driver_api import PciDevice
from amdvi.models.system import Scenario
from amdvi.properties import sequence_bmc, sequence_check

SMALL = sequence_bmc.Bounds(iovas=(0x10_0000,), lengths=(0x1000,), user_pages=(0x1000_0000,))
NIC = PciDevice("nic", 0x10)


def test_the_alphabet_is_every_bounded_call():
    steps = sequence_bmc.alphabet(Scenario(devices=(NIC,)), SMALL)
    assert [s.name for s in steps] == ["IOMMU_IOAS_MAP", "IOMMU_IOAS_UNMAP", "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
                                       "VFIO_DEVICE_DETACH_IOMMUFD_PT"]
    assert len(sequence_bmc.alphabet(Scenario(devices=(NIC,)), sequence_bmc.Bounds())) == 8 + 4 + 2


def test_a_missing_unmap_flush_is_found_on_a_shortest_sequence():
    result = sequence_bmc.search(Scenario(devices=(NIC,), driver=Driver(unmap_skips_flush=True)), 3, bounds=SMALL)
    prop, violation, steps = result.violation
    assert prop == "isolation" and violation.request.address == 0x10_0000
    names = [s.name for s in steps[len(sequence_bmc.prefix(Scenario(devices=(NIC,)))):]]
    assert sorted(names) == sorted(["IOMMU_IOAS_MAP", "VFIO_DEVICE_ATTACH_IOMMUFD_PT", "IOMMU_IOAS_UNMAP"])
    # the sequence it returns shows the violation when run on its own
    assert sequence_check.violated(Scenario(devices=(NIC,), driver=Driver(unmap_skips_flush=True)), steps,
                                   "isolation") is not None


def test_the_correct_driver_holds_to_depth_3_and_states_are_merged():
    result = sequence_bmc.search(Scenario(devices=(NIC,)), 3, bounds=SMALL)
    assert result.holds
    assert [d.checked for d in result.depths][:2] == [4, 4 * result.depths[0].states]
    assert all(d.states < d.checked for d in result.depths[1:])  # sequences reaching one state are merged


@pytest.mark.parametrize("depth", [-1, 17])
def test_a_depth_out_of_range_is_one_line(capsys, depth):
    from amdvi.frontend.main import main

    assert main(["check", "--depth", str(depth)]) == 2
    err = capsys.readouterr().err
    assert "--depth" in err and len(err.strip().splitlines()) == 1


def test_check_depth_with_a_scenario_file_writes_a_counterexample_replay_reproduces(tmp_path, capsys):
    import json

    from amdvi.frontend import sequence_format
    from amdvi.frontend.main import main

    loaded = sequence_format.LoadedSequence("small", Scenario(devices=(NIC,), driver=Driver(unmap_skips_flush=True)),
                                            (), (), bounds=SMALL)
    scenario = tmp_path / "scenario.json"
    scenario.write_text(sequence_format.dumps(sequence_format.to_json(loaded)))
    cex = tmp_path / "cex.json"
    assert main(["check", "--depth", "3", "--scenario", str(scenario), "--trace-out", str(cex), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["violation"]["property"] == "isolation" and [d["depth"] for d in out["depths"]] == [1, 2, 3]
    assert main(["replay", str(cex)]) == 1
    assert main(["check", "--depth", "3", "--scenario", str(scenario), "--choice",
                 "driver.unmap-skips-flush=off", "--json"]) == 0


def test_bounds_the_search_cannot_take_are_one_line(tmp_path, capsys):
    """Every page the bounds cover is checked: a huge length is refused, not searched for hours."""
    import json

    from amdvi.frontend.main import main

    path = tmp_path / "bounds.json"
    path.write_text(json.dumps({"version": 1, "kind": "sequence", "title": "b", "steps": [], "scenario": {
        "devices": [{"name": "nic", "device_id": "0x10"}],
        "bounds": {"iovas": ["0x100000"], "lengths": ["0xffffffffffff0000"], "user_pages": ["0x10000000"]}}}))
    assert main(["check", "--depth", "1", "--scenario", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bounds" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ValueError):
        sequence_bmc.Bounds(iovas=(2 ** 64 - 0x1000,), lengths=(0x1000,))
