"""Findings written for people: a case's steps decoded with the spec's own structures, what QEMU showed,
what the spec allows and why, and the known divergences with their 48882 sections and QEMU lines."""

from __future__ import annotations

from typing import Iterable, Mapping

from amdvi.spec.commands import command_structure
from amdvi.spec.device_table import DTE, ENTRY_BYTES, device_id_str
from amdvi.spec.host_page_table import PDE, PTE

from .case import Case, Commands, CpuStore, EduDma, RegisterWrite
from .known import CLASSES, Known
from .layout import LAYOUT, TABLE_POOL, TABLE_POOL_PAGES, device_id
from .verdict import Verdict


def _fields(values: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v:#x}" if v > 9 else f"{k}={v}" for k, v in values.items() if v) or "all zero"


def describe_word(address: int, value: int) -> str:
    """What a memory word is, decoded by the structure that lives there."""
    dev_tab_end = LAYOUT.dev_tab + 4096 * LAYOUT.dev_tab_pages
    if LAYOUT.dev_tab <= address < dev_tab_end:
        dev, word = divmod(address - LAYOUT.dev_tab, ENTRY_BYTES)
        fields = DTE.decode(value << (64 * (word // 8)))
        return f"DTE[{word // 8}] of {device_id_str(dev)}: {_fields(fields)}"
    if TABLE_POOL <= address < TABLE_POOL + 4096 * TABLE_POOL_PAGES:
        nl = (value >> 9) & 7
        structure = PTE if nl in (0, 7) else PDE
        reserved = value & structure.reserved_mask
        extra = f", reserved bits {reserved:#x}" if reserved else ""
        return f"{structure.name} (table {address & ~0xFFF:#x} index {(address & 0xFFF) // 8}): {_fields(structure.decode(value))}{extra}"
    return f"{value:#x}"


def describe_command(bits: int) -> str:
    structure = command_structure(bits)
    if structure is None:
        return f"undefined opcode {bits >> 60 & 0xF:#x} ({bits:#034x})"
    reserved = bits & structure.reserved_mask
    fields = {k: v for k, v in structure.decode(bits).items() if k != "Opcode"}
    return f"{structure.name} {_fields(fields)}" + (f", reserved bits {reserved:#x}" if reserved else "")


def describe_step(step: object) -> list[str]:
    if isinstance(step, CpuStore):
        return [f"CPU store {step.address:#x} <- {step.value:#x}: {describe_word(step.address, step.value)}"]
    if isinstance(step, EduDma):
        return [f"edu {step.device} ({device_id_str(device_id(step.device))}) DMA "
                f"{'write' if step.write else 'read'} of the word at {step.address:#x}"]
    if isinstance(step, Commands):
        return ["commands, then CMD_BUF_TAIL:"] + [f"    {describe_command(c)}" for c in step.commands]
    if isinstance(step, RegisterWrite):
        return [f"write {step.name} <- {step.value:#x}"]
    return [repr(step)]


def case_lines(case: Case) -> list[str]:
    lines = [f"devices: {case.devices} edu ({', '.join(device_id_str(device_id(i)) for i in range(case.devices))})"]
    if case.ring_start:
        lines.append(f"command ring: head = tail = {case.ring_start:#x} at the start")
    lines.append("memory:")
    lines += [f"  {a:#x}: {describe_word(a, v)}" for a, v in case.memory]
    lines.append("steps:")
    for i, s in enumerate(case.steps):
        text = describe_step(s)
        lines.append(f"  {i}. {text[0]}")
        lines += [f"     {t}" for t in text[1:]]
    return lines


def verdict_lines(v: Verdict) -> list[str]:
    out = []
    for m, ks in v.classified:
        tag = ("known: " + " + ".join(f"{k.id} ({CLASSES[k.classification]}, 48882 {k.section})" for k in ks)
               if ks else "NEW")
        out.append(f"  [{tag}] {m.line()}")
        out += [f"      QEMU ({k.id}): {k.qemu_source}" if len(ks) > 1 else f"      QEMU: {k.qemu_source}" for k in ks]
        if m.step is not None and m.step in v.expectation.dmas:
            dma = v.expectation.dmas[m.step]
            out += [f"      walk: {s.table} level {s.level} at {s.entry_address:#x} = {s.entry:#x}"
                    for s in dma.fresh.steps if s.active]
            out += [f"      allowed: {'blocked' if not a.ok else hex(a.spa)} ({a.how})" for a in dma.allowed]
    return out or ["  every observation is one the spec allows"]


def finding_markdown(v: Verdict, version: str, replay: str) -> str:
    """A report a QEMU maintainer can act on (for a new divergence: what to check against 48882)."""
    lines = [f"# {v.case.title or 'QEMU amd-iommu divergence'}", "",
             f"QEMU {version}, `-device amd-iommu` with `edu` DMA engines, no guest OS (qtest).", "",
             "## Case", "", "```", *case_lines(v.case), "```", "", "## What differs", "", "```",
             *verdict_lines(v), "```", "",
             ("New divergences are not yet classified: check the spec's rule (the walk above names the entries "
              "the model read) before calling it a QEMU bug, a model bug or a place where 48882 is silent."
              if v.new else "Each difference above is a known divergence of this QEMU version (class, 48882 section "
                            "and QEMU source line given)."), "",
             f"Replay: `{replay}`", ""]
    return "\n".join(lines)


def known_markdown(known: Iterable[Known], counts: Mapping[str, int], not_reproduced: Iterable[Mapping[str, str]],
                   version: str) -> str:
    lines = [f"# Known divergences of QEMU {version}", "", "| id | study | class | 48882 | QEMU source | seen |",
             "|---|---|---|---|---|---|"]
    for k in known:
        lines.append(f"| {k.id} | {k.study} | {CLASSES[k.classification]} | {k.section} | {k.qemu_source} | "
                     f"{counts.get(k.id, 0)} |")
    lines += ["", "Not reproduced as divergences:", ""]
    lines += [f"* {n['study']}: {n['reason']}" for n in not_reproduced]
    return "\n".join(lines) + "\n"
