"""Frozen records of backend values: one if-then-else for a whole record, and mapping over its terms.

A record is a frozen dataclass whose fields hold backend values (bit-vectors, booleans, memories),
nested records, tuples of them, ``None`` or fixed Python data (names, slot numbers). :func:`merge`
chooses between two records of the same shape under a condition, field by field, so a caller writes
``merge(b, cond, then, otherwise)`` instead of one ``b.ite`` per field. Two things a record may
declare, as class attributes, for the merge:

* ``FIELD_WIDTHS``: the width of each bit-vector field that may hold a Python int (two different
  Python ints need a width to become a Z3 if-then-else; a Z3 term carries its own);
* ``GATED_TUPLES``: tuple fields of records that say whether they happened (a walk's steps,
  ``active``): merged, they keep the items of both sides, each active only where its side is taken.

On a concrete condition (always, on the ``INT`` backend) :func:`merge` returns ``then`` or
``otherwise`` itself.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Mapping

import z3

from .bitvec import BackendError, ChosenMemory, OverlayMemory, ShapedMemory, StoredWord

_MEMORIES = (StoredWord, OverlayMemory, ChosenMemory, ShapedMemory, z3.FuncDeclRef, z3.ArrayRef)


def remember_hash(record_type: type) -> type:
    """A frozen record type whose hash is computed once per instance: checkers key their memos by
    requests and cache slots millions of times in a search (a depth-4 bounded search spent a seventh of
    its time hashing them again). Equality and the hash's value are the dataclass's own."""
    computed = record_type.__hash__

    def __hash__(self: Any) -> int:
        try:
            return self.__dict__["_hash"]
        except KeyError:
            h = self.__dict__["_hash"] = computed(self)  # frozen: the fields, hence the hash, never change
            return h

    def __getstate__(self: Any) -> dict[str, Any]:  # another process computes its own (hash(None) differs)
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    record_type.__hash__ = __hash__  # type: ignore[method-assign]
    record_type.__getstate__ = __getstate__  # type: ignore[attr-defined]
    return record_type


_NOT_GIVEN = object()  # a field with a default factory whose argument was left out


def fast_init(record_type: type) -> type:
    """A plain frozen record type whose ``__init__`` stores the fields straight into the instance's
    ``__dict__``: a frozen dataclass's own sets each through ``object.__setattr__``, about twice as
    slow, and the models make several records per step (an access's result, the outputs, the state).
    The same parameters, defaults and default factories; instances stay frozen (assignment raises)."""
    fields = dataclasses.fields(record_type)
    if (_plain_fields(record_type) is None or not record_type.__dataclass_params__.frozen  # type: ignore[attr-defined]
            or any(not f.init or f.kw_only for f in fields)):
        raise TypeError(f"{record_type.__name__}: fast_init takes a plain frozen dataclass (every field set by "
                        "__init__, positional, no __post_init__, no slots)")
    env: dict[str, Any] = {"_NOT_GIVEN": _NOT_GIVEN}
    params, body = [], []
    for f in fields:
        n = f.name
        if f.default is not dataclasses.MISSING:
            env[f"_default_{n}"] = f.default
            params.append(f"{n}=_default_{n}")
            body.append(f"    d[{n!r}] = {n}")
        elif f.default_factory is not dataclasses.MISSING:
            env[f"_factory_{n}"] = f.default_factory
            params.append(f"{n}=_NOT_GIVEN")
            body.append(f"    d[{n!r}] = _factory_{n}() if {n} is _NOT_GIVEN else {n}")
        else:
            params.append(n)
            body.append(f"    d[{n!r}] = {n}")
    source = f"def __init__(self, {', '.join(params)}):\n    d = self.__dict__\n" + "\n".join(body) + "\n"
    exec(compile(source, f"<fast_init {record_type.__qualname__}>", "exec"), env)  # noqa: S102 - generated here
    init = env["__init__"]
    init.__qualname__ = f"{record_type.__qualname__}.__init__"
    init.__doc__ = record_type.__init__.__doc__
    record_type.__init__ = init  # type: ignore[misc]
    return record_type


def _plain_fields(cls: type) -> tuple[str, ...] | None:
    """The field names of a plain record type (every field set by ``__init__`` as it is given, no
    init-only variables, no ``__post_init__``, no slots: nothing for ``__init__`` to check or compute),
    or None."""
    fields = tuple(f.name for f in dataclasses.fields(cls))
    takes = tuple(inspect.signature(cls.__init__).parameters)[1:]  # what __init__ takes (init-only too)
    plain = takes == fields and not hasattr(cls, "__post_init__") and not hasattr(cls, "__slots__")
    return fields if plain else None


_PLAIN: dict[type, frozenset[str] | None] = {}  # record type -> its field names, if replace() may copy it


def replace(record: Any, **changes: Any) -> Any:
    """``dataclasses.replace(record, **changes)``, made directly for a plain record (every field set by
    ``__init__``, no init-only variables, no ``__post_init__``, no slots: there is nothing for
    ``__init__`` to check or compute), several times faster; the models replace a field of their state
    at every step. Only the fields are copied (not a remembered hash, :func:`remember_hash`)."""
    cls = record.__class__
    names = _PLAIN.get(cls, False)
    if names is False:
        fields = _plain_fields(cls)
        names = _PLAIN[cls] = None if fields is None else frozenset(fields)
    if names is None or not changes.keys() <= names:
        return dataclasses.replace(record, **changes)
    current = record.__dict__
    # the fields alone (a remembered hash, or anything else kept in __dict__, is not copied)
    values = current.copy() if len(current) == len(names) else {n: current[n] for n in names}
    values.update(changes)
    out = object.__new__(cls)
    object.__setattr__(out, "__dict__", values)
    return out


def field_widths(record_type: type) -> Mapping[str, int]:
    """The declared widths of ``record_type``'s bit-vector fields (those that may hold Python ints)."""
    return getattr(record_type, "FIELD_WIDTHS", {})


def gated_tuples(record_type: type) -> Mapping[str, str]:
    """``record_type``'s gated tuple fields: field name -> the items' "it happened" flag."""
    return getattr(record_type, "GATED_TUPLES", {})


def is_record(x: Any) -> bool:
    """``x`` is a record (a dataclass instance that is not a memory)."""
    return dataclasses.is_dataclass(x) and not isinstance(x, type) and not isinstance(x, _MEMORIES)


def merge(b: Any, cond: Any, then: Any, otherwise: Any, *, width: int | None = None) -> Any:
    """``then`` where ``cond`` holds, else ``otherwise``: records, tuples and values alike.

    Records must have the same type, tuples the same length (gated tuples excepted), fixed Python
    data and ``None`` must agree; ``width`` is the width of a bare value that may be a Python int.
    A dict memory (``INT``'s) can be merged only under a concrete condition.
    """
    if b.known_true(cond):
        return then
    if b.known_false(cond):
        return otherwise
    return _merge(b, cond, then, otherwise, width, type(then).__name__)


def _same(a: Any, c: Any) -> bool:
    if a is c:
        return True
    if isinstance(a, z3.AstRef) and isinstance(c, z3.AstRef):
        return a.eq(c)
    return type(a) is type(c) and isinstance(a, (int, str, dict)) and a == c


def _merge(b: Any, cond: Any, then: Any, otherwise: Any, width: int | None, where: str) -> Any:
    if _same(then, otherwise):
        return then
    if is_record(then) or is_record(otherwise):
        if type(then) is not type(otherwise):
            raise BackendError(f"{where}: cannot merge a {type(then).__name__} with a {type(otherwise).__name__}")
        widths, gated = field_widths(type(then)), gated_tuples(type(then))
        values = {}
        for f in dataclasses.fields(then):
            if not f.init:
                continue
            a, c = getattr(then, f.name), getattr(otherwise, f.name)
            if f.name in gated and not _same(a, c):
                values[f.name] = _gate(b, a, gated[f.name], cond) + _gate(b, c, gated[f.name], b.lnot(cond))
            else:
                values[f.name] = _merge(b, cond, a, c, widths.get(f.name), f"{where}.{f.name}")
        return dataclasses.replace(then, **values)
    if isinstance(then, tuple) or isinstance(otherwise, tuple):
        if not (isinstance(then, tuple) and isinstance(otherwise, tuple)) or len(then) != len(otherwise):
            raise BackendError(f"{where}: cannot merge tuples of different shapes")
        return tuple(_merge(b, cond, a, c, width, f"{where}[{i}]") for i, (a, c) in enumerate(zip(then, otherwise)))
    if isinstance(then, dict) or isinstance(otherwise, dict):
        raise BackendError(f"{where}: a dict memory cannot be merged under a symbolic condition "
                           "(make it a Z3 memory first: Z3.memory_from)")
    if then is None or otherwise is None or isinstance(then, str) or isinstance(otherwise, str):
        raise BackendError(f"{where}: {then!r} and {otherwise!r} differ and are not backend values")
    if width is None and _is_python_int(then) and _is_python_int(otherwise):
        raise BackendError(f"{where}: two different Python ints need a width (declare it in FIELD_WIDTHS)")
    return b.ite(cond, then, otherwise, width=width)


def _is_python_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _gate(b: Any, items: tuple[Any, ...], flag: str, cond: Any) -> tuple[Any, ...]:
    return tuple(dataclasses.replace(s, **{flag: b.all_of(cond, getattr(s, flag))}) for s in items)


def map_terms(record: Any, fn: Callable[[Any], Any]) -> Any:
    """``record`` with ``fn`` applied to every bit-vector or boolean Z3 term in it (nested records,
    tuples); Python values and memories are kept. E.g. ``fn`` = a model's evaluation gives the
    concrete record a symbolic one stands for."""
    if isinstance(record, _MEMORIES) or isinstance(record, dict):
        return record
    if is_record(record):
        return dataclasses.replace(record, **{f.name: map_terms(getattr(record, f.name), fn)
                                              for f in dataclasses.fields(record) if f.init})
    if isinstance(record, tuple):
        return tuple(map_terms(x, fn) for x in record)
    if isinstance(record, z3.ExprRef):
        return fn(record)
    return record


def concrete_value(term: Any) -> Any:
    """The Python int or bool a closed Z3 term simplifies to (an error if it does not)."""
    s = z3.simplify(term)
    if z3.is_bv_value(s):
        return s.as_long()
    if z3.is_true(s) or z3.is_false(s):
        return z3.is_true(s)
    raise BackendError(f"not a constant: {term}")


__all__ = ["merge", "map_terms", "concrete_value", "field_widths", "gated_tuples", "is_record"]
