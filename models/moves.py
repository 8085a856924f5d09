"""The moves of the IOMMU model (``models.iommu.step``), by kind, and moves whose kind is a symbolic choice.

A move is a frozen dataclass; :data:`MOVE_KINDS` maps each kind's name (its class name) to its class,
and everything that handles moves by kind (the step function, traces) looks a move up there.

**Symbolic moves.** To check every sequence of k moves at once, a step's move is data: a
:class:`SymbolicMove` is the index of its kind among a tuple of *templates*, and its arguments.
A template is a move whose argument fields may be holes (:data:`ANY`); fields without holes are fixed
Python data. Fixed data that selects structure (a cache name, a slot or in-flight index, which cache
slots a DMA looks in) stays fixed, so a template such as ``Retire(0)`` or ``Fill("dte", 0, any_request())``
is one kind, and ``Retire(0)``, ``Retire(1)`` are two. Holes are filled by bit-vector or boolean
values: one per hole *path* (``"address"``, ``"request.device_id"``, ``"data"``), shared by every
template that has a hole at that path. ``models.iommu.step_any`` steps every template and merges the
results under ``kind == i`` (an index past the end takes the last template), so k steps are one
formula; :func:`decode` turns a solver's model back into the concrete move it stands for.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

import z3

from amdvi.spec.mmio import RING_WIDTH
from amdvi.spec.records import field_widths, is_record
from amdvi.spec.translation import Request

from .dma import NO_SLOTS, ServeChoice


@dataclass(frozen=True)
class CpuWrite:
    """Software stores a 64-bit word in memory (tables, the command ring)."""

    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = {"address": 64, "value": 64}

    address: Any
    value: Any


@dataclass(frozen=True)
class SetTail:
    """Software writes CMD_BUF_TAIL, handing the commands up to ``offset`` to the IOMMU."""

    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = {"offset": RING_WIDTH}

    offset: Any  # byte offset into the command ring


@dataclass(frozen=True)
class ProcessCommand:
    """The command processor takes the command at the head."""


@dataclass(frozen=True)
class Retire:
    """In-flight invalidation ``index`` takes effect."""

    index: int


@dataclass(frozen=True)
class Fill:
    """Cache ``slot`` takes what a walk of current memory gives for ``request``."""

    cache: str  # one of CACHE_NAMES
    slot: int
    request: Request
    step: int = 0  # for the PDE caches: which (host or guest) page-directory entry of the walk


@dataclass(frozen=True)
class Evict:
    """Cache ``slot`` is dropped."""

    cache: str
    slot: int


@dataclass(frozen=True)
class Dma:
    """An untranslated request, served from the chosen cache slots or a walk."""

    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = {"data": 64}

    request: Request
    choice: ServeChoice = NO_SLOTS
    data: Any = 0  # the word a write stores


@dataclass(frozen=True)
class TranslatedDma:
    """An ATS device's request through its own IOTLB ``slot``."""

    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = {"data": 64}

    request: Request
    slot: int  # device IOTLB slot
    dte_slot: int | None = None
    data: Any = 0


MOVE_KINDS: dict[str, type] = {cls.__name__: cls for cls in (
    CpuWrite, SetTail, ProcessCommand, Retire, Fill, Evict, Dma, TranslatedDma)}


def kind_of(move: Any) -> str:
    """The kind name of ``move`` (a key of :data:`MOVE_KINDS`); TypeError for anything else."""
    name = type(move).__name__
    if MOVE_KINDS.get(name) is not type(move):
        raise TypeError(f"not a move: {move!r}")
    return name


# -- templates and symbolic moves ----------------------------------------------------------------


class _Hole:
    """The value of an argument field left to the checker (:data:`ANY`)."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Hole()


def any_request(**fixed: Any) -> Request:
    """A request template: every field a hole except those given."""
    return Request(**{f.name: fixed.get(f.name, ANY) for f in dataclasses.fields(Request)})


def holes(template: Any) -> dict[str, int | None]:
    """The holes of a template: path -> width (``None``: a boolean)."""
    out: dict[str, int | None] = {}

    def visit(record: Any, prefix: str) -> None:
        widths = field_widths(type(record))
        for f in dataclasses.fields(record):
            value, path = getattr(record, f.name), prefix + f.name
            if value is ANY:
                if f.name in widths:
                    out[path] = widths[f.name]
                elif isinstance(f.default, bool):
                    out[path] = None
                else:
                    raise TypeError(f"{type(record).__name__}.{f.name} cannot be a hole: no width declared")
            elif is_record(value):
                visit(value, path + ".")

    kind_of(template)
    visit(template, "")
    return out


def instantiate(template: Any, args: Mapping[str, Any]) -> Any:
    """The move ``template`` stands for with its holes filled from ``args`` (path -> value)."""
    def fill(record: Any, prefix: str) -> Any:
        values = {}
        for f in dataclasses.fields(record):
            value, path = getattr(record, f.name), prefix + f.name
            if value is ANY:
                values[f.name] = args[path]
            elif is_record(value):
                values[f.name] = fill(value, path + ".")
        return dataclasses.replace(record, **values) if values else record

    return fill(template, "")


def describe_template(template: Any) -> str:
    """A short name for a template: its kind and fixed arguments, ``Retire(0)``, ``CpuWrite(ANY, ANY)``."""
    def show(x: Any) -> str:
        if is_record(x):
            return f"{type(x).__name__}({', '.join(show(getattr(x, f.name)) for f in dataclasses.fields(x))})"
        return repr(x)

    return show(template)


@dataclass(frozen=True)
class SymbolicMove:
    """One step's move as data: ``kind`` (a bit-vector) indexes a tuple of templates, ``args`` fills
    their holes (path -> value, the union of the templates' holes)."""

    kind: Any
    args: Mapping[str, Any]


def kind_width(count: int) -> int:
    """Bits of a kind index among ``count`` templates."""
    return max(1, (count - 1).bit_length())


def argument_sorts(templates: Sequence[Any]) -> dict[str, int | None]:
    """The union of the templates' holes (path -> width, ``None`` for a boolean); a path must have one sort."""
    sorts: dict[str, int | None] = {}
    for t in templates:
        for path, width in holes(t).items():
            if sorts.setdefault(path, width) != width:
                raise TypeError(f"hole {path!r} has width {width} in {describe_template(t)}, {sorts[path]} elsewhere")
    return sorts


def symbolic_move(templates: Sequence[Any], name: str) -> SymbolicMove:
    """A move among ``templates`` with every choice free: fresh Z3 variables named after ``name``."""
    args = {path: z3.Bool(f"{name}.{path}") if width is None else z3.BitVec(f"{name}.{path}", width)
            for path, width in argument_sorts(templates).items()}
    return SymbolicMove(z3.BitVec(f"{name}.kind", kind_width(len(templates))), args)


def decode(templates: Sequence[Any], move: SymbolicMove, value_of: Callable[[Any], Any]) -> Any:
    """The concrete move ``move`` stands for, ``value_of`` giving each term's value (e.g. a model's
    evaluation): the chosen template (the last one for an index past the end) with its holes filled."""
    index = min(int(value_of(move.kind)), len(templates) - 1)
    template = templates[index]
    sorts = holes(template)
    return instantiate(template, {path: bool(value_of(move.args[path])) if width is None
                                  else int(value_of(move.args[path])) for path, width in sorts.items()})


__all__ = [
    "MOVE_KINDS", "kind_of", "CpuWrite", "SetTail", "ProcessCommand", "Retire", "Fill", "Evict", "Dma",
    "TranslatedDma", "ANY", "any_request", "holes", "instantiate", "describe_template", "SymbolicMove",
    "symbolic_move", "decode", "argument_sorts", "kind_width",
]
