"""Counterexample traces as text a person reads step by step, and as JSON.

A trace is an initial memory image and a list of moves of the IOMMU model; commands written into
the ring are shown decoded (from the command tables), DMA results with the fresh walk they should
have matched.
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from typing import Any

from amdvi.models.caches import CACHES_BY_NAME
from amdvi.models.iommu import CpuWrite, Dma, Fill, ProcessCommand, Retire, SetTail, TranslatedDma
from amdvi.properties.counterexample import Replay, Trace
from amdvi.spec.commands import COMMANDS_BY_OPCODE, OPCODE_HI, OPCODE_LO


def _request(r: Any) -> str:
    parts = [f"device {r.device_id:#06x}", f"{'write' if r.write else 'read'} {r.address:#x}"]
    if r.has_pasid:
        parts.append(f"PASID {r.pasid:#x}")
    return ", ".join(parts)


def _command(bits: int) -> str:
    structure = COMMANDS_BY_OPCODE.get((bits >> OPCODE_LO) & ((1 << (OPCODE_HI - OPCODE_LO + 1)) - 1))
    if structure is None:
        return f"undefined command {bits:#034x}"
    fields = {f.name: v << f.unit_shift for f, v in ((f, structure.view(bits)[f.name]) for f in structure.named_fields)
              if f.name != "Opcode" and v}  # address fields as the address they stand for
    shown = ", ".join(f"{k}={v:#x}" for k, v in fields.items())
    return f"{structure.name}({shown})"


def describe(move: Any, ring_commands: dict[int, int] | None = None) -> str:
    """One line for one move."""
    if isinstance(move, Fill):
        dimension = CACHES_BY_NAME[move.cache].directory_of if move.cache in CACHES_BY_NAME else None
        level = f" ({dimension} directory entry {move.step} of the walk)" if dimension else ""
        return f"hardware fills {move.cache} slot {move.slot} from a walk for {_request(move.request)}{level}"
    if isinstance(move, CpuWrite):
        return f"software writes {move.value:#018x} at {move.address:#x}"
    if isinstance(move, SetTail):
        return f"software moves the command tail to {move.offset:#x}"
    if isinstance(move, ProcessCommand):
        return "IOMMU processes the command at the head (and carries out any invalidation it accepts)"
    if isinstance(move, Retire):
        return f"IOMMU carries out in-flight invalidation {move.index}"
    if isinstance(move, Dma):
        return f"device DMA: {_request(move.request)}, hardware looks in {move.choice.describe()}"
    if isinstance(move, TranslatedDma):
        return f"ATS device DMA from its own IOTLB slot {move.slot}: {_request(move.request)}"
    return repr(move)


def _in_ring(trace: Trace, address: int) -> bool:
    """``address`` is in the trace's command ring (any address, when the trace does not say)."""
    return trace.ring is None or trace.ring[0] <= address < trace.ring[0] + trace.ring[1]


def render(trace: Trace, result: Replay | None = None) -> list[str]:
    """The trace as numbered lines; queued commands are decoded."""
    lines = [f"counterexample: {trace.title}", *[f"  note: {n}" for n in trace.notes],
             f"  initial memory ({len(trace.memory)} words the walks read):"]
    lines += [f"    {a:#x}: {w:#018x}" for a, w in sorted(trace.memory.items())]
    words: dict[int, int] = {}
    for i, move in enumerate(trace.moves, 1):
        lines.append(f"  {i:2}. {describe(move)}")
        if isinstance(move, CpuWrite):
            words[move.address] = move.value
            if _in_ring(trace, move.address) and move.address % 16 == 8 and move.address - 8 in words:
                bits = words[move.address - 8] | move.value << 64
                if (bits >> OPCODE_LO) & 0xF:
                    lines[-1] += f"   [ring: {_command(bits)}]"
    if result is not None:
        lines.append(f"  => {result.summary()}")
    return lines


def _jsonable(x: Any) -> Any:
    if is_dataclass(x) and not isinstance(x, type):
        return {"move": type(x).__name__, **{k: _jsonable(v) for k, v in asdict(x).items()}}
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return hex(x)
    return repr(x)


def to_json(trace: Trace, result: Replay | None = None) -> dict[str, Any]:
    out = {"title": trace.title, "notes": list(trace.notes),
           "memory": {hex(a): hex(w) for a, w in sorted(trace.memory.items())},
           "moves": [dict(_jsonable(m), text=describe(m)) for m in trace.moves]}
    if result is not None:
        out["replay"] = {"stale": result.stale, "served_ok": result.served_ok, "served_spa": hex(result.served_spa),
                         "fresh_ok": result.fresh_ok, "fresh_spa": hex(result.fresh_spa),
                         "summary": result.summary()}
    return out


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"
