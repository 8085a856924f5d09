"""`amdvi check`: the built-in library runs as expected; a bug file's counterexample is minimal, written
atomically with --trace-out (a file, or a directory for several) and replays (exit 1); a correct library
file replays with exit 0; --property limits the check; an unknown property is one line, exit 2; --list."""

import json
from importlib import resources

import pytest

from amdvi.frontend import sequence_format, sequence_library
from amdvi.frontend.main import main
from amdvi.properties import sequence_check

LIBRARY = resources.files("amdvi.examples") / sequence_library.FOLDER


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def library_file(tmp_path, name):
    """A copy of a library file (the tests never write next to the installed ones)."""
    target = tmp_path / name
    target.write_text((LIBRARY / name).read_text())
    return target


def _all_as_expected(capsys, *options):
    code, out, err = run(capsys, "check", "--json", *options)
    assert code == 0, err
    data = json.loads(out)
    expected = {f"{sequence_library.FOLDER}/{e.file}": e.claims for e in sequence_library.ENTRIES}
    seen = {s["source"]: s for s in data["sequences"]}
    assert set(seen) == set(expected)
    for source, claims in expected.items():
        s = seen[source]
        assert s["as_expected"], source
        assert s["expected"] == (claims or "holds")
        if claims is None:
            assert s["refuted"] == [] and s["counterexample"] is None, source
        else:
            assert claims in s["refuted"] and s["counterexample"]["steps"] >= 1, source
    assert {r["property"] for r in data["rows"]} >= set(sequence_check.ALL_PROPERTIES)


def test_the_library_is_as_expected_without_minimising(capsys):
    _all_as_expected(capsys, "--no-minimise")


@pytest.mark.deep
def test_the_library_is_as_expected(capsys):
    """`amdvi check` with no argument, counterexamples minimised (about 40 s)."""
    _all_as_expected(capsys)


def test_a_bug_files_counterexample_is_minimal_written_and_replays(capsys, tmp_path):
    bug = library_file(tmp_path, "bug-unmap-without-flush.json")
    out_file = tmp_path / "out" / "counterexample.json"
    code, out, _ = run(capsys, "check", bug, "--trace-out", out_file, "--json")
    assert code == 0  # the bug example claims isolation and isolation is refuted: as expected
    [s] = json.loads(out)["sequences"]
    assert s["as_expected"] and "isolation" in s["refuted"]
    # written atomically: the file and nothing else (no temporary left behind)
    assert sorted(p.name for p in out_file.parent.iterdir()) == ["counterexample.json"]
    obj = json.loads(out_file.read_text())
    assert obj["violation"]["property"] == "isolation"
    loaded = sequence_format.load(obj, str(out_file))
    assert loaded.claimed == "isolation" and len(loaded.steps) == s["counterexample"]["steps"]
    original = sequence_format.load(json.loads(bug.read_text()), str(bug))
    assert len(loaded.steps) < len(original.steps)
    assert all(step in original.steps for step in loaded.steps)
    assert loaded.scenario == original.scenario
    # minimal: the violation is there, and removing any one step loses it
    assert sequence_check.violated(loaded.scenario, loaded.steps, "isolation", loaded.probes) is not None
    for i in range(len(loaded.steps)):
        fewer = loaded.steps[:i] + loaded.steps[i + 1:]
        assert sequence_check.violated(loaded.scenario, fewer, "isolation", loaded.probes) is None, i
    # replay: exit 1, every step printed, the verdict
    code, out, _ = run(capsys, "replay", out_file)
    assert code == 1 and "REPRODUCES: isolation" in out
    for n in range(1, len(loaded.steps) + 1):
        assert f"\n{n}. " in "\n" + out
    assert "VIOLATED isolation" in out
    # the same file under the correct driver does not reproduce
    fixed = dict(obj, scenario=dict(obj["scenario"], choices=dict(obj["scenario"]["choices"], driver=[])))
    fixed_file = tmp_path / "fixed.json"
    fixed_file.write_text(json.dumps(fixed))
    code, out, _ = run(capsys, "replay", fixed_file)
    assert code == 0 and "DOES NOT REPRODUCE" in out


def test_trace_out_replaces_an_existing_file_whole(capsys, tmp_path):
    bug = library_file(tmp_path, "bug-destroy-ignores-users.json")
    out_file = tmp_path / "ce.json"
    out_file.write_text("x" * 100_000)  # longer than what is written: a file rewritten in place would keep a tail
    assert run(capsys, "check", bug, "--trace-out", out_file)[0] == 0
    assert sequence_format.is_sequence(json.loads(out_file.read_text()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bug-destroy-ignores-users.json", "ce.json"]


def test_trace_out_is_a_directory_for_several_counterexamples(capsys, tmp_path):
    bugs = [library_file(tmp_path, n) for n in ("bug-destroy-ignores-users.json", "bug-flush-queue-early-reuse.json")]
    target = tmp_path / "found"
    code, _, _ = run(capsys, "check", *bugs, "--trace-out", target, "--no-minimise")
    assert code == 0
    assert sorted(p.name for p in target.iterdir()) == ["counterexample-1.json", "counterexample-2.json"]
    claims = [json.loads((target / f"counterexample-{n}.json").read_text())["violation"]["property"] for n in (1, 2)]
    assert claims == ["errno-conformance", "isolation"]
    for n in (1, 2):
        assert run(capsys, "replay", target / f"counterexample-{n}.json")[0] == 1


def test_one_counterexample_into_an_existing_directory(capsys, tmp_path):
    bug = library_file(tmp_path, "bug-destroy-ignores-users.json")
    target = tmp_path / "dir"
    target.mkdir()
    assert run(capsys, "check", bug, "--trace-out", target, "--no-minimise")[0] == 0
    assert [p.name for p in target.iterdir()] == ["counterexample-1.json"]


def test_no_trace_is_written_when_everything_holds(capsys, tmp_path):
    good = library_file(tmp_path, "destroy-while-busy.json")
    assert run(capsys, "check", good, "--trace-out", tmp_path / "ce.json")[0] == 0
    assert not (tmp_path / "ce.json").exists()


def test_replay_of_a_correct_library_file_exits_0(capsys, tmp_path):
    good = library_file(tmp_path, "destroy-while-busy.json")
    code, out, _ = run(capsys, "replay", good)
    assert code == 0 and "every property holds" in out
    code, out, _ = run(capsys, "replay", good, "--json")
    data = json.loads(out)
    assert code == 0 and not data["reproduces"] and all(v["holds"] for v in data["verdicts"])


def test_a_bug_example_that_holds_is_not_as_expected(capsys, tmp_path):
    """A bug example whose fault switch is turned off: its claim is not refuted, exit 1."""
    obj = json.loads((LIBRARY / "bug-destroy-ignores-users.json").read_text())
    obj["scenario"]["choices"]["iommufd"] = []
    path = tmp_path / "off.json"
    path.write_text(json.dumps(obj))
    code, out, _ = run(capsys, "check", path, "--json")
    assert code == 1 and not json.loads(out)["sequences"][0]["as_expected"]


def test_property_limits_the_check(capsys, tmp_path):
    bug = library_file(tmp_path, "bug-destroy-ignores-users.json")
    code, out, _ = run(capsys, "check", bug, "--property", "object-lifetime", "--property", "errno-conformance",
                       "--json", "--no-minimise")
    assert code == 0
    data = json.loads(out)
    assert sorted(r["property"] for r in data["rows"]) == ["errno-conformance", "object-lifetime"]
    assert data["sequences"][0]["properties"] == 2
    # checking only a property the bug does not break: the claim is not refuted, exit 1
    code, out, _ = run(capsys, "check", bug, "--property", "no-torn-dte", "--json")
    assert code == 1
    [row] = json.loads(out)["rows"]
    assert row["property"] == "no-torn-dte" and row["verdict"] == "holds"


@pytest.mark.parametrize("argv", [["--property", "isolaton"], ["--property", "isolation", "--property", "nope"],
                                  ["--list", "--property", "nope"]])
def test_an_unknown_property_is_one_line_exit_2(capsys, argv):
    code, out, err = run(capsys, "check", *argv)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "unknown property" in lines[0] and "isolation" in lines[0]


def test_list(capsys):
    code, out, _ = run(capsys, "check", "--list")
    assert code == 0
    for e in sequence_library.ENTRIES:
        assert f"{sequence_library.FOLDER}/{e.file}" in out
    assert "properties: " + ", ".join(sequence_check.ALL_PROPERTIES) in " ".join(out.split())
    code, out, _ = run(capsys, "check", "--list", "--json")
    data = json.loads(out)
    assert code == 0 and data["properties"] == list(sequence_check.ALL_PROPERTIES)
    listed = {c["choice"] for c in data["choices"]}  # every layer's choices, as --choice takes them
    assert {"driver.unmap-skips-flush", "iommufd.nested-alloc", "hardware.invalid-dte"} <= listed
    assert [e["expected"] for e in data["library"]].count("holds") == sum(e.claims is None
                                                                          for e in sequence_library.ENTRIES)


def test_the_installed_library_is_the_generated_one(tmp_path):
    written = sequence_library.write(str(tmp_path))
    for path in written:
        name = path.rsplit("/", 1)[-1]
        assert (tmp_path / name).read_text() == (LIBRARY / name).read_text(), name
    assert sorted(p.name for p in LIBRARY.iterdir() if p.name.endswith(".json")) == sorted(
        e.file for e in sequence_library.ENTRIES)


def test_a_missing_file_is_one_line_exit_2(capsys, tmp_path):
    code, out, err = run(capsys, "check", tmp_path / "absent.json")
    assert code == 2 and len(err.strip().splitlines()) == 1



def test_an_errno_counterexample_stays_one_the_correct_model_passes(capsys, tmp_path):
    """Minimising must not drop the steps an `expect` depends on: the counterexample of
    destroy-ignores-users still makes its DESTROY busy, so the correct iommufd answers EBUSY on it."""
    bug = library_file(tmp_path, "bug-destroy-ignores-users.json")
    out_file = tmp_path / "ce.json"
    assert run(capsys, "check", bug, "--trace-out", out_file, "--property", "errno-conformance")[0] == 0
    loaded = sequence_format.load(json.loads(out_file.read_text()), str(out_file))
    assert sequence_check.violated(loaded.scenario, loaded.steps, "errno-conformance") is not None
    correct = sequence_check.without_faults(loaded.scenario)
    assert correct.iommufd.faults() == () and loaded.scenario.iommufd.faults() == ("destroy-ignores-users",)
    assert sequence_check.violated(correct, loaded.steps, "errno-conformance") is None
    for i in range(len(loaded.steps)):  # minimal among the sequences the correct model passes
        fewer = loaded.steps[:i] + loaded.steps[i + 1:]
        assert (sequence_check.violated(loaded.scenario, fewer, "errno-conformance") is None
                or sequence_check.violated(correct, fewer, "errno-conformance") is not None), i


def test_the_ats_reattach_finding_rests_on_the_kept_atc_reading(capsys, tmp_path):
    """Refuted while a device's ATC outlives ATS disable; holds when clearing ATS Enable empties it (the
    default), from the command line too."""
    import dataclasses

    from amdvi.spec.choices import Hardware

    entry = next(e for e in sequence_library.ENTRIES if e.file == "ats-reattach-kept-atc.json")
    v = sequence_check.violated(entry.scenario, entry.steps, "isolation")
    assert v is not None and v.served.used[-1][0] == "device_iotlb"
    default = dataclasses.replace(entry.scenario, hardware=Hardware())
    assert sequence_check.violated(default, entry.steps, "isolation") is None
    code, out, _ = run(capsys, "check", library_file(tmp_path, entry.file), "--choice",
                    "hardware.atc-on-ats-disable=discarded")
    assert code == 1 and "0 of 1 sequences as expected" in out


def test_the_guest_event_log_entry_holds_and_replay_shows_the_record_in_the_guests_page(capsys, tmp_path):
    """hw-viommu-guest-event-log.json: `amdvi check` says it holds; `amdvi replay` prints the refused command's
    ILLEGAL_COMMAND_ERROR written through stage 2 (GPA 0x10000 in the guest's page at RAM + 0x10000), and with
    the log's base used untranslated, at system 0x10000, which guest-event-isolation refutes."""
    good = library_file(tmp_path, "hw-viommu-guest-event-log.json")
    code, out, _ = run(capsys, "check", good)
    assert code == 0 and "1 of 1 sequences as expected" in out
    code, out, _ = run(capsys, "replay", good)
    lines = [line.strip() for line in out.splitlines() if "event log:" in line]
    assert code == 0 and "every property holds" in out
    assert lines == ["guest 1 event log: ILLEGAL_COMMAND_ERROR(EventCode=0x5, Address=0xe000) written at GPA "
                     f"0x10000 (system {sequence_library.RAM + sequence_library.EVENT_LOG:#x})"]
    code, out, _ = run(capsys, "replay", good, "--choice", "hardware.viommu-guest-event-log-untranslated=true")
    assert "written at GPA 0x10000 (system 0x10000)" in out
    assert code == 1 and "VIOLATED guest-event-isolation" in out and "wrote 0x10000, 0x10008" in out


def test_the_untranslated_guest_event_log_is_refuted_with_a_trace_replay_reproduces(capsys, tmp_path):
    bad = library_file(tmp_path, "bug-guest-event-log-untranslated.json")
    cex = tmp_path / "cex.json"
    code, out, _ = run(capsys, "check", bad, "--trace-out", str(cex))
    assert code == 0 and "1 of 1 sequences as expected" in out and "guest-event-isolation" in out
    code, out, _ = run(capsys, "replay", str(cex))
    assert code == 1 and "REPRODUCES: guest-event-isolation" in out
