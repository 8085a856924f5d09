"""``amdvi walk SCENARIO``: one DMA request translated through a scenario's tables, step by step."""

from __future__ import annotations

import argparse

from rich.console import Console

from amdvi.frontend import options
from amdvi.frontend.errors import InputError
from amdvi.frontend.report import Report

NAME = "walk"
HELP = "translate one DMA request through a scenario's tables, step by step"

ACCESSES = {"r": (False,), "read": (False,), "w": (True,), "write": (True,), "rw": (False, True)}  # -> writes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="scenario JSON file (see examples/)")
    parser.add_argument("--device", required=True, help="DeviceID: 0x10, 16 or bus:dev.fn such as 00:02.0")
    parser.add_argument("--addr", required=True, help="the request's address (IOVA or GVA)")
    parser.add_argument("--access", required=True, help="r, w, or rw (a read and a write, both shown)")
    parser.add_argument("--pasid", help="the request carries this PASID (20 bits)")
    parser.add_argument("--ats", action="store_true", help="an ATS translation request")
    parser.add_argument("--user", action="store_true", help="a user-level request")
    parser.add_argument("--exec", action="store_true", help="an execute request")
    options.add_register_context(parser)


def run(args: argparse.Namespace) -> Report:
    from amdvi.frontend import scenario

    device = scenario.parse_device_id(args.device, "--device")
    address = _parse_number(args.addr, "--addr", 64)
    access = ACCESSES.get(args.access.lower())
    if access is None:
        raise InputError(f"--access {args.access!r}: use r, w or rw")
    pasid = None if args.pasid is None else _parse_number(args.pasid, "--pasid", 20)
    s = scenario.load(args.scenario)
    context = options.register_context(args)
    reports = [scenario.walk_report(s, device, address, write, pasid=pasid, ats=args.ats, user=args.user,
                                    context=context, execute=args.exec) for write in access]

    def show(console: Console) -> None:
        for rep in reports:
            scenario.print_walk(console, s, rep)

    return Report({"scenario": s.source, "walks": reports}, show)


def _parse_number(text: str, what: str, bits: int) -> int:
    try:
        n = int(text.strip(), 0)
    except ValueError:
        raise InputError(f"{what} {text!r} is not a number (write 0x1000 or 4096)") from None
    if n < 0 or n >> bits:
        raise InputError(f"{what} {text!r} does not fit in {bits} bits")
    return n
