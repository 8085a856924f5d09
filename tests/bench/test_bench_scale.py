"""bench/bench_scale.py: a point gives a definite verdict (proved on the correct model, refuted on the
broken one), and every axis names real proofs and broken models."""

import importlib.util
import sys
from pathlib import Path

import pytest

from amdvi.properties import invalidation, presets
from amdvi.properties.proof import PROVED, REFUTED

BENCH = Path(__file__).parents[2] / "bench"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))  # the bench imports its neighbours (record, bench_check)
    try:
        spec = importlib.util.spec_from_file_location("bench_scale", BENCH / "bench_scale.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_scale"] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench_scale", None)
        sys.path.remove(str(BENCH))


def test_a_domain_point_is_proved_and_its_preset_refutes_it(bench):
    assert bench.point("domains", "v1-entry-invalidation/pde", 2).status == PROVED
    assert bench.AXES["domains"][1]["v1-entry-invalidation/pde"].broken.preset  # a hardware preset
    assert bench.point("domains", "v1-entry-invalidation/pde", 2, broken=True).status == REFUTED


def test_a_device_point_is_proved_and_a_misdirected_invalidation_refutes_it(bench):
    assert bench.point("devices", "v1-entry-invalidation/device_iotlb", 2).status == PROVED
    assert bench.point("devices", "v1-entry-invalidation/device_iotlb", 2, broken=True).status == REFUTED


def test_every_axis_names_its_sizes_and_a_known_broken_model(bench):
    assert set(bench.AXES) == {"devices", "domains", "pasids", "guests", "host-depth"}
    for axis, (sizes, proofs) in bench.AXES.items():
        assert sizes == (bench.DEPTHS if axis == "host-depth" else (2, 4, 8, 16, 64))
        for name, proof in proofs.items():
            broken = proof.broken
            assert (broken.preset in presets.PRESETS) != (broken.weakening in invalidation.CORRUPTIONS), name


def test_bad_arguments_exit_2(bench, capsys):
    for argv in (["--repeat", "0"], ["--axis", "colours"], ["--timeout", "-1"]):
        with pytest.raises(SystemExit) as e:
            bench.main(argv)
        assert e.value.code == 2
