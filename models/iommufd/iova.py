"""IOVA arithmetic of an IOAS: holes, automatic allocation and the FIXED-IOVA checks.

Rules from iommufd-errnos.md §3.3 (io_pagetable.c, samikhawaja/linux@1cbddb43) and §4.4.
"""

from __future__ import annotations

import errno

from amdvi.models.iommufd.errors import Fail
from amdvi.models.iommufd.objects import (HPAGE_SIZE, PAGE_SIZE, ULONG_MAX, IommufdState, Ioas, Range,
                                          intersects, iova_alignment, reserved_ranges)


def holes(used: tuple[Range, ...] | list[Range], first: int, last: int) -> list[Range]:
    """The maximal ranges of ``[first, last]`` that no range of ``used`` covers, ascending."""
    found, position = [], first
    for start, end in sorted(used):
        if end < position:
            continue
        if start > last:
            break
        if start > position:
            found.append((position, start - 1))
        position = max(position, end + 1)
        if position > last:
            return found
    if position <= last:
        found.append((position, last))
    return found


def _roundup_pow2(value: int) -> int:
    return 1 << (value - 1).bit_length()


def _fits(start: int, last: int, length: int, alignment: int, page_offset: int) -> int | None:
    """The first aligned start in ``[start, last]`` that holds ``length``, as Linux's range check
    computes it: align up, then OR in the user address's page offset; a candidate equal to ``last``
    is refused even for a one-byte length."""
    if start + alignment - 1 > ULONG_MAX:
        return None
    aligned = ((start + alignment - 1) & ~(alignment - 1)) | page_offset
    if aligned >= last or last - aligned < length - 1:
        return None
    return aligned


def allocate(state: IommufdState, ioas_id: int, user_va: int, length: int) -> int:
    """An IOVA for ``length`` bytes at ``user_va`` (auto-IOVA), or Fail."""
    if length == 0 or length >= ULONG_MAX // 2:
        raise Fail(errno.EOVERFLOW)  # io_pagetable.c 132-133
    alignment = _roundup_pow2(length)
    if user_va:
        alignment = min(alignment, user_va & -user_va)
    alignment = min(alignment, HPAGE_SIZE)  # clamp (138-151)
    if alignment < iova_alignment(state, ioas_id):
        raise Fail(errno.EINVAL)  # io_pagetable.c 153-154
    ioas: Ioas = state.get(ioas_id)
    window = (PAGE_SIZE, ULONG_MAX - PAGE_SIZE)  # io_pagetable.c 156-162
    spans = [(max(a, window[0]), min(b, window[1])) for a, b in sorted(ioas.allowed) if intersects((a, b), window)]
    if not ioas.allowed:
        spans = [window]
    used = list(reserved_ranges(state, ioas_id)) + [(a.iova, a.last) for a in ioas.areas]
    for span in spans:
        for start, last in holes(used, *span):
            found = _fits(start, last, length, alignment, user_va % PAGE_SIZE)
            if found is not None:
                return found
    raise Fail(errno.ENOSPC)  # io_pagetable.c 180


def check_fixed(state: IommufdState, ioas_id: int, iova: int, length: int) -> None:
    """A FIXED_IOVA destination must be aligned, not overflow, and be free of reserved IOVA and areas."""
    if iova % iova_alignment(state, ioas_id):
        raise Fail(errno.EINVAL)  # io_pagetable.c 190-191
    last = iova + length - 1
    if last > ULONG_MAX:
        raise Fail(errno.EOVERFLOW)  # 193-194
    if any(intersects(r, (iova, last)) for r in reserved_ranges(state, ioas_id)):
        raise Fail(errno.EINVAL)  # 196-198: EINVAL, not EADDRINUSE
    if any(intersects((a.iova, a.last), (iova, last)) for a in state.get(ioas_id).areas):
        raise Fail(errno.EEXIST)  # 200-202
