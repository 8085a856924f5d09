"""Many generated cases on worker processes, each with its own QEMU; new divergences shrunk and written.

Case ``i`` is drawn by Hypothesis in chunk ``i // chunk`` seeded with (seed, chunk), so the cases and
every result depend on the seed only, not on how many workers run or in which order chunks finish.
A worker keeps one QEMU for all its cases (reset between them) and starts a new one after a hang.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.util
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from hypothesis import HealthCheck, Phase, given, seed as hypothesis_seed, settings

from amdvi.frontend.files import write_atomically

from . import case as case_format, known, report, shrink
from .case import Case
from .machine import Machine
from .qtest import QemuError, die_with_parent
from .strategies import cases
from .verdict import AGREE, KNOWN, NEW, judge

__all__ = ["AGREE", "KNOWN", "NEW", "run", "shrink_findings", "generate", "Worker"]

CHUNK = 50


@contextlib.contextmanager
def _no_local_constants() -> Iterator[None]:
    """Hypothesis mixes in literal constants harvested from the "local" modules loaded so far (files
    outside site-packages: an editable install's, not a regular install's), so the same seed would give
    other cases in another install or after other imports; a seed must name one campaign everywhere."""
    from hypothesis.internal.conjecture import providers

    harvest = getattr(providers, "_get_local_constants", None)
    if harvest is None or not hasattr(providers, "Constants"):
        yield  # a Hypothesis without the harvest
        return
    providers._get_local_constants = providers.Constants
    try:
        yield
    finally:
        providers._get_local_constants = harvest


def generate(seed: int, chunk: int, count: int) -> list[Case]:
    """The cases of ``chunk`` (``count`` of them, fewer if Hypothesis finds no more distinct ones)."""
    out: list[Case] = []

    @hypothesis_seed(seed * 1_000_003 + chunk)
    @settings(database=None, max_examples=count, phases=[Phase.generate], deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(cases())
    def draw(c: Case) -> None:
        out.append(c)

    with _no_local_constants():
        draw()
    return out[:count]


@dataclass(frozen=True)
class CaseResult:
    index: int
    status: str
    known: tuple[str, ...]  # ids of the known divergences seen
    shapes: tuple[str, ...]  # shapes of the new mismatches
    lines: tuple[str, ...]
    case: dict[str, Any] | None = None  # the case, when it shows something new


@dataclass
class CampaignResult:
    version: str
    seed: int
    results: list[CaseResult] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    restarts: int = 0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    def known_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            for k in r.known:
                out[k] = out.get(k, 0) + 1
        return out

    def new_shapes(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for r in self.results:
            for s in r.shapes:
                out.setdefault(s, []).append(r.index)
        return out


class Worker:
    """One QEMU and the known list, kept across cases."""

    def __init__(self, binary: str, timeout: float, version: str) -> None:
        self.binary, self.timeout, self.version = binary, timeout, version
        self.known = known.load(version)
        self.machine: Machine | None = None
        self.restarts = 0

    def judge(self, c: Case) -> Any:
        if self.machine is None:
            self.machine = Machine(self.binary, timeout=self.timeout)
        try:
            v = judge(self.machine, c, self.known)
        except QemuError:
            self.restart()
            raise
        if v.observation.hang is not None:
            self.restart()
        return v

    def restart(self) -> None:
        if self.machine is not None:
            self.machine.close()
        self.machine = None
        self.restarts += 1

    def close(self) -> None:
        if self.machine is not None:
            self.machine.close()


def case_result(index: int, v: Any) -> CaseResult:
    known_ids = tuple(sorted(known.explained_ids(v.classified)))
    return CaseResult(index, v.status, known_ids, tuple(v.shapes()),
                      tuple(f"[{' + '.join(k.id for k in ks) or 'NEW'}] {m.line()}" for m, ks in v.classified),
                      case_format.to_json(v.case) if v.status == NEW else None)


_WORKER: Worker | None = None


def _init(binary: str, timeout: float, version: str, campaign_pid: int | None = None) -> None:
    """A worker's set-up; in a pool worker (``campaign_pid`` given) it dies with the campaign, so a killed
    campaign leaves no worker and, through QEMU's own death signal, no QEMU."""
    global _WORKER
    if campaign_pid is not None:
        die_with_parent()
        if os.getppid() != campaign_pid:  # the campaign died before the death signal was armed
            os._exit(1)
    _WORKER = Worker(binary, timeout, version)
    multiprocessing.util.Finalize(_WORKER, _WORKER.close, exitpriority=10)  # its QEMU goes with the worker


def _chunk(job: tuple[int, int, int, int]) -> tuple[list[CaseResult], int]:
    seed, chunk, first, count = job
    assert _WORKER is not None
    restarts = _WORKER.restarts
    out = []
    for offset, c in enumerate(generate(seed, chunk, count)):
        out.append(case_result(first + offset, _WORKER.judge(c)))
    return out, _WORKER.restarts - restarts


def run(binary: str, version: str, *, cases_wanted: int, seed: int, workers: int = 2, timeout: float = 2.0,
        progress: Callable[[int, int], None] | None = None) -> CampaignResult:
    """Run ``cases_wanted`` generated cases (see the module docstring)."""
    started = time.perf_counter()
    result = CampaignResult(version, seed)
    jobs = [(seed, k, k * CHUNK, min(CHUNK, cases_wanted - k * CHUNK)) for k in range((cases_wanted + CHUNK - 1) // CHUNK)]
    if workers <= 1:
        _init(binary, timeout, version)
        try:
            for job in jobs:
                results, restarts = _chunk(job)
                result.results += results
                result.restarts += restarts
                if progress:
                    progress(len(result.results), cases_wanted)
        finally:
            assert _WORKER is not None
            _WORKER.close()
    else:
        context = multiprocessing.get_context("fork")
        with context.Pool(workers, initializer=_init, initargs=(binary, timeout, version, os.getpid())) as pool:
            for results, restarts in pool.imap(_chunk, jobs):
                result.results += results
                result.restarts += restarts
                if progress:
                    progress(len(result.results), cases_wanted)
            pool.close()  # workers exit normally, closing their QEMU (a terminate would kill them first)
            pool.join()
    result.results.sort(key=lambda r: r.index)
    result.seconds = time.perf_counter() - started
    return result


def shrink_findings(result: CampaignResult, binary: str, out_dir: Path, *, timeout: float = 2.0,
                    limit: int = 5, replay_command: str = "amdvi diff-qemu --replay") -> list[dict[str, Any]]:
    """Shrink one case of each new shape (at most ``limit``) and write it with its report."""
    worker = Worker(binary, timeout, result.version)
    written = []
    try:
        by_index = {r.index: r for r in result.results}
        for n, (shape, indices) in enumerate(sorted(result.new_shapes().items())):
            if n >= limit:
                break
            original = case_format.from_json(by_index[indices[0]].case)

            def still(c: Case, shape: str = shape) -> bool:
                try:
                    return shape in worker.judge(c).shapes()
                except (QemuError, ValueError, KeyError, IndexError, OverflowError):
                    return False

            first = min((m.step for m, ks in worker.judge(original).classified
                         if not ks and m.shape == shape and m.step is not None), default=None)
            small = shrink.shrink(original, still, first)
            v = worker.judge(small)
            name = f"finding-{n + 1}-{shape.replace(':', '-').replace('>', '').replace('/', '-')}"
            path = out_dir / f"{name}.json"
            title = f"new divergence {shape} (case {indices[0]} of seed {result.seed}, shrunk)"
            finding = {"qemu": result.version, "shape": shape, "seed": result.seed, "case_index": indices[0],
                       "cases_with_this_shape": len(indices),
                       "mismatches": [m.line() for m in v.new]}
            small = small.with_(title=title, finding=finding)
            write_atomically(path, case_format.dumps(small))
            v.case = small
            write_atomically(out_dir / f"{name}.md", report.finding_markdown(v, result.version,
                                                                             f"{replay_command} {path}"))
            written.append({"shape": shape, "file": str(path), "steps": len(small.steps), "words": len(small.memory),
                            "cases": len(indices)})
    finally:
        worker.close()
    result.findings = written
    return written


def summary_json(result: CampaignResult) -> dict[str, Any]:
    return {"qemu": result.version, "seed": result.seed, "cases": len(result.results),
            "agree": result.count(AGREE), "known_only": result.count(KNOWN), "new": result.count(NEW),
            "known": result.known_counts(), "new_shapes": {s: len(i) for s, i in result.new_shapes().items()},
            "findings": result.findings, "seconds": round(result.seconds, 2), "qemu_restarts": result.restarts}


def dumps_summary(result: CampaignResult) -> str:
    return json.dumps(summary_json(result), indent=1)
