"""`amdvi replay`: every trace the tool writes replays, reproducing its violation under the choices it
records (exit 1) and not under the correct model (exit 0); version 0 files still read; a bad file is
one line naming the step and the field, exit 2; the committed JSON Schema is the generated one."""

import json
from pathlib import Path

import pytest

from amdvi.frontend import trace_format
from amdvi.frontend.files import write_atomically
from amdvi.frontend.main import main
from amdvi.frontend.trace import describe
from amdvi.models.iommu import Dma, TranslatedDma
from amdvi.properties import stateful
from amdvi.properties.counterexample import replay
from amdvi.properties.presets import PRESETS

V0_TRACE = Path(__file__).parents[1] / "data" / "trace-v0-dte-invalidation.json"  # written by the tool before v1
SCHEMA_FILE = Path(trace_format.__file__).with_name("trace.schema.json")
# properties whose refutation writes no trace: the HW-vIOMMU's (a counterexample in words: GuestID, command,
# host ID reached; a replayable vIOMMU trace is not built yet)
NO_TRACE: set[str] = {"viommu-command-isolation", "viommu-invalidation-scope", "viommu-guest-wait-ordering",
                      "viommu-map-write-isolation", "viommu-guest-event-isolation"}
# a driver fault's refutation is a sequence of iommufd calls (properties.parent_flush_search.replay), no trace
NO_TRACE_PAIRS = {(p, name) for name, preset in PRESETS.items() if preset.driver.faults() for p in preset.refuted_by}
# (property, preset) pairs run in the default suite; the whole matrix is `pytest -m deep`
REPRESENTATIVE = {("dte-invalidation", "devtab-invalidation-ignored"), ("completion-wait-ordering", "completion-wait-early"),
                  ("fresh-slots-serve-fresh", "iotlb-hit-ignores-permissions")}
MATRIX = [(prop, name) for name, p in PRESETS.items() for prop in p.refuted_by]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _check_prove_then_replay(capsys, tmp_path, prop, preset):
    trace_file = tmp_path / f"{prop}--{preset}.json"
    code, _, _ = run(capsys, "prove", "--property", prop, "--preset", preset, "--trace-out", trace_file)
    assert code == 1
    if prop in NO_TRACE or (prop, preset) in NO_TRACE_PAIRS:
        assert not trace_file.exists()
        return
    assert json.loads(trace_file.read_text())["choices"] == [f"{preset}=on"]
    assert run(capsys, "replay", trace_file, "--preset", preset)[0] == 1
    code, out, _ = run(capsys, "replay", trace_file)  # the choices the file records: the broken model
    assert code == 1 and "REPRODUCES" in out
    code, out, _ = run(capsys, "replay", trace_file, "--defaults")  # the correct model
    assert code == 0 and "DOES NOT REPRODUCE" in out and "override the file" in out


@pytest.mark.parametrize("prop,preset", sorted(REPRESENTATIVE))
def test_prove_counterexamples_replay(capsys, tmp_path, prop, preset):
    _check_prove_then_replay(capsys, tmp_path, prop, preset)


@pytest.mark.deep
@pytest.mark.parametrize("prop,preset", MATRIX)
def test_every_prove_counterexample_replays(capsys, tmp_path, prop, preset):
    _check_prove_then_replay(capsys, tmp_path, prop, preset)


def test_a_state_machine_failure_replays(capsys, tmp_path):
    failure = stateful.run_machine(PRESETS["devtab-invalidation-ignored"].choices, shrink=False, max_examples=100,
                                   derandomize=True)
    assert isinstance(failure, stateful.StaleTranslation)
    trace = stateful.failure_trace(failure)
    assert trace.moves[-1] == failure.move and isinstance(failure.move, (Dma, TranslatedDma))
    assert replay(trace).reproduces
    trace_file = tmp_path / "machine.json"
    write_atomically(trace_file, trace_format.dumps(trace_format.to_json(trace, None, describe)))
    code, out, _ = run(capsys, "replay", trace_file)
    assert code == 1 and "differs" in out
    assert run(capsys, "replay", trace_file, "--defaults")[0] == 0
    assert run(capsys, "replay", trace_file, "--choice", "devtab-invalidation-ignored=off")[0] == 0


def test_a_written_trace_reads_back_the_same():
    failure = stateful.StaleTranslation("x", move=Dma(stateful.Request(0x10, 0x4010)), moves=(),
                                        choices=PRESETS["devtab-invalidation-ignored"].choices)
    trace = stateful.failure_trace(failure)
    back = trace_format.load(json.loads(trace_format.dumps(trace_format.to_json(trace, None, describe))), "t").trace
    assert back == trace


def test_a_version_0_trace_replays(capsys):
    """Version 1 added what v0 did not record (choices, registers, cache sizes, the claim); a v0 file
    is read with the defaults the tool then used, and says so."""
    code, out, _ = run(capsys, "replay", V0_TRACE, "--preset", "devtab-invalidation-ignored")
    assert code == 1 and "version 0" in out and "STALE" in out
    code, out, _ = run(capsys, "replay", V0_TRACE)
    assert code == 0 and "records no choices" in out
    assert json.loads(run(capsys, "replay", V0_TRACE, "--json")[1])["version"] == 0


def test_json_output_lists_each_step_with_its_changes(capsys):
    code, out, _ = run(capsys, "replay", V0_TRACE, "--preset", "devtab-invalidation-ignored", "--json")
    report = json.loads(out)
    assert code == 1 and report["reproduces"] and report["claimed"] == "stale"
    assert report["steps"][0]["changes"][0].startswith("dte slot 0 filled")
    assert any("command head" in c for s in report["steps"] for c in s["changes"])


def _v1():
    loaded = trace_format.load(json.loads(V0_TRACE.read_text()), "v0")
    return trace_format.to_json(loaded.trace, None, describe)


def _bad(tmp_path, change):
    doc = _v1()
    change(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(version=2), "field version: 2 is not a version this tool reads"),
    (lambda d: d["moves"][2].update(kind="Teleport"), "step 3 (Teleport), field kind: unknown kind \"Teleport\""),
    (lambda d: d["moves"][2].update(colour="red"), "step 3 (CpuWrite), field colour: unknown field"),
    (lambda d: d["memory"].update({"0x100200": "0xZZ"}), "field memory.0x100200: \"0xZZ\" is not a hex string"),
    (lambda d: d["moves"][0]["request"].update(device_id="0x10000"),
     "step 1 (Fill), field request.device_id: 0x10000 is wider than 16 bits"),
    (lambda d: d.update(choices=["no-such=on"]), "field choices[0]: unknown hardware choice 'no-such'"),
    (lambda d: d.update(choices=["illegal-command=maybe"]), "field choices[0]: choice illegal-command: 'maybe'"),
    (lambda d: d["moves"][0].update(slot="0x3"), "step 1 (Fill), field slot: dte has 1 slots, no slot 3"),
    (lambda d: d.update(colour="red"), "field colour: unknown field"),
    (lambda d: d.update(moves=d["moves"][:2]), "step 2 (CpuWrite), field kind: the last move must be a Dma"),
    (lambda d: d.update(violation="escape"), "field inside: an escape needs the frames"),
    (lambda d: d.pop("registers"), "field registers: missing"),
])
def test_a_bad_file_is_one_line_naming_step_and_field(capsys, tmp_path, change, message):
    code, out, err = run(capsys, "replay", _bad(tmp_path, change))
    assert code == 2 and out == ""
    assert err.startswith("amdvi: error:") and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("text,message", [("nope", "not JSON"), ("[1]", "a trace is a JSON object")])
def test_not_a_trace(capsys, tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    code, _, err = run(capsys, "replay", path)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv,message", [
    (["--preset", "no-such"], "unknown preset"), (["--choice", "no-such=on"], "unknown hardware choice")])
def test_an_unknown_preset_or_choice_on_the_command_line(capsys, argv, message):
    code, _, err = run(capsys, "replay", V0_TRACE, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_the_committed_json_schema_is_the_generated_one():
    """Regenerate with: python -m amdvi.frontend.trace_format > frontend/trace.schema.json"""
    assert json.loads(SCHEMA_FILE.read_text()) == trace_format.json_schema()


def test_every_move_kind_has_a_line_and_a_schema():
    from amdvi.frontend.trace import DESCRIBE
    from amdvi.models.moves import MOVE_KINDS

    assert set(DESCRIBE) == set(MOVE_KINDS) == set(trace_format.MOVES)


def test_an_atomic_write_gives_a_new_file_the_umasks_mode_and_keeps_an_old_ones(tmp_path):
    import os
    import stat

    new = tmp_path / "new.json"
    old_umask = os.umask(0o022)
    try:
        write_atomically(new, "{}")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o644
    new.chmod(0o600)
    write_atomically(new, "[]")
    assert stat.S_IMODE(new.stat().st_mode) == 0o600 and new.read_text() == "[]"
