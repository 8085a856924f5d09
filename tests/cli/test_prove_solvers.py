"""`amdvi prove --solver` and `--smtlib`: the written files are the queries (each gives the proof's
answer on every solver), bad solver names and paths are one line and exit 2, a solver caught lying is
an error naming the query (exit 3)."""

import json

import pytest

from amdvi.frontend import exit_codes
from amdvi.frontend.main import main
from amdvi.properties import solvers

QUICK = "viommu-invalidation-scope"  # a property whose queries take milliseconds


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_smtlib_writes_every_query_and_each_gives_the_proofs_answer(capsys, tmp_path):
    code, out, _ = run(capsys, "prove", "--property", QUICK, "--smtlib", str(tmp_path / "out"), "--json")
    assert code == 0 and json.loads(out)["properties"][0]["status"] == "proved"
    files = sorted((tmp_path / "out" / QUICK).glob("*/*.smt2"))
    assert [f.name for f in files] == ["01-witness_a_guest_INVALIDATE_IOMMU_PAGES_is_carried_out.smt2",
                                       "02-counterexample.smt2"]
    assert files[0].parent.name == "vIOMMU_guest_invalidation_scope_8_guests"
    expected = {"01": solvers.SAT, "02": solvers.UNSAT}  # the witness holds, no counterexample: proved
    for f in files:
        text = f.read_text()
        assert text.startswith(f"; amdvi prove: property {QUICK}, obligation vIOMMU guest invalidation scope")
        for solver in solvers.SOLVERS:
            if solvers.installed(solver):
                verdict, reason, _ = solvers._RUNNERS[solver](text, 30_000, False)
                assert verdict == expected[f.name[:2]], (solver, f.name, reason)
    assert not list(tmp_path.glob("out/**/.*.tmp"))  # written atomically: no temporary left behind


@pytest.mark.parametrize("solver", [s for s in solvers.CHOICES if s == solvers.Z3 or all(
    solvers.installed(m) for m in (solvers.BITWUZLA, solvers.CVC5))])
def test_each_solver_proves_and_refutes_with_a_trace(capsys, solver):
    code, out, _ = run(capsys, "prove", "--property", QUICK, "--solver", solver, "--json")
    assert code == 0 and json.loads(out)["properties"][0]["status"] == "proved"
    code, out, _ = run(capsys, "prove", "--property", "completion-wait-ordering", "--preset",
                       "completion-wait-early", "--solver", solver)
    assert code == 1 and "refuted" in out and "counterexample" in out


@pytest.mark.parametrize("argv,message", [
    (["--solver", "yices"], "unknown solver 'yices'"),
    (["--smtlib", "{file}"], "not a directory"),
    (["--smtlib", "{file}/below"], "cannot write"),
])
def test_bad_solver_or_smtlib_path(capsys, tmp_path, argv, message):
    (tmp_path / "file").write_text("")
    argv = [a.format(file=tmp_path / "file") for a in argv]
    code, out, err = run(capsys, "prove", "--property", QUICK, *argv)
    assert code == exit_codes.BAD_INPUT and out == ""
    assert err.startswith("amdvi: error:") and message in err and len(err.strip().splitlines()) == 1


def test_a_solver_not_installed_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(solvers, "installed", lambda s: s == solvers.Z3)
    for solver, message in (("cvc5", "--solver cvc5: not installed"), ("portfolio", "needs two solvers")):
        code, out, err = run(capsys, "prove", "--property", QUICK, "--solver", solver)
        assert code == exit_codes.BAD_INPUT and message in err and len(err.strip().splitlines()) == 1


def test_a_solver_caught_lying_is_an_error_naming_the_query(capsys, monkeypatch):
    # "bitwuzla" claims a counterexample to every claim; Z3 cannot rebuild it: the disagreement is named
    monkeypatch.setitem(solvers._RUNNERS, solvers.BITWUZLA, lambda script, timeout_ms, want_model: (solvers.SAT, "", {}))
    monkeypatch.setitem(solvers._MODULES, solvers.BITWUZLA, "z3")
    code, out, err = run(capsys, "prove", "--property", QUICK, "--solver", "bitwuzla")
    assert code == exit_codes.SOLVERS_DISAGREE and out == ""
    assert err.strip() == ("amdvi: error: solvers disagree on vIOMMU guest invalidation scope (8 guests) "
                           "(counterexample): bitwuzla sat, z3 unsat under bitwuzla's model")
    code, out, _ = run(capsys, "prove", "--property", QUICK, "--solver", "bitwuzla", "--json")
    assert code == exit_codes.SOLVERS_DISAGREE
    assert json.loads(out) == {"error": "solvers disagree", "obligation": "vIOMMU guest invalidation scope (8 guests)",
                               "query": "counterexample",
                               "answers": {"bitwuzla": "sat", "z3": "unsat under bitwuzla's model"}}
