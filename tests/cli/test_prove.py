"""`amdvi prove`: statuses and times per property, broken models refuted with a readable trace,
bad arguments one line and exit 2."""

import json

import pytest

from amdvi.frontend.main import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_properties_readings_and_presets(capsys):
    code, out, _ = run(capsys, "prove", "--list")
    assert code == 0
    for name in ("v1-entry-invalidation", "dte-invalidation", "completion-wait-ordering", "v1-entry-minimal",
                 "invalidate-pages-ignores-size", "completion-wait-early", "nested-isolation",
                 "illegal-command", "device-iotlb-gn0", "not-present-cache", "event-overflow"):
        assert name in out


def test_a_property_that_holds(capsys):
    code, out, _ = run(capsys, "prove", "--property", "gcr3-entry-invalidation", "--property",
                       "completion-wait-ordering")
    assert code == 0
    assert out.count("proved") == 2


def test_a_broken_model_is_refuted_with_a_trace(capsys, tmp_path):
    trace_file = tmp_path / "trace.json"
    code, out, _ = run(capsys, "prove", "--property", "v1-entry-invalidation", "--preset",
                       "invalidate-pages-ignores-size", "--trace-out", str(trace_file))
    assert code == 1
    assert "refuted" in out and "counterexample:" in out
    assert "INVALIDATE_IOMMU_PAGES(" in out and "COMPLETION_WAIT(" in out  # queued commands are decoded
    assert "STALE: the DMA reaches" in out
    saved = json.loads(trace_file.read_text())
    assert saved["replay"]["stale"] is True and saved["moves"][0]["kind"] == "Fill"
    assert saved["version"] == 1 and saved["choices"] == ["invalidate-pages-ignores-size=on"]


def test_json_report(capsys):
    code, out, _ = run(capsys, "prove", "--property", "completion-wait-ordering", "--preset",
                       "completion-wait-early", "--json")
    assert code == 1
    report = json.loads(out)
    [prop] = report["properties"]
    assert prop["status"] == "refuted" and report["choices"] == {"completion-wait-early": True}
    assert prop["seconds"] >= 0


@pytest.mark.parametrize("argv,message", [
    (["--property", "no-such"], "unknown property"),
    (["--preset", "no-such"], "unknown preset"),
    (["--choice", "no-such=on"], "unknown hardware choice"),
    (["--choice", "illegal-command=maybe"], "not one of stop, continue"),
    (["--choice", "completion-wait-early=perhaps"], "not on or off"),
    (["--choice", "illegal-command"], "NAME=VALUE"),
    (["--timeout", "0"], "--timeout"),
])
def test_bad_arguments(capsys, argv, message):
    code, out, err = run(capsys, "prove", *argv)
    assert code == 2 and out == ""
    assert err.startswith("amdvi: error:") and message in err and len(err.strip().splitlines()) == 1


def test_a_choice_on_the_command_line_is_the_same_as_its_preset(capsys):
    code, out, _ = run(capsys, "prove", "--property", "completion-wait-ordering", "--choice",
                       "completion-wait-early=on", "--json")
    assert code == 1 and json.loads(out)["choices"] == {"completion-wait-early": True}


def test_the_json_report_times_each_slot_step_as_its_own_obligation(capsys):
    code, out, _ = run(capsys, "prove", "--property", "gcr3-entry-invalidation", "--json")
    assert code == 0
    [prop] = json.loads(out)["properties"]
    names = [p["name"] for p in prop["parts"]]
    # a guest directory slot of a 4-level guest table holds one of three levels: three obligations
    assert [n for n in names if n.startswith("gcr3-entry/guest_pde/v2/")] == [
        "gcr3-entry/guest_pde/v2/0", "gcr3-entry/guest_pde/v2/1", "gcr3-entry/guest_pde/v2/2"]
    assert "gcr3-entry/gcr3/v2/0" in names and all(p["status"] == "proved" for p in prop["parts"])
    assert prop["seconds"] >= sum(p["seconds"] for p in prop["parts"]) - 0.01 * len(names)


def test_trace_out_without_a_trace_says_why_and_writes_nothing(capsys, tmp_path):
    trace_file = tmp_path / "trace.json"
    code, _, err = run(capsys, "prove", "--property", "viommu-stage2-reaches-every-guest", "--preset",
                       "parent-flush-misses-hdomids", "--trace-out", str(trace_file))
    assert code == 1 and not trace_file.exists()
    assert "no trace written" in err and "driver half's as its calls" in " ".join(err.split())
    code, _, err = run(capsys, "prove", "--property", "completion-wait-ordering", "--trace-out", str(trace_file))
    assert code == 0 and not trace_file.exists() and "every property holds" in err
