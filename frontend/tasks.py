"""The independent tasks the commands fan out (:mod:`amdvi.frontend.fanout`), as plain data.

Each task names what to run (a property, a state machine, a sequence file's JSON text, a bounded search
slice) and the choices to run it under as ``NAME=VALUE`` strings; ``run()`` rebuilds the model, the Z3
queries and the search where it runs, and returns only picklable results: Z3 models and the queries
behind a refutation stay in the worker (the trace and its replay, plain data, come back).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace
from typing import Any


def _portable(outcome: Any) -> Any:
    """``outcome`` without its Z3 model and query (not picklable; the trace and replay carry what they showed)."""
    def bare(result: Any) -> Any:
        return replace(result, model=None, evidence=None)

    return replace(outcome, result=bare(outcome.result), parts=tuple(bare(p) for p in outcome.parts))


@dataclass(frozen=True)
class ProveTask:
    """One ``amdvi prove`` property under hardware choices (``Hardware.as_assignments()``) and, for a
    property with a driver half, the driver model's (``Driver.as_assignments()``)."""

    property: str
    choices: tuple[str, ...] = ()
    timeout_ms: int = 300_000
    solver: str | None = None  # --solver (None: each obligation's recorded choice)
    driver: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        shown = (*self.choices, *(f"driver.{c}" for c in self.driver))
        return self.property + (f" [{', '.join(shown)}]" if shown else "")

    def run(self) -> Any:
        from amdvi.properties import catalog
        from amdvi.spec.choices import Hardware

        from amdvi.properties import solvers

        with solvers.using(solvers.Settings(solver=self.solver)):
            from amdvi.models.amd_driver.choices import Driver

            driver = Driver().assign(self.driver) if self.driver else None
            return _portable(catalog.run_property(self.property, Hardware().assign(self.choices), self.timeout_ms,
                                                  driver))

    def summary(self, outcome: Any) -> str:
        return outcome.result.status


@dataclass(frozen=True)
class MachineTask:
    """One Hypothesis state machine (a machine name of ``properties.presets``) under hardware choices, with
    the same examples wherever it runs (derandomized, or the vIOMMU machine's fixed seed) and its default
    budget (``examples``: None). Caught means the machine's own property exception, never another failure:
    :class:`~amdvi.properties.stateful.StaleTranslation` for the IOMMU machines,
    :class:`~amdvi.frontend.viommu_machine.ViommuViolation` for the vIOMMU machine."""

    machine: str
    choices: tuple[str, ...] = ()
    examples: int | None = None

    @property
    def title(self) -> str:
        return self.machine + (f" [{', '.join(self.choices)}]" if self.choices else "")

    def run(self) -> dict[str, Any]:
        import warnings

        from hypothesis.errors import HypothesisDeprecationWarning

        from amdvi.properties import presets, stateful
        from amdvi.spec.choices import Hardware

        hardware = Hardware().assign(self.choices)
        with warnings.catch_warnings():
            # on a Dask worker, the worker's own threads use the random module while Hypothesis draws, and
            # Hypothesis takes that for a strategy using it (the draws are Hypothesis's own, seeded)
            warnings.simplefilter("ignore", HypothesisDeprecationWarning)
            if self.machine == presets.VIOMMU_MACHINE:
                from amdvi.frontend import viommu_machine

                budget = viommu_machine.budget(**({} if self.examples is None else {"max_examples": self.examples}))
                failure = viommu_machine.run(viommu_machine.scenario(hardware), budget)
                caught = isinstance(failure, viommu_machine.ViommuViolation)
            else:
                base = {cls.__name__: cls for cls in (stateful.IommuMachine, stateful.AttachDetachMachine)}[self.machine]
                failure = stateful.run_machine(machine_class=stateful.machine(hardware, base),
                                               max_examples=100 if self.examples is None else self.examples,
                                               derandomize=True, shrink=False)
                caught = isinstance(failure, stateful.StaleTranslation)
        return {"caught": caught,
                "failure": None if failure is None else f"{type(failure).__name__}: {str(failure).splitlines()[0]}"}

    def summary(self, result: dict[str, Any]) -> str:
        return "caught" if result["caught"] else ("passes" if result["failure"] is None else result["failure"])


@dataclass(frozen=True)
class SequenceTask:
    """One ``amdvi check`` sequence: its file's JSON text, checked under layer choices (``LAYER.NAME=VALUE``)."""

    source: str
    document: str
    choices: tuple[str, ...]
    properties: tuple[str, ...]
    prove: bool = False
    minimise: bool = True
    prove_budget: float = 300.0

    @property
    def title(self) -> str:
        return self.source.rsplit("/", 1)[-1].removesuffix(".json")

    def run(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        from amdvi.frontend import options, sequence_format
        from amdvi.frontend.commands import check

        seq = options.with_layer_choices(sequence_format.load(json.loads(self.document), self.source),
                                         list(self.choices))
        return check.check_one(self.source, seq, self.properties, prove=self.prove, minimise=self.minimise,
                               prove_budget=self.prove_budget)

    def summary(self, result: tuple[list[dict[str, Any]], dict[str, Any]]) -> str:
        checked = result[1]
        verdict = "holds" if not checked["refuted"] else f"{', '.join(checked['refuted'])} refuted"
        return verdict + ("" if checked["as_expected"] else " (NOT AS EXPECTED)")


@dataclass(frozen=True)
class BmcNodesTask:
    """Some nodes of one depth of ``amdvi check --depth``, each named by its path (indices into the
    scenario's alphabet): their children, checked, with their state keys (``sequence_bmc.expand_paths``).
    The scenario comes as its file's JSON text (None: the default scenario)."""

    source: str
    document: str | None
    choices: tuple[str, ...]
    properties: tuple[str, ...]
    paths: tuple[tuple[int, ...], ...]

    @property
    def title(self) -> str:
        depth = len(self.paths[0]) + 1 if self.paths else 0
        return f"depth {depth}: {len(self.paths)} node{'s' if len(self.paths) != 1 else ''}"

    def run(self) -> Any:
        from amdvi.properties import sequence_bmc

        return sequence_bmc.expand_paths(_bmc_tree(self.source, self.document, self.choices, self.properties),
                                         self.paths)

    def summary(self, result: Any) -> str:
        kids = [c for node in result for c in node]
        found = [c[2][0] for c in kids if c[2] is not None]
        return f"{len(kids)} sequences, " + (f"{found[0]} refuted" if found else "hold")


@functools.lru_cache(maxsize=4)
def _bmc_tree(source: str, document: str | None, choices: tuple[str, ...], properties: tuple[str, ...]) -> Any:
    """The search tree of a scenario, built once per worker process: every chunk of every depth a worker
    expands starts from it (the serial search builds it once too)."""
    from amdvi.frontend.commands import check
    from amdvi.properties import sequence_bmc

    seq = check.bounded_sequence(None if document is None else json.loads(document), source, choices)
    bounds = getattr(seq, "bounds", None) or sequence_bmc.Bounds()
    return sequence_bmc.tree(seq.scenario, bounds, properties=properties)
