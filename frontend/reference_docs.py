"""The generated reference: one Markdown page per structure, derived from its field table."""

from __future__ import annotations

from pathlib import Path

from amdvi.frontend.files import write_atomically
from amdvi.spec.catalog import STRUCTURES
from amdvi.spec.fields import FIELD, SOURCES, Field, Structure, python_name

DOUBTFUL_BELOW = 2  # a field confirmed by fewer independent public sources is listed as doubtful
SOURCES_PAGE = "sources.md"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def page_name(s: Structure) -> str:
    return f"{python_name(s.name)}.md"


def _sources_cell(f: Field) -> str:
    """``3: Linux, Xen, FreeBSD`` for a named field; empty for reserved and ignored ranges."""
    if f.kind != FIELD:
        return ""
    if f.sources is None:
        return "not checked"
    return f"{f.confirmed_by}: {', '.join(f.sources)}" if f.sources else "0"


def doubtful_fields() -> list[tuple[Structure, Field]]:
    """Every named field confirmed by fewer than :data:`DOUBTFUL_BELOW` public sources, in catalog order."""
    return [(s, f) for s in STRUCTURES for f in s.named_fields if f.confirmed_by < DOUBTFUL_BELOW]


def disputed_fields() -> list[tuple[Structure, Field]]:
    """Every named field whose sources disagree (a recorded ``conflict``), in catalog order."""
    return [(s, f) for s in STRUCTURES for f in s.named_fields if f.conflict]


def sources_page() -> str:
    """The facts a reviewer should doubt first: the fields few sources confirm, and those they dispute."""
    named = [f for s in STRUCTURES for f in s.named_fields]
    counts = {k: sum(1 for f in named if (f.confirmed_by >= 2 if k == 2 else f.confirmed_by == k)) for k in (2, 1, 0)}
    out = ["# Where the facts come from", "",
           "Generated from the field tables by `amdvi docs`; do not edit by hand. A field's sources are the "
           "independent public sources that state its bit position (48882 itself is cited by section).", "",
           f"{len(named)} named fields: {counts[2]} confirmed by two or more sources, {counts[1]} by one, "
           f"{counts[0]} by none.", "", "| Source | What was read |", "|---|---|"]
    out += [f"| {k} | {_cell(v)} |" for k, v in SOURCES.items()]
    out += ["", f"## Fields confirmed by fewer than {DOUBTFUL_BELOW} sources", "",
            "| Field | Bits | Sources | Note |", "|---|---|---|---|"]
    for s, f in doubtful_fields():
        out.append(f"| [{s.name}.{_cell(f.name)}]({page_name(s)}) | {f.bits} | {_sources_cell(f)} | {_cell(f.note)} |")
    out += ["", "## Fields the sources disagree on", "", "| Field | Bits | Sources | Conflict |", "|---|---|---|---|"]
    for s, f in disputed_fields():
        out.append(f"| [{s.name}.{_cell(f.name)}]({page_name(s)}) | {f.bits} | {_sources_cell(f)} "
                   f"| {_cell(f.conflict)} |")
    out.append("")
    return "\n".join(out)


def structure_page(s: Structure) -> str:
    """The Markdown reference page of one structure."""
    out = [f"# {s.name}: {s.title}", "", f"48882 {s.section}. {s.width} bits.", ""]
    if s.description:
        out += [s.description, ""]
    if s.note:
        out += [f"> Note: {s.note}", ""]
    out += ["| Bits | Field | Meaning | Values | Section | Sources | Note |", "|---|---|---|---|---|---|---|"]
    for f in sorted(s.fields, key=lambda f: f.lo):
        values = "; ".join(f"{k:#x} {v}" for k, v in sorted(f.values.items()))
        illegal = "; ".join(f"{k:#x} illegal ({v})" for k, v in sorted(f.illegal.items()))
        shown = "; ".join(x for x in (values, illegal) if x)
        name = f.name if f.kind == FIELD else f"*{f.name}*"
        meaning = f.meaning + (f" (value << {f.unit_shift} is the address)" if f.unit_shift else "")
        note = "; ".join(x for x in (f.note, f.conflict and f"Conflict: {f.conflict}") if x)
        out.append(
            f"| {f.bits} | {_cell(name)} | {_cell(meaning)} | {_cell(shown)} | {f.section or s.section} "
            f"| {_sources_cell(f)} | {_cell(note)} |"
        )
    if s.composites:
        out += ["", "## Values split over several fields", ""]
        for c in s.composites:
            parts = ", ".join(f"{n} at bit {at}" for n, at in c.parts)
            out.append(f"- **{c.name}**: {c.meaning}. Assembled from {parts}.")
    rules = s.all_rules()
    if rules:
        out += ["", "## Legality rules", "", "| Rule | Event logged | Needs | Section | Note |", "|---|---|---|---|---|"]
        for r in rules:
            out.append(
                f"| {_cell(r.description)} | {r.event or '-'} | {', '.join(r.needs) or '-'} | {r.section} | {_cell(r.note)} |"
            )
    out.append("")
    return "\n".join(out)


def index_page() -> str:
    out = ["# amdvi-spec reference", "", "Generated from the field tables by `amdvi docs`; do not edit by hand.", "",
           "| Structure | Title | Bits | 48882 section |", "|---|---|---|---|"]
    for s in STRUCTURES:
        out.append(f"| [{s.name}]({page_name(s)}) | {_cell(s.title)} | {s.width} | {s.section} |")
    out += ["", f"[Where the facts come from]({SOURCES_PAGE}): the {len(doubtful_fields())} fields confirmed by "
            f"fewer than {DOUBTFUL_BELOW} public sources and the {len(disputed_fields())} the sources disagree on.", ""]
    return "\n".join(out)


def write_reference(out_dir: Path) -> list[Path]:
    """Write the index and one page per structure into ``out_dir``; return the paths written."""
    written = []
    for s in STRUCTURES:
        p = out_dir / page_name(s)
        write_atomically(p, structure_page(s))
        written.append(p)
    for name, text in ((SOURCES_PAGE, sources_page()), ("index.md", index_page())):
        p = out_dir / name
        write_atomically(p, text)
        written.append(p)
    return written
