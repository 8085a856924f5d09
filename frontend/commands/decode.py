"""``amdvi decode KIND VALUE...``: one structure from hex, or every AMD-Vi record of a kernel log (``dmesg``)."""

from __future__ import annotations

import argparse
from typing import Any

from amdvi.frontend import options
from amdvi.frontend.errors import InputError
from amdvi.frontend.files import read_text
from amdvi.frontend.hexparse import parse_structure_hex
from amdvi.frontend.report import Report
from amdvi.spec import catalog

NAME = "decode"
HELP = "decode a DTE, page-table entry, GCR3 entry, command, event, register, or a kernel log"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", help="dte | pde | pte | gpte | gcr3 | cmd | event | dmesg | a register name "
                                     "(EFR, CONTROL, ...)")
    parser.add_argument("value", nargs="*", help="hex: one number, or 64-bit words / 32-bit dwords lowest first; "
                                                 "for dmesg a FILE or - (standard input, the default)")
    options.add_register_context(parser)
    parser.add_argument("--nonzero", action="store_true", help="show only fields that are not zero")


def run(args: argparse.Namespace) -> Report:
    from amdvi.frontend import dmesg_report, render

    if args.kind.lower() == "dmesg":
        return _decode_log(args)
    if not args.value:
        raise InputError(f"give the {args.kind} value to decode")
    context = options.register_context(args)
    short = dmesg_report.short_dte_words(args.value) if args.kind.lower() == "dte" else None
    if short is not None:  # a DTE dump cut short: missing words are unknown, not zero
        report = render.partial_decode_report(catalog.DECODE_KINDS["dte"], *short, context)
    else:
        s, bits = _structure_for(args.kind, args.value)
        report = render.decode_report(s, bits, context)
    return Report(report, lambda console: render.print_decode(console, report, show_zero=not args.nonzero))


def _decode_log(args: argparse.Namespace) -> Report:
    from amdvi.frontend import dmesg_report

    sources = args.value or ["-"]
    if len(sources) > 1:
        raise InputError("decode dmesg takes one FILE (or - for standard input)")
    records = dmesg_report.decode_log(read_text(sources[0]), options.register_context(args))
    return Report(records, lambda console: dmesg_report.print_log(console, records))


def _structure_for(kind: str, words: list[str]) -> tuple[Any, int]:
    """The structure ``kind`` names (cmd and event: the variant their code selects) and the value's bits."""
    k = kind.lower()
    if k in catalog.DECODE_KINDS:
        s = catalog.DECODE_KINDS[k]
        return s, parse_structure_hex(words, s.width, s.title)
    if k in catalog.VARIANT_KINDS:
        what = "command" if k == "cmd" else "event record"
        bits = parse_structure_hex(words, catalog.VARIANT_KINDS[k], what)
        s = catalog.command_or_event(k, bits)
        if s is None:
            code = bits >> 60 & 0xF
            label = "command opcode" if k == "cmd" else "event code"
            raise InputError(f"unknown {label} {code:#x}")
        return s, bits
    s = catalog.find_structure(kind)
    if s is None:
        kinds = ", ".join([*catalog.DECODE_KINDS, *catalog.VARIANT_KINDS, "dmesg"])
        raise InputError(f"unknown structure {kind!r}: use one of {kinds}, or a register name such as EFR")
    return s, parse_structure_hex(words, s.width, s.title)
