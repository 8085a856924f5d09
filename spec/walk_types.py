"""Vocabulary shared by the table walks: steps, fault state, and bounded selection helpers.

Walks are bounded unrollings written over the backend, so a step may be *inactive* (it did not
happen on this input). A concrete run shows only active steps; a symbolic run keeps them all
with their activity as a formula.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar, Mapping

from .records import merge

# Which translation a fault belongs to (also the `dimension` of an outcome).
NO_FAULT, DEVICE_TABLE, GUEST, HOST = 0, 1, 2, 3
DIMENSION_NAMES = {NO_FAULT: "none", DEVICE_TABLE: "device table", GUEST: "guest", HOST: "host"}
DIMENSION_WIDTH = 2
SHIFT_WIDTH = 8  # page_shift values: 12..64


@dataclass(frozen=True)
class WalkStep:
    """One table entry read by a walk."""

    table: str  # "DTE", "GCR3", "GPTE" or "PDE/PTE"
    dimension: int  # DEVICE_TABLE, GUEST or HOST
    level: Any  # table level (GCR3 levels count down to 0; page-table levels down to 1)
    entry_address: Any
    entry: Any
    readable: Any  # permissions accumulated after this entry
    writable: Any
    active: Any  # whether this step happened


@dataclass(frozen=True)
class FaultState:
    """The first fault a walk meets, kept as backend values so symbolic runs stay one formula."""

    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = {"dimension": DIMENSION_WIDTH, "address": 64}

    raised: Any
    dimension: Any
    address: Any
    pr: Any
    rz: Any
    pe: Any
    us: Any
    nx: Any

    @classmethod
    def none(cls, b: Any) -> "FaultState":
        return cls(b.false(), b.const(NO_FAULT, DIMENSION_WIDTH), b.const(0, 64),
                   b.false(), b.false(), b.false(), b.false(), b.false())

    def raise_if(self, b: Any, cond: Any, dimension: int, address: Any, *, pr: Any = False, rz: Any = False,
                 pe: Any = False, us: Any = False, nx: Any = False) -> "FaultState":
        """This state, or a new fault if ``cond`` holds and no fault was raised before."""
        if b.known_false(cond):
            return self
        fire = b.all_of(cond, b.lnot(self.raised))
        pick = lambda new, old: b.ite(fire, new, old)  # noqa: E731
        return FaultState(
            raised=b.any_of(self.raised, fire),
            dimension=b.ite(fire, b.const(dimension, DIMENSION_WIDTH), self.dimension),
            address=b.ite(fire, address, self.address, width=64),
            pr=pick(_bool(b, pr), self.pr),
            rz=pick(_bool(b, rz), self.rz),
            pe=pick(_bool(b, pe), self.pe),
            us=pick(_bool(b, us), self.us),
            nx=pick(_bool(b, nx), self.nx),
        )

    def merge(self, b: Any, other: "FaultState") -> "FaultState":
        """Keep this state's fault if any, else ``other``'s (a nested walk's fault joins the outer one)."""
        return other.select(b, self.raised, self)

    def select(self, b: Any, cond: Any, other: "FaultState") -> "FaultState":
        """``other`` where ``cond`` holds, else this state (field by field)."""
        return merge(b, cond, other, self)

    def with_(self, **kw: Any) -> "FaultState":
        return replace(self, **kw)


FIELDS = ("raised", "dimension", "address", "pr", "rz", "pe", "us", "nx")


@dataclass(frozen=True)
class WalkResult:
    """What a walk (host, guest, or the pass-through of Mode 0) gives: a page or a fault."""

    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = {"spa": 64, "page_shift": SHIFT_WIDTH}
    GATED_TUPLES: ClassVar[Mapping[str, str]] = {"steps": "active"}

    ok: Any  # a page was reached and the access is allowed
    spa: Any
    page_shift: Any
    readable: Any
    writable: Any
    fault: FaultState
    steps: tuple[WalkStep, ...]


def _bool(b: Any, x: Any) -> Any:
    return (b.true() if x else b.false()) if isinstance(x, bool) else x


def select_by(b: Any, key: Any, choices: Mapping[int, Any], width: int, default: Any = 0) -> Any:
    """``choices[key]`` for a key that may be symbolic: an if-then-else chain over the known keys."""
    known = b.constant(key)
    if known is not None:
        return choices.get(known, default)
    out = default
    for k, v in choices.items():
        out = b.ite(b.eq(key, k), v, out, width=width)
    return out


def by_level(b: Any, level: Any, levels: range, fn: Callable[[int], Any], width: int) -> Any:
    """``fn(level)`` for a level that may be symbolic."""
    known = b.constant(level)
    if known is not None:
        return fn(known) if known in levels else 0
    return select_by(b, level, {n: fn(n) for n in levels}, width)


def low_mask(b: Any, shift: Any) -> Any:
    """``2**shift - 1`` as a 64-bit vector (all ones for a shift of 64)."""
    return b.sub(b.shl(1, b.zext(shift, 64), 64), 1, 64)
