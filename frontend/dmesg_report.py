"""What `amdvi decode dmesg` shows: each recognised AMD-Vi message, decoded through the field tables.

Logs are pasted cut: an event line never prints some fields, a DTE dump may stop after two words. What
the log did not carry is shown as unknown, never as 0, and a legality rule that depends on it is
reported as undetermined (``amdvi.spec.partial``). :func:`short_dte_words` reads such a cut dump from
the command line for ``amdvi decode dte``.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from rich.console import Console

from amdvi.frontend import dmesg, render
from amdvi.frontend.errors import InputError
from amdvi.frontend.hexparse import parse_hex_value
from amdvi.spec.bitvec import mask
from amdvi.spec.commands import command_structure
from amdvi.spec.device_table import DTE
from amdvi.spec.events import explain_flags
from amdvi.spec.mmio import CONTROL

NON_EVENT_MEANING = {
    dmesg.COMPLETION_WAIT_TIMEOUT: "the driver's COMPLETION_WAIT store never arrived: the IOMMU stopped "
                                   "processing commands (look for ILLEGAL_COMMAND_ERROR or a hang)",
    dmesg.COMMAND_BUFFER_TIMEOUT: "the command ring stayed full: the IOMMU is not consuming commands",
    dmesg.COMMAND_BUFFER_RESET: "the driver reset the command buffer after an error",
    dmesg.EVENT_LOG_OVERFLOW: "the event log was full (Status.EventOverflow): events were dropped",
    dmesg.NO_EVENT_WRITTEN: "the event-log entry still read 0 after the tail moved (hardware erratum retry)",
}

OPCODE_BITS = 0xF << 60


def missing_words(known_mask: int, word_bits: int, count: int, label: str) -> list[str]:
    """The dump lines a cut dump lacks, as Linux labels them (``DTE[2]``)."""
    return [f"{label}[{i}]" for i in range(count) if (known_mask >> (word_bits * i)) & mask(word_bits) == 0]


def _command_report(r: dmesg.Record) -> dict[str, Any] | None:
    bits, known = r.command_bits, r.command_known_mask
    if bits is None:
        return None
    if known & OPCODE_BITS != OPCODE_BITS:  # CMD[1] is missing: which command it was is unknown
        return {"hex": render.hex_with_unknowns(bits, known, dmesg.COMMAND_WIDTH),
                "error": "CMD[1], which holds the opcode, is not in the log",
                "missing": missing_words(known, 32, 4, "CMD")}
    cs = command_structure(bits)
    if cs is None:
        return {"hex": render.hex_with_unknowns(bits, known, dmesg.COMMAND_WIDTH),
                "error": f"undefined opcode {bits >> 60 & 0xF:#x}"}
    if r.command is not None:
        return render.decode_report(cs, r.command)
    return {**render.partial_decode_report(cs, bits, known), "missing": missing_words(known, 32, 4, "CMD")}


def record_report(r: dmesg.Record, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One record, JSON-ready: where it was, what Linux printed, and the decoded structures."""
    out: dict[str, Any] = {
        "kind": r.kind,
        "lines": list(r.lines),
        "raw": r.raw,
        "event": r.event,
        "device": r.device,
        "segment": r.segment,
        "source": r.source,
        "timestamp": r.timestamp,
        "printed": {k: hex(v) for k, v in r.printed},
    }
    if r.note:
        out["note"] = r.note
    if r.kind in NON_EVENT_MEANING:
        out["meaning"] = NON_EVENT_MEANING[r.kind]
    s = r.structure
    if s is not None and r.bits is not None:
        out["record"] = render.partial_decode_report(s, r.bits, r.known_mask, check_rules=False)
        out["not_in_log"] = list(r.missing)
        if r.flags is not None:
            out["flags"] = explain_flags(s, r.flags)
    if r.dte is not None:
        out["dte"] = render.decode_report(DTE, r.dte, context)
    elif r.dte_bits is not None:
        count = dmesg.DTE_WIDTH // r.dte_word_bits
        out["dte"] = {**render.partial_decode_report(DTE, r.dte_bits, r.dte_known_mask, context),
                      "missing": missing_words(r.dte_known_mask, r.dte_word_bits, count, "DTE")}
    command = _command_report(r)
    if command is not None:
        out["command"] = command
    if r.control_reg is not None:
        out["control"] = render.decode_report(CONTROL, r.control_reg)
    return out


def decode_log(text: str, context: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    return [record_report(r, context) for r in dmesg.parse_dmesg(text)]


def print_log(console: Console, reports: list[Mapping[str, Any]]) -> None:
    if not reports:
        console.print("no AMD-Vi event lines found")
        return
    for rep in reports:
        where = f"line {rep['lines'][0]}" if len(rep["lines"]) == 1 else f"lines {rep['lines'][0]}-{rep['lines'][-1]}"
        title = rep["event"] or rep["kind"]
        dev = f" device {rep['device']}" if rep["device"] else ""
        console.rule(f"[bold]{title}[/bold]{dev} ({where})", align="left")
        raw_lines = rep["raw"].splitlines()
        split = len(raw_lines) > 1 and raw_lines[0].rstrip().endswith("[")  # the event is on the next line
        for raw in raw_lines[: 2 if split else 1]:
            console.print(f"  {raw.strip()}", markup=False)
        if "meaning" in rep:
            console.print(f"  {rep['meaning']}")
        if "note" in rep:
            label = "not decoded" if rep["kind"] == dmesg.UNRECOGNISED else "note"
            console.print(f"  {label}: {rep['note']}", markup=False)
        if "flags" in rep:
            console.print("  flags: " + "; ".join(rep["flags"]))
        if "record" in rep:
            render.print_decode(console, rep["record"], show_zero=False)
        if "dte" in rep:
            missing = rep["dte"].get("missing")
            console.print("  the DTE dumped after it" + (f" (cut short: {', '.join(missing)} not in the log):"
                                                          if missing else ":"))
            render.print_decode(console, rep["dte"], show_zero=False)
        if "command" in rep:
            console.print("  the command at that address:")
            if "error" in rep["command"]:
                console.print(f"  {rep['command']['hex']}: {rep['command']['error']}", markup=False)
            else:
                render.print_decode(console, rep["command"], show_zero=False)
        if "control" in rep:
            render.print_decode(console, rep["control"], show_zero=False)


# ---- a cut DTE dump given to `amdvi decode dte` ---------------------------------------------------

_DTE_LABEL = re.compile(r"DTE\[(?P<i>\d+)\]\s*[:=]?")
_SEPARATORS = re.compile(r"[\s,;]+")


def short_dte_words(values: Sequence[str]) -> tuple[int, int] | None:
    """(bits, known mask) when ``values`` are fewer DTE words than a whole DTE, else None.

    ``DTE[i]:`` labels place each word at its index, so a paste that lost its first lines still lands
    right; labelled words are 64-bit unless every one has exactly 8 hex digits (the 32-bit dwords of
    older kernels). Unlabelled, a short list is read as a cut dump only when its words keep the width
    Linux zero-pads them to (all 16 digits, or all 8 for dwords): ``0x1 0x2 0x3`` stays a miscount.
    One number is a whole DTE, and so are four words (or eight dwords) in order: None for those.
    Raises ``InputError`` for labelled words that cannot be placed.
    """
    text = " ".join(values)
    labelled = [(m.start(), m.end(), int(m["i"])) for m in _DTE_LABEL.finditer(text)]
    if labelled:
        if text[: labelled[0][0]].strip():
            raise InputError(f"text before the first DTE[i] label: {text[: labelled[0][0]].strip()!r}")
        ends = [start for start, _, _ in labelled[1:]] + [len(text)]
        tokens = [text[end:stop].strip() for (_, end, _), stop in zip(labelled, ends)]
        indices = [i for _, _, i in labelled]
    else:
        tokens = [t for t in _SEPARATORS.split(text) if t]
        indices = list(range(len(tokens)))
    for tok in tokens:
        if not tok or _SEPARATORS.search(tok):
            raise InputError(f"each DTE[i] label takes one hexadecimal word, not {tok!r}")
    digits = {len(t.replace("_", "")) - (2 if t[:2] in ("0x", "0X") else 0) for t in tokens}
    word_bits = 32 if digits == {8} else 64
    if not labelled and not (len(tokens) > 1 and (digits == {16} and len(tokens) < 4
                                                  or digits == {8} and len(tokens) < 8)):
        return None  # one whole number, a whole dump, or hand-typed words: the usual parser decides
    count = dmesg.DTE_WIDTH // word_bits
    if len(set(indices)) != len(indices):
        raise InputError("a DTE word is given twice")
    if sorted(indices) == list(range(count)) and indices == sorted(indices):
        return None
    bits = known = 0
    for tok, i in zip(tokens, indices):
        value = parse_hex_value(tok)
        if i >= count:
            raise InputError(f"DTE[{i}]: a DTE has {count} words of {word_bits} bits")
        if value >> word_bits:
            raise InputError(f"DTE[{i}] ({tok}) does not fit in {word_bits} bits")
        bits |= value << (word_bits * i)
        known |= mask(word_bits) << (word_bits * i)
    return bits, known
