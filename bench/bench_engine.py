"""The staged engine against the reference and against hand-written ceilings, in one run (issue 15.1).

Measured in one process, on this machine:

* walks per second of a v1 4-level and a nested 4x4 translation: the benchmark-only ceilings
  (``ceiling_walks.py``), the reference engine (``walk_request`` on Python ints) and the staged engine
  (``translate``, compiled paths), with the ratios staged / ceiling and staged / reference;
* Hypothesis rule steps per second of the IOMMU and attach/detach state machines
  (``properties.stateful``, derandomized, their own budget of 100 examples per run, in a warm process,
  median of three runs each from no remembered answers; the first, cold run recorded beside),
  on the reference and on the staged engine (each from an empty memo: the machine remembers how
  accesses are served and fills what, by the words they read, and computes a new answer on the reference
  engine, so the two rates are close), and of a machine with the same rules and draws and no work
  (``ceiling_machine.py``): what Hypothesis itself allows here;
* a long replay: the built-in sequence library as ``amdvi check`` executes and checks it, both ways;
  and traces of 2000 DMAs as ``amdvi replay`` runs them (the same access, a working set with table
  rewrites, a stream of new addresses), per access against the ceiling walks of the same requests;
* where the time goes (cProfile, top functions by own time) for the machine and the replay, both ways.

Run from this folder: ``../.venv/bin/python bench_engine.py [--seconds 3] [--examples 100]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import cProfile
import pstats
import time
from pathlib import Path

from amdvi.frontend import sequence_library
from amdvi.properties import sequence_check
from amdvi.properties import stateful
from amdvi.properties.stateful import AttachDetachMachine, machine, run_machine
from amdvi.spec import staged
from amdvi.spec.bitvec import INT
from amdvi.spec.staged_translation import STAGER
from amdvi.spec.translation import translate, walk_request

from bench_translation import BAR, images  # bench/: these scripts run from this folder
from ceiling_machine import CeilingMachine
from ceiling_walks import nested_walk, v1_walk
from record import write_results

CEILINGS = {"v1_4level": v1_walk, "nested_4x4": nested_walk}


def rate(fn, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            fn()
        n += 50
    return n / (time.perf_counter() - start)


def walks(seconds: float) -> dict:
    out = {}
    for name, (mem, req) in images().items():
        if name not in CEILINGS:
            continue
        ceiling = CEILINGS[name]
        want = walk_request(INT, mem, BAR, req)
        got = ceiling(mem, BAR, req.device_id, req.address, req.write)
        assert staged.same(translate(INT, mem, BAR, req), want), name
        assert got[1] == want.spa and len(got[9]) == len(want.active_steps()), name  # the ceiling walks the same path
        row = {
            "ceiling": rate(lambda: ceiling(mem, BAR, req.device_id, req.address, req.write), seconds),
            "reference": rate(lambda: walk_request(INT, mem, BAR, req), seconds),
            "staged": rate(lambda: translate(INT, mem, BAR, req), seconds),
        }
        row = {k: round(v, 1) for k, v in row.items()}
        row["staged_over_ceiling"] = round(row["staged"] / row["ceiling"], 3)
        row["staged_over_reference"] = round(row["staged"] / row["reference"], 1)
        out[name] = row
        print(name, row, flush=True)
    return out


class _Steps:
    count = 0


def counting_machine(base=None):
    base = base or machine()

    class Counting(base):  # type: ignore[valid-type, misc]
        def check_invariants(self, *args, **kw):  # called once after initialisation and after every rule
            _Steps.count += 1
            return super().check_invariants(*args, **kw)

    return Counting


def machine_steps(examples: int, base=None) -> dict:
    cls = counting_machine(base)
    _Steps.count = 0
    start = time.perf_counter()
    failure = run_machine(max_examples=examples, derandomize=True, machine_class=cls)
    seconds = time.perf_counter() - start
    assert failure is None, failure
    return {"steps": _Steps.count, "seconds": round(seconds, 2), "steps_per_second": round(_Steps.count / seconds, 1)}


def steady_steps(examples: int, base=None, repeat: int = 3) -> dict:
    """Steps per second once the process is warm: a first short run pays what a process pays once
    (Hypothesis reads the source of every module for constants; the staged engine compiles its
    paths), then ``repeat`` measured runs of the same derandomized examples (a run is a few seconds on
    2 cores and noisy): their median is the figure, each run recorded. Each run starts
    with no remembered answers (``remembered_access.forget``): a run answers only what it asked itself."""
    first = machine_steps(max(examples // 4, 2), base)
    runs = []
    for _ in range(repeat):
        stateful.forget()
        runs.append(machine_steps(examples, base))
    median = sorted(runs, key=lambda r: r["steps_per_second"])[len(runs) // 2]
    return {**median, "runs_steps_per_second": [r["steps_per_second"] for r in runs], "first_run": first}


def replay() -> dict:
    start, points = time.perf_counter(), 0
    for entry in sequence_library.ENTRIES:
        seq = entry.loaded()
        ex = sequence_check.execute(seq.scenario, seq.steps)
        sequence_check.check(ex)
        points += len(ex.run.boundaries)
    seconds = time.perf_counter() - start
    return {"sequences": len(sequence_library.ENTRIES), "points": points, "seconds": round(seconds, 2)}


def _workloads(req, steps: int) -> dict:
    """Long DMA traces of one device (``req``'s), as the moves ``amdvi replay`` runs:

    * repeated: the same access ``steps`` times (every step asks what an earlier one asked);
    * working_set: 64 addresses in turn, and every 50 accesses a CPU write that rewrites the leaf
      entry of the address just accessed (its walks start afresh; the others still hold);
    * stream: a new address every step (no step asks what an earlier one asked: each walks).
    The v1 image maps 16 pages, the nested one a single guest page: addresses stay inside them."""
    from amdvi.models.moves import Dma

    page, offset = req.address & ~0xFFF, req.address & 0xFFF
    v1 = req.device_id == 1  # bench_translation.images(): device 1 is the v1 image (16 pages)

    def address(k: int, distinct: int) -> int:
        if v1:
            return (k % 16) << 12 | ((k // 16) % (distinct // 16 or 1)) * 8
        return page | (offset + 2 * (k % distinct)) % 0x1000

    def at(k: int, distinct: int):
        return dataclasses.replace(req, address=address(k, distinct))

    return {
        "repeated": [Dma(req)] * steps,
        "working_set": [Dma(at(k, 64)) for k in range(steps)],
        "stream": [Dma(at(k, 8192 if v1 else 2048)) for k in range(steps)],
    }


def _with_rewrites(moves: list, mem: dict) -> tuple:
    """``moves`` with a CPU write after every 50th access: its leaf entry with one page-address bit
    flipped (and flipped back the next time), so walks through it give another answer."""
    from amdvi.models.moves import CpuWrite

    out, memory = [], dict(mem)
    for k, move in enumerate(moves, 1):
        out.append(move)
        if k % 50 == 0 and k < len(moves):  # (a trace ends in an access)
            walk = translate(INT, memory, BAR, move.request)
            leaf = [x for x in walk.steps if x.active][-1]
            memory[leaf.entry_address] = leaf.entry ^ (1 << 12)
            out.append(CpuWrite(leaf.entry_address, memory[leaf.entry_address]))
    return tuple(out)


def long_trace_replay(steps: int = 2000) -> dict:
    """Long DMA traces (:func:`_workloads`) replayed as ``amdvi replay`` does
    (``counterexample.replay``: each access served and shown beside the fresh walk, both remembered
    by the words of memory they read), per access against the hand-written ceiling walks of the same
    requests on the same image, measured here: a replayed access needs two walks (served and fresh),
    and the answer is how far a step is from those memory reads."""
    import dataclasses as dc

    from amdvi.models.moves import Dma
    from amdvi.properties.counterexample import REGS, Trace, replay as replay_trace

    out = {}
    for name, (mem, req) in images().items():
        if name not in CEILINGS:
            continue
        ceiling = CEILINGS[name]
        rows = {}
        for kind, moves in _workloads(req, steps).items():
            moves = _with_rewrites(moves, mem) if kind == "working_set" else tuple(moves)
            trace = Trace("long replay", dict(mem), moves, waits=False, regs=dc.replace(REGS, dev_tab_bar=BAR))
            replay_trace(trace)  # the staged paths compiled (each replay remembers its own answers)
            accesses = [m.request for m in moves if isinstance(m, Dma)]
            times = []
            for _ in range(3):  # the median of three: a collection after a replay may land in the next
                start = time.perf_counter()
                replay_trace(trace)
                times.append((time.perf_counter() - start) / len(accesses))
            step = sorted(times)[1]
            start = time.perf_counter()
            for r in accesses:
                ceiling(mem, BAR, r.device_id, r.address, r.write)
            walk = (time.perf_counter() - start) / len(accesses)
            rows[kind] = {"accesses": len(accesses), "distinct_requests": len(set(accesses)),
                          "us_per_access_step": round(step * 1e6, 2), "us_per_ceiling_walk": round(walk * 1e6, 2),
                          "step_over_two_ceiling_walks": round(step / (2 * walk), 2)}
        staged_walk = 1 / rate(lambda: translate(INT, mem, BAR, req), 1.0)
        rows["us_per_staged_walk"] = round(staged_walk * 1e6, 2)
        out[name] = rows
    return out


def profile(fn, top: int = 8) -> list[dict]:
    """The ``top`` functions by own time, with their share of the run."""
    pr = cProfile.Profile()
    pr.enable()
    fn()
    pr.disable()
    stats = pstats.Stats(pr).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values()) or 1.0
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    return [{"function": f"{Path(file).name}:{line}({name})", "own_share": round(v[2] / total, 3)}
            for (file, line, name), v in rows]


def both_ways(fn) -> dict:
    out = {}
    for engine in ("reference", "staged"):
        staged.use(engine == "staged")
        STAGER.reset()
        stateful.forget()  # the machine's remembered answers too: each engine starts cold
        out[engine] = fn()
        print(engine, out[engine], flush=True)
    staged.use(True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="per walk measurement")
    ap.add_argument("--examples", type=int, default=100,
                    help="Hypothesis examples per measured machine run (100: the machines' own budget)")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "engine.json"))
    args = ap.parse_args()

    results: dict = {"walks_per_second": walks(args.seconds)}
    # early, while the process is small: later measurements leave a large heap that slows every step
    results["long_trace_replay"] = long_trace_replay()
    print("long trace replay", results["long_trace_replay"], flush=True)
    ceiling = steady_steps(args.examples, CeilingMachine)
    print("hypothesis ceiling", ceiling, flush=True)
    m = both_ways(lambda: steady_steps(args.examples))
    m["speedup"] = round(m["staged"]["steps_per_second"] / m["reference"]["steps_per_second"], 2)
    m["hypothesis_ceiling"] = ceiling
    m["staged_over_ceiling"] = round(m["staged"]["steps_per_second"] / ceiling["steps_per_second"], 3)
    results["iommu_machine"] = {"examples": args.examples, **m}
    a = both_ways(lambda: steady_steps(args.examples, machine(base=AttachDetachMachine)))
    a["staged_over_ceiling"] = round(a["staged"]["steps_per_second"] / ceiling["steps_per_second"], 3)
    results["attach_detach_machine"] = {"examples": args.examples, **a}
    r = both_ways(replay)
    r["speedup"] = round(r["reference"]["seconds"] / r["staged"]["seconds"], 2)
    results["library_replay"] = r
    if not args.no_profile:
        results["profile"] = {
            "iommu_machine": both_ways(lambda: profile(lambda: machine_steps(max(args.examples // 4, 2)))),
            "library_replay": both_ways(lambda: profile(replay)),
        }
    results["staged_paths"] = {"configurations": len(STAGER.functions), "traces": STAGER.traces}
    write_results("engine", results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
