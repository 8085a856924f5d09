"""``amdvi diff-qemu``: differential testing against QEMU's emulated AMD IOMMU (``amdvi.difftest``).

``--cases N --seed S`` generates N cases (Hypothesis, deterministic for the seed), runs each on QEMU
and on the model, and reports agreements, known divergences (the list for the QEMU version) and new
ones; each new kind of divergence is shrunk and written to ``--out`` as a replayable case with a
report. ``--replay CASE`` runs one case file and shows every mismatch. ``--known`` lists the known
divergences of the QEMU version and the study's items that do not show as divergences, with reasons.
Exit 0: nothing new; 1: a new divergence; 2: bad input (no QEMU, a bad case file).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from amdvi.frontend import exit_codes
from amdvi.frontend.errors import InputError
from amdvi.frontend.report import Report

NAME = "diff-qemu"
HELP = "run generated cases on QEMU's amd-iommu and on the model; report known and new divergences"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cases", type=int, default=200, metavar="N", help="generated cases to run (default 200)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="the seed the cases derive from (default 0)")
    parser.add_argument("--workers", type=int, default=2, metavar="W",
                        help="worker processes, each with its own QEMU (default 2)")
    parser.add_argument("--qemu", metavar="PATH", help="the QEMU binary (default: qemu-system-x86_64 on PATH)")
    parser.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS",
                        help="the watchdog: how long a qtest reply may take before QEMU counts as hung (default 2)")
    parser.add_argument("--out", metavar="DIR",
                        help="where new divergences are written (default diff-qemu-findings/); with --study, "
                             "each study case is written there too, as a replayable case and a report")
    parser.add_argument("--max-findings", type=int, default=5, metavar="K",
                        help="shrink and write at most K kinds of new divergence (default 5)")
    parser.add_argument("--replay", metavar="CASE", help="run one case file (a written finding, or your own)")
    parser.add_argument("--known", action="store_true", help="list the known divergences of the QEMU version")
    parser.add_argument("--study", action="store_true",
                        help="run the feasibility study's findings as cases and say which reproduce")


def _qemu(args: argparse.Namespace) -> tuple[str, str]:
    from amdvi.difftest.machine import find_binary, version
    from amdvi.difftest.qtest import QemuError

    binary = find_binary(args.qemu)
    if binary is None:
        raise InputError(f"{args.qemu or 'qemu-system-x86_64'} not found: install qemu-system-x86 or give --qemu PATH")
    try:
        return binary, version(binary)
    except (OSError, QemuError) as e:
        raise InputError(f"{binary}: cannot tell its version: {e}") from None


def run(args: argparse.Namespace) -> Report:
    if args.cases < 1 or args.workers < 1 or args.timeout <= 0 or args.max_findings < 0:
        raise InputError("--cases, --workers and --timeout must be positive, --max-findings not negative")
    if args.known:
        return _known(args)
    case = _read_case(args.replay) if args.replay else None  # a bad file is reported before QEMU is looked for
    binary, version = _qemu(args)
    if case is not None:
        return _replay(args, case, binary, version)
    if args.study:
        return _study(args, binary, version)
    return _campaign(args, binary, version)


def _known(args: argparse.Namespace) -> Report:
    from amdvi.difftest import known

    version = _qemu(args)[1] if (args.qemu or _on_path()) else "7.2"
    entries, missing = known.load(version), known.not_reproduced(version)
    data = {"qemu": version, "known": [vars(k) for k in entries], "not_reproduced": missing}

    def show(console: Console) -> None:
        console.print(f"known divergences of QEMU {known.series(version)}:", markup=False)
        for k in entries:
            console.print(f"  {k.id} ({k.study}; {known.CLASSES[k.classification]}; 48882 {k.section}): {k.title}\n"
                          f"      QEMU: {k.qemu_source}", markup=False, soft_wrap=True)
        console.print("not reproduced as divergences:", markup=False)
        for n in missing:
            console.print(f"  {n['study']}: {n['reason']}", markup=False, soft_wrap=True)

    return Report(data, show)


def _on_path() -> bool:
    from amdvi.difftest.machine import find_binary
    return find_binary() is not None


def _read_case(path: str) -> Any:
    from amdvi.difftest import case as case_format
    from amdvi.frontend.files import read_text

    try:
        return case_format.loads(read_text(path), path)
    except case_format.CaseError as e:
        raise InputError(str(e)) from None


def _replay(args: argparse.Namespace, c: Any, binary: str, version: str) -> Report:
    from amdvi.difftest import report
    from amdvi.difftest.campaign import Worker
    from amdvi.difftest.qtest import QemuError

    worker = Worker(binary, args.timeout, version)
    try:
        v = worker.judge(c)
    except QemuError as e:
        raise InputError(f"{args.replay}: QEMU refused the case: {e}") from None
    finally:
        worker.close()
    data = {"qemu": version, "case": args.replay, "status": v.status,
            "mismatches": [{"step": m.step, "observable": m.observable, "qemu": m.seen, "spec_allows": m.allowed,
                            "shape": m.shape, "known": [k.id for k in ks]} for m, ks in v.classified]}

    def show(console: Console) -> None:
        console.print(f"QEMU {version}; {args.replay}", markup=False)
        console.print("\n".join(report.case_lines(c)), markup=False, soft_wrap=True)
        console.print("result:", markup=False)
        console.print("\n".join(report.verdict_lines(v)), markup=False, soft_wrap=True)
        console.print(f"verdict: {v.status}" + (" (" + ", ".join(v.shapes()) + ")" if v.new else ""), markup=False)

    return Report(data, show, exit_codes.PROPERTY_FAILS if v.new else exit_codes.OK)


def _study(args: argparse.Namespace, binary: str, version: str) -> Report:
    from amdvi.difftest import known, study
    from amdvi.difftest.campaign import Worker

    rows = []
    for sc in study.cases():
        worker = Worker(binary, min(args.timeout, 1.0), version)  # a fresh QEMU: no Status bits left over
        try:
            v = worker.judge(sc.case)
        finally:
            worker.close()
        shown = known.explained_ids(v.classified)
        if args.out:
            _write_study_case(Path(args.out), len(rows) + 1, sc, v, version, sorted(shown))
        rows.append({"case": sc.name, "study": sc.study, "expected": sorted(sc.expected), "shown": sorted(shown),
                     "new": [m.line() for m in v.new], "reproduces": shown == set(sc.expected) and not v.new})
    failed = [r for r in rows if not r["reproduces"]]

    def show(console: Console) -> None:
        console.print(f"QEMU {version}: the feasibility study's findings as cases", markup=False)
        for r in rows:
            mark = "ok  " if r["reproduces"] else "DIFF"
            what = ", ".join(r["shown"]) or "agrees with the spec"
            console.print(f"  {mark} {r['study']:28} {r['case']}: {what}", markup=False, soft_wrap=True)
            for line in r["new"]:
                console.print(f"         NEW {line}", markup=False, soft_wrap=True)
        for n in known.not_reproduced(version):
            console.print(f"  --   {n['study']}: {n['reason']}", markup=False, soft_wrap=True)

    return Report({"qemu": version, "cases": rows, "not_reproduced": known.not_reproduced(version)}, show,
                  exit_codes.PROPERTY_FAILS if failed else exit_codes.OK)


def _write_study_case(out: Path, n: int, sc: Any, v: Any, version: str, shown: list[str]) -> None:
    from amdvi.difftest import case as case_format, report
    from amdvi.frontend.files import write_atomically

    name = f"study-{n:02d}-{sc.case.title.replace(' ', '-').replace('=', '').replace('/', '-')}"
    c = sc.case.with_(title=f"{sc.study}: {sc.name}", finding={"qemu": version, "study": sc.study, "known": shown})
    write_atomically(out / f"{name}.json", case_format.dumps(c))
    v.case = c
    write_atomically(out / f"{name}.md", report.finding_markdown(v, version, f"amdvi diff-qemu --replay {out / name}.json"))


def _campaign(args: argparse.Namespace, binary: str, version: str) -> Report:
    from amdvi.difftest import campaign, known, report
    from amdvi.frontend.files import write_atomically

    err = Console(stderr=True)
    with err.status(f"diff-qemu: {args.cases} cases on QEMU {version}...") as status:
        def progress(done: int, total: int) -> None:
            status.update(f"diff-qemu: {done}/{total} cases on QEMU {version}")

        result = campaign.run(binary, version, cases_wanted=args.cases, seed=args.seed, workers=args.workers,
                              timeout=args.timeout, progress=progress)
        out_dir = Path(args.out or "diff-qemu-findings")
        if result.new_shapes() and args.max_findings:
            status.update(f"diff-qemu: shrinking {min(len(result.new_shapes()), args.max_findings)} new divergence(s)")
            campaign.shrink_findings(result, binary, out_dir, timeout=args.timeout, limit=args.max_findings)
    data: dict[str, Any] = campaign.summary_json(result)
    counts = result.known_counts()
    entries = known.load(version)
    if result.findings:
        write_atomically(out_dir / "known.md", report.known_markdown(entries, counts, known.not_reproduced(version),
                                                                     version))

    def show(console: Console) -> None:
        n = len(result.results)
        console.print(f"QEMU {version}, seed {args.seed}: {n} cases in {result.seconds:.1f} s "
                      f"({n / max(result.seconds, 1e-9):.0f} cases/s, {result.restarts} QEMU restart(s))", markup=False)
        console.print(f"  agree: {result.count(campaign.AGREE)}   known divergences only: "
                      f"{result.count(campaign.KNOWN)}   new divergences: {result.count(campaign.NEW)}", markup=False)
        for k in entries:
            if counts.get(k.id):
                console.print(f"  known {k.id:32} {counts[k.id]:6} case(s)  ({k.study}, 48882 {k.section})", markup=False)
        for shape, indices in sorted(result.new_shapes().items()):
            console.print(f"  NEW   {shape:32} {len(indices):6} case(s)  (first: case {indices[0]})", markup=False)
        for f in result.findings:
            console.print(f"  wrote {f['file']} ({f['steps']} steps, {f['words']} words)", markup=False)

    return Report(data, show, exit_codes.PROPERTY_FAILS if result.new_shapes() else exit_codes.OK)
