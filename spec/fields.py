"""Field tables: each 48882 structure is declared once, as data, and everything else is derived.

A :class:`Structure` lists its :class:`Field` s (name as 48882 spells it, bit range, meaning,
legal values, section, the public sources that confirm its position). From that one
declaration come the encoder, the decoder, the validator (reserved bits, illegal values, and
the structure's extra :class:`Rule` s), field accessors on either backend, the pretty printer
(``amdvi.frontend.render``) and the generated reference pages (``amdvi.frontend.reference_docs``). A structure
refuses to be built if its fields overlap, leave a bit undeclared, or repeat a name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field as dc_field
from functools import cached_property, lru_cache
from typing import Any, Callable, Iterable, Mapping

from .bitvec import INT, mask

FIELD = "field"
RESERVED = "reserved"  # must be zero; a set bit is an error the IOMMU reports
IGNORED = "ignored"  # hardware ignores it; software may use it


# The independent public sources a field's position is checked against (48882 itself is not public
# in full). A field's ``sources`` names those that state its bits explicitly; one that only implies them
# (a reserved mask leaving a gap) does not count. Each counts once however many files of it were read.
SOURCES: Mapping[str, str] = {
    "Linux": "Linux drivers/iommu/amd (mainline and AMD's tree); for events and registers also AMD's RFC "
             "series posted to the Linux lists",
    "QEMU": "QEMU hw/i386/amd_iommu.h and amd_iommu.c, with the qemu-devel patches to them",
    "Xen": "Xen xen/drivers/passthrough/amd (iommu-defs.h, iommu_cmd.c, iommu_init.c)",
    "VirtualBox": "VirtualBox include/VBox/iommu-amd.h (written against 48882 rev 3.05)",
    "FreeBSD": "FreeBSD sys/x86/iommu/amd_reg.h and the amd_*.c around it (2024)",
    "NOVA": "NOVA microhypervisor inc/x86_64/smmu_amd.hpp, ptab_dpt_amd.hpp, src/x86_64/smmu_amd.cpp",
    "AMD-RFC": "AMD's HW-vIOMMU RFC patches for Linux (2023) and AMDESE/linux-iommu nested.c",
    "OSDev": "OSDev wiki page 'AMD-Vi IOMMU' (citing 48882 rev 3.11)",
    "OpenVMM": "OpenVMM amd_iommu spec module (a fork's copy; low reliability, counted only where it agrees)",
}


@lru_cache(maxsize=None)
def python_name(spec_name: str) -> str:
    """``GCR3 Table Root Pointer[14:12]`` -> ``gcr3_table_root_pointer_14_12``."""
    s = re.sub(r"[^0-9A-Za-z]+", "_", spec_name).strip("_")
    return s.lower()


@dataclass(frozen=True)
class Field:
    """One bit range of a structure, as 48882 declares it.

    ``values`` names the legal values worth naming; ``illegal`` maps each illegal value to
    the reason. ``unit_shift`` says the raw value stands for ``raw << unit_shift`` (an address
    field holding bits 51:12 has ``unit_shift=12``). ``note`` records doubt and where a fact
    came from; ``section`` overrides the structure's section for this field.
    """

    name: str
    hi: int
    lo: int
    meaning: str = ""
    values: Mapping[int, str] = dc_field(default_factory=dict)
    illegal: Mapping[int, str] = dc_field(default_factory=dict)
    kind: str = FIELD
    unit_shift: int = 0
    fixed: int | None = None  # the value a structure variant requires (an opcode, an event code)
    section: str | None = None
    note: str = ""
    scope: str = "all"  # which requests its legality rules concern: "all", "memory", "interrupt", "io"
    sources: tuple[str, ...] | None = None
    conflict: str = ""

    def __post_init__(self) -> None:
        unknown = [s for s in self.sources or () if s not in SOURCES]
        if unknown or (self.sources is not None and len(set(self.sources)) != len(self.sources)):
            raise ValueError(f"{self.name}: sources {self.sources} name unknown or repeated sources {unknown}")

    @property
    def confirmed_by(self) -> int:
        """How many independent public sources confirm the field's position (0 when undeclared)."""
        return len(self.sources or ())

    @property
    def width(self) -> int:
        return self.hi - self.lo + 1

    @property
    def mask(self) -> int:
        return mask(self.width) << self.lo

    @cached_property
    def pyname(self) -> str:
        return python_name(self.name)

    def read(self, bits: Any, backend: Any = INT) -> Any:
        """This field's raw value in ``bits`` (the whole structure), so code that holds a field never
        restates its position."""
        return backend.extract(bits, self.hi, self.lo)

    @property
    def bits(self) -> str:
        return f"{self.hi}" if self.hi == self.lo else f"{self.hi}:{self.lo}"

    def describe(self, value: int) -> str:
        """The meaning of one value of this field ('' if none is declared)."""
        if value in self.illegal:
            return f"illegal: {self.illegal[value]}"
        return self.values.get(value, "")


def reserved(hi: int, lo: int, note: str = "", section: str | None = None) -> Field:
    """A must-be-zero range."""
    return Field("Reserved", hi, lo, "reserved, must be zero", kind=RESERVED, note=note, section=section)


def ignored(hi: int, lo: int, note: str = "") -> Field:
    """A range the hardware ignores."""
    return Field("Ignored", hi, lo, "ignored by the IOMMU; available to software", kind=IGNORED, note=note)


@dataclass(frozen=True)
class Composite:
    """A value the spec splits over several fields, e.g. the GCR3 Table Root Pointer.

    ``parts`` pairs each field name with the bit position its raw value lands at.
    """

    name: str
    parts: tuple[tuple[str, int], ...]
    meaning: str
    section: str | None = None

    @cached_property
    def pyname(self) -> str:
        return python_name(self.name)


@dataclass(frozen=True)
class Rule:
    """A legality rule beyond single fields. ``violated(backend, view, context)`` returns a
    backend boolean that is true when the rule is broken. ``context`` maps names such as
    ``"EFR.HATS"`` to values; a rule whose ``needs`` are absent from the context is not checked.
    """

    name: str
    description: str
    violated: Callable[[Any, "FieldView", Mapping[str, Any]], Any]
    event: str
    section: str
    needs: tuple[str, ...] = ()
    note: str = ""
    scope: str = "all"  # "all", "memory", "interrupt" or "io": which requests the IOMMU checks it for


class FieldView:
    """Field values of one structure instance, read lazily through a backend.

    ``view["GV"]``, ``view.gv`` and ``view["GCR3 Table Root Pointer"]`` (a composite) all work.
    """

    def __init__(self, structure: "Structure", bits: Any, backend: Any = INT):
        self._structure = structure
        self._bits = bits
        self._backend = backend

    @property
    def backend(self) -> Any:
        return self._backend

    @property
    def bits(self) -> Any:
        return self._bits

    def __getitem__(self, name: str) -> Any:
        s, b = self._structure, self._backend
        bits = s._plain_bits.get(name)  # type: ignore[attr-defined]
        if bits is not None:  # a field (not a composite) read before: its bits, found once
            return b.extract(self._bits, *bits)
        comp = s.composite(name)
        if comp is not None:
            width = max(s.field(f).width + at for f, at in comp.parts)
            out = b.const(0, width)
            for fname, at in comp.parts:
                f = s.field(fname)
                out = b.deposit(out, at + f.width - 1, at, b.extract(self._bits, f.hi, f.lo), width)
            return out
        f = s.field(name)
        if f is None:
            raise KeyError(f"{s.name} has no field {name!r}")
        s._plain_bits[name] = (f.hi, f.lo)  # type: ignore[attr-defined]
        return b.extract(self._bits, f.hi, f.lo)

    def __getattr__(self, pyname: str) -> Any:
        if pyname.startswith("_"):
            raise AttributeError(pyname)
        try:
            return self[pyname]
        except KeyError as e:
            raise AttributeError(str(e)) from None


@dataclass(frozen=True)
class Violation:
    """A rule and the backend boolean saying whether this instance breaks it."""

    rule: Rule
    condition: Any


@dataclass(frozen=True)
class Structure:
    """One 48882 structure: its width, its fields (covering every bit once) and its rules."""

    name: str
    title: str
    width: int
    section: str
    fields: tuple[Field, ...]
    description: str = ""
    composites: tuple[Composite, ...] = ()
    rules: tuple[Rule, ...] = ()
    reserved_event: str = ""  # what the IOMMU logs when a reserved bit is set
    aliases: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        seen = 0
        names: set[str] = set()
        for f in self.fields:
            if not (0 <= f.lo <= f.hi < self.width):
                raise ValueError(f"{self.name}.{f.name}: bits {f.bits} outside {self.width} bits")
            if seen & f.mask:
                raise ValueError(f"{self.name}.{f.name}: bits {f.bits} overlap another field")
            seen |= f.mask
            if f.kind == FIELD:
                key = f.name.lower()
                if key in names or f.pyname in names:
                    raise ValueError(f"{self.name}: field name {f.name!r} declared twice")
                names.update({key, f.pyname})
            if f.fixed is not None and f.fixed >> f.width:
                raise ValueError(f"{self.name}.{f.name}: fixed value does not fit")
        if seen != mask(self.width):
            missing = [i for i in range(self.width) if not (seen >> i) & 1]
            raise ValueError(f"{self.name}: bits {missing[:8]}... are not declared")
        index: dict[str, Field] = {}
        for f in self.named_fields:
            index[f.name.lower()] = index[f.pyname] = f
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_encoded", {})  # Python-int encodings already made (``encode``)
        object.__setattr__(self, "_found", {})  # field names already resolved (``_find``)
        object.__setattr__(self, "_found_composites", {})
        object.__setattr__(self, "_plain_bits", {})  # names read as plain fields -> (hi, lo) (``FieldView``)
        object.__setattr__(self, "_composite_index",
                           {k: c for c in self.composites for k in (c.name.lower(), c.pyname)})
        for c in self.composites:
            for fname, _ in c.parts:
                if self._find(fname) is None:
                    raise ValueError(f"{self.name}: composite {c.name} names unknown field {fname}")

    # -- lookup ---------------------------------------------------------------
    def _find(self, name: str) -> Field | None:
        found = self._found  # type: ignore[attr-defined]
        if name not in found:
            index = self._index  # type: ignore[attr-defined]
            found[name] = index.get(name.lower()) or index.get(python_name(name))
        return found[name]

    def field(self, name: str) -> Field | None:
        """The named (non-reserved) field, by spec spelling or python name, any case."""
        return self._find(name)

    def composite(self, name: str) -> Composite | None:
        found = self._found_composites  # type: ignore[attr-defined]
        if name not in found:
            index = self._composite_index  # type: ignore[attr-defined]
            found[name] = index.get(name.lower()) or index.get(python_name(name))
        return found[name]

    @cached_property
    def named_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.kind == FIELD)

    @property
    def reserved_mask(self) -> int:
        return sum(f.mask for f in self.fields if f.kind == RESERVED)

    # -- derived operations ---------------------------------------------------
    def view(self, bits: Any, backend: Any = INT) -> FieldView:
        return FieldView(self, bits, backend)

    def decode(self, bits: Any, backend: Any = INT) -> dict[str, Any]:
        """Every named field's raw value, keyed by spec name, in bit order."""
        return {f.name: backend.extract(bits, f.hi, f.lo) for f in self.named_fields}

    def split(self, composite: str, value: Any, backend: Any = INT) -> dict[str, Any]:
        """The raw value of each field a composite is made of (``ValueError`` if a concrete value has
        bits no part holds, e.g. an unaligned GCR3 table address)."""
        c = self.composite(composite)
        if c is None:
            raise ValueError(f"{self.name} has no composite {composite!r}")
        parts = [(self.field(n), at) for n, at in c.parts]
        if isinstance(value, int):
            covered = sum(f.mask >> f.lo << at for f, at in parts)
            if value < 0 or value & ~covered:
                raise ValueError(f"{self.name}.{c.name}: {value:#x} has bits outside {c.name}'s pieces")
        return {f.name: backend.extract(value, at + f.width - 1, at) for f, at in parts}

    def encode(self, values: Mapping[str, Any] | None = None, backend: Any = INT, **kw: Any) -> Any:
        """Bits with the given fields (or composites) set, others 0, fixed fields at their fixed value.

        Unknown names and values too wide for their field raise ``ValueError``.
        """
        requested = dict(values or {}, **kw)
        key = None
        if backend is INT:  # concrete encodings recur (event records, commands): remember them
            try:
                key = tuple(sorted(requested.items()))
                return self._encoded[key]  # type: ignore[attr-defined]
            except KeyError:
                pass
            except TypeError:  # an unhashable value: encode it afresh
                key = None
        given: dict[str, Any] = {}
        for name, value in requested.items():
            if self.field(name) is None and self.composite(name) is not None:
                given.update(self.split(name, value, backend))
            else:
                given[name] = value
        bits = backend.const(0, self.width)
        for f in self.named_fields:
            if f.fixed is not None:
                bits = backend.deposit(bits, f.hi, f.lo, f.fixed, self.width)
        for name, value in given.items():
            f = self.field(name)
            if f is None:
                raise ValueError(f"{self.name} has no field {name!r}")
            if isinstance(value, int):
                if value < 0 or value >> f.width:
                    raise ValueError(f"{self.name}.{f.name}: {value:#x} does not fit in {f.width} bits")
            bits = backend.deposit(bits, f.hi, f.lo, value, self.width)
        if key is not None and len(self._encoded) < 1 << 16:  # type: ignore[attr-defined]
            self._encoded[key] = bits  # type: ignore[attr-defined]
        return bits

    def all_rules(self) -> tuple[Rule, ...]:
        """The structure's rules plus those derived from reserved ranges and illegal values."""
        return self._all_rules

    @cached_property
    def _all_rules(self) -> tuple[Rule, ...]:
        derived: list[Rule] = []
        for f in self.fields:
            if f.kind == RESERVED:
                derived.append(
                    Rule(
                        name=f"reserved[{f.bits}]",
                        description=f"reserved bits {f.bits} must be zero",
                        violated=_reserved_set(f),
                        event=self.reserved_event,
                        section=f.section or self.section,
                        note=f.note,
                    )
                )
            for value, reason in f.illegal.items():
                derived.append(
                    Rule(
                        name=f"{f.name}={value}",
                        description=f"{f.name} = {value}: {reason}",
                        violated=_field_equals(f, value),
                        event=self.reserved_event,
                        section=f.section or self.section,
                        note=f.note,
                        scope=f.scope,
                    )
                )
        return tuple(derived) + self.rules

    def check(self, bits: Any, backend: Any = INT, context: Mapping[str, Any] | None = None) -> list[Violation]:
        """Every applicable rule with the backend boolean 'this instance breaks it'."""
        ctx = dict(context or {})
        v = self.view(bits, backend)
        return [
            Violation(r, r.violated(backend, v, ctx))
            for r in self.all_rules()
            if all(n in ctx for n in r.needs)
        ]

    def validate(self, bits: int, context: Mapping[str, Any] | None = None) -> list[Rule]:
        """The rules a concrete instance breaks (empty when legal)."""
        return [v.rule for v in self.check(bits, INT, context) if v.condition]


def _reserved_set(f: Field) -> Callable[[Any, FieldView, Mapping[str, Any]], Any]:
    def violated(b: Any, v: FieldView, ctx: Mapping[str, Any]) -> Any:
        return b.ne(b.extract(v.bits, f.hi, f.lo), 0)

    return violated


def _field_equals(f: Field, value: int) -> Callable[[Any, FieldView, Mapping[str, Any]], Any]:
    def violated(b: Any, v: FieldView, ctx: Mapping[str, Any]) -> Any:
        return b.eq(b.extract(v.bits, f.hi, f.lo), value)

    return violated


def flag(name: str, bit: int, meaning: str, **kw: Any) -> Field:
    """A one-bit field."""
    return Field(name, bit, bit, meaning, **kw)


def structures_in(namespace: Iterable[Any]) -> list[Structure]:
    """The :class:`Structure` objects among ``namespace`` (a module's values)."""
    return [x for x in namespace if isinstance(x, Structure)]
