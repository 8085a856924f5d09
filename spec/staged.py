"""The staged engine: the one semantics traced into straight-line Python per path, compiled once, cached.

A third backend, :class:`Tracer`, runs a backend-generic function (``translation.translate``) on
*shadowed* values: each value is a Python constant or a :class:`Sym`, a name in the code being generated
together with the value the Python-int backend gives on the input being traced (its shadow). Every
operation emits one line of Python equal to what ``INT`` computes; operations on constants fold.

Where the semantics asks a question about a value (``known_true``, ``known_false``, ``constant``: how
``INT`` decides a walk's loop bounds, its branches and its early exits) or marks one worth specialising
on (``speculate``: the DTE, DEV_TAB_BAR), the tracer answers with the shadow and records a *guard*. A
trace is therefore the ``INT`` run of one path: its decisions as guards, its arithmetic as code. Facts a
guard establishes (an ``and`` that held, a field equal to a value) fold later code, and code no output or
guard needs is dropped.

Traces of one static configuration (choices, register context, the request's flags, which cached parts
are given) share their code up to the first guard on which they differ, so they form a tree; the tree is
compiled into functions whose guards branch to the paths seen so far and return a :class:`Miss` on a
new one; where a guard has met several values (several DTEs, say) each value's subtree is a function of its
own behind a dictionary, so adding a path recompiles only the code it goes through. The reference answers
a miss; an input that misses at the same place ``HOT`` times is traced: its path is added, recompiled, and
the compiled answer checked against the trace's own ``INT`` answer. A configuration whose traces do not
pay back (``PAYBACK``) traces less eagerly. Configurations past the size limits run the reference.

``AMDVI_ENGINE=reference`` (or :func:`use_reference`) runs the reference everywhere, for differential
tests and debugging. Nothing here restates a rule of 48882: the rules are in ``translation`` and below.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import threading
from typing import Any, Callable, Iterator, Mapping

from .bitvec import INT, mask

HOT = 4  # a path is traced when an input misses at the same place (guard and value) this many times
# answers a configuration's compiled code must give between two traces for tracing to stay that eager: a
# trace costs about as much as 60 reference runs, so where paths are met a few times each and never again
# (a differential campaign's random DTEs) the configuration waits for hotter ones, doubling the misses a
# trace needs, and halving them again once traces pay. At most HOT x MAX_BACKOFF = 64 misses, about what
# the trace costs: a path that turns out hot then costs at most twice what tracing it at once would have
PAYBACK = 64
MAX_BACKOFF = 16
MAX_PATHS = 512  # paths per configuration before its misses run the reference
MAX_FUNCTIONS = 4096  # static configurations kept before the cache starts afresh
MAX_DEPTH = 60  # nesting of the generated code (Python allows about 100)
MAX_LINES = 100_000  # lines generated for one configuration before it stops tracing (compile time)
DISPATCH = 2  # a guard with this many values branches through a dictionary to separately compiled code
_ENABLED = os.environ.get("AMDVI_ENGINE", "staged") != "reference"


class Miss:
    """A compiled function's answer for an input whose path it has not seen: where it left the tree (the
    guard's site and the value it found), so that only paths met again get traced."""

    __slots__ = ("site", "value")

    def __init__(self, site: int, value: Any):
        self.site, self.value = site, value


MISS = Miss(-1, None)  # the answer of a function with no path yet


class NotStaged(Exception):
    """The traced function used a value in a way the tracer cannot turn into code."""


class StagedMismatch(AssertionError):
    """A compiled path gave another answer than the trace's own Python-int run (a tracer bug)."""


def enabled() -> bool:
    return _ENABLED


def use(staged: bool) -> None:
    """Run translations on the staged engine (True) or on the reference (False)."""
    global _ENABLED
    _ENABLED = staged


@contextlib.contextmanager
def use_reference() -> Iterator[None]:
    """The reference engine within the block."""
    before = _ENABLED
    use(False)
    try:
        yield
    finally:
        use(before)


# -- values ------------------------------------------------------------------------------------------

BOOL, INTEGER, ANY = "bool", "int", "any"  # what a value is known to be: a Python bool, an int, either


class Sym:
    """A value the generated code computes: its local name and the shadow (the traced input's value)."""

    __slots__ = ("name", "shadow", "kind", "op", "args", "params", "tz", "bits", "parts", "users", "dirty", "resolved")

    def __init__(self, name: str, shadow: Any, kind: str, op: str = "", args: tuple = (), params: tuple = (),
                 tz: int = 0, parts: tuple = (), bits: int | None = None):
        self.name, self.shadow, self.kind = name, shadow, kind
        self.op, self.args, self.params = op, args, params
        self.tz = tz  # low bits known to be zero (reads at such addresses skip the alignment check)
        self.bits = bits  # a bound on the bit length of a non-negative value (None: not known), so masks can go
        self.parts = parts  # a concatenation: ((part, lo, width), ...), so a field read stays in its word
        self.users: list[Sym] = []  # the values computed from this one (a fact about it may fold them)
        self.dirty, self.resolved = False, self

    def __bool__(self) -> bool:
        raise NotStaged(f"{self.name} used as a Python truth value")

    def __repr__(self) -> str:
        return f"Sym({self.name}={self.shadow!r})"


class MemoryInput:
    """The memory a traced function reads (only through ``read64``)."""

    def __init__(self, shadow: Mapping[int, int]):
        self.shadow = shadow


def _kind_of(x: Any) -> str:
    if isinstance(x, Sym):
        return x.kind
    return BOOL if isinstance(x, bool) else INTEGER if isinstance(x, int) else ANY


def _trailing_zeros(v: int) -> int:
    return 64 if v == 0 else (v & -v).bit_length() - 1


def _tz(x: Any) -> int:
    if isinstance(x, Sym):
        return x.tz
    return _trailing_zeros(x) if isinstance(x, int) and not isinstance(x, bool) else 0


def _bits(x: Any) -> int | None:
    if isinstance(x, Sym):
        return x.bits
    if isinstance(x, bool):
        return 1
    return x.bit_length() if isinstance(x, int) and x >= 0 else None


def _is(x: Any, value: int) -> bool:
    """``x`` is the constant ``value`` (not a Sym, not a bool)."""
    return type(x) is int and x == value


def _unaligned(address: int) -> int:
    return INT.read64({}, address)  # raises the reference's error


# -- the tracing backend ---------------------------------------------------------------------------------


class Tracer:
    """The staging backend: the operations of ``bitvec.IntBackend``, emitted as code over shadowed values."""

    name = "staged"
    symbolic = False
    staged = True

    def __init__(self, namer: Callable[[Any], str]):
        self._namer = namer  # a global name for an object the code refers to (a class, a function)
        self.items: list[tuple] = []  # ("let", name, expr, uses) | ("guard", name, mode, value)
        self._count = 0
        self._facts: dict[str, Any] = {}

    # -- inputs and emission ------------------------------------------------------------------------
    def input(self, name: str, shadow: Any, kind: str, bits: int | None = None) -> Sym:
        return Sym(name, shadow, kind, bits=bits)

    def _r(self, x: Any) -> Any:
        """``x`` with what the guards so far establish: a constant, a simpler value, or itself."""
        if not isinstance(x, Sym) or not x.dirty:
            return x if not isinstance(x, Sym) else x.resolved
        x.dirty = False
        if x.name in self._facts:
            out = self._facts[x.name]
        elif x.resolved is not x:  # simplified before: continue from there
            out = self._r(x.resolved)
        else:
            out = self._refold(x) if x.args else x
        x.resolved = out
        return out

    def _refold(self, x: Sym) -> Any:
        args = [self._r(a) for a in x.args]
        if x.op == "ite":
            c, a, b = args
            if not isinstance(c, Sym):
                return a if c else b
            return x
        if x.op in ("all_of", "any_of"):
            absorbing = x.op == "any_of"
            rest = []
            for a in args:
                if isinstance(a, Sym):
                    rest.append(a)
                elif bool(a) is absorbing:
                    return absorbing
            if not rest:
                return not absorbing
            return rest[0] if len(rest) == 1 and rest[0].kind == BOOL else x
        if x.op in _NOT_REFOLDED or all(a is b for a, b in zip(args, x.args)):
            return x
        if x.op == "call":
            return self.call(x.params[0], x.kind, *args)
        return getattr(self, x.op)(*args, *x.params)  # the operation again, on what is now known

    def _ref(self, x: Any) -> str:
        """How generated code refers to a resolved value."""
        if isinstance(x, Sym):
            return x.name
        if isinstance(x, (bool, int, str)) or x is None:
            return repr(x)
        raise NotStaged(f"cannot refer to a {type(x).__name__} in generated code")

    def _emit(self, expr: str, shadow: Any, kind: str, op: str, args: tuple, params: tuple = (), tz: int = 0,
              parts: tuple = (), bits: int | None = None) -> Sym:
        self._count += 1
        name = f"t{self._count}"
        uses = tuple(dict.fromkeys(a.name for a in args if isinstance(a, Sym)))
        self.items.append(("let", name, expr, uses))
        out = Sym(name, shadow, kind, op, args, params, tz, parts, bits)
        for a in args:
            if isinstance(a, Sym):
                a.users.append(out)
        return out

    def _op(self, op: str, template: str, args: tuple, params: tuple = (), kind: str = INTEGER, tz: int = 0,
            bits: int | None = None) -> Any:
        """``INT.op(*args, *params)``: folded when every argument is known, else one emitted line."""
        args = tuple(self._r(a) for a in args)
        if not any(isinstance(a, Sym) for a in args):
            return getattr(INT, op)(*args, *params)
        shadow = getattr(INT, op)(*[_shadow(a) for a in args], *params)
        expr = template.format(*[self._ref(a) for a in args])
        return self._emit(expr, shadow, kind, op, args, params, tz, bits=1 if kind == BOOL else bits)

    # -- guards ------------------------------------------------------------------------------------------
    def _decide_truth(self, c: Sym) -> bool:
        value = bool(c.shadow)
        g, v = c, value
        while g.op == "lnot" and isinstance(g.args[0], Sym) and g.args[0].kind == BOOL:
            g, v = g.args[0], not v  # test the negated value itself
        self.items.append(("guard", g.name, "truth", v))
        if c.kind == BOOL:
            self._learn(c, value)
        return value

    def _decide_value(self, x: Sym) -> Any:
        if x.kind == ANY or isinstance(x.shadow, bool) or not isinstance(x.shadow, int):
            raise NotStaged(f"cannot specialise on {x!r}")
        self.items.append(("guard", x.name, "value", x.shadow))
        self._learn(x, x.shadow)
        return x.shadow

    def _learn(self, x: Sym, value: Any) -> None:
        """Record that ``x`` is ``value`` on this path, and what follows for the values it is made of."""
        self._facts[x.name] = value
        stack = [x]  # what is computed from x may fold now
        while stack:
            for u in stack.pop().users:
                if not u.dirty:
                    u.dirty = True
                    stack.append(u)
        x.dirty = True
        if x.op == "all_of" and value is True or x.op == "any_of" and value is False:
            for a in x.args:
                if isinstance(a, Sym) and a.kind == BOOL:
                    self._learn(a, value)
        elif x.op == "lnot" and isinstance(x.args[0], Sym) and x.args[0].kind == BOOL:
            self._learn(x.args[0], not value)
        elif x.op in ("eq", "ne") and value is (x.op == "eq"):
            a, b = x.args
            if isinstance(a, Sym) and a.kind == INTEGER and type(b) is int:
                self._learn(a, b)
            elif isinstance(b, Sym) and b.kind == INTEGER and type(a) is int:
                self._learn(b, a)

    def known_false(self, c: Any) -> bool:
        c = self._r(c)
        return (not self._decide_truth(c)) if isinstance(c, Sym) else (not c)

    def known_true(self, c: Any) -> bool:
        c = self._r(c)
        return self._decide_truth(c) if isinstance(c, Sym) else bool(c)

    def constant(self, x: Any) -> Any:
        x = self._r(x)
        return self._decide_value(x) if isinstance(x, Sym) else x

    def speculate(self, x: Any) -> Any:
        """A value worth specialising on: guarded equal to the traced one."""
        return self.constant(x)

    def call(self, fn: Callable[..., Any], kind: str, *args: Any) -> Any:
        """``fn(*args)`` for a pure, memoised helper of the semantics (run, not traced)."""
        args = tuple(self._r(a) for a in args)
        if not any(isinstance(a, Sym) for a in args):
            return fn(*args)
        expr = f"{self._namer(fn)}({', '.join(self._ref(a) for a in args)})"
        return self._emit(expr, fn(*[_shadow(a) for a in args]), kind, "call", args, (fn,))

    # -- values ------------------------------------------------------------------------------------------
    def const(self, value: int, width: int) -> int:
        return value & mask(width)

    def true(self) -> bool:
        return True

    def false(self) -> bool:
        return False

    # -- bit ranges --------------------------------------------------------------------------------------
    def extract(self, x: Any, hi: int, lo: int) -> Any:
        x = self._r(x)
        if isinstance(x, Sym) and x.parts:
            for part, part_lo, width in x.parts:
                if part_lo <= lo and hi < part_lo + width:
                    return self.extract(part, hi - part_lo, lo - part_lo)
        m, width = mask(hi - lo + 1), hi - lo + 1
        known = _bits(x)
        if known is not None and known <= hi + 1:  # nothing above hi to clear
            if lo == 0:
                return x
            template = "({0} >> %d)" % lo
        else:
            template = "({0} & %d)" % m if lo == 0 else "(({0} >> %d) & %d)" % (lo, m)
        return self._op("extract", template, (x,), (hi, lo), tz=max(_tz(x) - lo, 0), bits=width)

    def concat(self, *parts: tuple[Any, int]) -> Any:
        values = [self._r(v) for v, _ in parts]
        if not any(isinstance(v, Sym) for v in values):
            return INT.concat(*[(v, w) for v, (_, w) in zip(values, parts)])
        terms, layout, lo = [], [], 0
        for v, (_, width) in reversed(list(zip(values, parts))):
            terms.append(f"(({self._ref(v)} & {mask(width)}) << {lo})" if lo else f"({self._ref(v)} & {mask(width)})")
            layout.append((v, lo, width))
            lo += width
        shadow = INT.concat(*[(_shadow(v), w) for v, (_, w) in zip(values, parts)])
        syms = tuple(v for v in values if isinstance(v, Sym))
        out = self._emit("(" + " | ".join(terms) + ")", shadow, INTEGER, "concat_", syms, bits=lo)
        out.parts = tuple(layout)
        return out

    def zext(self, x: Any, width: int) -> Any:
        return x

    def deposit(self, word: Any, hi: int, lo: int, value: Any, width: int) -> Any:
        field_mask = mask(hi - lo + 1) << lo
        keep = ~field_mask & mask(width)
        word, value = self._r(word), self._r(value)
        if not isinstance(word, Sym) and not isinstance(value, Sym):
            return INT.deposit(word, hi, lo, value, width)
        if not isinstance(word, Sym) and word & keep == 0:
            template = "(({1} << %d) & %d)" % (lo, field_mask)
        else:
            template = "(({0} & %d) | (({1} << %d) & %d))" % (keep, lo, field_mask)
        shadow = INT.deposit(_shadow(word), hi, lo, _shadow(value), width)
        return self._emit(template.format(self._ref(word), self._ref(value)), shadow, INTEGER, "deposit_",
                          (word, value), bits=width)

    # -- arithmetic and logic ----------------------------------------------------------------------------
    def add(self, a: Any, b: Any, width: int) -> Any:
        a, b = self._r(a), self._r(b)
        ba, bb = _bits(a), _bits(b)
        fits = ba is not None and bb is not None and max(ba, bb) + 1 <= width
        if fits and (_is(a, 0) or _is(b, 0)):
            return b if _is(a, 0) else a
        template = "({0} + {1})" if fits else "(({0} + {1}) & %d)" % mask(width)
        return self._op("add", template, (a, b), (width,), tz=min(_tz(a), _tz(b)),
                        bits=max(ba, bb) + 1 if fits else width)

    def sub(self, a: Any, b: Any, width: int) -> Any:
        return self._op("sub", "(({0} - {1}) & %d)" % mask(width), (a, b), (width,), tz=min(_tz(a), _tz(b)),
                        bits=width)

    def shl(self, a: Any, amount: Any, width: int) -> Any:
        a, amount = self._r(a), self._r(amount)
        if isinstance(amount, Sym):
            return self._op("shl", "((({0} << {1}) & %d) if {1} < %d else 0)" % (mask(width), width), (a, amount),
                            (width,), bits=width)
        if amount >= width:
            return 0
        known = _bits(a)
        if known is not None and known + amount <= width:
            return self._op("shl", "({0} << %d)" % amount if amount else "{0}", (a, amount), (width,),
                            tz=min(_tz(a) + amount, 64), bits=known + amount)
        return self._op("shl", "(({0} << %d) & %d)" % (amount, mask(width)), (a, amount), (width,),
                        tz=min(_tz(a) + amount, 64), bits=width)

    def lshr(self, a: Any, amount: Any, width: int) -> Any:
        a, amount = self._r(a), self._r(amount)
        if isinstance(amount, Sym):
            return self._op("lshr", "(({0} >> {1}) if {1} < %d else 0)" % width, (a, amount), (width,),
                            bits=_bits(a))
        if amount >= width:
            return 0
        known = _bits(a)
        return self._op("lshr", "({0} >> %d)" % amount, (a, amount), (width,),
                        bits=None if known is None else max(known - amount, 0))

    def band(self, a: Any, b: Any) -> Any:
        a, b = self._r(a), self._r(b)
        if (_is(a, 0) or _is(b, 0)) and (isinstance(a, Sym) or isinstance(b, Sym)):
            return 0
        known = [k for k in (_bits(a), _bits(b)) if k is not None]
        return self._op("band", "({0} & {1})", (a, b), kind=INTEGER, tz=max(_tz(a), _tz(b)),
                        bits=min(known) if known else None)

    def bor(self, a: Any, b: Any) -> Any:
        a, b = self._r(a), self._r(b)
        ba, bb = _bits(a), _bits(b)
        if (_is(a, 0) or _is(b, 0)) and (isinstance(a, Sym) or isinstance(b, Sym)):
            return b if _is(a, 0) else a
        return self._op("bor", "({0} | {1})", (a, b), tz=min(_tz(a), _tz(b)),
                        bits=None if ba is None or bb is None else max(ba, bb))

    def bxor(self, a: Any, b: Any) -> Any:
        ba, bb = _bits(self._r(a)), _bits(self._r(b))
        return self._op("bxor", "({0} ^ {1})", (a, b), tz=min(_tz(a), _tz(b)),
                        bits=None if ba is None or bb is None else max(ba, bb))

    def bnot(self, a: Any, width: int) -> Any:
        return self._op("bnot", "(~{0} & %d)" % mask(width), (a,), (width,), bits=width)

    # -- comparisons -------------------------------------------------------------------------------------
    def eq(self, a: Any, b: Any) -> Any:
        return self._op("eq", "({0} == {1})", (a, b), kind=BOOL)

    def ne(self, a: Any, b: Any) -> Any:
        return self._op("ne", "({0} != {1})", (a, b), kind=BOOL)

    def ult(self, a: Any, b: Any) -> Any:
        return self._op("ult", "({0} < {1})", (a, b), kind=BOOL)

    def ule(self, a: Any, b: Any) -> Any:
        return self._op("ule", "({0} <= {1})", (a, b), kind=BOOL)

    def ugt(self, a: Any, b: Any) -> Any:
        return self._op("ugt", "({0} > {1})", (a, b), kind=BOOL)

    def uge(self, a: Any, b: Any) -> Any:
        return self._op("uge", "({0} >= {1})", (a, b), kind=BOOL)

    # -- booleans ----------------------------------------------------------------------------------------
    def _connective(self, op: str, conds: tuple, absorbing: bool) -> Any:
        rest = []
        for c in conds:
            c = self._r(c)
            if isinstance(c, Sym):
                if all(c is not r for r in rest):
                    rest.append(c)
            elif bool(c) is absorbing:
                return absorbing
        if not rest:
            return not absorbing
        if len(rest) == 1 and rest[0].kind == BOOL:
            return rest[0]
        joined = (" or " if absorbing else " and ").join(c.name for c in rest)
        expr = f"({joined})" if all(c.kind == BOOL for c in rest) else f"bool({joined})"
        shadow = getattr(INT, op)(*[c.shadow for c in rest])
        return self._emit(expr, shadow, BOOL, op, tuple(rest))

    def all_of(self, *conds: Any) -> Any:
        return self._connective("all_of", conds, False)

    def any_of(self, *conds: Any) -> Any:
        return self._connective("any_of", conds, True)

    def lnot(self, c: Any) -> Any:
        c = self._r(c)
        if isinstance(c, Sym) and c.op == "lnot" and isinstance(c.args[0], Sym) and c.args[0].kind == BOOL:
            return self._r(c.args[0])
        return self._op("lnot", "(not {0})", (c,), kind=BOOL)

    def implies(self, a: Any, b: Any) -> Any:
        kind = BOOL if _kind_of(self._r(b)) == BOOL else ANY
        return self._op("implies", "((not {0}) or {1})", (a, b), kind=kind)

    def ite(self, c: Any, a: Any, b: Any, width: int | None = None) -> Any:
        c = self._r(c)
        if not isinstance(c, Sym):
            return a if c else b
        if a is b:
            return a
        ra, rb = self._r(a), self._r(b)
        if not all(isinstance(v, (Sym, int)) for v in (ra, rb)):  # records, memories: decide the condition
            return a if self._decide_truth(c) else b
        ka, kb = _kind_of(ra), _kind_of(rb)
        kind = ka if ka == kb else ANY
        if ra is rb:
            return ra
        ba, bb = _bits(ra), _bits(rb)
        return self._emit(f"({self._ref(ra)} if {c.name} else {self._ref(rb)})", _shadow(ra) if c.shadow else _shadow(rb),
                          kind, "ite", (c, ra, rb), tz=min(_tz(ra), _tz(rb)),
                          bits=None if ba is None or bb is None else max(ba, bb))

    def bit(self, c: Any, width: int = 1) -> Any:
        return self._op("bit", "(1 if {0} else 0)", (c,), (width,), bits=1)

    def trailing_ones(self, x: Any, width: int) -> Any:
        return self._op("trailing_ones", "min((({0} ^ ({0} + 1)).bit_length() - 1), %d)" % width, (x,), (width,),
                        bits=width.bit_length())

    # -- memory ------------------------------------------------------------------------------------------
    def read64(self, memory: Any, address: Any) -> Any:
        if not isinstance(memory, MemoryInput):
            raise NotStaged("reads only the traced memory")
        address = self._r(address)
        shadow = INT.read64(memory.shadow, _shadow(address))
        if isinstance(address, Sym) and address.tz < 3:
            expr = f"(_get({address.name}, 0) if not {address.name} & 7 else _unaligned({address.name}))"
        else:
            expr = f"_get({self._ref(address)}, 0)"
        out = self._emit(expr, shadow, INTEGER, "read64", (address,) if isinstance(address, Sym) else ())
        # every read stays, in order, even when its value is not used: callers that watch the reads
        # (properties.read_memo) must see those of the reference
        self.items[-1] = self.items[-1] + (True,)
        return out

    def empty_memory(self) -> Any:
        raise NotStaged("memories are not staged")

    def write64(self, memory: Any, address: Any, value: Any) -> Any:
        raise NotStaged("writes are not staged")

    def value(self, x: Any) -> Any:
        raise NotStaged("value() is not staged")


def _shadow(x: Any) -> Any:
    return x.shadow if isinstance(x, Sym) else x


_NOT_REFOLDED = ("read64", "concat_", "deposit_")  # a side input (memory) or arguments in another order


# -- the generated code: a tree of traced paths ------------------------------------------------------------


class _Let:
    __slots__ = ("name", "expr", "uses", "needed")

    def __init__(self, name: str, expr: str, uses: tuple[str, ...], needed: bool = False):
        self.name, self.expr, self.uses, self.needed = name, expr, uses, needed


class _Node:
    """Code up to a guard (whose branches continue it) or up to the return."""

    __slots__ = ("lets", "guard", "branches", "ret", "ret_uses", "site", "stale", "unit", "unit_params", "free")

    def __init__(self, site: int) -> None:
        self.site = site  # which guard a miss left from (stable across recompiles)
        self.stale = True  # a path was added through this node since its code was generated
        self.unit: Callable[..., Any] | None = None  # compiled on its own (a branch of a dispatch)
        self.unit_params: tuple[str, ...] = ()
        self.free: frozenset[str] = frozenset()  # names the subtree uses and does not define
        self.lets: list[_Let] = []
        self.guard: tuple[str, str] | None = None
        self.branches: dict[Any, _Node] = {}
        self.ret: str | None = None
        self.ret_uses: tuple[str, ...] = ()


def _test(name: str, mode: str, value: Any) -> str:
    if mode == "truth":
        return name if value else f"not {name}"
    return f"{name} == {value!r}"


class StagedFunction:
    """One static configuration of a traced function: its tree of paths and the compiled form."""

    def __init__(self, label: str, params: tuple[str, ...]):
        self.label, self.params = label, params
        self.root: _Node | None = None
        self.paths = 0
        self.full = False  # past the limits: misses run the reference
        self.globals: dict[str, Any] = {"Miss": Miss, "_unaligned": _unaligned, "_record": _record}
        self.sites = 0
        self.lines = 0  # generated so far (a bound on compile time)
        self.heat: dict[tuple[int, Any], int] = {}  # misses per (site, value) not traced yet
        self.answered = 0  # calls the compiled code answered
        self.answered_at_trace = 0  # ... when the latest path was traced
        self.backoff = 1  # a trace needs HOT x backoff misses at one place
        self._names: dict[int, str] = {}
        self.compiled: Callable[..., Any] = lambda *args: MISS
        self.source = ""

    def name_of(self, obj: Any) -> str:
        """The generated code's global name for ``obj`` (stable across traces)."""
        name = self._names.get(id(obj))
        if name is None:
            name = self._names[id(obj)] = f"_g{len(self._names)}"
            self.globals[name] = obj
        return name

    def add(self, items: list[tuple], ret: str, ret_uses: tuple[str, ...]) -> None:
        """Add one traced path (its items and return expression)."""
        if self.root is None:
            self.root = self._node()
        node, path, i = self.root, [], 0
        while True:
            node.stale = True
            for let in node.lets:  # the code before a guard is the same on every path that reaches it
                kind, name, expr = items[i][:3]
                if kind != "let" or name != let.name or expr != let.expr:
                    raise NotStaged(f"{self.label}: traces differ before a guard ({name} = {expr} vs {let.expr})")
                path.append(let)
                i += 1
            if node.guard is None and node.ret is not None:
                raise NotStaged(f"{self.label}: a compiled path missed")
            if node.guard is None:  # a fresh node: fill it from the trace
                while i < len(items) and items[i][0] == "let":
                    let = _Let(*items[i][1:])
                    node.lets.append(let)
                    path.append(let)
                    i += 1
                if i == len(items):
                    node.ret, node.ret_uses = ret, ret_uses
                    break
            _, gname, mode, value = items[i][:4]
            if node.guard is None:
                node.guard = (gname, mode)
            elif node.guard != (gname, mode):
                raise NotStaged(f"{self.label}: traces differ at a guard ({gname} vs {node.guard[0]})")
            path.append(("guard", gname))
            i += 1
            if value not in node.branches:
                node.branches[value] = self._node()
            node = node.branches[value]
        live = set(ret_uses)
        for item in reversed(path):
            if isinstance(item, tuple):
                live.add(item[1])
            elif item.name in live or item.needed:
                item.needed = True
                live.discard(item.name)
                live.update(item.uses)
        self.paths += 1

    def _node(self) -> _Node:
        self.sites += 1
        return _Node(self.sites)

    def compile(self) -> None:
        """Generate and compile the tree's code: one function, except that the branches of a guard with
        many values (DTEs, mostly) are functions of their own behind a dictionary, compiled again only
        when a path is added below them."""
        self._sources: list[str] = []
        self.compiled = self._unit(self.root, self.params, prelude="    _get = _memory.get")
        self.source = "\n\n".join(self._sources)
        self.lines += sum(s.count("\n") + 1 for s in self._sources)
        if self.lines > MAX_LINES:
            self.full = True  # compiled enough for one configuration: what is not here runs the reference

    def _unit(self, node: _Node, params: tuple[str, ...], prelude: str = "") -> Callable[..., Any]:
        if not node.stale and node.unit is not None and node.unit_params == params:
            return node.unit
        lines = [f"def _unit({', '.join(params)}):"] + ([prelude] if prelude else [])
        depth = self._emit(node, lines, 1, set(params))
        if depth > MAX_DEPTH:
            raise NotStaged(f"{self.label}: generated code nested {depth} deep")
        namespace = self.globals  # shared: dispatch tables added later are seen by compiled units
        source = "\n".join(lines)
        exec(compile(source, f"<staged {self.label}>", "exec"), namespace)  # noqa: S102 - our own code
        node.unit, node.unit_params = namespace.pop("_unit"), params
        self._sources.append(source)
        return node.unit

    def _free(self, node: _Node) -> frozenset[str]:
        """The names ``node``'s subtree reads that it does not define (computed when it is stale)."""
        if not node.stale and node.unit is not None:
            return node.free
        defined, used = set(), set()
        for let in node.lets:
            if let.needed:
                used.update(u for u in let.uses if u not in defined)
                defined.add(let.name)
        if node.guard is None:
            used.update(u for u in node.ret_uses if u not in defined)
        else:
            if node.guard[0] not in defined:
                used.add(node.guard[0])
            for child in node.branches.values():
                used.update(n for n in self._free(child) if n not in defined)
        node.free = frozenset(used)
        return node.free

    def _emit(self, node: _Node, out: list[str], indent: int, defined: set[str]) -> int:
        pad = "    " * indent
        node.stale = False
        for let in node.lets:
            if let.needed:
                out.append(f"{pad}{let.name} = {let.expr}")
                defined = defined | {let.name}
        if node.guard is None:
            out.append(f"{pad}return {node.ret}")
            return indent
        name, mode = node.guard
        branches = list(node.branches.items())
        if mode == "value" and len(branches) >= DISPATCH:
            params = ("_get",) + tuple(sorted(set().union(*(self._free(c) for _, c in branches)) & defined - {"_get"}))
            table = self.globals.setdefault(f"_d{node.site}", {})
            for value, child in branches:
                table[value] = self._unit(child, params)
            out.append(f"{pad}_f = _d{node.site}.get({name})")
            out.append(f"{pad}if _f is None:")
            out.append(f"{pad}    return Miss({node.site}, {name})")
            out.append(f"{pad}return _f({', '.join(params)})")
            return indent
        depth = indent
        for value, child in branches[1:]:
            out.append(f"{pad}if {_test(name, mode, value)}:")
            depth = max(depth, self._emit(child, out, indent + 1, defined))
        value, first = branches[0]
        out.append(f"{pad}if not ({_test(name, mode, value)}):")
        out.append(f"{pad}    return Miss({node.site}, {name if mode == 'value' else 'None'})")
        return max(depth, self._emit(first, out, indent, defined))


def result_code(tracer: Tracer, fn: StagedFunction, value: Any, uses: set[str]) -> str:
    """A Python expression building ``value`` (records, tuples, bit-vectors) from the generated locals."""
    value = tracer._r(value)
    if isinstance(value, Sym):
        uses.add(value.name)
        return value.name
    if isinstance(value, (bool, int, str)) or value is None:
        return repr(value)
    if isinstance(value, tuple):
        return "(" + "".join(result_code(tracer, fn, v, uses) + ", " for v in value) + ")"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        fields = dataclasses.fields(value)
        args = [result_code(tracer, fn, getattr(value, f.name), uses) for f in fields]
        if _plain_record(cls):  # a frozen dataclass's __init__ costs several times building its __dict__
            items = ", ".join(f"{f.name!r}: {a}" for f, a in zip(fields, args))
            return f"_record({fn.name_of(cls)}, {{{items}}})"
        return f"{fn.name_of(cls)}({', '.join(args)})"
    raise NotStaged(f"cannot build a {type(value).__name__} in generated code")


def _plain_record(cls: type) -> bool:
    """A dataclass whose instances are exactly their field values: every field set by ``__init__``, no
    ``__post_init__``, no slots."""
    return (all(f.init for f in dataclasses.fields(cls)) and not hasattr(cls, "__post_init__")
            and not hasattr(cls, "__slots__"))


def _record(cls: type, values: dict[str, Any]) -> Any:
    """An instance of a :func:`_plain_record` class with these field values (what ``__init__`` makes)."""
    out = object.__new__(cls)
    object.__setattr__(out, "__dict__", values)
    return out


def shadow_of(value: Any) -> Any:
    """The Python-int value a traced result stands for (what the reference gives on the traced input)."""
    if isinstance(value, Sym):
        return value.shadow
    if isinstance(value, tuple):
        return tuple(shadow_of(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: shadow_of(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    return value


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types, through records and tuples (``True == 1`` is not enough here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return a == b


class Stager:
    """Runs ``traced(tracer, *inputs)`` through compiled paths per static key, tracing on a miss."""

    def __init__(self, label: str, traced: Callable[..., Any], params: tuple[str, ...], kinds: tuple[str, ...]):
        self.label, self.traced, self.params, self.kinds = label, traced, params, kinds
        self.functions: dict[Any, StagedFunction] = {}
        self.check = True  # compare each new path's compiled answer with the trace's own INT answer
        self._lock = threading.Lock()
        self.traces = 0

    def reset(self) -> None:
        self.functions.clear()

    def run(self, key: Any, static: Any, memory: Mapping[int, int], inputs: tuple, reference: Callable[[], Any]) -> Any:
        fn = self.functions.get(key)
        if fn is None:
            with self._lock:
                fn = self._function(key, static)
        out = fn.compiled(memory, *inputs)
        if out.__class__ is not Miss:
            fn.answered += 1
            return out
        if fn.full:
            return reference()
        where = (out.site, out.value)
        seen = fn.heat.get(where, 0) + 1
        if seen >= HOT * fn.backoff and fn.paths:  # a trace is due: did the latest one pay back?
            if fn.answered - fn.answered_at_trace < PAYBACK:
                fn.backoff = min(2 * fn.backoff, MAX_BACKOFF)
            else:
                fn.backoff = max(fn.backoff // 2, 1)
        if seen < HOT * fn.backoff:  # met once: the reference answers; traced if it comes back
            if len(fn.heat) > 1 << 14:
                fn.heat.clear()
            fn.heat[where] = seen
            return reference()
        fn.heat.pop(where, None)
        fn.answered_at_trace = fn.answered
        with self._lock:
            return self._miss(fn, static, memory, inputs, reference)

    def _function(self, key: Any, static: Any) -> StagedFunction:
        fn = self.functions.get(key)
        if fn is None:
            if len(self.functions) >= MAX_FUNCTIONS:
                self.functions.clear()
            fn = self.functions[key] = StagedFunction(f"{self.label}#{len(self.functions)}", ("_memory",) + self.params)
            fn.static = static  # keeps alive what the key names by identity
        return fn

    def _miss(self, fn: StagedFunction, static: Any, memory: Mapping[int, int], inputs: tuple,
              reference: Callable[[], Any]) -> Any:
        if fn.full:
            return reference()
        tracer = Tracer(fn.name_of)
        syms = tuple(tracer.input(p, v, k, b) for p, v, (k, b) in zip(self.params, inputs, self.kinds))
        self.traces += 1
        collecting = gc.isenabled()
        gc.disable()  # a trace makes thousands of small linked objects: collections would only slow it
        try:
            result = self.traced(tracer, MemoryInput(memory), syms, static)
            uses: set[str] = set()
            ret = result_code(tracer, fn, result, uses)
            fn.add(tracer.items, ret, tuple(sorted(uses)))
            fn.compile()  # only the units the new path goes through
        except NotStaged:
            fn.full = True
            return reference()
        finally:
            if collecting:
                gc.enable()
        if fn.paths >= MAX_PATHS:
            fn.full = True
        out = fn.compiled(memory, *inputs)
        if out.__class__ is Miss or (self.check and not same(out, shadow_of(result))):
            raise StagedMismatch(f"{fn.label}: the compiled path disagrees with its trace\n{fn.source}")
        return out
