"""Pretty printing and JSON of decoded structures and spec look-ups, derived from the field tables."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from rich.console import Console
from rich.table import Table

from amdvi.spec.catalog import Match
from amdvi.spec.fields import FIELD, RESERVED, Composite, Field, Rule, Structure
from amdvi.spec.partial import check_partial, read_fields


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


def _rule_row(r: Rule) -> dict[str, Any]:
    return {"rule": r.name, "description": r.description, "event": r.event, "section": r.section, "note": r.note}


def hex_with_unknowns(bits: int, known_mask: int, width: int) -> str:
    """``0x...`` with one ``?`` for every hex digit that is not wholly known."""
    digits = [f"{(bits >> (4 * i)) & 0xF:x}" if (known_mask >> (4 * i)) & 0xF == 0xF else "?"
              for i in reversed(range((width + 3) // 4))]
    return "0x" + "".join(digits)


def partial_decode_report(structure: Structure, bits: int, known_mask: int,
                          context: Mapping[str, Any] | None = None, *, check_rules: bool = True) -> dict[str, Any]:
    """:func:`decode_report` for a value of which only the ``known_mask`` bits are known (a cut paste).

    A field with an unknown bit has value None; ``violations`` are the rules the known bits break
    whatever the rest, ``undetermined`` those the missing bits decide (see ``amdvi.spec.partial``).
    Without ``check_rules`` no rule is judged (``legal`` is None): for records the IOMMU wrote, such as
    events, whose rules only name reserved bits a log line never prints.
    """
    if check_rules:
        check = check_partial(structure, bits, known_mask, context)
        fields, composite_values = check.fields, check.composites
        violated, undetermined_rules = check.violated, check.undetermined
    else:
        fields, composite_values = read_fields(structure, bits, known_mask)
        violated, undetermined_rules = [], []
    bits &= known_mask
    rows: list[dict[str, Any]] = []
    readings = {r.field.name: r for r in fields}
    for f in structure.fields:
        field_known = (known_mask >> f.lo) & ((1 << f.width) - 1)
        value = (bits >> f.lo) & ((1 << f.width) - 1)
        if f.kind != FIELD:
            if field_known and value:
                rows.append({**field_row(f, value), "kind": f.kind})
            continue
        reading = readings[f.name]
        if reading.known:
            rows.append(field_row(f, value))
        else:
            rows.append({"name": f.name, "bits": f.bits, "value": None,
                         "hex": hex_with_unknowns(value, field_known, f.width), "meaning": f.meaning,
                         "value_meaning": "", "unknown": True})
    composites = [{"name": c.name, "value": composite_values[c.name],
                   "hex": "?" if composite_values[c.name] is None else hex(composite_values[c.name]),
                   "meaning": c.meaning} for c in structure.composites]
    violations = [_rule_row(r) for r in violated]
    undetermined = [_rule_row(r) for r in undetermined_rules]
    width = structure.width
    words = [hex_with_unknowns(bits >> (64 * i), known_mask >> (64 * i), 64) for i in range(max(width // 64, 1))]
    return {
        "structure": structure.name,
        "title": structure.title,
        "section": structure.section,
        "width": width,
        "hex": hex_with_unknowns(bits, known_mask, width),
        "words": words,
        "known_mask": hex(known_mask),
        "complete": known_mask == (1 << width) - 1,
        "fields": rows,
        "composites": composites,
        "rules_checked": check_rules,
        "violations": violations,
        "undetermined": undetermined,
        "legal": None if not check_rules else False if violations else (None if undetermined else True),
    }


def print_decode(console: Console, report: Mapping[str, Any], *, show_zero: bool = True) -> None:
    console.print(f"[bold]{report['structure']}[/bold] {report['title']} (48882 {report['section']})  {report['hex']}")
    if len(report["words"]) > 1:
        console.print("  words (lowest first): " + " ".join(report["words"]))
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col in ("field", "bits", "value", "meaning"):
        table.add_column(col, overflow="fold")
    unknown = [r["name"] for r in report["fields"] if r.get("unknown")]
    for r in report["fields"]:
        if r.get("unknown") or (not show_zero and not r["value"] and r.get("kind") is None):
            continue
        meaning = r["value_meaning"] or r["meaning"]
        if "address" in r:
            meaning = f"{meaning} -> {r['address']}"
        name = r["name"] if r.get("kind") != RESERVED else "[red]Reserved (set!)[/red]"
        table.add_row(name, r["bits"], r["hex"], meaning)
    for c in report["composites"]:
        if c["value"] is not None:
            table.add_row(c["name"], "(pieces)", c["hex"], c["meaning"])
    console.print(table)
    if unknown:
        console.print(f"  unknown (bits not given): {', '.join(unknown)}", markup=False)
    if report.get("rules_checked", True):
        print_violations(console, report["violations"], report.get("undetermined", ()))


def print_violations(console: Console, violations: list[Mapping[str, Any]],
                     undetermined: Sequence[Mapping[str, Any]] = ()) -> None:
    if undetermined:
        console.print(f"  undetermined without the missing bits: {', '.join(u['rule'] for u in undetermined)}",
                      markup=False)
    if not violations:
        if undetermined:
            console.print("  no rule is broken by the known bits alone")
        else:
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
        "sources": list(m.sources or ()),
        "confirmed_by": m.confirmed_by,
        "sources_declared": m.sources is not None,
        "conflict": m.conflict,
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
        console.print(f"  note: {rep['note']}", markup=False)
    if rep["sources_declared"]:
        named = ", ".join(rep["sources"]) or "none"
        console.print(f"  confirmed by {rep['confirmed_by']} public source{'s' * (rep['confirmed_by'] != 1)}: {named}",
                      markup=False)
    else:
        console.print("  sources: not yet checked", markup=False)
    if rep["conflict"]:
        console.print(f"  conflict: {rep['conflict']}", markup=False)
