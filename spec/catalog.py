"""Every declared 48882 structure in one place, and name look-up across them.

Names resolve as a person types them: ``DTE``, ``DTE.GV``, ``dte.mode``,
``INVALIDATE_IOMMU_PAGES``, ``IO_PAGE_FAULT.RW``, ``EFR.HATS``, ``DTE.GCR3 Table Root Pointer``
(a composite), or a bare field name such as ``GLX`` (every structure that has it).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import commands, device_table, events, guest_page_table, host_page_table, mmio, viommu
from .fields import Composite, Field, Structure, python_name

STRUCTURES: tuple[Structure, ...] = (
    (device_table.DTE,)
    + host_page_table.STRUCTURES
    + guest_page_table.STRUCTURES
    + tuple(commands.COMMANDS)
    + tuple(events.EVENTS)
    + tuple(mmio.REGISTERS)
    + viommu.STRUCTURES
)

# The structure families `amdvi decode KIND` accepts; cmd and event pick the variant by code.
DECODE_KINDS = {
    "dte": device_table.DTE,
    "pde": host_page_table.PDE,
    "pte": host_page_table.PTE,
    "gpte": guest_page_table.GPTE,
    "gcr3": guest_page_table.GCR3_ENTRY,
}
VARIANT_KINDS = {"cmd": 128, "event": 128}


@dataclass(frozen=True)
class Match:
    """A name resolved to a structure and, optionally, one of its fields or composites."""

    structure: Structure
    member: Field | Composite | None = None


def _structure_keys(s: Structure) -> set[str]:
    return {k.lower() for k in (s.name, s.title, *s.aliases)} | {python_name(s.name)}


def find_structure(name: str) -> Structure | None:
    key = name.strip().lower()
    for s in STRUCTURES:
        if key in _structure_keys(s) or python_name(key) == python_name(s.name):
            return s
    return None


def resolve(name: str) -> list[Match]:
    """Every structure or member ``name`` denotes (empty when none)."""
    name = name.strip()
    s = find_structure(name)
    if s is not None:
        return [Match(s)]
    if "." in name:
        head, _, tail = name.partition(".")
        s = find_structure(head)
        if s is None:
            return []
        member = s.field(tail) or s.composite(tail)
        return [Match(s, member)] if member is not None else []
    return [
        Match(s, m)
        for s in STRUCTURES
        for m in (s.field(name) or s.composite(name),)
        if m is not None
    ]


def all_names() -> list[str]:
    """Every name ``resolve`` accepts in its qualified form (for suggestions and docs)."""
    out: list[str] = []
    for s in STRUCTURES:
        out.append(s.name)
        out.extend(f"{s.name}.{f.name}" for f in s.named_fields)
        out.extend(f"{s.name}.{c.name}" for c in s.composites)
    return out


def command_or_event(kind: str, bits: int) -> Structure | None:
    """The command (by opcode) or event (by code) variant of a concrete 128-bit record."""
    return commands.command_structure(bits) if kind == "cmd" else events.event_structure(bits)
