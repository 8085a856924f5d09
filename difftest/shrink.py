"""Minimising a case that shows a new divergence, keeping the divergence.

Hypothesis generates the cases; it cannot shrink an example it did not find failing in the same run
(the campaign runs cases on worker processes), so the minimisation is done here over the case's own
structure, deterministically: steps after the first divergent one go, then runs of steps and single
steps, single commands of a batch, words of the memory image, and the ring's start offset becomes 0,
each removal kept only while the case still shows a mismatch of the same shape.
"""

from __future__ import annotations

from typing import Callable

from .case import Case, Commands

Still = Callable[[Case], bool]


def _try(case: Case, candidate: Case, still: Still) -> Case:
    return candidate if candidate != case and still(candidate) else case


def _steps(case: Case, still: Still) -> Case:
    n = len(case.steps)
    chunk = max(n // 2, 1)
    while chunk >= 1:
        i = 0
        while i < len(case.steps):
            candidate = case.with_(steps=case.steps[:i] + case.steps[i + chunk:])
            shrunk = _try(case, candidate, still)
            if shrunk is case:
                i += chunk
            case = shrunk
        chunk //= 2
    return case


def _commands(case: Case, still: Still) -> Case:
    for i in range(len(case.steps)):
        j = 0
        while i < len(case.steps) and isinstance(case.steps[i], Commands) and j < len(case.steps[i].commands):
            batch = case.steps[i].commands
            if len(batch) == 1:
                break
            candidate = case.with_(steps=case.steps[:i] + (Commands(batch[:j] + batch[j + 1:]),) + case.steps[i + 1:])
            shrunk = _try(case, candidate, still)
            j += shrunk is case
            case = shrunk
    return case


def _memory(case: Case, still: Still) -> Case:
    i = 0
    while i < len(case.memory):
        shrunk = _try(case, case.with_(memory=case.memory[:i] + case.memory[i + 1:]), still)
        i += shrunk is case
        case = shrunk
    return case


def shrink(case: Case, still: Still, first_step: int | None = None) -> Case:
    """A smaller case for which ``still`` holds (``case`` itself must satisfy it)."""
    if first_step is not None:
        case = _try(case, case.with_(steps=case.steps[:first_step + 1]), still)
    case = _try(case, case.with_(ring_start=0), still)
    for _ in range(2):  # a second pass: removals can enable each other
        before = case
        case = _memory(_commands(_steps(case, still), still), still)
        if case == before:
            break
    return case
