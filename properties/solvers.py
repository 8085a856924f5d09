"""Putting one proof question to Z3, Bitwuzla, cvc5 or a portfolio of them.

``proof.prove`` asks two kinds of question: "can this witness hold?" and "is there a counterexample?".
Each is a :class:`Question` and :func:`check` answers it ``sat``, ``unsat`` or ``unknown`` (with the
reason). Z3 answers on its own terms with the tactic the proof names (``proof.STRATEGIES``); Bitwuzla
and cvc5 read the question as an SMT-LIB 2 script (:func:`smtlib`), the same text ``amdvi prove
--smtlib`` writes. A counterexample found by another solver becomes a Z3 model by asking Z3 the same
question with that solver's values of the free constants fixed (quick, and a check of its answer), so
traces and replays work unchanged.

Which solver answers: :class:`Settings` (``amdvi prove --solver``), else the solver recorded fastest
for the obligation (``solver_choice.json``, written by ``bench/bench_solvers.py``), else Z3. The
portfolio runs its members in separate processes and takes the first definite answer; definite
answers that disagree raise :class:`SolverDisagreement` naming the obligation, never a verdict.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import json
import multiprocessing
import multiprocessing.connection
import re
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Callable, Iterator

import z3

SAT, UNSAT, UNKNOWN = "sat", "unsat", "unknown"
Z3, BITWUZLA, CVC5, PORTFOLIO = "z3", "bitwuzla", "cvc5", "portfolio"
SOLVERS = (Z3, BITWUZLA, CVC5)
CHOICES = (*SOLVERS, PORTFOLIO)
# those installed race; cvc5 is left out: in bench/results/solvers.json it was the fastest on 6 of 126
# queries (by milliseconds), slowest in total and unknown on 7, and a third racer would share a core
PORTFOLIO_MEMBERS = (Z3, BITWUZLA)
_MODULES = {Z3: "z3", BITWUZLA: "bitwuzla", CVC5: "cvc5"}
_GRACE_SECONDS = 5.0  # a member past its own time limit by this much is killed and counted unknown


@dataclass(frozen=True)
class Question:
    """Are ``assertions`` satisfiable together? ``obligation`` is the proof's name, ``label`` which of its
    questions."""

    obligation: str
    label: str
    assertions: tuple[Any, ...]  # z3 BoolRefs
    strategy: str = "default"  # the Z3 tactic (proof.STRATEGIES); the other solvers ignore it
    want_model: bool = False  # a sat answer must come with a Z3 model (a counterexample)


@dataclass(frozen=True)
class Answer:
    verdict: str  # SAT, UNSAT or UNKNOWN
    solver: str
    seconds: float
    reason: str = ""  # why unknown
    model: Any = None  # a z3 ModelRef, for a sat answer to a question that wants one


class SolverDisagreement(RuntimeError):
    """Two solvers gave different definite answers to one question: a bug in a solver or in the export."""

    def __init__(self, question: Question, answers: dict[str, str]) -> None:
        self.question, self.answers = question, dict(answers)
        said = ", ".join(f"{s} {v}" for s, v in self.answers.items())
        super().__init__(f"solvers disagree on {question.obligation} ({question.label}): {said}")


@dataclass(frozen=True)
class Settings:
    """How :func:`check` answers, for the duration of :func:`using` (a context variable: work handed to
    another process must enter :func:`using` there again)."""

    solver: str | None = None  # one of CHOICES; None: the recorded choice per obligation, else Z3
    on_script: Callable[[Question, str], None] | None = None  # each question's SMT-LIB text (--smtlib)
    on_answer: Callable[[Question, Answer], None] | None = None  # each answer (the bench records them)


_SETTINGS: contextvars.ContextVar[Settings] = contextvars.ContextVar("amdvi_solver_settings", default=Settings())


@contextlib.contextmanager
def using(settings: Settings) -> Iterator[Settings]:
    token = _SETTINGS.set(settings)
    try:
        yield settings
    finally:
        _SETTINGS.reset(token)


def installed(solver: str) -> bool:
    return importlib.util.find_spec(_MODULES[solver]) is not None


@cache
def recorded_choice() -> dict[str, str]:
    """The fastest solver that agreed with the others, per obligation (bench/bench_solvers.py)."""
    text = resources.files("amdvi.properties").joinpath("solver_choice.json").read_text(encoding="utf-8")
    return dict(json.loads(text)["obligations"])


def solver_for(obligation: str, settings: Settings | None = None) -> str:
    chosen = (settings or _SETTINGS.get()).solver
    if chosen is not None:
        return chosen
    recorded = recorded_choice().get(obligation, Z3)
    return recorded if installed(recorded) else Z3


def check(question: Question, timeout_ms: int) -> Answer:
    """Answer ``question`` as the current :class:`Settings` say."""
    settings = _SETTINGS.get()
    solver = solver_for(question.obligation, settings)
    script = smtlib(question.assertions) if settings.on_script or solver != Z3 else ""
    if settings.on_script:
        settings.on_script(question, script)
    if solver == Z3:
        answer = run_z3(question, timeout_ms)
    elif solver == PORTFOLIO:
        answer = portfolio(question, script, [s for s in PORTFOLIO_MEMBERS if installed(s)], timeout_ms)
    else:
        start = time.perf_counter()
        verdict, reason, values = _run(solver, script, timeout_ms, question.want_model, question.strategy)
        answer = _with_model(question, Answer(verdict, solver, time.perf_counter() - start, reason), values,
                             timeout_ms)
    if settings.on_answer:
        settings.on_answer(question, answer)
    return answer


# --- SMT-LIB 2 ------------------------------------------------------------------------------------------

_UF = re.compile(r"\(declare-fun (?:\|[^|]*\||\S+) \((?!\))")


def smtlib(assertions: tuple[Any, ...]) -> str:
    """The assertions as an SMT-LIB 2 script: logic, declarations, assertions, ``(check-sat)``.

    Each through Z3's simplifier first: Z3 prints ``(or x)`` and ``(and x)`` with one argument, which
    SMT-LIB does not allow (Bitwuzla rejects them); the simplified assertions are equivalent and have none."""
    s = z3.Solver()
    s.add(*[z3.simplify(a if z3.is_expr(a) else z3.BoolVal(a)) for a in assertions])  # a Python bool too
    body = s.to_smt2()
    return f"(set-logic {_logic(assertions, body)})\n{body}"


def _logic(assertions: tuple[Any, ...], body: str) -> str:
    """The SMT-LIB logic of the script: bit-vectors, with arrays, functions and quantifiers as used."""
    declarations = "\n".join(line for line in body.splitlines() if line.startswith("(declare-"))
    if re.search(r"\b(Int|Real)\b", declarations):
        return "ALL"
    goal = z3.Goal()
    goal.add(*assertions)
    quantified = z3.Probe("has-quantifiers")(goal) != 0
    arrays = "(Array " in declarations
    functions = _UF.search(declarations) is not None
    return ("" if quantified else "QF_") + ("A" if arrays else "") + ("UF" if functions else "") + "BV"


# --- the solvers ----------------------------------------------------------------------------------------
# Each runner takes the script and answers (verdict, reason, values): values, for a sat answer when a
# model is wanted, maps each free constant's name to (width or 0 for Bool, value).

Values = dict[str, tuple[int, int]]


def run_z3(question: Question, timeout_ms: int) -> Answer:
    """Z3 on the question's own terms, with its tactic; a sat answer keeps Z3's model."""
    from .proof import _solver  # proof imports this module

    start = time.perf_counter()
    s = _solver(timeout_ms, question.strategy)
    s.add(*question.assertions)
    r = s.check()
    elapsed = time.perf_counter() - start
    if r == z3.sat:
        return Answer(SAT, Z3, elapsed, model=s.model() if question.want_model else None)
    if r == z3.unsat:
        return Answer(UNSAT, Z3, elapsed)
    return Answer(UNKNOWN, Z3, elapsed, f"z3: {s.reason_unknown()}")


def _z3_script(script: str, timeout_ms: int, want_model: bool, strategy: str = "default") -> tuple[str, str, Values]:
    """Z3 reading the SMT-LIB script (the portfolio's Z3: a separate process gets text, not terms)."""
    from .proof import _solver

    s = _solver(timeout_ms, strategy)
    s.add(*z3.parse_smt2_string(script))
    r = s.check()
    if r == z3.unsat:
        return UNSAT, "", {}
    if r != z3.sat:
        return UNKNOWN, f"z3: {s.reason_unknown()}", {}
    values: Values = {}
    if want_model:
        m = s.model()
        for d in m.decls():
            if d.arity() == 0 and d.range().kind() in (z3.Z3_BV_SORT, z3.Z3_BOOL_SORT):
                v = m[d]
                values[d.name()] = (0, int(z3.is_true(v))) if z3.is_bool(v) else (v.size(), v.as_long())
    return SAT, "", values


def _bitwuzla(script: str, timeout_ms: int, want_model: bool) -> tuple[str, str, Values]:
    import bitwuzla

    options = bitwuzla.Options()
    options.set(bitwuzla.Option.TIME_LIMIT_PER, timeout_ms)
    options.set(bitwuzla.Option.PRODUCE_MODELS, want_model)
    parser = bitwuzla.Parser(bitwuzla.TermManager(), options)
    try:
        parser.parse(script, True, False)  # parse only: the check is ours
    except bitwuzla.BitwuzlaException as e:
        return UNKNOWN, f"bitwuzla cannot read the query: {_one_line(e)}", {}
    solver = parser.bitwuzla()
    start = time.perf_counter()
    r = solver.check_sat()
    if r == bitwuzla.Result.UNSAT:
        return UNSAT, "", {}
    if r != bitwuzla.Result.SAT:
        limit = time.perf_counter() - start >= timeout_ms / 1000
        return UNKNOWN, "bitwuzla: " + ("timeout" if limit else "unknown"), {}
    values: Values = {}
    if want_model:
        for t in parser.get_declared_funs():
            sort = t.sort()
            if sort.is_bool():
                values[_unquoted(t.symbol())] = (0, int(solver.get_value(t).value()))
            elif sort.is_bv():
                values[_unquoted(t.symbol())] = (sort.bv_size(), int(solver.get_value(t).value(10)))
    return SAT, "", values


def _cvc5(script: str, timeout_ms: int, want_model: bool) -> tuple[str, str, Values]:
    import cvc5

    tm = cvc5.TermManager()
    solver = cvc5.Solver(tm)
    solver.setOption("tlimit-per", str(timeout_ms))
    solver.setOption("produce-models", "true" if want_model else "false")
    symbols = cvc5.SymbolManager(tm)
    parser = cvc5.InputParser(solver, symbols)
    parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, script, "question")
    try:
        while not (command := parser.nextCommand()).isNull():
            if not command.getCommandName() == "check-sat":  # the check is ours
                command.invoke(solver, symbols)
    except RuntimeError as e:  # cvc5's parse errors
        return UNKNOWN, f"cvc5 cannot read the query: {_one_line(e)}", {}
    r = solver.checkSat()
    if r.isUnsat():
        return UNSAT, "", {}
    if not r.isSat():
        return UNKNOWN, f"cvc5: {r.getUnknownExplanation().name.lower()}", {}
    values: Values = {}
    if want_model:
        for t in symbols.getDeclaredTerms():
            sort = t.getSort()
            if sort.isBoolean():
                values[str(t.getSymbol())] = (0, int(solver.getValue(t).getBooleanValue()))
            elif sort.isBitVector():
                values[str(t.getSymbol())] = (sort.getBitVectorSize(), int(solver.getValue(t).getBitVectorValue(10)))
    return SAT, "", values


_RUNNERS: dict[str, Callable[[str, int, bool], tuple[str, str, Values]]] = {
    Z3: _z3_script, BITWUZLA: _bitwuzla, CVC5: _cvc5}


def _run(solver: str, script: str, timeout_ms: int, want_model: bool, strategy: str) -> tuple[str, str, Values]:
    """``solver`` on ``script``; its own failure (an exception) is its unknown, with the reason."""
    try:
        if solver == Z3:
            return _z3_script(script, timeout_ms, want_model, strategy)
        return _RUNNERS[solver](script, timeout_ms, want_model)
    except Exception as e:
        return UNKNOWN, f"{solver} failed: {_one_line(e)}", {}


def _unquoted(symbol: str) -> str:
    """An SMT-LIB symbol without its ``|...|`` quotes (Bitwuzla keeps them)."""
    return symbol[1:-1] if len(symbol) >= 2 and symbol[0] == symbol[-1] == "|" else symbol


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]


def _with_model(question: Question, answer: Answer, values: Values, timeout_ms: int) -> Answer:
    """``answer`` with a Z3 model when it is sat and one is wanted: Z3 asked the same question with the
    solver's values of the free constants fixed. Z3 finding that impossible is a disagreement."""
    if answer.verdict != SAT or not question.want_model:
        return answer
    start = time.perf_counter()
    fixed = [z3.Bool(n) == bool(v) if width == 0 else z3.BitVec(n, width) == v for n, (width, v) in values.items()]
    hinted = run_z3(Question(question.obligation, question.label, (*question.assertions, *fixed),
                             question.strategy, True), timeout_ms)
    if hinted.verdict == UNSAT:
        raise SolverDisagreement(question, {answer.solver: SAT, Z3: f"{UNSAT} under {answer.solver}'s model"})
    if hinted.verdict == UNKNOWN:  # e.g. a value Z3 cannot take back: Z3 alone, on the full question
        hinted = run_z3(question, timeout_ms)
        if hinted.verdict == UNSAT:
            raise SolverDisagreement(question, {answer.solver: SAT, Z3: UNSAT})
    seconds = answer.seconds + time.perf_counter() - start
    if hinted.verdict != SAT:
        return Answer(UNKNOWN, answer.solver, seconds,
                      f"{answer.solver} found a counterexample but Z3 could not rebuild it as a model: {hinted.reason}")
    return Answer(SAT, answer.solver, seconds, model=hinted.model)


# --- separate processes: the portfolio, and one solver isolated (the bench) -----------------------------

def _context() -> Any:
    """Processes forked from this one: they start at once with the solvers loaded and the question's
    text in hand (a fresh interpreter would first import them, and the caller's main module, anew).
    The child only solves and sends its answer, so the parent's other threads do not matter to it."""
    for solver in SOLVERS:
        if installed(solver):
            importlib.import_module(_MODULES[solver])
    return multiprocessing.get_context("fork")


def _member(solver: str, script: str, timeout_ms: int, want_model: bool, strategy: str,
            conn: multiprocessing.connection.Connection) -> None:
    start = time.perf_counter()
    verdict, reason, values = _run(solver, script, timeout_ms, want_model, strategy)
    conn.send((verdict, reason, values, time.perf_counter() - start))
    conn.close()


def race(question: Question, script: str, members: list[str], timeout_ms: int, *,
         first_definite: bool = True) -> list[tuple[str, str, str, Values, float]]:
    """Run each member on ``script`` in its own process. Returns (solver, verdict, reason, values,
    seconds) per member that answered, in the order they did; with ``first_definite``, the others are
    killed once one answers sat or unsat (and those answered by then are included)."""
    ctx = _context()
    running: dict[Any, tuple[str, Any]] = {}
    for solver in members:
        receive, send = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_member, args=(solver, script, timeout_ms, question.want_model,
                                              question.strategy, send), daemon=True)
        p.start()
        send.close()
        running[receive] = (solver, p)
    answers: list[tuple[str, str, str, Values, float]] = []
    deadline = time.monotonic() + timeout_ms / 1000 + _GRACE_SECONDS
    try:
        while running:
            ready = multiprocessing.connection.wait(list(running), timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                answers += [(s, UNKNOWN, f"{s}: timeout (killed)", {}, timeout_ms / 1000) for s, _ in running.values()]
                break
            for conn in ready:
                solver, p = running.pop(conn)
                try:
                    verdict, reason, values, seconds = conn.recv()
                except EOFError:  # the process died (e.g. out of memory)
                    verdict, reason, values, seconds = UNKNOWN, f"{solver} exited", {}, 0.0
                conn.close()
                p.join()
                answers.append((solver, verdict, reason, values, seconds))
            if first_definite and any(a[1] != UNKNOWN for a in answers):
                break
    finally:
        for conn, (_, p) in running.items():
            p.kill()
            conn.close()
        for _, p in running.values():
            p.join()
    return answers


def portfolio(question: Question, script: str, members: list[str], timeout_ms: int) -> Answer:
    """The first definite answer of ``members`` racing on separate processes (see :func:`race`)."""
    start = time.perf_counter()
    answers = race(question, script, members, timeout_ms)
    definite = {s: v for s, v, *_ in answers if v != UNKNOWN}
    if len(set(definite.values())) > 1:
        raise SolverDisagreement(question, definite)
    elapsed = time.perf_counter() - start
    for solver, verdict, _, values, _ in answers:
        if verdict != UNKNOWN:
            return _with_model(question, Answer(verdict, f"{PORTFOLIO}:{solver}", elapsed), values, timeout_ms)
    return Answer(UNKNOWN, PORTFOLIO, elapsed, "; ".join(r for _, _, r, _, _ in answers) or "no solver answered")


def isolated(question: Question, script: str, solver: str, timeout_ms: int) -> Answer:
    """One solver on ``script`` in its own process (killed past its time limit), timed by that process."""
    [(_, verdict, reason, _, seconds)] = race(question, script, [solver], timeout_ms)
    return Answer(verdict, solver, seconds, reason)

