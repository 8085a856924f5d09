"""The two-way bit-vector backend: every semantic function is written once over it.

A backend is a small set of operations on fixed-width unsigned bit-vectors, booleans and
a memory of 64-bit words. :data:`INT` runs them on Python ints (replay, Hypothesis,
the command line); :data:`Z3` builds Z3 terms from them (proofs, bounded model checking).
Spec code never branches in Python on a value that may be symbolic: it uses ``ite``.

Conventions shared by both backends:

* a bit-vector of width ``w`` is an unsigned value in ``[0, 2**w)``;
* widths are static: every operation that needs one takes it explicitly, so the concrete
  side needs no wrapper objects;
* memory maps an 8-byte aligned 64-bit system physical address to a 64-bit word; a word
  never written reads as 0 (concrete) or as the array's content (symbolic).
"""

from __future__ import annotations

from typing import Any, Mapping

import z3

ADDRESS_WIDTH = 64
WORD_WIDTH = 64


def mask(width: int) -> int:
    """All ones in the low ``width`` bits."""
    return (1 << width) - 1


class BackendError(ValueError):
    """An operation was given values it cannot work on (wrong width, unaligned address)."""


class IntBackend:
    """Bit-vectors are non-negative Python ints; booleans are Python bools."""

    name = "int"
    symbolic = False

    # -- values ---------------------------------------------------------------
    def const(self, value: int, width: int) -> int:
        return value & mask(width)

    def true(self) -> bool:
        return True

    def false(self) -> bool:
        return False

    # -- bit ranges -----------------------------------------------------------
    def extract(self, x: int, hi: int, lo: int) -> int:
        return (x >> lo) & mask(hi - lo + 1)

    def concat(self, *parts: tuple[Any, int]) -> int:
        """Join ``(value, width)`` parts, most significant first."""
        out = 0
        for value, width in parts:
            out = (out << width) | (value & mask(width))
        return out

    def zext(self, x: int, width: int) -> int:
        return x

    def deposit(self, word: int, hi: int, lo: int, value: int, width: int) -> int:
        """``word`` (``width`` bits) with bits ``hi:lo`` replaced by ``value``."""
        field_mask = mask(hi - lo + 1) << lo
        return (word & ~field_mask & mask(width)) | ((value << lo) & field_mask)

    # -- arithmetic and logic -------------------------------------------------
    def add(self, a: int, b: int, width: int) -> int:
        return (a + b) & mask(width)

    def sub(self, a: int, b: int, width: int) -> int:
        return (a - b) & mask(width)

    def shl(self, a: int, amount: int, width: int) -> int:
        return (a << amount) & mask(width) if amount < width else 0

    def lshr(self, a: int, amount: int, width: int) -> int:
        return a >> amount if amount < width else 0

    def band(self, a: int, b: int) -> int:
        return a & b

    def bor(self, a: int, b: int) -> int:
        return a | b

    def bxor(self, a: int, b: int) -> int:
        return a ^ b

    def bnot(self, a: int, width: int) -> int:
        return ~a & mask(width)

    # -- comparisons (results are booleans) -----------------------------------
    def eq(self, a: int, b: int) -> bool:
        return a == b

    def ne(self, a: int, b: int) -> bool:
        return a != b

    def ult(self, a: int, b: int) -> bool:
        return a < b

    def ule(self, a: int, b: int) -> bool:
        return a <= b

    def ugt(self, a: int, b: int) -> bool:
        return a > b

    def uge(self, a: int, b: int) -> bool:
        return a >= b

    # -- booleans -------------------------------------------------------------
    def all_of(self, *conds: bool) -> bool:
        return all(conds)

    def any_of(self, *conds: bool) -> bool:
        return any(conds)

    def lnot(self, c: bool) -> bool:
        return not c

    def implies(self, a: bool, b: bool) -> bool:
        return (not a) or b

    def ite(self, c: bool, a: Any, b: Any, width: int | None = None) -> Any:
        return a if c else b

    def known_false(self, c: Any) -> bool:
        """True when ``c`` is false on every input (lets a walk skip a branch that cannot matter)."""
        return not c

    def known_true(self, c: Any) -> bool:
        return bool(c)

    def bit(self, c: bool, width: int = 1) -> int:
        """1 or 0 as a ``width``-bit vector."""
        return 1 if c else 0

    def trailing_ones(self, x: int, width: int) -> int:
        """How many consecutive 1 bits ``x`` has from bit 0 (at most ``width``), as an 8-bit vector."""
        return min(((x ^ (x + 1)).bit_length() - 1), width)

    # -- memory ---------------------------------------------------------------
    def empty_memory(self) -> Mapping[int, int]:
        return {}

    def read64(self, memory: Mapping[int, int], address: int) -> int:
        if address & 7:
            raise BackendError(f"unaligned 64-bit read at {address:#x}")
        return memory.get(address, 0)

    def write64(self, memory: Mapping[int, int], address: int, value: int) -> dict[int, int]:
        """A new memory equal to ``memory`` except for one word (the input is not changed)."""
        if address & 7:
            raise BackendError(f"unaligned 64-bit write at {address:#x}")
        out = dict(memory)
        out[address] = value & mask(WORD_WIDTH)
        return out

    # -- inspection -----------------------------------------------------------
    def value(self, x: Any) -> Any:
        """The Python value of ``x`` (identity here)."""
        return x


class Z3Backend:
    """Bit-vectors are Z3 ``BitVecRef`` terms, booleans ``BoolRef``; memory is a Z3 array."""

    name = "z3"
    symbolic = True

    def _bv(self, x: Any, width: int) -> z3.BitVecRef:
        if isinstance(x, int):
            return z3.BitVecVal(x & mask(width), width)
        if x.size() != width:
            raise BackendError(f"expected a {width}-bit term, got {x.size()} bits")
        return x

    def _bool(self, c: Any) -> z3.BoolRef:
        return z3.BoolVal(c) if isinstance(c, bool) else c

    # -- values ---------------------------------------------------------------
    def const(self, value: int, width: int) -> z3.BitVecRef:
        return z3.BitVecVal(value & mask(width), width)

    def true(self) -> z3.BoolRef:
        return z3.BoolVal(True)

    def false(self) -> z3.BoolRef:
        return z3.BoolVal(False)

    def var(self, name: str, width: int) -> z3.BitVecRef:
        """A fresh symbolic bit-vector (symbolic backend only)."""
        return z3.BitVec(name, width)

    # -- bit ranges -----------------------------------------------------------
    def extract(self, x: Any, hi: int, lo: int) -> z3.BitVecRef:
        if isinstance(x, int):
            return z3.BitVecVal((x >> lo) & mask(hi - lo + 1), hi - lo + 1)
        return z3.Extract(hi, lo, x)

    def concat(self, *parts: tuple[Any, int]) -> z3.BitVecRef:
        terms = [self._bv(value, width) for value, width in parts]
        return terms[0] if len(terms) == 1 else z3.Concat(*terms)

    def zext(self, x: Any, width: int) -> z3.BitVecRef:
        if isinstance(x, int):
            return z3.BitVecVal(x, width)
        if x.size() == width:
            return x
        return z3.ZeroExt(width - x.size(), x)

    def deposit(self, word: Any, hi: int, lo: int, value: Any, width: int) -> z3.BitVecRef:
        field_mask = mask(hi - lo + 1) << lo
        w = self._bv(word, width)
        v = self.zext(value, width) if not isinstance(value, int) else z3.BitVecVal(value, width)
        return (w & z3.BitVecVal(~field_mask & mask(width), width)) | ((v << lo) & field_mask)

    # -- arithmetic and logic -------------------------------------------------
    def add(self, a: Any, b: Any, width: int) -> z3.BitVecRef:
        return self._bv(a, width) + self._bv(b, width)

    def sub(self, a: Any, b: Any, width: int) -> z3.BitVecRef:
        return self._bv(a, width) - self._bv(b, width)

    def shl(self, a: Any, amount: Any, width: int) -> z3.BitVecRef:
        return self._bv(a, width) << self._bv(amount, width)

    def lshr(self, a: Any, amount: Any, width: int) -> z3.BitVecRef:
        return z3.LShR(self._bv(a, width), self._bv(amount, width))

    def band(self, a: Any, b: Any) -> z3.BitVecRef:
        return a & b

    def bor(self, a: Any, b: Any) -> z3.BitVecRef:
        return a | b

    def bxor(self, a: Any, b: Any) -> z3.BitVecRef:
        return a ^ b

    def bnot(self, a: Any, width: int) -> z3.BitVecRef:
        return ~self._bv(a, width)

    # -- comparisons ----------------------------------------------------------
    def eq(self, a: Any, b: Any) -> z3.BoolRef:
        return a == b

    def ne(self, a: Any, b: Any) -> z3.BoolRef:
        return a != b

    def ult(self, a: Any, b: Any) -> z3.BoolRef:
        return z3.ULT(a, b)

    def ule(self, a: Any, b: Any) -> z3.BoolRef:
        return z3.ULE(a, b)

    def ugt(self, a: Any, b: Any) -> z3.BoolRef:
        return z3.UGT(a, b)

    def uge(self, a: Any, b: Any) -> z3.BoolRef:
        return z3.UGE(a, b)

    # -- booleans -------------------------------------------------------------
    def all_of(self, *conds: Any) -> z3.BoolRef:
        return z3.And(*[self._bool(c) for c in conds]) if conds else z3.BoolVal(True)

    def any_of(self, *conds: Any) -> z3.BoolRef:
        return z3.Or(*[self._bool(c) for c in conds]) if conds else z3.BoolVal(False)

    def lnot(self, c: Any) -> z3.BoolRef:
        return z3.Not(self._bool(c))

    def implies(self, a: Any, b: Any) -> z3.BoolRef:
        return z3.Implies(self._bool(a), self._bool(b))

    def ite(self, c: Any, a: Any, b: Any, width: int | None = None) -> Any:
        """``a`` if ``c`` else ``b``; give ``width`` when both branches may be Python ints."""
        if isinstance(c, bool):
            return a if c else b
        if width is not None:
            if isinstance(a, int) and not isinstance(a, bool):
                a = z3.BitVecVal(a, width)
            if isinstance(b, int) and not isinstance(b, bool):
                b = z3.BitVecVal(b, width)
        if isinstance(a, int) and not isinstance(a, bool) and isinstance(b, int) and not isinstance(b, bool):
            raise BackendError("ite on two Python ints needs a width")
        if isinstance(a, int) and not isinstance(a, bool) and not isinstance(b, int):
            a = z3.BitVecVal(a, b.size())
        if isinstance(b, int) and not isinstance(b, bool) and not isinstance(a, int):
            b = z3.BitVecVal(b, a.size())
        if isinstance(a, bool):
            a = z3.BoolVal(a)
        if isinstance(b, bool):
            b = z3.BoolVal(b)
        return z3.If(c, a, b)

    def known_false(self, c: Any) -> bool:
        return c is False or (not isinstance(c, bool) and z3.is_false(c))

    def known_true(self, c: Any) -> bool:
        return c is True or (not isinstance(c, bool) and z3.is_true(c))

    def bit(self, c: Any, width: int = 1) -> z3.BitVecRef:
        if isinstance(c, bool):
            return z3.BitVecVal(int(c), width)
        return z3.If(c, z3.BitVecVal(1, width), z3.BitVecVal(0, width))

    def trailing_ones(self, x: Any, width: int) -> z3.BitVecRef:
        out = z3.BitVecVal(width, 8)
        for i in reversed(range(width)):
            out = z3.If(z3.Extract(i, i, self._bv(x, width)) == 0, z3.BitVecVal(i, 8), out)
        return out

    # -- memory ---------------------------------------------------------------
    def empty_memory(self) -> z3.ArrayRef:
        return z3.K(z3.BitVecSort(ADDRESS_WIDTH), z3.BitVecVal(0, WORD_WIDTH))

    def memory_var(self, name: str) -> z3.ArrayRef:
        """A memory whose every word is unconstrained."""
        return z3.Array(name, z3.BitVecSort(ADDRESS_WIDTH), z3.BitVecSort(WORD_WIDTH))

    def memory_from(self, words: Mapping[int, int], base: z3.ArrayRef | None = None) -> z3.ArrayRef:
        """The symbolic image of a concrete memory (words not listed read as in ``base``)."""
        mem = self.empty_memory() if base is None else base
        for address, value in sorted(words.items()):
            mem = z3.Store(mem, z3.BitVecVal(address, ADDRESS_WIDTH), z3.BitVecVal(value, WORD_WIDTH))
        return mem

    def read64(self, memory: z3.ArrayRef, address: Any) -> z3.BitVecRef:
        return z3.Select(memory, self._bv(address, ADDRESS_WIDTH))

    def write64(self, memory: z3.ArrayRef, address: Any, value: Any) -> z3.ArrayRef:
        return z3.Store(memory, self._bv(address, ADDRESS_WIDTH), self._bv(value, WORD_WIDTH))

    # -- inspection -----------------------------------------------------------
    def value(self, x: Any) -> Any:
        """The Python value of a term that simplifies to a constant, else the term itself."""
        if isinstance(x, (int, bool)):
            return x
        s = z3.simplify(x)
        if z3.is_bv_value(s):
            return s.as_long()
        if z3.is_true(s):
            return True
        if z3.is_false(s):
            return False
        return s


INT = IntBackend()
Z3 = Z3Backend()
BACKENDS = (INT, Z3)
