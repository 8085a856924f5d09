"""One case on both sides: the expectation, the observation, the mismatches and what explains them."""

from __future__ import annotations

from dataclasses import dataclass

from amdvi.spec.choices import SPEC, Hardware

from . import compare, known, model_side, qemu_side
from .case import Case
from .compare import Mismatch
from .known import Known
from .machine import Machine
from .model_side import Expectation
from .qemu_side import Observation

AGREE, KNOWN, NEW = "agree", "known", "new"


@dataclass
class Verdict:
    case: Case
    expectation: Expectation
    observation: Observation
    classified: list[tuple[Mismatch, tuple[Known, ...]]]  # the known divergences explaining each (none: new)

    @property
    def new(self) -> list[Mismatch]:
        return [m for m, ks in self.classified if not ks]

    @property
    def status(self) -> str:
        if not self.classified:
            return AGREE
        return NEW if self.new else KNOWN

    def shapes(self) -> list[str]:
        """The shapes of the new mismatches (what a shrink must keep)."""
        return sorted({m.shape for m in self.new})


def judge(machine: Machine, case: Case, known_list: list[Known], choices: Hardware = SPEC) -> Verdict:
    """Run ``case`` on the model and on ``machine``; classify every mismatch."""
    expectation = model_side.expect(case, choices)
    observation = qemu_side.run(machine, case, expectation)
    mismatches = compare.compare(case, expectation, observation)
    classified = known.classify(known.Context(case, expectation, observation), mismatches, known_list)
    return Verdict(case, expectation, observation, classified)
