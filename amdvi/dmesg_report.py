"""What `amdvi decode dmesg` shows: each recognised AMD-Vi message, decoded through the field tables."""

from __future__ import annotations

from typing import Any, Mapping

from rich.console import Console

from amdvi import dmesg, render
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
        out["record"] = render.decode_report(s, r.bits)
        out["not_in_log"] = list(r.missing)
        if r.flags is not None:
            out["flags"] = explain_flags(s, r.flags)
    if r.dte is not None:
        out["dte"] = render.decode_report(DTE, r.dte, context)
    if r.command is not None:
        cs = command_structure(r.command)
        out["command"] = render.decode_report(cs, r.command) if cs else {
            "hex": f"0x{r.command:032x}", "error": f"undefined opcode {r.command >> 60 & 0xF:#x}"}
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
        console.print(f"  {rep['raw'].splitlines()[0].strip()}", markup=False)
        if "meaning" in rep:
            console.print(f"  {rep['meaning']}")
        if "note" in rep and rep["kind"] == dmesg.UNRECOGNISED:
            console.print(f"  not decoded: {rep['note']}")
        if "flags" in rep:
            console.print("  flags: " + "; ".join(rep["flags"]))
        if "record" in rep:
            render.print_decode(console, rep["record"], show_zero=False)
            if rep["not_in_log"]:
                console.print(f"  not in the log line (shown as 0): {', '.join(rep['not_in_log'])}")
        if "dte" in rep:
            console.print("  the DTE dumped after it:")
            render.print_decode(console, rep["dte"], show_zero=False)
        if "command" in rep:
            console.print("  the command at that address:")
            if "error" in rep["command"]:
                console.print(f"  {rep['command']['hex']}: {rep['command']['error']}")
            else:
                render.print_decode(console, rep["command"], show_zero=False)
        if "control" in rep:
            render.print_decode(console, rep["control"], show_zero=False)
