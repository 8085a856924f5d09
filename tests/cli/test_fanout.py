"""Fanning out over Dask distributed (``--jobs``, ``--scheduler``): the same verdicts as a serial run for
``amdvi prove``, ``amdvi check`` (sequences and bounded model checking) and ``amdvi mutants``; bad values,
an unreachable scheduler and a worker's error are one line and exit 2; Ctrl-C leaves no file and no
worker process behind. Most tests share one 2-worker local cluster through ``--scheduler`` (starting one
takes seconds); one test has ``--jobs 2`` start its own."""

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pytest

from amdvi.frontend import fanout, sequence_library, tasks
from amdvi.frontend.main import main

distributed = pytest.importorskip("distributed")

LIBRARY = resources.files("amdvi.examples") / sequence_library.FOLDER
AMDVI = str(Path(sys.executable).with_name("amdvi"))


@pytest.fixture(scope="module")
def scheduler():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


def run_json(capsys, *argv):
    code = main([str(a) for a in argv] + ["--json"])
    out, err = capsys.readouterr()
    assert code in (0, 1), err
    return code, json.loads(out)


def without_times(value):
    """The report with every ``seconds`` left out (they differ from run to run)."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


def prove_verdicts(report):
    return [(p["name"], p["status"], [(q["name"], q["status"]) for q in p["parts"]],
             p["counterexample"] is not None and p["counterexample"]["replay"]["reproduced"])
            for p in report["properties"]]


def test_prove_on_the_cluster_gives_the_serial_verdicts(capsys, scheduler):
    argv = ["prove", "--property", "completion-wait-ordering", "--property", "viommu-map-write-isolation",
            "--property", "viommu-command-isolation"]
    serial = run_json(capsys, *argv)
    parallel = run_json(capsys, *argv, "--scheduler", scheduler)
    assert serial[0] == parallel[0] == 0
    assert prove_verdicts(serial[1]) == prove_verdicts(parallel[1])


def test_the_chosen_solver_proves_on_the_workers(capsys, scheduler):
    argv = ["prove", "--property", "completion-wait-ordering", "--solver", "bitwuzla"]
    serial = run_json(capsys, *argv)
    parallel = run_json(capsys, *argv, "--scheduler", scheduler)
    assert serial[0] == parallel[0] == 0
    assert prove_verdicts(serial[1]) == prove_verdicts(parallel[1])


def test_a_broken_model_is_refuted_on_the_cluster_as_serially(capsys, scheduler, tmp_path):
    argv = ["prove", "--preset", "completion-wait-early", "--property", "viommu-guest-wait-ordering",
            "--property", "completion-wait-ordering"]
    serial = run_json(capsys, *argv)
    trace = tmp_path / "cex.json"
    parallel = run_json(capsys, *argv, "--scheduler", scheduler, "--trace-out", trace)
    assert serial[0] == parallel[0] == 1
    assert prove_verdicts(serial[1]) == prove_verdicts(parallel[1])
    assert [p["status"] for p in parallel[1]["properties"]] == ["refuted", "refuted"]
    # the counterexample came back from a worker as plain data and replays (exit 1: it reproduces)
    assert main(["replay", str(trace)]) == 1


@pytest.mark.deep
def test_the_library_on_the_cluster_gives_the_serial_report(capsys, scheduler):
    serial = run_json(capsys, "check")
    parallel = run_json(capsys, "check", "--scheduler", scheduler)
    assert serial[0] == parallel[0] == 0
    assert without_times(serial[1]) == without_times(parallel[1])


@pytest.mark.deep
def test_the_whole_mutant_matrix_on_the_cluster_is_the_serial_one(capsys, scheduler):
    serial = run_json(capsys, "mutants")
    parallel = run_json(capsys, "mutants", "--scheduler", scheduler)
    assert serial[0] == parallel[0] == 0
    assert [(r["preset"], r["checker"], r["found"]) for r in serial[1]["rows"]] == [
        (r["preset"], r["checker"], r["found"]) for r in parallel[1]["rows"]]


def test_sequences_on_the_cluster_give_the_serial_report(capsys, scheduler):
    files = [LIBRARY / "plain-device.json", LIBRARY / "ats-device.json", LIBRARY / "bug-unmap-without-flush.json"]
    serial = run_json(capsys, "check", *files)
    parallel = run_json(capsys, "check", *files, "--scheduler", scheduler)
    assert serial[0] == parallel[0] == 0
    assert without_times(serial[1]) == without_times(parallel[1])
    assert parallel[1]["sequences"][2]["refuted"]  # the bug example is refuted, with its counterexample
    assert parallel[1]["sequences"][2]["counterexample"]["steps"] > 0


@pytest.mark.parametrize("argv", [
    ["--depth", "3", "--choice", "driver.unmap-skips-flush=on", "--property", "isolation"],
    ["--depth", "2", "--property", "isolation", "--property", "flush-completeness"],
    pytest.param(["--depth", "4"], marks=pytest.mark.deep)], ids=["violation", "holds", "deep"])
def test_bounded_model_checking_on_the_cluster_is_the_serial_search(capsys, scheduler, argv):
    serial = run_json(capsys, "check", *argv)
    parallel = run_json(capsys, "check", *argv, "--scheduler", scheduler)
    assert serial[0] == parallel[0]
    # the same counts and new states at every depth, and the same shortest counterexample
    assert without_times(serial[1]) == without_times(parallel[1])
    assert serial[1]["depths"][-1]["checked"] > 0


def test_the_mutant_matrix_on_the_cluster_is_the_serial_one(capsys, scheduler):
    from amdvi.properties.presets import VIOMMU_MACHINE, caught_by

    viommu = caught_by(VIOMMU_MACHINE)
    argv = ["mutants", "--preset", "completion-wait-early", *(a for p in viommu for a in ("--preset", p))]
    serial = run_json(capsys, *argv)
    parallel = run_json(capsys, *argv, "--scheduler", scheduler)
    assert serial[0] == parallel[0] == 0
    cells = [(r["preset"], r["checker"], r["found"]) for r in serial[1]["rows"]]
    assert cells == [(r["preset"], r["checker"], r["found"]) for r in parallel[1]["rows"]]
    assert ("completion-wait-early", "IommuMachine", "caught") in cells  # a Hypothesis run, too
    assert viommu and all((p, VIOMMU_MACHINE, "caught") in cells for p in viommu)  # on a Dask worker too
    # by the vIOMMU machine's own violation, not by another failure
    assert all(r["detail"].startswith("ViommuViolation: ") for r in parallel[1]["rows"] if r["checker"] == VIOMMU_MACHINE)


def test_the_mutant_matrix_fails_when_a_broken_model_escapes(capsys, monkeypatch):
    from amdvi.properties import presets

    # a checker that does not look at what this fault breaks: the broken model escapes it
    wrong = dataclasses.replace(presets.PRESETS["completion-wait-early"], refuted_by=("viommu-map-write-isolation",),
                                caught_by=())
    monkeypatch.setitem(presets.PRESETS, "completion-wait-early", wrong)
    code, report = run_json(capsys, "mutants", "--preset", "completion-wait-early")
    assert code == 1 and not report["all_caught"]
    assert report["rows"] == [{"preset": "completion-wait-early", "kind": "property",
                               "checker": "viommu-map-write-isolation", "expected": "refuted", "found": "proved",
                               "as_expected": False, "detail": ""}]


def test_a_broken_model_escaping_the_viommu_machine_fails_the_matrix(capsys, monkeypatch):
    """The vIOMMU machine named for a preset it does not catch (one guest: a shared DomainID map shows
    nowhere): it passes, and the matrix says so (a small budget: passing takes the whole of it)."""
    from amdvi.frontend import viommu_machine
    from amdvi.properties import presets

    wrong = dataclasses.replace(presets.PRESETS["viommu-domain-map-shared"], refuted_by=(),
                                caught_by=(presets.VIOMMU_MACHINE,))
    monkeypatch.setitem(presets.PRESETS, "viommu-domain-map-shared", wrong)
    monkeypatch.setattr(viommu_machine, "EXAMPLES", 2)
    code, report = run_json(capsys, "mutants", "--preset", "viommu-domain-map-shared")
    assert code == 1 and not report["all_caught"]
    assert report["rows"] == [{"preset": "viommu-domain-map-shared", "kind": "machine", "checker": "ViommuMachine",
                               "expected": "caught", "found": "escaped", "as_expected": False, "detail": ""}]


def test_jobs_starts_a_local_cluster_with_the_serial_verdicts(capsys):
    argv = ["prove", "--property", "completion-wait-ordering", "--property", "viommu-invalidation-scope"]
    serial = run_json(capsys, *argv)
    parallel = run_json(capsys, *argv, "--jobs", "2")
    assert prove_verdicts(serial[1]) == prove_verdicts(parallel[1])


@pytest.mark.parametrize("argv,message", [
    (["prove", "--jobs", "0"], "--jobs 0"),
    (["check", "--jobs", "-2"], "--jobs -2"),
    (["mutants", "--jobs", "two"], "invalid int value"),
    (["prove", "--jobs", "2", "--scheduler", "tcp://127.0.0.1:8786"], "not both"),
    (["mutants", "--preset", "no-such", "--jobs", "2"], "unknown preset"),
    (["check", "--scheduler", "not an address"], "cannot reach the Dask scheduler"),
    (["prove", "--jobs", "2", "--smtlib", "out"], "without --jobs"),
])
def test_bad_fanout_values_are_one_line_exit_2(capsys, argv, message):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and message in lines[0], err


def test_an_unreachable_scheduler_is_one_line_exit_2(capsys):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert main(["prove", "--property", "completion-wait-ordering", "--scheduler", "tcp://127.0.0.1:9"]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in lines[0]


def test_without_dask_the_options_are_one_line_exit_2(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    assert main(["prove", "--property", "completion-wait-ordering", "--jobs", "2"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and fanout.INSTALL_HINT in err


def test_a_task_failing_on_a_worker_is_one_line(scheduler):
    broken = tasks.SequenceTask("sequences/broken.json", "{not json", (), ("isolation",))
    with pytest.raises(fanout.FanOutError) as e:
        with fanout.DaskRunner(scheduler=scheduler) as runner:
            runner.map([broken], "checking")
    assert str(e.value).startswith("broken: JSONDecodeError: ") and "\n" not in str(e.value)


def test_results_come_back_in_task_order_whatever_order_they_finish_in(scheduler):
    # the first task is the slowest (it finishes after the others): it is still first in the results
    order = [tasks.ProveTask("completion-wait-ordering"), tasks.ProveTask("viommu-command-isolation"),
             tasks.ProveTask("viommu-map-write-isolation"), tasks.ProveTask("viommu-invalidation-scope")]
    with fanout.DaskRunner(scheduler=scheduler) as runner:
        outcomes = runner.map(order, "proving")
    assert [o.result.name for o in outcomes] == [t.property for t in order]


def test_ctrl_c_leaves_no_file_and_no_worker(tmp_path):
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "cex.json"
    proc = subprocess.Popen([AMDVI, "prove", "--all", "--preset", "invalidate-pages-ignores-size", "--jobs", "2",
                             "--trace-out", str(out)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            # an xdist worker ignores SIGINT, and a child inherits that: give it Python's own
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert "Dask: a local cluster, 2 workers" in proc.stderr.readline()  # the cluster is up
        time.sleep(1.0)  # the tasks are on the workers
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert workers
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        err = proc.stderr.read()
    finally:
        proc.kill()
    assert code == 130 and err.strip().endswith("amdvi: interrupted"), err
    assert os.listdir(tmp_path) == []  # neither the trace nor a temporary file
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, alive
