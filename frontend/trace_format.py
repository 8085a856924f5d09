"""The trace file: one versioned JSON format, declared once here as data.

From the declaration (:data:`TRACE`, and :data:`TRACE_V0` for the files written before there was a
version) come the loader's validation, the writer, and the JSON Schema committed as
``frontend/trace.schema.json`` (``python -m amdvi.frontend.trace_format`` prints it). Numbers are hex
strings ("0x1f"); each move is an object named by its ``kind`` (a class of ``models.moves``) with the
move's fields, and a ``text`` line for people that the loader ignores. A bad file is one line naming
the step, the field and why (:class:`~amdvi.frontend.errors.InputError`, exit 2).

Versions: 0 -- no ``version`` key; title, notes, memory, moves (named by ``move``), replay; read with
the defaults the tool then used (``properties.invalidation.REGS``, one slot per cache, the default
choices, commands carried out at once). 1 -- adds the version, the choices, the registers, the cache
geometry, the claimed violation, whether software waited, the frames of an escape, and how in-flight
invalidations are carried out; moves are named by ``kind``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

from amdvi.frontend.errors import InputError
from amdvi.models.caches import CACHE_NAMES
from amdvi.models.dma import ServeChoice
from amdvi.models.iommu import IN_FLIGHT, Dma, ProcessCommand, Retire, TranslatedDma
from amdvi.models.moves import MOVE_KINDS
from amdvi.models.registers import REGISTER_WIDTH, Registers
from amdvi.properties.counterexample import ESCAPE, ONE_SLOT_EACH, VIOLATIONS, Replay, Trace
from amdvi.properties.invalidation import REGS
from amdvi.spec.choices import SPEC
from amdvi.spec.mmio import RING_WIDTH
from amdvi.spec.translation import Request

VERSION = 1
_HEX = re.compile(r"0[xX][0-9a-fA-F]+")


class Invalid(Exception):
    """A value that does not fit its declaration: where (a path of keys) and why."""

    def __init__(self, path: Sequence[Any], why: str) -> None:
        super().__init__(why)
        self.path, self.why = tuple(path), why


# -- the value types a trace is made of: each checks and reads a JSON value, and says its JSON Schema --


@dataclass(frozen=True)
class Hex:
    """An unsigned integer of ``bits`` bits, written as a hex string."""

    bits: int
    about: str

    def read(self, value: Any, path: Sequence[Any]) -> int:
        if not isinstance(value, str) or not _HEX.fullmatch(value):
            raise Invalid(path, f"{json.dumps(value)} is not a hex string such as \"0x1f\"")
        number = int(value, 16)
        if number >> self.bits:
            raise Invalid(path, f"{value} is wider than {self.bits} bits")
        return number

    def write(self, value: int) -> str:
        return hex(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^{_HEX.pattern}$", "description": f"{self.about} ({self.bits}-bit, hex)"}


@dataclass(frozen=True)
class _Plain:
    """A JSON value of one plain type, kept as it is (a string, or true/false)."""

    about: str
    python: ClassVar[type] = object
    json_type: ClassVar[str] = ""
    expected: ClassVar[str] = ""

    def read(self, value: Any, path: Sequence[Any]) -> Any:
        if not isinstance(value, self.python):
            raise Invalid(path, f"{json.dumps(value)} is not {self.expected}")
        return value

    def write(self, value: Any) -> Any:
        return self.python(value)

    def schema(self) -> dict[str, Any]:
        return {"type": self.json_type, "description": self.about}


class Text(_Plain):
    python, json_type, expected = str, "string", "a string"


class Flag(_Plain):
    python, json_type, expected = bool, "boolean", "true or false"


@dataclass(frozen=True)
class OneOf:
    values: tuple[str, ...]
    about: str

    def read(self, value: Any, path: Sequence[Any]) -> str:
        if value not in self.values:
            raise Invalid(path, f"{json.dumps(value)} is not one of {', '.join(self.values)}")
        return value

    def write(self, value: str) -> str:
        return value

    def schema(self) -> dict[str, Any]:
        return {"enum": list(self.values), "description": self.about}


@dataclass(frozen=True)
class Const:
    value: Any
    about: str

    def read(self, value: Any, path: Sequence[Any]) -> Any:
        if value != self.value or isinstance(value, bool):
            raise Invalid(path, f"{json.dumps(value)} is not {json.dumps(self.value)}")
        return value

    def write(self, value: Any) -> Any:
        return value

    def schema(self) -> dict[str, Any]:
        return {"const": self.value, "description": self.about}


@dataclass(frozen=True)
class Nullable:
    inner: Any

    def read(self, value: Any, path: Sequence[Any]) -> Any:
        return None if value is None else self.inner.read(value, path)

    def write(self, value: Any) -> Any:
        return None if value is None else self.inner.write(value)

    def schema(self) -> dict[str, Any]:
        return {"oneOf": [{"type": "null"}, self.inner.schema()]}


@dataclass(frozen=True)
class ListOf:
    item: Any
    about: str

    def read(self, value: Any, path: Sequence[Any]) -> list[Any]:
        if not isinstance(value, list):
            raise Invalid(path, f"is {_kind(value)}, not a list")
        return [self.item.read(v, [*path, i]) for i, v in enumerate(value)]

    def write(self, value: Sequence[Any]) -> list[Any]:
        return [self.item.write(v) for v in value]

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": self.item.schema(), "description": self.about}


@dataclass(frozen=True)
class HexMap:
    """An object from hex keys to values (memory: address -> word)."""

    key: Hex
    value: Any
    about: str

    def read(self, value: Any, path: Sequence[Any]) -> dict[int, Any]:
        if not isinstance(value, dict):
            raise Invalid(path, f"is {_kind(value)}, not an object")
        return {self.key.read(k, [*path, k]): self.value.read(v, [*path, k]) for k, v in value.items()}

    def write(self, value: Mapping[int, Any]) -> dict[str, Any]:
        return {self.key.write(k): self.value.write(v) for k, v in sorted(value.items())}

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "propertyNames": {"pattern": self.key.schema()["pattern"]},
                "additionalProperties": self.value.schema(), "description": f"{self.about}: {self.key.about} -> "
                                                                            f"{self.value.about}"}


@dataclass(frozen=True)
class Field:
    type: Any
    required: bool = True
    default: Any = None  # when not required and absent (dataclasses.MISSING: left to the constructor)
    ignored: bool = False  # for people only: checked, then not read (a move's text, the writer's replay)


@dataclass(frozen=True)
class Record:
    """An object with the declared fields and no other."""

    fields: Mapping[str, Field]
    about: str

    def read(self, value: Any, path: Sequence[Any]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Invalid(path, f"is {_kind(value)}, not an object")
        for name in value:
            if name not in self.fields:
                raise Invalid([*path, name], f"unknown field; known: {', '.join(self.fields)}")
        out = {}
        for name, f in self.fields.items():
            if name in value:
                read = f.type.read(value[name], [*path, name])
                if not f.ignored:
                    out[name] = read
            elif f.required:
                raise Invalid([*path, name], "missing")
            elif not f.ignored and f.default is not dataclasses.MISSING:
                out[name] = f.default
        return out

    def write(self, value: Mapping[str, Any]) -> dict[str, Any]:
        return {n: f.type.write(value[n]) for n, f in self.fields.items() if n in value}

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "description": self.about,
                "properties": {n: f.type.schema() for n, f in self.fields.items()},
                "required": [n for n, f in self.fields.items() if f.required], "additionalProperties": False}


@dataclass(frozen=True)
class Built:
    """A record read into an object by ``build`` (a dataclass: a request, a serve choice)."""

    record: Record
    build: Callable[..., Any]

    def read(self, value: Any, path: Sequence[Any]) -> Any:
        return self.build(**self.record.read(value, path))

    def write(self, value: Any) -> dict[str, Any]:
        return self.record.write({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})

    def schema(self) -> dict[str, Any]:
        return self.record.schema()


@dataclass(frozen=True)
class Tagged:
    """One of several records, named by the field ``tag`` (a move: ``kind``, in version 0 ``move``)."""

    tag: str
    variants: Mapping[str, Built]
    about: str

    def read(self, value: Any, path: Sequence[Any]) -> Any:
        if not isinstance(value, dict):
            raise Invalid(path, f"is {_kind(value)}, not an object")
        if self.tag not in value:
            raise Invalid([*path, self.tag], "missing")
        kind = value[self.tag]
        if kind not in self.variants:
            raise Invalid([*path, self.tag], f"unknown kind {json.dumps(kind)}; known: {', '.join(self.variants)}")
        return self.variants[kind].read({k: v for k, v in value.items() if k != self.tag}, path)

    def write(self, value: Any) -> dict[str, Any]:
        return {self.tag: type(value).__name__, **self.variants[type(value).__name__].write(value)}

    def schema(self) -> dict[str, Any]:
        variants = []
        for kind, built in self.variants.items():
            s = built.schema()
            variants.append({**s, "properties": {self.tag: {"const": kind}, **s["properties"]},
                             "required": [self.tag, *s["required"]]})
        return {"description": self.about, "oneOf": variants}


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


# -- the declaration ----------------------------------------------------------------------------------

SLOT = Hex(8, "cache slot index")
REQUEST = Built(Record({
    "device_id": Field(Hex(16, "DeviceID")), "address": Field(Hex(64, "address the device asks for")),
    "write": Field(Flag("a write (else a read)")), "pasid": Field(Hex(20, "PASID"), False, 0),
    "has_pasid": Field(Flag("the request carries a PASID"), False, False),
    "user": Field(Flag("user (not supervisor) access"), False, False),
    "execute": Field(Flag("instruction fetch"), False, False),
    "ats": Field(Flag("an ATS translation request"), False, False),
}, "a device's memory request"), Request)
SERVE_CHOICE = Built(Record({name: Field(Nullable(SLOT), False, None) for name in
                             (f.name for f in dataclasses.fields(ServeChoice))},
                            "which slot of each IOMMU cache the hardware looks at (null: memory)"), ServeChoice)
TEXT = "text"  # a move's line for people
# every field a move may have, by name: the moves' classes say which they have and their defaults
MOVE_FIELDS: Mapping[str, Any] = {
    "address": Hex(64, "system physical address"), "value": Hex(64, "the word stored"),
    "offset": Hex(RING_WIDTH, "byte offset into the command ring"),
    "index": Hex(8, f"in-flight entry (0..{IN_FLIGHT - 1})"), "cache": OneOf(CACHE_NAMES, "cache"),
    "slot": SLOT, "step": Hex(8, "which page-directory entry of the walk"), "request": REQUEST,
    "choice": SERVE_CHOICE, "data": Hex(64, "the word a write stores"),
    "dte_slot": Nullable(Hex(8, "DTE cache slot (null: memory)")),
}


def _move(cls: type) -> Built:
    fields = {}
    for f in dataclasses.fields(cls):
        if f.name not in MOVE_FIELDS:
            raise TypeError(f"move {cls.__name__}: field {f.name!r} has no JSON type in MOVE_FIELDS")
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        fields[f.name] = Field(MOVE_FIELDS[f.name], not has_default, f.default)
    fields[TEXT] = Field(Text("the move in words (not read)"), False, ignored=True)
    return Built(Record(fields, cls.__name__), cls)


MOVES = {kind: _move(cls) for kind, cls in MOVE_KINDS.items()}
REPLAYED = Record({  # what the writer's own replay showed (for people; not read)
    "summary": Field(Text("the verdict in words"), False), "reproduced": Field(Flag("the claim showed"), False),
    "stale": Field(Flag("the DMA reached an address a fresh walk would not"), False),
    "served_ok": Field(Flag("the DMA reached memory"), False), "served_spa": Field(Hex(64, "where"), False),
    "fresh_ok": Field(Flag("a fresh walk reaches memory"), False), "fresh_spa": Field(Hex(64, "where"), False),
}, "what the replay showed when the trace was written (not read)")
WORD = Hex(64, "64-bit word")
MEMORY = HexMap(Hex(64, "system physical address"), WORD, "initial memory (unlisted words are 0)")
TITLE, NOTES = Field(Text("what the trace shows")), Field(ListOf(Text("a note"), "notes for people"), False, [])

TRACE = Record({
    "version": Field(Const(VERSION, "format version (files without it are version 0)")),
    "title": TITLE,
    "notes": NOTES,
    "choices": Field(ListOf(Text("NAME=VALUE, as --choice takes it"),
                            "the hardware choices the trace was found under (what differs from the defaults)"),
                     False, []),
    "violation": Field(OneOf(tuple(VIOLATIONS), "what the last move shows: " + "; ".join(
        f"{k}: {v}" for k, v in VIOLATIONS.items()))),
    "waits": Field(Flag("software waited for its newest COMPLETION_WAIT: its store must be in memory before "
                        "the last move")),
    "retire_at_once": Field(Flag("after each ProcessCommand the hardware carries out every invalidation it "
                                 "accepted (else only the Retire moves do)"), False, False),
    "registers": Field(Record({n: Field(Hex(REGISTER_WIDTH, n), False, 0) for n in Registers().names()},
                              "register values at the start (unlisted: 0)")),
    "caches": Field(Record({n: Field(Hex(8, f"{n} slots"), False, ONE_SLOT_EACH[n]) for n in CACHE_NAMES},
                           "slots of each cache (unlisted: 1)")),
    "memory": Field(MEMORY),
    "inside": Field(Nullable(ListOf(Record({"base": Field(Hex(64, "system address")),
                                            "bytes": Field(Hex(64, "size"))}, "a frame"),
                                    "the frames the last DMA may read and reach (an escape's claim)")), False),
    "moves": Field(ListOf(Tagged("kind", MOVES, "a move of the IOMMU model"),
                          "the moves, in order; the last is a DMA")),
    "replay": Field(REPLAYED, False, ignored=True),
}, "an amdvi counterexample trace")
TRACE_V0 = Record({  # what the tool wrote before traces had a version
    "title": TITLE, "notes": NOTES, "memory": Field(MEMORY),
    "moves": Field(ListOf(Tagged("move", MOVES, "a move"), "the moves")),
    "replay": Field(REPLAYED, False, ignored=True),
}, "a version 0 trace")


# -- reading ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    trace: Trace
    version: int
    notices: tuple[str, ...] = ()  # what a reader must know about how the file is read (version 0)


def load(obj: Any, source: str) -> Loaded:
    """The trace in the parsed JSON ``obj``; InputError (one line: step, field, why) on anything wrong."""
    try:
        return _load(obj)
    except Invalid as e:
        raise InputError(f"{source}: {where(e.path, obj)}{e.why}") from None


def where(path: Sequence[Any], obj: Any, steps: str = "moves", names: Sequence[str] = ("kind", "move")) -> str:
    """``step N (Kind), field a.b: `` for a path into an element of the list ``steps`` (N counts from 1,
    as ``amdvi replay`` numbers steps; Kind: its first field of ``names``), ``field a.b[0]: `` for any
    other."""
    if len(path) >= 2 and path[0] == steps and isinstance(path[1], int):
        move = obj[steps][path[1]]
        kind = next((move[n] for n in names if n in move), None) if isinstance(move, dict) else None
        step = f"step {path[1] + 1}" + (f" ({kind})" if isinstance(kind, str) else "")
        return f"{step}, field {_dotted(path[2:])}: " if path[2:] else f"{step}: "
    return f"field {_dotted(path)}: " if path else ""


def _dotted(path: Sequence[Any]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _load(obj: Any) -> Loaded:
    if not isinstance(obj, dict):
        raise Invalid([], f"a trace is a JSON object, not {_kind(obj)}")
    if "version" not in obj:
        return _load_v0(obj)
    version = obj["version"]
    if version != VERSION or isinstance(version, bool):
        raise Invalid(["version"], f"{json.dumps(version)} is not a version this tool reads "
                                   f"({VERSION}, or no version key for version 0)")
    v = TRACE.read(obj, [])
    try:
        choices = SPEC.assign(v["choices"])
    except ValueError as e:
        bad = next(i for i in range(len(v["choices"])) if not _assigns(v["choices"][i]))
        raise Invalid(["choices", bad], str(e)) from None
    inside = v["inside"]
    if (v["violation"] == ESCAPE) != (inside is not None):
        raise Invalid(["inside"], "an escape needs the frames it escapes from, and only an escape has them")
    trace = Trace(v["title"], v["memory"], tuple(v["moves"]), tuple(v["notes"]), waits=v["waits"],
                  inside=None if inside is None else tuple((f["base"], f["bytes"]) for f in inside),
                  regs=Registers(**v["registers"]), cache_slots=v["caches"], choices=choices,
                  violation=v["violation"], retire_at_once=v["retire_at_once"])
    _check_moves(trace)
    return Loaded(trace, VERSION)


def _assigns(assignment: str) -> bool:
    try:
        SPEC.assign([assignment])
    except ValueError:
        return False
    return True


def _load_v0(obj: dict[str, Any]) -> Loaded:
    v = TRACE_V0.read(obj, [])
    moves = tuple(v["moves"])
    trace = Trace(v["title"], v["memory"], moves, tuple(v["notes"]), regs=REGS, cache_slots=dict(ONE_SLOT_EACH),
                  waits=any(isinstance(m, ProcessCommand) for m in moves), retire_at_once=True)
    _check_moves(trace)
    return Loaded(trace, 0, ("a version 0 trace: it records no choices, registers or cache sizes; read with the "
                             "defaults the tool then used (replayed under the default choices unless "
                             "--preset/--choice say otherwise)",))


def _check_moves(trace: Trace) -> None:
    """What the declaration alone cannot say: slots within the cache sizes, a DMA at the end."""
    if not trace.moves:
        raise Invalid(["moves"], "a trace has at least one move, its DMA")
    for i, move in enumerate(trace.moves):
        for name in ("slot", "dte_slot"):
            cache = "dte" if name == "dte_slot" else ("device_iotlb" if isinstance(move, TranslatedDma)
                                                       else getattr(move, "cache", None))
            index = getattr(move, name, None)
            if cache is not None and index is not None and index >= trace.cache_slots[cache]:
                raise Invalid(["moves", i, name], f"{cache} has {trace.cache_slots[cache]} slots, no slot {index}")
        if isinstance(move, Dma):
            for cache, index in vars(move.choice).items():
                if index is not None and index >= trace.cache_slots[cache]:
                    raise Invalid(["moves", i, "choice", cache], f"{cache} has {trace.cache_slots[cache]} slots, "
                                                                 f"no slot {index}")
        if isinstance(move, Retire) and move.index >= IN_FLIGHT:
            raise Invalid(["moves", i, "index"], f"there are {IN_FLIGHT} in-flight entries, no entry {move.index}")
    if not isinstance(trace.moves[-1], (Dma, TranslatedDma)):
        raise Invalid(["moves", len(trace.moves) - 1, "kind"], "the last move must be a Dma or TranslatedDma")


# -- writing ------------------------------------------------------------------------------------------


def to_json(trace: Trace, result: Replay | None = None, describe: Callable[[Any], str] | None = None) -> dict[str, Any]:
    """The version 1 file of ``trace`` (with what ``result``, its replay, showed); ``describe``: a move's text."""
    moves = TRACE.fields["moves"].type.item
    obj: dict[str, Any] = {
        "version": VERSION, "title": trace.title, "notes": list(trace.notes),
        "choices": trace.choices.as_assignments(), "violation": trace.claimed_violation, "waits": trace.waits,
        "retire_at_once": trace.retire_at_once,
        "registers": {n: hex(getattr(trace.regs, n)) for n in trace.regs.names()},
        "caches": {n: hex(trace.cache_slots[n]) for n in CACHE_NAMES},
        "memory": MEMORY.write(trace.memory),
        "inside": None if trace.inside is None else [{"base": hex(b), "bytes": hex(n)} for b, n in trace.inside],
        "moves": [{**moves.write(m), **({TEXT: describe(m)} if describe else {})} for m in trace.moves],
    }
    if result is not None:
        obj["replay"] = {"summary": result.summary(), "reproduced": result.reproduces, "stale": result.stale,
                         "served_ok": result.served_ok, "served_spa": hex(result.served_spa),
                         "fresh_ok": result.fresh_ok, "fresh_spa": hex(result.fresh_spa)}
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a version 1 file: a move trace (:data:`TRACE`) or a driver and
    ioctl sequence (``frontend.sequence_format.SEQUENCE``, ``kind: "sequence"``)."""
    from amdvi.frontend.sequence_format import SEQUENCE

    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"amdvi trace or sequence, version {VERSION}", "oneOf": [TRACE.schema(), SEQUENCE.schema()]}


if __name__ == "__main__":  # pragma: no cover
    print(dumps(json_schema()), end="")
