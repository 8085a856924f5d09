"""Fanning independent tasks out over Dask distributed: ``--jobs N`` and ``--scheduler ADDRESS``.

A task is plain data (a frozen dataclass of names, choices as ``NAME=VALUE`` strings, slice bounds;
see :mod:`amdvi.frontend.tasks`) with a ``run()`` that rebuilds what it needs where it runs: Z3 terms
cannot be pickled, so nothing symbolic crosses a process boundary. A :class:`Runner` maps a list of
tasks to their results in the list's order, whatever order they finish in, so a command's report is the
same as a serial run's: the same verdicts, counts and sequence counterexamples. (A Z3 counterexample's
values are the solver's choice, and that depends on what the process solved before, so a refuted
property may show other, equally replayable, values than in a serial run.) ``--jobs N`` starts a local cluster of N single-threaded worker processes;
``--scheduler ADDRESS`` sends the same tasks to a running cluster, whose workers must have this package
installed at the same version (``pip install 'amdvi-spec[parallel]'``).

Progress goes to standard error (a line per finished task). Results are only returned once every task
is in, and commands write their files after that (atomically), so Ctrl-C or a lost worker leaves no
half-written file; on the way out the runner cancels what is still queued and closes the cluster. A
failure of the engine (Dask missing, an unreachable scheduler, a worker lost, a task raising) is one
line and exit 2 (:class:`FanOutError`).
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any, Protocol, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.markup import escape

from amdvi.frontend.errors import InputError

INSTALL_HINT = "pip install 'amdvi-spec[parallel]'"


class FanOutError(InputError):
    """The distributed engine could not run the tasks: one line and exit 2, never a traceback."""


class Task(Protocol):
    """Plain data that a worker process can unpickle without this process's state."""

    @property
    def title(self) -> str: ...

    def run(self) -> Any: ...

    def summary(self, result: Any) -> str: ...


def perform(task: Task) -> tuple[Any, float]:
    """What a worker runs: the task, rebuilt from its data; its result and the seconds it took there."""
    t0 = time.perf_counter()
    result = task.run()
    return result, time.perf_counter() - t0


class Runner:
    """Runs tasks here, one after another (no ``--jobs`` or ``--scheduler``)."""

    workers = 1
    parallel = False  # whether tasks run elsewhere (a command may then split its work finer)

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def map(self, tasks: Sequence[Task], what: str) -> list[Any]:
        """Each task's result, in the order of ``tasks``."""
        results = []
        with _progress(what, len(tasks)) as progress:
            for task in tasks:
                result, seconds = perform(task)
                results.append(result)
                progress.done(task, result, seconds)
        return results


class DaskRunner(Runner):
    """Runs tasks on a Dask cluster: a local one of ``jobs`` processes, or the one at ``scheduler``."""

    parallel = True

    def __init__(self, *, jobs: int | None = None, scheduler: str | None = None) -> None:
        self.jobs, self.scheduler = jobs, scheduler
        self.cluster: Any = None
        self.client: Any = None

    def __enter__(self) -> "DaskRunner":
        try:
            import distributed
        except ImportError:
            raise FanOutError(f"--jobs and --scheduler need Dask distributed: {INSTALL_HINT}") from None
        logging.getLogger("distributed").setLevel(logging.ERROR)
        err = Console(stderr=True, highlight=False)
        try:
            if self.scheduler is not None:
                self.client = distributed.Client(self.scheduler, set_as_default=False)
            else:
                # one thread per process: Z3 and the models are CPU-bound Python; no memory limit, as in a
                # serial run (a worker killed at a limit mid-proof would only lose the work); the scheduler's
                # HTTP routes on a free port (8787 may be another cluster's)
                self.cluster = distributed.LocalCluster(
                    n_workers=self.jobs, threads_per_worker=1, processes=True, dashboard_address=":0",
                    silence_logs=logging.ERROR, memory_limit=0)
                self.client = distributed.Client(self.cluster, set_as_default=False)
        except (OSError, ValueError, TypeError) as e:  # refused, timed out, malformed address
            self.__exit__(None, None, None)
            where = self.scheduler or f"a local cluster of {self.jobs}"
            raise FanOutError(f"cannot reach the Dask scheduler at {where}: {_one_line(e)}") from None
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        where = self.scheduler or "a local cluster"
        err.print(f"Dask: {where}, {self.workers} worker{'s' if self.workers != 1 else ''}", markup=False)
        return self

    def __exit__(self, exc_type: Any = None, *exc: Any) -> None:
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        if cluster is not None and exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            _kill_local_workers()  # a worker inside a solver call would hold a graceful close for its whole query
        for closing in (client, cluster):
            if closing is not None:
                try:
                    closing.close()
                except Exception:  # noqa: BLE001 - already going away (Ctrl-C, a lost scheduler)
                    pass

    def map(self, tasks: Sequence[Task], what: str) -> list[Any]:
        from distributed import as_completed

        futures = [self.client.submit(perform, task, pure=False, priority=-n) for n, task in enumerate(tasks)]
        order = {f.key: n for n, f in enumerate(futures)}
        results: list[Any] = [None] * len(tasks)
        n = None
        try:
            with _progress(what, len(tasks)) as progress:
                for future in as_completed(futures, loop=self.client.loop):
                    n = order[future.key]
                    results[n], seconds = future.result()
                    progress.done(tasks[n], results[n], seconds)
        except InputError:
            raise  # bad input a task found (e.g. a sequence step that cannot run): the same line as serially
        except Exception as e:
            if type(e).__name__ == "SolverDisagreement":
                raise  # two solvers disagreed in a worker: reported as serially (exit 3)
            raise FanOutError(f"{tasks[n].title + ': ' if n is not None else ''}{_one_line(e)}") from None
        finally:
            self.client.cancel([f for f in futures if not f.done()])
        return results


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class _progress:
    """A line per finished task on standard error (standard output stays the report), and on a terminal a
    bar under them; nothing for a single task (its report follows at once)."""

    def __init__(self, what: str, total: int) -> None:
        console = Console(stderr=True, highlight=False)
        self.shown = total > 1
        self.bar = Progress(TextColumn(escape(what)), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console, transient=True, disable=not (self.shown and console.is_terminal))
        self.task = self.bar.add_task(what, total=total)

    def __enter__(self) -> "_progress":
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    def done(self, task: Task, result: Any, seconds: float) -> None:
        self.bar.advance(self.task)
        if self.shown:
            self.bar.console.print(f"  {task.title}: {task.summary(result)} ({seconds:.1f} s)", markup=False,
                                   soft_wrap=True)


def runner(args: argparse.Namespace) -> Runner:
    """The runner ``--jobs`` / ``--scheduler`` ask for (a serial one when neither is given); InputError
    (exit 2) on a bad value."""
    jobs, scheduler = getattr(args, "jobs", None), getattr(args, "scheduler", None)
    if jobs is not None and scheduler is not None:
        raise InputError("give --jobs or --scheduler, not both")
    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs {jobs}: give a number of worker processes, 1 or more")
    if scheduler is not None and not scheduler.strip():
        raise InputError("--scheduler: give the address of a Dask scheduler, e.g. tcp://host:8786")
    if jobs is None and scheduler is None:
        return Runner()
    return DaskRunner(jobs=jobs, scheduler=scheduler)


def _kill_local_workers() -> None:
    """Kill this process's children (the local cluster's nannies and workers; not multiprocessing's resource
    tracker, which cleans up after them): nothing they hold is kept."""
    import psutil  # a dependency of distributed

    for child in psutil.Process().children(recursive=True):
        try:
            if not any("resource_tracker" in part for part in child.cmdline()):  # multiprocessing's own
                child.kill()
        except psutil.Error:
            pass
