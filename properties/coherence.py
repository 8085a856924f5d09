"""What "no stale translation" means, as predicates over the IOMMU model (both backends).

* :func:`agrees` -- a DMA result equals the fresh walk of current memory: same success, and when it
  succeeds the same system address. The property every checker asserts.
* :func:`slot_is_fresh` -- a valid cache slot holds exactly what a fill from its *ghost* request
  (the request whose walk filled it) would give on current memory. Every slot the model fills is
  fresh when filled; the proofs show which software changes, followed by which invalidations, keep it
  fresh, and that fresh slots serve only fresh results.

The ghost request is proof bookkeeping, not hardware state: the model's slots do not carry it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import z3

from amdvi.models.caches import CACHE_NAMES, Caches
from amdvi.models.dma import DmaResult
from amdvi.models.iommu import IommuState, fill
from amdvi.models.registers import Registers
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.translation import Outcome, Request


def agrees(b: Any, served: DmaResult, fresh: Outcome) -> Any:
    """Backend boolean: the served DMA result is the fresh walk's (success and, if any, address)."""
    return b.all_of(b.eq(served.ok, fresh.ok) if not _is_bool(served.ok) else _iff(b, served.ok, fresh.ok),
                    b.implies(fresh.ok, b.eq(served.spa, fresh.spa)))


def reaches_only_fresh(b: Any, served: DmaResult, fresh: Outcome) -> Any:
    """Backend boolean: if the served DMA reaches memory, a fresh walk reaches the same address (a
    stale entry that only blocks an access does not break it)."""
    return b.implies(served.ok, b.all_of(fresh.ok, b.eq(served.spa, fresh.spa)))


def filled_slot(b: Any, memory: Any, regs: Registers, cache: str, request: Request, step: int = 0,
                context: Any = None, walk: Outcome | None = None, choices: Hardware = SPEC) -> Any:
    """The slot a fill from ``request`` produces on ``memory`` (the model's own fill, under ``choices``;
    ``walk``: the fresh walk of ``request`` on ``memory``, when already made)."""
    one = Caches.empty(**{name: 1 for name in CACHE_NAMES})
    state = fill(b, IommuState(memory=memory, regs=regs, caches=one), cache, 0, request, step, context=context,
                 walk=walk, choices=choices)
    return state.caches.slots(cache)[0]


def same_slot(b: Any, x: Any, y: Any) -> Any:
    """Backend boolean: two slots of one cache are equal in every field (valid ones; invalid match)."""
    parts = [_same(b, getattr(x, f.name), getattr(y, f.name)) for f in dataclasses.fields(x) if f.name != "valid"]
    return b.all_of(_iff(b, x.valid, y.valid), b.implies(x.valid, b.all_of(*parts)))


def slot_is_fresh(b: Any, memory: Any, regs: Registers, cache: str, slot: Any, ghost: Request, step: int = 0,
                  context: Any = None) -> Any:
    """Backend boolean: ``slot`` is invalid, or it is what a fill from ``ghost`` gives on ``memory``."""
    return b.implies(slot.valid, same_slot(b, slot, filled_slot(b, memory, regs, cache, ghost, step, context)))


def _is_bool(x: Any) -> bool:
    return isinstance(x, bool) or (isinstance(x, z3.ExprRef) and z3.is_bool(x))


def _iff(b: Any, x: Any, y: Any) -> Any:
    return b.all_of(b.implies(x, y), b.implies(y, x))


def _same(b: Any, x: Any, y: Any) -> Any:
    if _is_bool(x) or _is_bool(y):
        return _iff(b, x, y)
    return b.eq(x, y)
