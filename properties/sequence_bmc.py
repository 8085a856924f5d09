"""Bounded model checking of ioctl sequences: every sequence of up to K steps drawn from a scenario's
bounds, each checked at every point under every cache choice and command timing.

The steps are the calls a VMM may make within the bounds (:func:`alphabet`: MAP of each IOVA, length
and user page, UNMAP of each IOVA and length, attach and detach of each device) after a set-up prefix
(bind every device, allocate the IOAS). The search is breadth first, so the first violation found is
on a shortest sequence. Each new step is checked incrementally (``properties.sequence_check.check``
from the boundary where it starts: earlier points were checked with the sequence's prefix), and a
sequence that reaches a state equal to one already explored is not extended again: what can follow
depends on nothing else. States are compared by the software state (iommufd and driver), the
invalidations in flight, and the cached values a fill at the last point could not give, each with the
in-flight invalidations that will clear it; a value a fill there could give may be held in either
state (a fill at the last point outlives an earlier one), so it does not tell them apart. Ring
positions, COMPLETION_WAIT sequence numbers and the driver's handle counter are left out (they name,
not change, what happens).

This is explicit-state search over concrete arguments from the bounds, not a symbolic encoding: the
bounds are small sets, and every argument in them is tried.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from amdvi.models.iommufd import uapi
from amdvi.models.system import Call, Scenario, StepError

from . import sequence, sequence_check
from amdvi.models.caches import CACHE_KINDS

from .cache_windows import Windows, requests_for
from .timeline_run import in_flight
from .sequence import Violation

RW = uapi.MAP_FIXED_IOVA | uapi.MAP_READABLE | uapi.MAP_WRITEABLE
PAGE = 0x1000
MAX_LENGTH = 0x10_0000  # a MAP or UNMAP the search tries covers at most 256 pages


@dataclass(frozen=True)
class Bounds:
    """The arguments a sequence may use: IOVAs, lengths and user pages for MAP and UNMAP."""

    iovas: tuple[int, ...] = (0x10_0000, 0x10_1000)
    lengths: tuple[int, ...] = (0x1000, 0x2000)
    user_pages: tuple[int, ...] = (0x1000_0000, 0x1000_1000)

    def __post_init__(self) -> None:
        """ValueError (one line) on bounds the search cannot take: it checks every page they cover."""
        if any(n > MAX_LENGTH for n in self.lengths):
            raise ValueError(f"bounds.lengths: at most {MAX_LENGTH:#x} bytes each (every page is checked)")
        if any(iova + n + PAGE > 1 << 64 for iova in self.iovas for n in self.lengths):
            raise ValueError("bounds: an IOVA plus a length passes the end of the 64-bit space")


def prefix(scenario: Scenario) -> tuple[Any, ...]:
    """Bind every device and allocate the IOAS ``ioas``."""
    binds = tuple(Call(uapi.DeviceBind.name, {"device": d.name}, {"out_devid": f"{d.name}_dev"})
                  for d in scenario.devices)
    return binds + (Call(uapi.IoasAlloc.name, {}, {"out_ioas_id": "ioas"}),)


def alphabet(scenario: Scenario, bounds: Bounds) -> tuple[Any, ...]:
    """Every step the search tries after the prefix."""
    maps = tuple(Call(uapi.IoasMap.name, {"ioas_id": "ioas", "flags": RW, "user_va": va, "length": n, "iova": iova})
                 for iova, n, va in itertools.product(bounds.iovas, bounds.lengths, bounds.user_pages))
    unmaps = tuple(Call(uapi.IoasUnmap.name, {"ioas_id": "ioas", "iova": iova, "length": n})
                   for iova, n in itertools.product(bounds.iovas, bounds.lengths))
    devices = tuple(c for d in scenario.devices for c in (
        Call(uapi.DeviceAttach.name, {"device": d.name, "pt_id": "ioas"}),
        Call(uapi.DeviceDetach.name, {"device": d.name})))
    return maps + unmaps + devices


@dataclass
class Depth:
    """One depth of the search: sequences checked, new distinct states, seconds."""

    depth: int
    checked: int = 0
    states: int = 0
    seconds: float = 0.0


@dataclass
class Result:
    depths: list[Depth] = field(default_factory=list)
    violation: tuple[str, Violation, tuple[Any, ...]] | None = None  # property, violation, steps

    @property
    def holds(self) -> bool:
        return self.violation is None


def _key(ex: sequence_check.Execution, windows: Any) -> tuple[Any, ...]:
    """What decides every continuation: the software state, the invalidations still in flight, and the
    cached values that a fill at the last boundary could not give (a value it could give is held in
    every state alike: a fill there outlives any earlier one), each with the in-flight invalidations
    that will still clear it."""
    driver = dataclasses.replace(ex.state.driver, sequence=0, need_sync=False, next_handle=0)
    last = ex.run.now
    pending = in_flight(ex.run)
    stale = []
    for k in CACHE_KINDS:
        for c, j in windows.held(k.name, last):
            if j < last:
                clearing = frozenset(q.command for q in pending
                                     if q.queued_at > j and windows.clears(k.name, c.slot, q.command))
                stale.append((k.name, c.slot, clearing))
    return (repr(ex.state.iommufd), repr(driver), frozenset(q.command for q in pending), frozenset(stale))


def _check(ex: sequence_check.Execution, windows: Any, props: Sequence[str], since: int
           ) -> tuple[str, Violation] | None:
    for name in props:
        if name in sequence.CHECKS:
            found = sequence.CHECKS[name](windows, ex.promise, since=since)
        elif name == sequence_check.ERRNO:
            found = sequence_check.errno_conformance(ex, since=since)
        else:
            found = sequence_check.object_lifetime(ex, since=since)
        if found:
            return name, found[0]
    hangs = [h for h in ex.run.hangs if h[0] >= since]
    if hangs:
        return "command-completion", Violation("command-completion", hangs[0][0], None, hangs[0][1])
    return None


@dataclass(frozen=True)
class Tree:
    """What every node of a search shares: the steps tried after the prefix, the requests checked, the
    properties, and the root (the prefix run and checked)."""

    actions: tuple[Any, ...]
    properties: tuple[str, ...]
    root: sequence_check.Execution
    windows: Any


def tree(scenario: Scenario, bounds: Bounds = Bounds(), steps: Iterable[Any] | None = None,
         properties: Sequence[str] = sequence_check.ALL_PROPERTIES) -> Tree:
    actions = tuple(alphabet(scenario, bounds) if steps is None else steps)
    pages = sorted({p for iova in bounds.iovas for n in bounds.lengths
                    for p in range(iova, iova + n + PAGE, PAGE)})
    reqs = [r for d in scenario.devices
            for r in requests_for(d.requester_ids, pages, ats_ids=d.requester_ids if d.ats else ())]
    root = sequence_check.execute(scenario, prefix(scenario))
    return Tree(actions, tuple(properties), root, Windows(root.run, reqs, in_flight=in_flight(root.run), ats_control=True))


def _step(node: sequence_check.Execution, node_windows: Any, action: Any) -> tuple[Any, Any, int] | None:
    """``node`` after ``action`` (None when the step cannot be carried out), its windows, and the
    boundary its new points start at."""
    child = sequence_check.fork(node)
    since = child.run.now
    try:
        sequence_check.advance(child, action)
    except StepError:
        return None
    return child, node_windows.fork(child.run).extend(in_flight(child.run)), since


# A node's child: its action's index, its state key (None when it shows a violation), the violation
# (property, what, the steps that show it) or None, and what the expansion keeps of it (the node itself
# when the search runs in one process; None when nodes are named by their paths, see ``expand_paths``)
Child = tuple[int, Any, "tuple[str, Violation, tuple[Any, ...]] | None", Any]
Frontier = list[tuple[tuple[int, ...], Any]]  # (path of action indices after the prefix, what the expansion kept)


def iter_children(t: Tree, node: sequence_check.Execution, node_windows: Any, *, keep: bool = True
                  ) -> Iterator[Child]:
    """Each child of ``node`` the search counts, in action order, up to the first that shows a violation.

    A generator, so that a search in one process drops a child it has seen before the next is made:
    holding a node's every child until the node is done let them outlive the young garbage-collector
    generations, and the full collections that followed doubled the time of a deep search."""
    for i, action in enumerate(t.actions):
        made = _step(node, node_windows, action)
        if made is None:
            continue
        child, windows, since = made
        found = _check(child, windows, t.properties, since)
        if found:
            yield (i, None, (found[0], found[1], child.steps), None)
            return
        yield (i, _key(child, windows), None, (child, windows) if keep else None)


def children(t: Tree, node: sequence_check.Execution, node_windows: Any, *, keep: bool = True) -> list[Child]:
    """:func:`iter_children` as a list (what a worker sends back)."""
    return list(iter_children(t, node, node_windows, keep=keep))


def expand_paths(t: Tree, paths: Sequence[tuple[int, ...]]) -> list[list[Child]]:
    """The children of each node named by its path (replayed from the root: plain data, so the nodes of
    one depth can be expanded in other processes); stops after the first violation. Nodes of one call
    that share a prefix share its replay, as the nodes of a search in one process share their ancestors
    (and with them what the checkers worked out there)."""
    out: list[list[Child]] = []
    replayed: dict[tuple[int, ...], tuple[Any, Any]] = {(): (t.root, t.windows)}
    for path in paths:
        depth = max(k for k in range(len(path) + 1) if path[:k] in replayed)
        node, windows = replayed[path[:depth]]
        for k in range(depth, len(path)):
            made = _step(node, windows, t.actions[path[k]])
            assert made is not None, f"path {path}: step {path[k]} cannot be carried out"
            node, windows, since = made
            _check(node, windows, t.properties, since)  # what the search in one process did at this node
            replayed[path[:k + 1]] = (node, windows)
        out.append(children(t, node, windows, keep=False))
        if out[-1] and out[-1][-1][2] is not None:
            break
    return out


def _in_memory(t: Tree) -> Callable[[Frontier], Iterator[Iterable[Child]]]:
    def expand(frontier: Frontier) -> Iterator[Iterable[Child]]:
        for _, (node, windows) in frontier:
            yield iter_children(t, node, windows)
    return expand


def search(scenario: Scenario, depth: int, *, bounds: Bounds = Bounds(), steps: Iterable[Any] | None = None,
           properties: Sequence[str] = sequence_check.ALL_PROPERTIES,
           progress: Callable[[Depth], None] | None = None,
           expand: Callable[[Tree], Callable[[Frontier], Iterable[Iterable[Child]]]] | None = None) -> Result:
    """Every sequence of up to ``depth`` steps of ``steps`` (default: :func:`alphabet`) after the prefix.

    ``expand(tree)`` gives what expands one depth's nodes, in order (default: here, nodes kept in memory);
    a fan-out passes one that sends the nodes' paths to :func:`expand_paths` elsewhere. The counts, the
    states and the violation found do not depend on it: the nodes and their children are met in the same
    order and deduplicated here."""
    collecting = gc.isenabled()
    gc.disable()  # see _collected_per_depth
    try:
        return _search(scenario, depth, bounds, steps, properties, progress, expand)
    finally:
        if collecting:
            gc.enable()


def _search(scenario: Scenario, depth: int, bounds: Bounds, steps: Iterable[Any] | None, properties: Sequence[str],
            progress: Callable[[Depth], None] | None,
            expand: Callable[[Tree], Callable[[Frontier], Iterable[Iterable[Child]]]] | None) -> Result:
    """:func:`search` with the cyclic garbage collector run once per depth rather than whenever enough
    objects were allocated: a search keeps a large, long-lived web of memoised walks and windows, which
    every automatic full collection traverses again (a third of the time of a depth-5 search on 2 cores:
    52.5 s with it, 35.9 s without; the few cycles a depth leaves are collected at its end)."""
    t = tree(scenario, bounds, steps, properties)
    result = Result()
    found = _check(t.root, t.windows, t.properties, 0)
    if found:
        result.violation = (found[0], found[1], t.root.steps)
        return result
    expand_level = (expand or _in_memory)(t)
    frontier: Frontier = [((), (t.root, t.windows))]
    seen = {_key(t.root, t.windows)}
    for d in range(1, depth + 1):
        level = Depth(d)
        start = time.perf_counter()
        next_frontier: Frontier = []
        for (path, _), kids in zip(frontier, expand_level(frontier)):
            for i, key, violation, kept in kids:
                level.checked += 1
                if violation is not None:
                    result.violation = violation
                    level.seconds = time.perf_counter() - start
                    result.depths.append(level)
                    return result
                if key not in seen:
                    seen.add(key)
                    next_frontier.append((path + (i,), kept))
        gc.collect()
        level.states = len(next_frontier)
        level.seconds = time.perf_counter() - start
        result.depths.append(level)
        if progress:
            progress(level)
        frontier = next_frontier
        if not frontier:
            break
    return result
