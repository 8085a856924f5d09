"""The solver layer under ``prove``: every query as SMT-LIB 2 gives the same verdict on Z3, Bitwuzla and
cvc5; the portfolio takes the first definite answer and kills the rest; a wrong answer is caught and
named, never a verdict; unknown and timeouts stay unknown."""

import importlib.util
import multiprocessing
import sys
import time
from pathlib import Path

import pytest
import z3

from amdvi.properties import solvers
from amdvi.properties.proof import PROVED, REFUTED, UNKNOWN, Witness, prove

ROOT = Path(__file__).resolve().parents[2]
OTHERS = [pytest.param(s, marks=pytest.mark.skipif(not solvers.installed(s), reason=f"{s} is not installed "
                                                    "(pip install 'amdvi-spec[solvers]')"))
          for s in (solvers.BITWUZLA, solvers.CVC5)]
EVERY = [solvers.Z3, *OTHERS]

x, y = z3.BitVecs("x y", 16)
memory = z3.Function("memory", z3.BitVecSort(16), z3.BitVecSort(16))  # adversarial memory, as in the proofs
ASSUMPTIONS = [z3.ULT(x, 100), memory(x) == y]
WITNESS = [Witness("x is odd", z3.Or(x & 1 == 1))]  # a one-argument `or`: SMT-LIB has none, the export fixes it


def _proved():
    return prove("small proved", ASSUMPTIONS, z3.ULT(x, 101), witnesses=WITNESS, timeout_ms=10_000)


def _refuted():
    return prove("small refuted", ASSUMPTIONS, z3.Or(z3.ULT(y, 7000), x == 3), witnesses=WITNESS, timeout_ms=10_000)


@pytest.mark.parametrize("solver", EVERY)
def test_a_proved_and_a_refuted_obligation_have_the_same_verdict_on_each_solver(solver):
    with solvers.using(solvers.Settings(solver=solver)):
        proved, refuted = _proved(), _refuted()
    assert proved.status == PROVED
    assert refuted.status == REFUTED
    # the counterexample is a Z3 model whatever solver found it: the trace code evaluates terms in it
    m = refuted.model
    assert isinstance(m, z3.ModelRef)
    assert m.eval(z3.ULT(x, 100)) and m.eval(memory(x) == y, model_completion=True)
    assert m.eval(z3.UGE(y, 7000)) and m.eval(x != 3)


def test_the_export_is_complete_smtlib_with_its_logic():
    script = solvers.smtlib((*ASSUMPTIONS, z3.Or(x & 1 == 1)))
    assert script.startswith("(set-logic QF_UFBV)")
    assert "(declare-fun memory ((_ BitVec 16)) (_ BitVec 16))" in script and "(check-sat)" in script
    a = z3.Array("a", z3.BitVecSort(8), z3.BitVecSort(8))
    assert solvers.smtlib((z3.ULT(x, 3), True)).startswith("(set-logic QF_BV)")  # a Python bool, as z3 takes
    assert solvers.smtlib((a[z3.BitVec("i", 8)] == 1,)).startswith("(set-logic QF_ABV)")
    q = z3.BitVec("q", 16)
    assert solvers.smtlib((z3.ForAll([q], memory(q) == q),)).startswith("(set-logic UFBV)")


@pytest.mark.skipif(not solvers.installed(solvers.BITWUZLA), reason="bitwuzla is not installed")
def test_z3s_own_printing_is_not_standard_and_the_export_fixes_it():
    s = z3.Solver()
    s.add(z3.Or(x & 1 == 1))  # Z3 prints `(or ...)` with one argument
    verdict, reason, _ = solvers._RUNNERS[solvers.BITWUZLA](s.to_smt2(), 5_000, False)
    assert verdict == solvers.UNKNOWN and "cannot read" in reason
    verdict, _, _ = solvers._RUNNERS[solvers.BITWUZLA](solvers.smtlib((z3.Or(x & 1 == 1),)), 5_000, False)
    assert verdict == solvers.SAT


@pytest.mark.parametrize("solver", OTHERS)
def test_quantified_and_array_questions_answer_alike(solver):
    q = z3.BitVec("q", 16)
    a = z3.Array("a", z3.BitVecSort(16), z3.BitVecSort(16))
    for assertions, expected in [((z3.ForAll([q], memory(q) == q), memory(x) != x), solvers.UNSAT),
                                 ((z3.ForAll([q], z3.ULE(memory(q), q)), memory(x) == 5), solvers.SAT),
                                 ((z3.Store(a, x, 9)[y] == 8, x == y), solvers.UNSAT),
                                 ((z3.Store(a, x, 9)[y] == 8,), solvers.SAT)]:
        question = solvers.Question("o", "q", assertions)
        assert solvers.run_z3(question, 10_000).verdict == expected
        verdict, reason, _ = solvers._RUNNERS[solver](solvers.smtlib(assertions), 10_000, False)
        # cvc5 is incomplete on quantified sat questions: it may say unknown (with why), never a wrong answer
        assert verdict == expected or (verdict == solvers.UNKNOWN and reason == "cvc5: incomplete"), reason


# --- fake solvers, to show the portfolio's and the checks' behaviour ---------------------------------------

def _after(seconds, verdict, values=None):
    def run(script, timeout_ms, want_model):
        time.sleep(seconds)
        return verdict, "" if verdict != solvers.UNKNOWN else "gave up", dict(values or {})
    return run


@pytest.fixture
def fakes(monkeypatch):
    """Named fake solvers in the runner table (the portfolio's processes are forked: they see them too)."""
    def add(**runners):
        for name, run in runners.items():
            monkeypatch.setitem(solvers._RUNNERS, name, run)
            monkeypatch.setitem(solvers._MODULES, name, "z3")  # "installed"
    return add


def test_the_portfolio_takes_the_first_definite_answer_and_kills_the_rest(fakes):
    fakes(slow=_after(30, solvers.SAT), quitter=_after(0, solvers.UNKNOWN), fast=_after(0.2, solvers.UNSAT))
    question = solvers.Question("obligation", "counterexample", (x == 1,))
    start = time.perf_counter()
    answer = solvers.portfolio(question, "", ["slow", "quitter", "fast"], 60_000)
    assert time.perf_counter() - start < 10
    assert answer.verdict == solvers.UNSAT and answer.solver == "portfolio:fast"
    assert multiprocessing.active_children() == []  # the slow one was killed, not left running


def test_a_portfolio_where_nobody_is_sure_is_unknown_with_each_reason(fakes):
    fakes(quitter=_after(0, solvers.UNKNOWN), hung=_after(60, solvers.SAT))
    answer = solvers.portfolio(solvers.Question("o", "q", (x == 1,)), "", ["quitter", "hung"], 200)
    assert answer.verdict == solvers.UNKNOWN
    assert "gave up" in answer.reason and "hung: timeout (killed)" in answer.reason


def test_a_wrong_sat_is_a_disagreement_naming_the_obligation(fakes):
    # the liar claims a counterexample to a claim that holds; Z3, asked with the liar's values, finds none
    fakes(liar=_after(0, solvers.SAT, {"x": (16, 200)}))
    for solver in ("liar", solvers.PORTFOLIO):
        with solvers.using(solvers.Settings(solver=solver)), pytest.MonkeyPatch.context() as m:
            m.setattr(solvers, "PORTFOLIO_MEMBERS", ("liar", solvers.Z3))
            with pytest.raises(solvers.SolverDisagreement) as e:
                _proved()
        assert "small proved (counterexample)" in str(e.value) and "liar sat" in str(e.value)
        assert e.value.question.obligation == "small proved"


def test_disagreeing_definite_answers_in_the_portfolio_are_an_error(fakes):
    fakes(says_sat=_after(0, solvers.SAT), says_unsat=_after(0, solvers.UNSAT))
    question = solvers.Question("o", "witness: w", (x == 1,))
    # both answer at once: gathered together, they must agree
    answers = solvers.race(question, "", ["says_sat", "says_unsat"], 10_000, first_definite=False)
    assert {a[1] for a in answers} == {solvers.SAT, solvers.UNSAT}
    with pytest.MonkeyPatch.context() as m:
        m.setattr(solvers, "race", lambda *a, **k: answers)
        with pytest.raises(solvers.SolverDisagreement) as e:
            solvers.portfolio(question, "", ["says_sat", "says_unsat"], 10_000)
    assert str(e.value).startswith("solvers disagree on o (witness: w): ")
    assert e.value.answers == {"says_sat": solvers.SAT, "says_unsat": solvers.UNSAT}


def test_a_solver_that_gives_up_leaves_the_proof_unknown_never_proved(fakes):
    fakes(quitter=_after(0, solvers.UNKNOWN))
    with solvers.using(solvers.Settings(solver="quitter")):
        r = _proved()
    assert r.status == UNKNOWN and "gave up" in r.detail


def _hard(bits=64):
    """Factoring a large semiprime: beyond any solver in a few milliseconds."""
    p, q = z3.BitVecs("p q", bits)
    n = 0xFFFF_FFFB * 0xFFFF_FFEF
    return (z3.ZeroExt(bits, p) * z3.ZeroExt(bits, q) == n, z3.UGT(p, 1), z3.UGT(q, 1))


@pytest.mark.parametrize("solver", EVERY)
def test_a_timeout_is_unknown(solver):
    with solvers.using(solvers.Settings(solver=solver)):
        a = solvers.check(solvers.Question("hard", "counterexample", _hard()), 50)
    assert a.verdict == solvers.UNKNOWN and a.reason


def test_a_member_killed_past_its_limit_is_unknown(fakes, monkeypatch):
    fakes(hung=_after(60, solvers.SAT))
    monkeypatch.setattr(solvers, "_GRACE_SECONDS", 0.2)
    a = solvers.isolated(solvers.Question("o", "q", ()), "", "hung", 100)
    assert a.verdict == solvers.UNKNOWN and "timeout (killed)" in a.reason


@pytest.mark.skipif(not solvers.installed(solvers.BITWUZLA), reason="bitwuzla is not installed")
def test_a_query_outside_a_solvers_logics_is_unknown_with_the_reason():
    i = z3.Int("i")  # integers: cvc5 reads them, Bitwuzla (bit-vectors only) cannot
    verdict, reason, _ = solvers._RUNNERS[solvers.BITWUZLA](solvers.smtlib((i * i == 49,)), 5_000, False)
    assert verdict == solvers.UNKNOWN and "bitwuzla cannot read the query" in reason


def test_the_recorded_choice_is_the_default_unless_not_installed_or_overridden(monkeypatch):
    monkeypatch.setattr(solvers, "recorded_choice", lambda: {"fast on bitwuzla": solvers.BITWUZLA})
    assert solvers.solver_for("other obligation", solvers.Settings()) == solvers.Z3
    assert solvers.solver_for("fast on bitwuzla", solvers.Settings(solver=solvers.CVC5)) == solvers.CVC5
    monkeypatch.setattr(solvers, "installed", lambda s: s == solvers.Z3)
    assert solvers.solver_for("fast on bitwuzla", solvers.Settings()) == solvers.Z3


def test_the_shipped_choice_names_only_known_solvers():
    assert set(solvers.recorded_choice().values()) <= set(solvers.SOLVERS)


# --- the bench's verdicts ----------------------------------------------------------------------------------

def _bench():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location("bench_solvers", ROOT / "bench" / "bench_solvers.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "bench"))


def _query(obligation, **answers):
    return {"property": "p", "obligation": obligation, "query": "counterexample",
            "answers": {s: {"verdict": v, "seconds": t, "reason": ""} for s, (v, t) in answers.items()}}


def test_the_bench_names_a_disagreement_and_chooses_only_agreeing_definite_faster_solvers():
    bench = _bench()
    queries = [_query("agree, bitwuzla faster", z3=("unsat", 4.0), bitwuzla=("unsat", 1.0), cvc5=("unsat", 9.0)),
               _query("agree, barely faster", z3=("unsat", 1.0), bitwuzla=("unsat", 0.95)),
               _query("bitwuzla unknown", z3=("unsat", 4.0), bitwuzla=("unknown", 0.5)),
               _query("disagree", z3=("unsat", 4.0), bitwuzla=("sat", 1.0))]
    assert [bench.disagreement(q) for q in queries] == [None, None, None,
                                                        "disagree (counterexample): z3 unsat, bitwuzla sat"]
    chosen = {o: r["default"] for o, r in bench.by_obligation(queries).items()}
    assert chosen == {"agree, bitwuzla faster": "bitwuzla", "agree, barely faster": "z3", "bitwuzla unknown": "z3",
                      "disagree": "z3"}
