"""The generated reference: one Markdown page per structure, derived from its field table."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from amdvi.spec.catalog import STRUCTURES
from amdvi.spec.fields import FIELD, Structure, python_name


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def page_name(s: Structure) -> str:
    return f"{python_name(s.name)}.md"


def structure_page(s: Structure) -> str:
    """The Markdown reference page of one structure."""
    out = [f"# {s.name}: {s.title}", "", f"48882 {s.section}. {s.width} bits.", ""]
    if s.description:
        out += [s.description, ""]
    if s.note:
        out += [f"> Note: {s.note}", ""]
    out += ["| Bits | Field | Meaning | Values | Section | Note |", "|---|---|---|---|---|---|"]
    for f in sorted(s.fields, key=lambda f: f.lo):
        values = "; ".join(f"{k:#x} {v}" for k, v in sorted(f.values.items()))
        illegal = "; ".join(f"{k:#x} illegal ({v})" for k, v in sorted(f.illegal.items()))
        shown = "; ".join(x for x in (values, illegal) if x)
        name = f.name if f.kind == FIELD else f"*{f.name}*"
        meaning = f.meaning + (f" (value << {f.unit_shift} is the address)" if f.unit_shift else "")
        out.append(
            f"| {f.bits} | {_cell(name)} | {_cell(meaning)} | {_cell(shown)} | {f.section or s.section} | {_cell(f.note)} |"
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
    out.append("")
    return "\n".join(out)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_reference(out_dir: Path) -> list[Path]:
    """Write the index and one page per structure into ``out_dir``; return the paths written."""
    written = []
    for s in STRUCTURES:
        p = out_dir / page_name(s)
        write_atomically(p, structure_page(s))
        written.append(p)
    p = out_dir / "index.md"
    write_atomically(p, index_page())
    written.append(p)
    return written
