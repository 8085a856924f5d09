"""Deliberately broken variants of the semantics, for showing that a property can fail.

A property is believed only when a test shows it failing on a broken model and holding on the
correct one. Semantic functions take ``mutants`` (a set of names from :data:`MUTANTS`); the empty
set is the specification. A mutant is a static switch, never a data-dependent branch.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, TypeVar

MUTANTS: dict[str, str] = {
    "guest-table-pointer-untranslated": (
        "nested walk: the table address in a guest page-table entry is used as a system address "
        "instead of being translated through the host (v1) table"),
    "invalidate-pages-ignores-size": (
        "INVALIDATE_IOMMU_PAGES ignores the S bit: a range invalidation clears only the one 4 KiB page "
        "at its address"),
    "devtab-invalidation-ignored": (
        "INVALIDATE_DEVTAB_ENTRY does not clear the cached device table entry"),
    "devtab-invalidation-skips-invalid": (
        "INVALIDATE_DEVTAB_ENTRY clears a cached device table entry only when its V = 1: a cached V = 0 "
        "entry survives an attach, and the device keeps DMA-ing untranslated"),
    "completion-wait-early": (
        "COMPLETION_WAIT completes (stores, interrupts) while earlier invalidations are still in flight"),
    "invalidate-pages-keeps-pde-cache": (
        "INVALIDATE_IOMMU_PAGES with PDE = 1 leaves cached page-directory (host and guest) and GCR3 "
        "entries in place"),
    "guest-pde-hit-ignores-pasid": (
        "a cached guest page-directory entry is used for a request of any PASID of its DomainID, so one "
        "process's guest table serves another's"),
    "iotlb-hit-ignores-permissions": (
        "an IOTLB hit does not check the access against the cached permissions: a write is served "
        "from a read-only translation"),
}

SPEC_MUTANTS = ("guest-table-pointer-untranslated",)
MODEL_MUTANTS = tuple(m for m in MUTANTS if m not in SPEC_MUTANTS)

NONE: frozenset[str] = frozenset()


def check_known(mutants: frozenset[str]) -> frozenset[str]:
    """``mutants`` itself, or ValueError naming an unknown one."""
    unknown = set(mutants) - set(MUTANTS)
    if unknown:
        raise ValueError(f"unknown mutant(s): {', '.join(sorted(unknown))}; known: {', '.join(MUTANTS)}")
    return frozenset(mutants)


F = TypeVar("F", bound=Callable[..., Any])


def refuses_unknown(function: F) -> F:
    """Make ``function`` raise ValueError on an unknown name in its ``mutants`` argument before doing
    anything, so a misspelt broken model can never run the correct one and come out 'proved'."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind_partial(*args, **kwargs)
        if "mutants" in bound.arguments:
            check_known(frozenset(bound.arguments["mutants"]))
        return function(*args, **kwargs)

    checked.refuses_unknown_mutants = True  # type: ignore[attr-defined]
    return checked  # type: ignore[return-value]
