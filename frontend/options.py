"""Options several commands share, each declared once.

Each ``add_*`` helper adds one argument group to a sub-command's parser; the matching reader turns the
parsed values into what the command uses, raising :class:`InputError` (exit 2) on a bad value. A new
command that takes register values, a trace or choices calls these instead of declaring its own.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Mapping, TypeVar

from amdvi.frontend.errors import InputError
from amdvi.frontend.files import read_text
from amdvi.frontend.hexparse import parse_structure_hex
from amdvi.spec import mmio

C = TypeVar("C")  # a layer's choices (amdvi.spec.choices.Choices): anything with .assign(["NAME=VALUE"])


def add_json(parser: argparse.ArgumentParser) -> None:
    """``--json``: every command takes it (the parser builder adds it)."""
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_register_context(parser: argparse.ArgumentParser) -> None:
    """``--efr``, ``--control``: register values that feature- and enable-dependent rules read."""
    g = parser.add_argument_group("register context")
    g.add_argument("--efr", help="Extended Feature Register value, to check feature-dependent rules")
    g.add_argument("--control", help="Control register value, to check rules that depend on what is enabled")


def register_context(args: argparse.Namespace) -> dict[str, Any] | None:
    """The register values given, as the context feature-dependent rules read; None when none is given."""
    ctx: dict[str, Any] = {}
    for option, register in (("efr", mmio.EFR), ("control", mmio.CONTROL)):
        text = getattr(args, option, None)
        if text is not None:
            ctx.update(mmio.register_context(register, parse_structure_hex(text, 64, register.title)))
    return ctx or None


def add_trace_output(parser: argparse.ArgumentParser) -> None:
    """``--trace-out FILE``: where a command that finds a counterexample saves its trace."""
    g = parser.add_argument_group("trace output")
    g.add_argument("--trace-out", metavar="FILE", help="write the first counterexample trace here as JSON")


def add_trace_input(parser: argparse.ArgumentParser) -> None:
    """A positional ``TRACE``: a trace JSON file as ``--trace-out`` writes it, or ``-`` for standard input."""
    g = parser.add_argument_group("trace input")
    g.add_argument("trace", metavar="TRACE", help="a counterexample trace as --trace-out writes it (- for stdin)")


def read_trace(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON object in the file ``TRACE`` names; anything else is a one-line error."""
    return read_json(args.trace, "a trace")


def read_json(path: str, what: str = "a sequence") -> dict[str, Any]:
    """The JSON object in the file ``path`` (``-``: standard input); anything else is a one-line error."""
    text = read_text(path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}: {what} is a JSON object, not {type(obj).__name__}")
    return obj


def add_fanout(parser: argparse.ArgumentParser) -> None:
    """``--jobs N`` and ``--scheduler ADDRESS``: where a command's independent tasks run (read by
    :func:`amdvi.frontend.fanout.runner`)."""
    g = parser.add_argument_group("fanning out (Dask distributed)")
    g.add_argument("--jobs", type=int, metavar="N",
                   help="run the independent tasks on a local Dask cluster of N worker processes")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="run them on a running Dask cluster (e.g. tcp://host:8786); its workers need amdvi-spec "
                        "installed at the same version")


def add_choices(parser: argparse.ArgumentParser) -> None:
    """``--choice NAME=VALUE`` (repeatable) and ``--preset NAME``: which readings and faults a model runs with."""
    g = parser.add_argument_group("choices")
    g.add_argument("--choice", action="append", default=[], metavar="NAME=VALUE",
                   help="set one choice (a reading of an unconfirmed rule, or a fault on/off); repeatable")
    g.add_argument("--preset", metavar="NAME", help="start from a named set of choices instead of the defaults")


def apply_choices(args: argparse.Namespace, defaults: C, presets: Mapping[str, C] | None = None) -> C:
    """``defaults`` (or the ``--preset``) with every ``--choice`` applied, in order; bad ones are InputError."""
    base = defaults
    if args.preset is not None:
        presets = presets or {}
        if args.preset not in presets:
            raise InputError(f"unknown preset {args.preset!r}; known: {', '.join(presets) or 'none'}")
        base = presets[args.preset]
    try:
        return base.assign(args.choice)  # type: ignore[attr-defined]
    except ValueError as e:
        raise InputError(str(e)) from None


def with_layer_choices(seq: Any, assignments: list[str]) -> Any:
    """A loaded sequence with ``LAYER.NAME=VALUE`` choices (``amdvi check --choice``) applied to its
    scenario's layers (hardware, driver, iommufd); InputError on a bad one."""
    import dataclasses

    from amdvi.frontend.sequence_format import LAYERS

    if not assignments:
        return seq
    scenario = seq.scenario
    for text in assignments:
        layer, dot, rest = text.partition(".")
        if not dot or layer not in LAYERS:
            raise InputError(f"choice {text!r}: write LAYER.NAME=VALUE with LAYER one of {', '.join(LAYERS)}")
        try:
            scenario = dataclasses.replace(scenario, **{layer: getattr(scenario, layer).assign([rest])})
        except ValueError as e:
            raise InputError(str(e)) from None
    return dataclasses.replace(seq, scenario=scenario)
