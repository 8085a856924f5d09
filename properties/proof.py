"""Running a Z3 proof honestly: assumptions must be satisfiable, unknown stays unknown.

``prove`` first checks that the assumptions (and each witness: a situation the property is about,
e.g. "a nested translation succeeds") are satisfiable, so a proof cannot hold vacuously; then it
asks for a counterexample to the claim. Statuses: ``proved``, ``refuted`` (with a model),
``unknown`` (timeout or solver gave up, with its reason), ``vacuous`` (assumptions or a witness
unsatisfiable: nothing was proved).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import z3

from . import solvers

PROVED, REFUTED, UNKNOWN, VACUOUS = "proved", "refuted", "unknown", "vacuous"


@dataclass(frozen=True)
class ProofResult:
    name: str
    status: str
    seconds: float
    detail: str = ""
    model: Any = field(default=None, compare=False, repr=False)
    evidence: Any = field(default=None, compare=False, repr=False)  # what built the query, for a counterexample

    @property
    def proved(self) -> bool:
        return self.status == PROVED


# For quantifier-free bit-vectors with uninterpreted functions (adversarial memory as a function):
# Ackermann-reduce the functions and bit-blast to SAT. Outside that fragment it answers unknown.
STRATEGIES = {
    "default": lambda: z3.Solver(),
    "bit-blast": lambda: z3.Then("simplify", z3.With("ackermannize_bv", div0_ackermann_limit=1_000_000),
                                 "simplify", "bit-blast", "sat").solver(),
    # the same, after substituting variables the assumptions fix (``x == constant``): the model keeps them
    "narrowed-bit-blast": lambda: z3.Then("simplify", "propagate-values", "solve-eqs", "simplify",
                                          z3.With("ackermannize_bv", div0_ackermann_limit=1_000_000),
                                          "simplify", "bit-blast", "sat").solver(),
}


def _solver(timeout_ms: int, strategy: str = "default") -> z3.Solver:
    s = STRATEGIES[strategy]()
    s.set(timeout=timeout_ms)
    return s


@dataclass(frozen=True)
class Witness:
    """A situation the property is about (``condition``), shown possible together with the assumptions:
    by the solver, or, when ``assignment`` is given, by evaluating under that concrete assignment
    of the free variables (cheap where the solver would search)."""

    label: str
    condition: Any
    assignment: tuple[tuple[Any, Any], ...] = ()
    # (variable, value) pairs fixed before the solver searches: a narrower question whose model, with
    # those values added, is a model of the full one (so it shows the same thing, often far faster)
    narrowing: tuple[tuple[Any, Any], ...] = ()


def _holds_under(assignment: tuple[tuple[Any, Any], ...], formula: Any) -> bool:
    """Whether ``formula`` is true once each variable (or function) is replaced by its given value."""
    consts = [(k, v) for k, v in assignment if not isinstance(k, z3.FuncDeclRef)]
    funs = [(k, v) for k, v in assignment if isinstance(k, z3.FuncDeclRef)]
    if funs:
        formula = z3.substitute_funs(formula, *funs)
    return z3.is_true(z3.simplify(z3.substitute(formula, *consts)))


def prove(name: str, assumptions: Sequence[Any], claim: Any, *, witnesses: Sequence[Witness] = (),
          timeout_ms: int = 120_000, strategy: str = "default") -> ProofResult:
    """Prove ``assumptions => claim``; see the module docstring for what each status means."""
    start = time.perf_counter()
    # a witness shown possible shows the assumptions satisfiable too; alone they are checked only
    # when there is no witness
    for w in witnesses or [Witness("the assumptions", z3.BoolVal(True))]:
        label, extra = w.label, w.condition
        if w.assignment and _holds_under(w.assignment, z3.And(*assumptions, extra)):
            continue  # shown by evaluation; otherwise the solver must find one
        question = z3.And(*assumptions, extra)
        a = solvers.check(solvers.Question(name, f"witness: {label}", (z3.substitute(question, *w.narrowing)
                                           if w.narrowing else question,), strategy), timeout_ms)
        if a.verdict == solvers.UNSAT:
            narrowed = " (with its narrowing)" if w.narrowing else ""
            return ProofResult(name, VACUOUS, time.perf_counter() - start, f"{label} cannot hold{narrowed}")
        if a.verdict == solvers.UNKNOWN:
            return ProofResult(name, UNKNOWN, time.perf_counter() - start,
                               f"could not show {label} satisfiable: {a.reason}")
    a = solvers.check(solvers.Question(name, "counterexample", (*assumptions, z3.Not(claim)), strategy,
                                       want_model=True), timeout_ms)
    elapsed = time.perf_counter() - start
    if a.verdict == solvers.UNSAT:
        return ProofResult(name, PROVED, elapsed)
    if a.verdict == solvers.SAT:
        return ProofResult(name, REFUTED, elapsed, "counterexample found", a.model)
    return ProofResult(name, UNKNOWN, elapsed, a.reason)
