"""Driver and ioctl sequences as text a reviewer reads step by step, and counterexamples as files.

Each step shows what the VMM, guest or device did, the errno and outputs, how each device's mappings
changed, and the hardware steps the driver performed: DTE halves written, page-table words stored,
commands queued (decoded from the command tables), waits. A DMA step shows every outcome the IOMMU
model allows at that point (a walk of memory as it is, and each way cached parts may serve it).
"""

from __future__ import annotations

import errno as errnos
import re
from typing import Any, Sequence

from amdvi.frontend.trace import command_text
from amdvi.models import system
from amdvi.models.timeline import AtsControl, GuestWait, Queue, Store, VfWrite, VfctrlWrite, Wait
from amdvi.spec.viommu import VFCTRL_OFFSETS
from amdvi.properties import sequence_check
from amdvi.properties.cache_windows import Windows
from amdvi.spec.device_table import ENTRY_BYTES
from amdvi.spec.translation import Request


def errno_text(n: int) -> str:
    return "0" if n == 0 else f"-{errnos.errorcode.get(n, str(n))}"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return hex(v)
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


def describe_step(step: Any) -> str:
    """One line for a step of a sequence."""
    if isinstance(step, system.Call):
        args = ", ".join(f"{k}={_value(v)}" for k, v in step.args.items())
        bind = "".join(f", {v} := {k}" for k, v in step.bind.items())
        return f"VMM: {step.name}({args}){bind}"
    if isinstance(step, system.GuestWrite):
        return f"guest: store {step.value:#x} at GPA {step.gpa:#x} of {step.ioas}"
    if isinstance(step, system.DeviceDma):
        pasid = "" if step.pasid is None else f" PASID {step.pasid:#x}"
        return f"device {step.device}: DMA {'write' if step.write else 'read'} at {step.address:#x}{pasid}"
    if isinstance(step, system.FlushQueueDrain):
        return "timer: the flush queue drains"
    if isinstance(step, system.GuestCommands):
        listed = "; ".join(command_text(c) for c in step.commands)
        return f"guest of {step.viommu}: {listed}, then COMPLETION_WAIT at GPA {step.semaphore:#x}"
    return repr(step)


def vfctrl_text(writes: Any, shown: int = 3) -> str:
    """VFCtrl writes decoded (a long loop shown by its first few and its count)."""
    parts = []
    for guest_id, offset, value in writes[:shown]:
        register = VFCTRL_OFFSETS[offset]
        fields = ", ".join(f"{k}={v:#x}" for k, v in register.decode(value).items() if v)
        parts.append(f"guest {guest_id} {register.name}({fields})")
    more = f" ... {len(writes)} writes" if len(writes) > shown else ""
    return "VFCtrl " + "; ".join(parts) + more


def hardware_line(scenario: system.Scenario, s: Any) -> str:
    """One line for one hardware step the driver (or a guest) performed."""
    if isinstance(s, Store):
        for rid in scenario.requester_ids:
            base = scenario.layout.dte_address(rid)
            words = [(a - base) // 8 for a, _ in s.writes if base <= a < base + ENTRY_BYTES]
            if words and len(words) == len(s.writes):
                half = {(0, 1): "lower half", (2, 3): "upper half"}.get(tuple(sorted(words)), f"words {words}")
                values = " ".join(f"{v:#018x}" for _, v in sorted(s.writes))
                return f"DTE of {rid:#06x}: {half} := {values}   ({s.what})"
        stores = ", ".join(f"[{a:#x}] := {v:#x}" for a, v in s.writes)
        return f"store {stores}   ({s.what})"
    if isinstance(s, Queue):
        return "queue " + "; ".join(command_text(c) for c in s.commands) + (f"   ({s.what})" if s.what else "")
    if isinstance(s, Wait):
        return f"wait for COMPLETION_WAIT {s.sequence:#x} at {s.address:#x}" + (f"   ({s.what})" if s.what else "")
    if isinstance(s, VfWrite):
        return f"guest {s.guest_id} VF page [{s.offset:#x}] := {s.value:#x}" + (f"   ({s.what})" if s.what else "")
    if isinstance(s, GuestWait):
        return (f"guest {s.guest_id} waits for COMPLETION_WAIT {s.sequence:#x} at {s.address:#x}"
                + (f"   ({s.what})" if s.what else ""))
    if isinstance(s, VfctrlWrite):
        return vfctrl_text(s.writes) + (f"   ({s.what})" if s.what else "")
    if isinstance(s, AtsControl):
        ids = ", ".join(f"{d:#06x}" for d in s.device_ids)
        return f"ATS Enable of {ids} := {int(s.enable)}" + (f"   ({s.what})" if s.what else "")
    return repr(s)


def guest_event_text(event: Any) -> str:
    """What the vIOMMU did with a record for a guest's event log (``models.viommu.GuestEvent``, ints)."""
    from amdvi.spec.events import event_structure

    kind = event_structure(event.record)
    fields = ", ".join(f"{k}={v:#x}" for k, v in kind.decode(event.record).items() if v) if kind else ""
    record = f"{kind.name if kind else 'event'}({fields})"
    if event.written:
        return f"{record} written at GPA {event.address:#x} (system {event.system_address:#x})"
    if event.faulted:
        return (f"{record} not written: stage 2 does not map GPA {event.address:#x}; GUEST_EVENT_FAULT "
                + ("in the host's log" if event.host_logged else "dropped (the host's log did not take it)"))
    return f"{record} dropped: the guest's log is full (EventOverflow)"


def _mapping_changes(ex: sequence_check.Execution, rec: sequence_check.StepRecord) -> list[str]:
    before = sequence_check.frames_of(ex.scenario, rec.before)
    after = sequence_check.frames_of(ex.scenario, rec.after)
    out = []
    for device in ex.scenario.devices:
        old = set(before.get(device.device_id, sequence_check.Frames()).ranges)
        new = set(after.get(device.device_id, sequence_check.Frames()).ranges)
        for pa, n, r, w in sorted(new - old):
            out.append(f"{device.name} may now reach [{pa:#x}, {pa + n:#x}) {'R' if r else ''}{'W' if w else ''}")
        for pa, n, r, w in sorted(old - new):
            out.append(f"{device.name} no longer reaches [{pa:#x}, {pa + n:#x})")
    return out


def dma_outcomes(windows: Windows, at: int, request: Request) -> list[str]:
    """Every distinct outcome of ``request`` at boundary ``at``, with one way to get each."""
    seen: dict[tuple[bool, int], str] = {}
    for s in windows.outcomes(at, request):
        key = (s.ok, s.result.spa if s.ok else 0)
        seen.setdefault(key, s.describe())
    return [f"{'reaches ' + hex(spa) if ok else 'faults'} (e.g. {how})" for (ok, spa), how in sorted(seen.items())]


def render(ex: sequence_check.Execution, *, upto: int | None = None, windows: Windows | None = None) -> list[str]:
    """The run step by step (up to boundary ``upto``)."""
    lines = []
    for rec in ex.records:
        if upto is not None and rec.start >= upto:
            break
        out = ", ".join(f"{k}={_value(v)}" for k, v in rec.out.items())
        result = "" if not isinstance(rec.step, system.Call) else f" -> {errno_text(rec.errno)}" + (
            f" ({out})" if out else "")
        lines.append(f"{rec.index + 1}. {describe_step(rec.step)}{result}")
        for k, s in enumerate(rec.hardware, 1):
            lines.append(f"   {rec.index + 1}.{k} {hardware_line(ex.scenario, s)}")
        lines += [f"   mappings: {c}" for c in _mapping_changes(ex, rec)]
        lines += [f"   guest {g.guest_id} event log: {guest_event_text(g.effect.event)}"
                  for g in ex.run.guest_steps if rec.start < g.at <= rec.end and g.effect.event.attempted]
        lines += [f"   guest stuck: {what}" for at, what in ex.run.guest_hangs if rec.start < at <= rec.end]
        if isinstance(rec.step, system.DeviceDma) and windows is not None:
            d = ex.scenario.device(rec.step.device)
            r = Request(device_id=d.device_id, address=rec.step.address, write=rec.step.write,
                        pasid=rec.step.pasid or 0, has_pasid=rec.step.pasid is not None)
            lines += [f"   DMA {o}" for o in dma_outcomes(windows, rec.end, r)]
    return lines


def where(ex: sequence_check.Execution, at: int) -> str:
    """Boundary ``at`` in words: which step, after which of its hardware steps."""
    for rec in ex.records:
        if rec.start < at <= rec.end:
            k = at - rec.start
            if rec.hardware and k < len(rec.hardware):
                return f"during step {rec.index + 1}, after its hardware step {rec.index + 1}.{k}"
            return f"after step {rec.index + 1}"
    return "before the first step"


def violation_line(ex: sequence_check.Execution, prop: str, v: Any) -> str:
    """The violation in words, its points named by step (``boundary N`` becomes where it is)."""
    what = re.sub(r"(?:at )?boundary (\d+)", lambda m: where(ex, int(m.group(1))), v.what)
    return f"VIOLATED {prop} {where(ex, v.at)}: {what}"


def counterexample(seq: Any, steps: Sequence[Any], prop: str) -> dict[str, Any]:
    """The (minimised) ``steps`` as lines and as a sequence file claiming ``prop``."""
    from amdvi.frontend import sequence_format

    ex = sequence_check.execute(seq.scenario, steps, probes=seq.probes)
    [verdict] = [v for v in sequence_check.check(ex, [prop]) if v.property == prop]
    v = verdict.violation
    lines = render(ex, upto=None if v is None else v.at + 1)
    if v is not None:
        lines.append(violation_line(ex, prop, v))
    loaded = sequence_format.LoadedSequence(f"counterexample: {prop} in {seq.title}", seq.scenario, tuple(steps),
                                            seq.probes, (f"minimised from {len(seq.steps)} to {len(steps)} steps",))
    file = sequence_format.to_json(loaded, violation=(prop, "" if v is None else v.what), describe=describe_step)
    return {"steps": len(steps), "lines": lines, "file": file}
