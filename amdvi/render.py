"""Pretty printing and JSON of decoded structures and spec look-ups, derived from the field tables."""

from __future__ import annotations

from typing import Any, Mapping

from rich.console import Console
from rich.table import Table

from amdvi.spec.catalog import Match
from amdvi.spec.fields import FIELD, RESERVED, Composite, Field, Structure


def words_of(bits: int, width: int) -> list[str]:
    """The value as 64-bit words, lowest first, as Linux prints a DTE."""
    n = max(width // 64, 1)
    return [f"0x{(bits >> (64 * i)) & ((1 << 64) - 1):016x}" for i in range(n)]


def field_row(f: Field, value: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": f.name,
        "bits": f.bits,
        "value": value,
        "hex": hex(value),
        "meaning": f.meaning,
        "value_meaning": f.describe(value),
    }
    if f.unit_shift and value:
        row["address"] = hex(value << f.unit_shift)
    return row


def decode_report(structure: Structure, bits: int, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything a person wants from one decoded value, JSON-ready."""
    view = structure.view(bits)
    rows = [
        field_row(f, view[f.name]) if f.kind == FIELD else {**field_row(f, (bits >> f.lo) & ((1 << f.width) - 1)), "kind": f.kind}
        for f in structure.fields
    ]
    rows = [r for r in rows if r.get("kind") is None or r["value"]]
    composites = [{"name": c.name, "value": view[c.name], "hex": hex(view[c.name]), "meaning": c.meaning}
                  for c in structure.composites]
    violations = [
        {"rule": r.name, "description": r.description, "event": r.event, "section": r.section, "note": r.note}
        for r in structure.validate(bits, context)
    ]
    return {
        "structure": structure.name,
        "title": structure.title,
        "section": structure.section,
        "width": structure.width,
        "hex": f"0x{bits:0{structure.width // 4}x}",
        "words": words_of(bits, structure.width),
        "fields": rows,
        "composites": composites,
        "violations": violations,
        "legal": not violations,
    }


def print_decode(console: Console, report: Mapping[str, Any], *, show_zero: bool = True) -> None:
    console.print(f"[bold]{report['structure']}[/bold] {report['title']} (48882 {report['section']})  {report['hex']}")
    if len(report["words"]) > 1:
        console.print("  words (lowest first): " + " ".join(report["words"]))
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col in ("field", "bits", "value", "meaning"):
        table.add_column(col, overflow="fold")
    for r in report["fields"]:
        if not show_zero and not r["value"] and r.get("kind") is None:
            continue
        meaning = r["value_meaning"] or r["meaning"]
        if "address" in r:
            meaning = f"{meaning} -> {r['address']}"
        name = r["name"] if r.get("kind") != RESERVED else "[red]Reserved (set!)[/red]"
        table.add_row(name, r["bits"], r["hex"], meaning)
    for c in report["composites"]:
        table.add_row(c["name"], "(pieces)", c["hex"], c["meaning"])
    console.print(table)
    print_violations(console, report["violations"])


def print_violations(console: Console, violations: list[Mapping[str, Any]]) -> None:
    if not violations:
        console.print("  legal: no reserved bit set, no illegal combination")
        return
    for v in violations:
        ev = f" -> {v['event']}" if v["event"] else ""
        console.print(f"  [red]illegal[/red] ({v['section']}): {v['description']}{ev}")
        if v["note"]:
            console.print(f"    note: {v['note']}")


def member_report(match: Match) -> dict[str, Any]:
    """JSON-ready description of a structure, one of its fields, or a composite."""
    s, m = match.structure, match.member
    if m is None:
        return {
            "name": s.name,
            "title": s.title,
            "kind": "structure",
            "width": s.width,
            "section": s.section,
            "description": s.description,
            "note": s.note,
            "fields": [
                {"name": f.name, "bits": f.bits, "kind": f.kind, "meaning": f.meaning, "section": f.section or s.section}
                for f in s.fields
            ],
            "rules": [{"rule": r.name, "description": r.description, "event": r.event, "section": r.section,
                       "needs": list(r.needs), "note": r.note} for r in s.all_rules()],
        }
    if isinstance(m, Composite):
        return {"name": f"{s.name}.{m.name}", "kind": "composite", "meaning": m.meaning,
                "section": m.section or s.section, "parts": [{"field": n, "at_bit": at} for n, at in m.parts]}
    rules = [r for r in s.all_rules() if m.name in r.name or m.name in r.description]
    return {
        "name": f"{s.name}.{m.name}",
        "kind": "field",
        "structure": s.title,
        "bits": m.bits,
        "width": m.width,
        "meaning": m.meaning,
        "section": m.section or s.section,
        "values": {str(k): v for k, v in sorted(m.values.items())},
        "illegal": {str(k): v for k, v in sorted(m.illegal.items())},
        "address_shift": m.unit_shift,
        "note": m.note,
        "rules": [{"rule": r.name, "description": r.description, "event": r.event} for r in rules],
    }


def print_member(console: Console, rep: Mapping[str, Any]) -> None:
    if rep["kind"] == "structure":
        console.print(f"[bold]{rep['name']}[/bold]: {rep['title']}, {rep['width']} bits, 48882 {rep['section']}")
        if rep["description"]:
            console.print(f"  {rep['description']}")
        if rep["note"]:
            console.print(f"  note: {rep['note']}")
        table = Table(box=None, header_style="bold")
        for col in ("bits", "field", "meaning"):
            table.add_column(col, overflow="fold")
        for f in reversed(rep["fields"]):
            table.add_row(f["bits"], f["name"], f["meaning"])
        console.print(table)
        if rep["rules"]:
            console.print("  legality rules:")
            for r in rep["rules"]:
                need = f" (given {', '.join(r['needs'])})" if r["needs"] else ""
                ev = f" -> {r['event']}" if r["event"] else ""
                console.print(f"   - {r['description']}{need}{ev}")
        return
    if rep["kind"] == "composite":
        parts = ", ".join(f"{p['field']} at bit {p['at_bit']}" for p in rep["parts"])
        console.print(f"[bold]{rep['name']}[/bold] (48882 {rep['section']}): {rep['meaning']}\n  assembled from: {parts}")
        return
    console.print(f"[bold]{rep['name']}[/bold]  bits {rep['bits']} ({rep['width']} bits) of the {rep['structure']}, "
                  f"48882 {rep['section']}")
    console.print(f"  {rep['meaning']}")
    if rep["address_shift"]:
        console.print(f"  holds address bits from {rep['address_shift']} up (value << {rep['address_shift']})")
    for k, v in rep["values"].items():
        console.print(f"  {int(k):#x}: {v}")
    for k, v in rep["illegal"].items():
        console.print(f"  {int(k):#x}: [red]illegal[/red]: {v}")
    for r in rep["rules"]:
        console.print(f"  rule: {r['description']}" + (f" -> {r['event']}" if r["event"] else ""))
    if rep["note"]:
        console.print(f"  note: {rep['note']}")
