"""Counterexample traces as text a person reads step by step.

A trace is an initial memory image and a list of moves of the IOMMU model; commands written into
the ring are shown decoded (from the command tables), DMA results with the fresh walk they should
have matched. Given a replay, each step also shows the state change that matters: cache slots
filled or cleared, head and tail moved, invalidations accepted or carried out, events logged, words
the IOMMU stored. The file format is :mod:`amdvi.frontend.trace_format`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from amdvi.models.caches import CACHE_NAMES, CACHES_BY_NAME
from amdvi.models.command_buffer import fetch_command
from amdvi.models.iommu import IommuState
from amdvi.models.registers import POINTER_FIELD, REGISTER_STRUCTURES, base_address, ring_offset
from amdvi.properties.counterexample import Replay, Step, Trace
from amdvi.spec.bitvec import INT
from amdvi.spec.commands import COMMANDS_BY_OPCODE, OPCODE_HI, OPCODE_LO
from amdvi.spec.events import event_structure

POINTER_NAMES = {"cmd_head": "command head", "cmd_tail": "command tail", "evt_head": "event-log head",
                 "evt_tail": "event-log tail"}


def _request(r: Any) -> str:
    parts = [f"device {r.device_id:#06x}", f"{'write' if r.write else 'read'} {r.address:#x}"]
    if r.has_pasid:
        parts.append(f"PASID {r.pasid:#x}")
    return ", ".join(parts)


def command_text(bits: int) -> str:
    structure = COMMANDS_BY_OPCODE.get((bits >> OPCODE_LO) & ((1 << (OPCODE_HI - OPCODE_LO + 1)) - 1))
    if structure is None:
        return f"undefined command {bits:#034x}"
    fields = {f.name: v << f.unit_shift for f, v in ((f, structure.view(bits)[f.name]) for f in structure.named_fields)
              if f.name != "Opcode" and v}  # address fields as the address they stand for
    shown = ", ".join(f"{k}={v:#x}" for k, v in fields.items())
    return f"{structure.name}({shown})"


def _fill(m: Any) -> str:
    dimension = CACHES_BY_NAME[m.cache].directory_of if m.cache in CACHES_BY_NAME else None
    level = f" ({dimension} directory entry {m.step} of the walk)" if dimension else ""
    return f"hardware fills {m.cache} slot {m.slot} from a walk for {_request(m.request)}{level}"


# one line for each kind of move (models.moves.MOVE_KINDS), by class name
DESCRIBE: dict[str, Callable[[Any], str]] = {
    "Fill": _fill,
    "CpuWrite": lambda m: f"software writes {m.value:#018x} at {m.address:#x}",
    "SetTail": lambda m: f"software moves the command tail to {m.offset:#x}",
    "ProcessCommand": lambda m: "IOMMU processes the command at the head",
    "Retire": lambda m: f"IOMMU carries out in-flight invalidation {m.index}",
    "Evict": lambda m: f"hardware evicts {m.cache} slot {m.slot}",
    "Dma": lambda m: f"device DMA: {_request(m.request)}, hardware looks in {m.choice.describe()}",
    "TranslatedDma": lambda m: (f"ATS device DMA from its own IOTLB slot {m.slot}"
                                + ("" if m.dte_slot is None else f" (DTE from dte slot {m.dte_slot})")
                                + f": {_request(m.request)}"),
}


def describe(move: Any) -> str:
    """One line for one move."""
    formatter = DESCRIBE.get(type(move).__name__)
    return formatter(move) if formatter else repr(move)


# -- the state change a step made -----------------------------------------------------------------------


def _slot(slot: Any) -> str:
    parts = []
    for f in dataclasses.fields(slot):
        v = getattr(slot, f.name)
        if f.name == "valid":
            continue
        if isinstance(v, bool):
            parts.append(f"{f.name}={int(v)}")
        elif isinstance(v, int):
            parts.append(f"{f.name}={v:#x}")
    return " ".join(parts)


def _cache_changes(before: IommuState, after: IommuState) -> list[str]:
    out = []
    for cache in CACHE_NAMES:
        for i, (old, new) in enumerate(zip(before.caches.slots(cache), after.caches.slots(cache))):
            if old == new:
                continue
            if not new.valid:
                out.append(f"{cache} slot {i} cleared" if old.valid else f"{cache} slot {i} stays empty")
            else:
                out.append(f"{cache} slot {i} {'now holds' if old.valid else 'filled'}: {_slot(new)}")
    return out


def _register_changes(before: IommuState, after: IommuState) -> list[str]:
    out = []
    for name in before.regs.names():
        old, new = getattr(before.regs, name), getattr(after.regs, name)
        if old == new:
            continue
        if name in POINTER_FIELD:
            out.append(f"{POINTER_NAMES[name]} {ring_offset(INT, before.regs, name):#x} -> "
                       f"{ring_offset(INT, after.regs, name):#x}")
            if name == "evt_tail":
                at = base_address(INT, before.regs, "evt_log_bar", "EventBase") + ring_offset(INT, before.regs, name)
                bits = after.memory.get(at, 0) | after.memory.get(at + 8, 0) << 64
                event = event_structure(bits)
                out.append(f"event logged: {event.name if event else f'{bits:#034x}'}")
            continue
        structure = REGISTER_STRUCTURES[name]
        fields = [f"{f.name} {structure.view(old)[f.name]:#x} -> {structure.view(new)[f.name]:#x}"
                  for f in structure.named_fields if structure.view(old)[f.name] != structure.view(new)[f.name]]
        out.append(f"{name}: {', '.join(fields) or f'{old:#x} -> {new:#x}'}")
    return out


def _in_flight_changes(step: Step) -> list[str]:
    out = []
    for i, (old, new) in enumerate(zip(step.before.in_flight, step.after.in_flight)):
        if not old.valid and new.valid:
            out.append(f"accepted into in-flight entry {i}")
        elif old.valid and not new.valid:
            out.append(f"in-flight entry {i} carried out: {command_text(old.command)}")
    if step.retired:
        out.append(f"accepted into in-flight entry {', '.join(map(str, step.retired))} and carried out at once")
    return out


def _command_taken(step: Step) -> list[str]:
    effect = step.outputs.effect
    if effect is None or not (effect.processed or effect.illegal):
        return []
    bits, _ = fetch_command(INT, step.before.memory, step.before.regs)
    return [f"{'takes' if effect.processed else 'finds an illegal command:'} {command_text(bits)}"]


def _memory_changes(step: Step) -> list[str]:
    """Words the step stored other than a CPU write's own (a COMPLETION_WAIT's store, an event, a DMA write)."""
    own = getattr(step.move, "address", None) if type(step.move).__name__ == "CpuWrite" else None
    return [f"memory {a:#x}: {step.before.memory.get(a, 0):#x} -> {new:#x}"
            for a, new in sorted(step.after.memory.items())
            if a != own and step.before.memory.get(a, 0) != new]


def _dma(step: Step) -> list[str]:
    served, fresh = step.outputs.dma, step.fresh
    if served is None or fresh is None:
        return []
    where = "from its IOTLB" if served.from_iotlb else ("from the device IOTLB" if served.from_device_iotlb else "")
    got = f"reaches {served.spa:#x}" + (f" ({where})" if where else "") if served.ok else "faults"
    walk = f"reaches {fresh.spa:#x}" if fresh.ok else "faults"
    same = bool(served.ok) == bool(fresh.ok) and (not fresh.ok or served.spa == fresh.spa)
    return [f"the DMA {got}; a fresh walk {walk}{'' if same else '  <-- differs'}"]


def changes(step: Step) -> list[str]:
    """What ``step`` changed that a reader needs: caches, registers, in-flight work, stores, a DMA's result."""
    out = _command_taken(step) + _dma(step) + _cache_changes(step.before, step.after)
    out += _register_changes(step.before, step.after)
    out += _in_flight_changes(step) + _memory_changes(step)
    effect = step.outputs.effect
    if effect is not None and not out:
        out.append("blocked: must wait for in-flight invalidations" if step.outputs.blocked else "nothing changes")
    return out


# -- the whole trace -------------------------------------------------------------------------------------


def render(trace: Trace, result: Replay | None = None, *, show_changes: bool = False) -> list[str]:
    """The trace as numbered lines; queued commands are decoded; with ``show_changes``, each step's
    state change (from ``result``) under it."""
    lines = [f"counterexample: {trace.title}", *[f"  note: {n}" for n in trace.notes],
             f"  initial memory ({len(trace.memory)} words):"]
    lines += [f"    {a:#x}: {w:#018x}" for a, w in sorted(trace.memory.items())]
    words: dict[int, int] = {}
    base, size = trace.ring
    steps = result.steps if result is not None and show_changes else ()
    for i, move in enumerate(trace.moves, 1):
        lines.append(f"  {i:2}. {describe(move)}")
        if type(move).__name__ == "CpuWrite":
            words[move.address] = move.value
            if base <= move.address - 8 < base + size and move.address % 16 == 8 and move.address - 8 in words:
                bits = words[move.address - 8] | move.value << 64
                if (bits >> OPCODE_LO) & 0xF:
                    lines[-1] += f"   [ring: {command_text(bits)}]"
        if i <= len(steps):
            lines += [f"        -> {c}" for c in changes(steps[i - 1])]
    if result is not None:
        lines.append(f"  => {result.summary()}")
    return lines
