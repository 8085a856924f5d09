"""A structure of which only some bits are known: what can be decoded, and which rules are decided.

A kernel log pasted into a bug report is often cut: a DTE dump with two of its four words, an event
line whose printf never carried some fields. :func:`check_partial` decodes what is there and, for each
rule of :meth:`Structure.check <amdvi.spec.fields.Structure.check>`, says whether it is violated, holds,
or cannot be decided without the missing bits.

A rule is decided when its outcome is the same for every value of the unknown bits. That is asked of
Z3 through the very rules the validator runs on ints: the structure's bits are the known constant OR a
fresh bit-vector restricted to the unknown mask, and Z3 is asked whether the violation condition can be
true and whether it can be false. Nothing lists which bits a rule reads, so a new rule is covered as
soon as it is declared. A solver ``unknown`` (time limit) counts as undetermined, never as decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import z3

from .bitvec import Z3, mask
from .fields import Field, Rule, Structure

VIOLATED = "violated"
HOLDS = "holds"
UNDETERMINED = "undetermined"

SOLVER_TIMEOUT_MS = 5000  # per query; the rules are small, so this is only a guard


@dataclass(frozen=True)
class FieldReading:
    """One named field: its value when every bit is known, else None and the bits that are known.

    ``known_mask`` and ``known_value`` are relative to the field (bit 0 is the field's lowest bit).
    """

    field: Field
    value: int | None
    known_mask: int
    known_value: int

    @property
    def known(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class RuleOutcome:
    """A rule's status, with a completion of the unknown bits for each outcome that is possible.

    ``violating`` / ``holding`` are full values of the structure (the known bits unchanged) under which
    the rule is violated / holds; an outcome that is impossible has None.
    """

    rule: Rule
    status: str
    violating: int | None
    holding: int | None


@dataclass(frozen=True)
class PartialCheck:
    """Everything :func:`check_partial` found about one partly known value."""

    structure: Structure
    bits: int  # the known bits; unknown bits are 0 here
    known_mask: int
    fields: tuple[FieldReading, ...]
    composites: Mapping[str, int | None]
    outcomes: tuple[RuleOutcome, ...]

    def _with(self, status: str) -> list[Rule]:
        return [o.rule for o in self.outcomes if o.status == status]

    @property
    def violated(self) -> list[Rule]:
        return self._with(VIOLATED)

    @property
    def undetermined(self) -> list[Rule]:
        return self._with(UNDETERMINED)

    @property
    def complete(self) -> bool:
        return self.known_mask == mask(self.structure.width)

    def value(self, name: str) -> int | None:
        """A field's value by name (None when some of its bits are unknown)."""
        for r in self.fields:
            if r.field.name == name:
                return r.value
        raise KeyError(f"{self.structure.name} has no field {name!r}")


def symbolic_bits(structure: Structure, bits: int, known_mask: int, name: str = "unknown") -> tuple[Any, Any]:
    """(term, fresh variable): the known constant OR the fresh variable restricted to the unknown bits.

    The term is left unsimplified: Z3's simplifier then settles each rule that reads only known bits in
    C, which stays fast when the known bits are scattered (a simplified term would be a concatenation
    of one piece per run of known bits, walked in Python by every field access).
    """
    width = structure.width
    unknown = z3.BitVec(name, width)
    term = z3.BitVecVal(bits & known_mask, width) | (unknown & z3.BitVecVal(mask(width) & ~known_mask, width))
    return term, unknown


def _completion(model: z3.ModelRef, unknown: Any, bits: int, known_mask: int, width: int) -> int:
    free = model.eval(unknown, model_completion=True).as_long()
    return (bits & known_mask) | (free & mask(width) & ~known_mask)


def read_fields(structure: Structure, bits: int, known_mask: int
                ) -> tuple[tuple[FieldReading, ...], dict[str, int | None]]:
    """The named fields and composites of a partly known value, without judging any rule (no solver).

    Raises ``ValueError`` for a mask or value wider than the structure.
    """
    width = structure.width
    if bits < 0 or known_mask < 0 or bits >> width or known_mask >> width:
        raise ValueError(f"bits and mask must fit in the {width} bits of {structure.name}")
    bits &= known_mask
    readings = []
    for f in structure.named_fields:
        field_known = (known_mask >> f.lo) & mask(f.width)
        field_value = (bits >> f.lo) & mask(f.width)
        readings.append(FieldReading(f, field_value if field_known == mask(f.width) else None,
                                     field_known, field_value))
    by_name = {r.field.name: r for r in readings}
    composites: dict[str, int | None] = {}
    for c in structure.composites:
        parts = [(by_name[structure.field(n).name], at) for n, at in c.parts]  # type: ignore[union-attr]
        composites[c.name] = (sum(r.value << at for r, at in parts)  # type: ignore[operator]
                              if all(r.known for r, _ in parts) else None)
    return tuple(readings), composites


def check_partial(structure: Structure, bits: int, known_mask: int,
                  context: Mapping[str, Any] | None = None) -> PartialCheck:
    """Decode the known fields and decide each applicable rule (see the module docstring).

    ``bits`` outside ``known_mask`` are ignored. Raises ``ValueError`` for a mask or value wider than
    the structure.
    """
    width = structure.width
    readings, composites = read_fields(structure, bits, known_mask)
    bits &= known_mask
    term, unknown = symbolic_bits(structure, bits, known_mask)
    solver = z3.Solver()
    solver.set("timeout", SOLVER_TIMEOUT_MS)

    def witness(condition: Any) -> int | None | str:
        """A completion under which ``condition`` holds, None if there is none, "?" if Z3 gave up."""
        solver.push()
        solver.add(condition)
        try:
            answer = solver.check()
            if answer == z3.sat:
                return _completion(solver.model(), unknown, bits, known_mask, width)
            return None if answer == z3.unsat else "?"
        finally:
            solver.pop()

    outcomes = []
    for v in structure.check(term, Z3, context):
        condition = v.condition
        if not isinstance(condition, bool):
            condition = z3.simplify(condition)
            if z3.is_true(condition) or z3.is_false(condition):
                condition = z3.is_true(condition)
        if isinstance(condition, bool):  # decided by the known bits alone
            outcomes.append(RuleOutcome(v.rule, VIOLATED if condition else HOLDS,
                                        bits if condition else None, None if condition else bits))
            continue
        violating, holding = witness(condition), witness(z3.Not(condition))
        if violating == "?" or holding == "?":
            status = UNDETERMINED
        elif violating is None:
            status = HOLDS
        elif holding is None:
            status = VIOLATED
        else:
            status = UNDETERMINED
        outcomes.append(RuleOutcome(v.rule, status,
                                    violating if isinstance(violating, int) else None,
                                    holding if isinstance(holding, int) else None))
    return PartialCheck(structure, bits, known_mask, readings, composites, tuple(outcomes))
