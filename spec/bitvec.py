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

from dataclasses import dataclass
from typing import Any, Mapping

import z3

ADDRESS_WIDTH = 64
WORD_WIDTH = 64


def mask(width: int) -> int:
    """All ones in the low ``width`` bits."""
    return (1 << width) - 1


def log2(power_of_two: int) -> int:
    """The exponent of a power-of-two size, so a size is stated once and its shift derives from it."""
    return power_of_two.bit_length() - 1


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

    def constant(self, x: Any) -> int | None:
        """The value of ``x`` when it is known on every input, else None."""
        return x

    def speculate(self, x: Any) -> Any:
        """``x``: a value that takes few values in a run (a DTE), which a staged engine specialises on."""
        return x

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


@dataclass(frozen=True)
class OverlayMemory:
    """A symbolic memory whose ``regions`` hold known words (absent ones read 0) over a ``base`` array.

    It states "this part of memory is owned and fixed, the rest is anything" without quantifiers:
    a read at a constant address folds to its word, a read at a symbolic one is one if-then-else.
    """

    base: Any  # a Z3 array, or an uninterpreted function from address to word (cheaper to solve)
    regions: tuple[tuple[int, int], ...]  # [start, end) byte ranges
    words: Mapping[int, Any]  # address -> int or 64-bit term, inside the regions

    def inside(self, address: int) -> bool:
        return any(lo <= address < hi for lo, hi in self.regions)


@dataclass(frozen=True)
class StoredWord:
    """``memory`` with the word at ``address`` replaced by ``value`` (a write into a non-array memory).

    Reads are if-then-else on the address, so memories built from uninterpreted functions and
    overlays stay free of array theory (and can be bit-blasted) after writes.
    """

    memory: Any
    address: Any
    value: Any


@dataclass(frozen=True)
class ChosenMemory:
    """``then`` where ``cond`` holds, else ``otherwise``: an if-then-else of two non-array memories."""

    cond: Any
    then: Any
    otherwise: Any


@dataclass(frozen=True)
class Shape:
    """The words of [start, end) as entries of ``len(keep)`` words (a power of two) from ``start``:
    word k of each entry holds the bits ``keep[k]`` of the memory beneath and ``fixed[k]`` elsewhere."""

    start: int
    end: int
    keep: tuple[int, ...]
    fixed: tuple[int, ...]


@dataclass(frozen=True)
class ShapedMemory:
    """``memory`` whose ``shapes`` (disjoint regions) hold entries of one shape, their free bits
    ``memory``'s: e.g. a table of N entries, each with its own free fields and its fixed ones.

    Its size does not grow with N: a read at a symbolic address is one read of ``memory`` and a choice
    among ``len(keep)`` masks, where an :class:`OverlayMemory` of per-entry variables is an
    if-then-else over every entry's words (which the solver must all consider).
    """

    memory: Any
    shapes: tuple[Shape, ...]


_MEMORY_WRAPPERS = (StoredWord, OverlayMemory, ChosenMemory, ShapedMemory)


class Z3Backend:
    """Bit-vectors are Z3 ``BitVecRef`` terms, booleans ``BoolRef``; memory is a Z3 array.

    With ``fold`` (the default) operations on constant terms give constants, so walks over concrete
    data stay small. ``Z3_TERMS`` (``fold=False``) always builds terms: differential tests use it so
    that Z3's own evaluator, not the Python-int backend, computes the answer they compare.
    """

    name = "z3"
    symbolic = True

    def __init__(self, fold: bool = True):
        self.fold = fold

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

    # -- constant folding: operands that are values give values, so loops over concrete data fold --
    def _c(self, x: Any) -> int | None:
        """The value of a constant bit-vector operand (a Python int always), else None."""
        if isinstance(x, int) and not isinstance(x, bool):
            return x
        return x.as_long() if self.fold and z3.is_bv_value(x) else None

    def _cb(self, c: Any) -> bool | None:
        """The value of a constant boolean operand (a Python bool always), else None."""
        if isinstance(c, bool):
            return c
        if not self.fold:
            return None
        if z3.is_true(c):
            return True
        if z3.is_false(c):
            return False
        return None

    def _fold(self, op: str, width: int | None, *args: Any) -> Any:
        if width is not None:
            for a in args:
                if not isinstance(a, int) and a.size() != width:
                    raise BackendError(f"expected a {width}-bit term, got {a.size()} bits")
        vals = [self._c(a) for a in args]
        if any(v is None for v in vals):
            return None
        out = getattr(INT, op)(*vals, *(() if width is None else (width,)))
        return z3.BitVecVal(out, width) if width is not None else out

    # -- bit ranges -----------------------------------------------------------
    def extract(self, x: Any, hi: int, lo: int) -> z3.BitVecRef:
        v = self._c(x)
        if v is not None:
            return z3.BitVecVal((v >> lo) & mask(hi - lo + 1), hi - lo + 1)
        if self.fold and z3.is_app_of(x, z3.Z3_OP_CONCAT):
            # a range inside one part of a concatenation is that part's range (fixed fields fold)
            top = x.size()
            for part in x.children():
                bottom = top - part.size()
                if lo >= bottom and hi < top:
                    return self.extract(part, hi - bottom, lo - bottom)
                top = bottom
        if self.fold and z3.is_app_of(x, z3.Z3_OP_EXTRACT):
            _, inner_lo = x.params()
            return self.extract(x.arg(0), hi + inner_lo, lo + inner_lo)
        if self.fold and hi == x.size() - 1 and lo == 0:
            return x
        return z3.Extract(hi, lo, x)

    def concat(self, *parts: tuple[Any, int]) -> z3.BitVecRef:
        if all(self._c(v) is not None for v, _ in parts):
            return z3.BitVecVal(INT.concat(*[(self._c(v), w) for v, w in parts]), sum(w for _, w in parts))
        terms = [self._bv(value, width) for value, width in parts]
        return terms[0] if len(terms) == 1 else z3.Concat(*terms)

    def zext(self, x: Any, width: int) -> z3.BitVecRef:
        v = self._c(x)
        if v is not None:
            return z3.BitVecVal(v, width)
        if x.size() == width:
            return x
        return z3.ZeroExt(width - x.size(), x)

    def deposit(self, word: Any, hi: int, lo: int, value: Any, width: int) -> z3.BitVecRef:
        cw, cv = self._c(word), self._c(value)
        if cw is not None and cv is not None:
            return z3.BitVecVal(INT.deposit(cw, hi, lo, cv, width), width)
        field_mask = mask(hi - lo + 1) << lo
        w = self._bv(word, width)
        v = self.zext(value, width) if not isinstance(value, int) else z3.BitVecVal(value, width)
        return (w & z3.BitVecVal(~field_mask & mask(width), width)) | ((v << lo) & field_mask)

    # -- arithmetic and logic -------------------------------------------------
    def add(self, a: Any, b: Any, width: int) -> z3.BitVecRef:
        f = self._fold("add", width, a, b)
        return f if f is not None else self._bv(a, width) + self._bv(b, width)

    def sub(self, a: Any, b: Any, width: int) -> z3.BitVecRef:
        f = self._fold("sub", width, a, b)
        return f if f is not None else self._bv(a, width) - self._bv(b, width)

    def shl(self, a: Any, amount: Any, width: int) -> z3.BitVecRef:
        f = self._fold("shl", width, a, amount)
        return f if f is not None else self._bv(a, width) << self._bv(amount, width)

    def lshr(self, a: Any, amount: Any, width: int) -> z3.BitVecRef:
        f = self._fold("lshr", width, a, amount)
        return f if f is not None else z3.LShR(self._bv(a, width), self._bv(amount, width))

    def _bitwise(self, op: str, a: Any, b: Any) -> Any:
        ca, cb = self._c(a), self._c(b)
        sized = a if not isinstance(a, int) else b
        if ca is not None and cb is not None:
            out = getattr(INT, op)(ca, cb)
            return out if isinstance(sized, int) else z3.BitVecVal(out, sized.size())
        return {"band": lambda: a & b, "bor": lambda: a | b, "bxor": lambda: a ^ b}[op]()

    def band(self, a: Any, b: Any) -> z3.BitVecRef:
        return self._bitwise("band", a, b)

    def bor(self, a: Any, b: Any) -> z3.BitVecRef:
        return self._bitwise("bor", a, b)

    def bxor(self, a: Any, b: Any) -> z3.BitVecRef:
        return self._bitwise("bxor", a, b)

    def bnot(self, a: Any, width: int) -> z3.BitVecRef:
        f = self._fold("bnot", width, a)
        return f if f is not None else ~self._bv(a, width)

    # -- comparisons ----------------------------------------------------------
    def _compare(self, op: str, a: Any, b: Any, make: Any) -> Any:
        f = self._fold(op, None, a, b)
        return f if f is not None else make(a, b)

    def eq(self, a: Any, b: Any) -> z3.BoolRef:
        return self._compare("eq", a, b, lambda x, y: x == y)

    def ne(self, a: Any, b: Any) -> z3.BoolRef:
        return self._compare("ne", a, b, lambda x, y: x != y)

    def ult(self, a: Any, b: Any) -> z3.BoolRef:
        return self._compare("ult", a, b, z3.ULT)

    def ule(self, a: Any, b: Any) -> z3.BoolRef:
        return self._compare("ule", a, b, z3.ULE)

    def ugt(self, a: Any, b: Any) -> z3.BoolRef:
        return self._compare("ugt", a, b, z3.UGT)

    def uge(self, a: Any, b: Any) -> z3.BoolRef:
        return self._compare("uge", a, b, z3.UGE)

    # -- booleans -------------------------------------------------------------
    def _connective(self, conds: tuple[Any, ...], absorbing: bool, make: Any) -> Any:
        """And (``absorbing`` False) or Or (True) of ``conds``, dropping constants that do not decide it."""
        rest = []
        for c in conds:
            v = self._cb(c)
            if v is absorbing:
                return absorbing
            if v is None:
                rest.append(c)
        return (not absorbing) if not rest else rest[0] if len(rest) == 1 else make(*rest)

    def all_of(self, *conds: Any) -> Any:
        return self._connective(conds, False, z3.And)

    def any_of(self, *conds: Any) -> Any:
        return self._connective(conds, True, z3.Or)

    def lnot(self, c: Any) -> Any:
        v = self._cb(c)
        return (not v) if v is not None else z3.Not(c)

    def implies(self, a: Any, b: Any) -> Any:
        return self.any_of(self.lnot(a), b)

    def ite(self, c: Any, a: Any, b: Any, width: int | None = None) -> Any:
        """``a`` if ``c`` else ``b``; give ``width`` when both branches may be Python ints."""
        v = self._cb(c)
        if v is not None:
            return a if v else b
        if a is b:
            return a
        if isinstance(a, _MEMORY_WRAPPERS + (z3.FuncDeclRef,)) or isinstance(b, _MEMORY_WRAPPERS + (z3.FuncDeclRef,)):
            return ChosenMemory(c, a, b)
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
        if a is b:
            return a
        return z3.If(c, a, b)

    def known_false(self, c: Any) -> bool:
        return self._cb(c) is False

    def known_true(self, c: Any) -> bool:
        return self._cb(c) is True

    def constant(self, x: Any) -> int | None:
        return self._c(x)

    def speculate(self, x: Any) -> Any:
        """``x`` itself (see :meth:`IntBackend.speculate`)."""
        return x

    def bit(self, c: Any, width: int = 1) -> z3.BitVecRef:
        v = self._cb(c)
        if v is not None:
            return z3.BitVecVal(int(v), width)
        return z3.If(c, z3.BitVecVal(1, width), z3.BitVecVal(0, width))

    def trailing_ones(self, x: Any, width: int) -> z3.BitVecRef:
        v = self._c(x)
        if v is not None:
            return z3.BitVecVal(INT.trailing_ones(v, width), 8)
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

    def memory_function(self, name: str) -> z3.FuncDeclRef:
        """An unconstrained memory as an uninterpreted function (usable as an OverlayMemory base):
        without array theory the solver can bit-blast, which is much faster for adversarial memory."""
        return z3.Function(name, z3.BitVecSort(ADDRESS_WIDTH), z3.BitVecSort(WORD_WIDTH))

    def memory_from(self, words: Mapping[int, int], base: z3.ArrayRef | None = None) -> z3.ArrayRef:
        """The symbolic image of a concrete memory (words not listed read as in ``base``)."""
        mem = self.empty_memory() if base is None else base
        for address, value in sorted(words.items()):
            mem = z3.Store(mem, z3.BitVecVal(address, ADDRESS_WIDTH), z3.BitVecVal(value, WORD_WIDTH))
        return mem

    def memory_image(self, words: Mapping[int, int]) -> OverlayMemory:
        """A concrete memory (words not listed read 0) as a symbolic one: a read at a known address
        folds to its word, so concrete parts of a symbolic run stay concrete."""
        return OverlayMemory(self.empty_memory(), ((0, mask(ADDRESS_WIDTH)),), dict(words))

    def read64(self, memory: Any, address: Any) -> z3.BitVecRef:
        if isinstance(memory, ChosenMemory):
            return self.ite(memory.cond, self.read64(memory.then, address), self.read64(memory.otherwise, address),
                            width=WORD_WIDTH)
        if isinstance(memory, StoredWord):
            at = self._bv(address, ADDRESS_WIDTH)
            same = self.eq(at, memory.address)
            if self.known_true(same):
                return self._bv(memory.value, WORD_WIDTH)
            below = self.read64(memory.memory, at)
            return below if self.known_false(same) else z3.If(same, self._bv(memory.value, WORD_WIDTH), below)
        if isinstance(memory, OverlayMemory):
            return self._read_overlay(memory, address)
        if isinstance(memory, ShapedMemory):
            return self._read_shaped(memory, address)
        if isinstance(memory, z3.FuncDeclRef):
            return memory(self._bv(address, ADDRESS_WIDTH))
        return z3.Select(memory, self._bv(address, ADDRESS_WIDTH))

    def _read_overlay(self, memory: OverlayMemory, address: Any) -> z3.BitVecRef:
        c = self._c(address)
        if c is not None:
            if memory.inside(c):
                return self._bv(memory.words.get(c, 0), WORD_WIDTH)
            return self.read64(memory.base, z3.BitVecVal(c, ADDRESS_WIDTH))
        # an if-then-else chain rather than an array store chain: no array theory, so it can bit-blast
        known: Any = z3.BitVecVal(0, WORD_WIDTH)
        for a, w in sorted(memory.words.items()):
            known = z3.If(address == a, self._bv(w, WORD_WIDTH), known)
        base_at = self.read64(memory.base, address)
        owned = z3.Or([z3.And(z3.UGE(address, lo), z3.ULT(address, hi)) for lo, hi in memory.regions])
        return z3.If(owned, known, base_at)

    def _read_shaped(self, memory: ShapedMemory, address: Any) -> z3.BitVecRef:
        at = self._bv(address, ADDRESS_WIDTH)
        c = self._c(address)
        below = result = self.read64(memory.memory, at)
        for s in reversed(memory.shapes):
            if c is not None and not s.start <= c < s.end:
                continue
            n = len(s.keep)
            if n & (n - 1) or len(s.fixed) != n:
                raise BackendError("a shape's entries are a power of two of words, each with its keep and fixed bits")
            if c is not None:  # a known word of the entry: its masks are known
                k = (c - s.start) // 8 % n
                fixed_bits = z3.BitVecVal(s.fixed[k], WORD_WIDTH)
                return self.bor(self.band(below, z3.BitVecVal(s.keep[k], WORD_WIDTH)), fixed_bits) if s.keep[k] \
                    else fixed_bits
            index = z3.Extract(log2(n) + 2, 3, at - s.start) if n > 1 else None
            keep = fixed = None
            for k in range(n):  # a choice among n constants by the word's index in its entry
                kk, kf = z3.BitVecVal(s.keep[k], WORD_WIDTH), z3.BitVecVal(s.fixed[k], WORD_WIDTH)
                keep = kk if keep is None else z3.If(index == k, kk, keep)
                fixed = kf if fixed is None else z3.If(index == k, kf, fixed)
            shaped = fixed if not any(s.keep) else (below & keep) | fixed
            result = z3.If(z3.And(z3.UGE(at, s.start), z3.ULT(at, s.end)), shaped, result)
        return result

    def write64(self, memory: Any, address: Any, value: Any) -> Any:
        """An array memory gets a Store; any other memory (function, overlay, written) a :class:`StoredWord`."""
        if isinstance(memory, z3.ArrayRef):
            return z3.Store(memory, self._bv(address, ADDRESS_WIDTH), self._bv(value, WORD_WIDTH))
        return StoredWord(memory, self._bv(address, ADDRESS_WIDTH), self._bv(value, WORD_WIDTH))

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
Z3_TERMS = Z3Backend(fold=False)
BACKENDS = (INT, Z3)
