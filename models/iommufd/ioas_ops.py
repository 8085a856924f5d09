"""The IOAS ioctls: ALLOC, MAP, UNMAP, COPY, IOVA_RANGES, ALLOW_IOVAS (ioas.c, io_pagetable.c).

Line numbers are those of iommufd-errnos.md §3.2 (ioas.c) and §3.3 (io_pagetable.c).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, replace
from typing import Any

from amdvi.models.iommufd import iova as iova_space
from amdvi.models.iommufd.choices import Iommufd
from amdvi.models.iommufd.domains import fill, remove_area
from amdvi.models.iommufd.errors import DriverError, Fail, Session
from amdvi.models.iommufd.objects import (PAGE_SIZE, U64_MAX, ULONG_MAX, Area, HwQueue, IommufdState, Ioas,
                                          hw_queue_ioas, intersects, iova_alignment, reserved_ranges)
from amdvi.models.iommufd.uapi import (MAP_FIXED_IOVA, MAP_READABLE, MAP_WRITEABLE, IoasAlloc,
                                       IoasAllowIovas, IoasCopy, IoasIovaRanges, IoasMap, IoasUnmap)

MAP_FLAGS = MAP_FIXED_IOVA | MAP_WRITEABLE | MAP_READABLE
Result = tuple[IommufdState, dict[str, Any]]


def get_ioas(state: IommufdState, ioas_id: int) -> Ioas:
    ioas = state.get(ioas_id, Ioas)
    if ioas is None:
        raise Fail(errno.ENOENT)  # main.c 175-178
    return ioas


def ioas_alloc(session: Session, state: IommufdState, call: IoasAlloc, choices: Iommufd) -> Result:
    if call.flags:
        raise Fail(errno.EOPNOTSUPP)  # ioas.c 44-45
    new_id = state.next_id()
    return state.put(new_id, Ioas()), {"out_ioas_id": new_id}


@dataclass(frozen=True)
class Pages:
    """A run of pinned user pages to map: MAP makes one, COPY one per source area it crosses."""

    user_va: int
    length: int
    writable: bool


def map_pages(session: Session, state: IommufdState, ioas_id: int, pages: tuple[Pages, ...], iova: int, *,
              fixed: bool, readable: bool, writable: bool, choices: Iommufd) -> tuple[IommufdState, int]:
    """iopt_map_pages: place the runs at ``iova`` (FIXED) or an allocated IOVA, one area per run, then
    map them into every domain of the IOAS. Returns the new state and the IOVA."""
    total = sum(p.length for p in pages)
    alignment = iova_alignment(state, ioas_id)
    if total == 0 or total % alignment:
        raise Fail(errno.EINVAL)  # io_pagetable.c 273-276
    if fixed:
        iova_space.check_fixed(state, ioas_id, iova, total)
    else:
        iova = iova_space.allocate(state, ioas_id, pages[0].user_va, total)
    areas, position = [], iova
    for run in pages:
        if writable and not run.writable:
            raise Fail(errno.EPERM)  # io_pagetable.c 216-217
        if (run.user_va % PAGE_SIZE) % alignment:
            raise Fail(errno.EINVAL)  # 220-222
        if run.user_va + run.length - 1 > ULONG_MAX:
            raise Fail(errno.EOVERFLOW)  # 225-233
        areas.append(Area(position, run.length, run.user_va, readable, writable, run.writable))
        position += run.length
    ioas = state.get(ioas_id)
    mapped = state.put(ioas_id, replace(ioas, areas=tuple(sorted(ioas.areas + tuple(areas), key=lambda a: a.iova))))
    try:
        for hwpt_id in ioas.domains:
            fill(session, state, state.get(hwpt_id).domain, areas)
    except DriverError as refused:
        if choices.failed_map_keeps_area:
            raise Fail(refused.errno, state=mapped) from None
        raise
    return mapped, iova


def _prot(flags: int) -> tuple[bool, bool]:
    return bool(flags & MAP_READABLE), bool(flags & MAP_WRITEABLE)


def ioas_map(session: Session, state: IommufdState, call: IoasMap, choices: Iommufd) -> Result:
    if call.flags & ~MAP_FLAGS or call.reserved:
        raise Fail(errno.EOPNOTSUPP)  # ioas.c 258-262
    if call.iova >= ULONG_MAX or call.length >= ULONG_MAX:
        raise Fail(errno.EOVERFLOW)  # 263-264
    if not call.flags & (MAP_READABLE | MAP_WRITEABLE):
        raise Fail(errno.EINVAL)  # 266-268
    get_ioas(state, call.ioas_id)
    readable, writable = _prot(call.flags)
    state, iova = map_pages(session, state, call.ioas_id, (Pages(call.user_va, call.length, writable),),
                            call.iova, fixed=bool(call.flags & MAP_FIXED_IOVA), readable=readable,
                            writable=writable, choices=choices)
    return state, {"iova": iova}


def ioas_copy(session: Session, state: IommufdState, call: IoasCopy, choices: Iommufd) -> Result:
    if call.flags & ~MAP_FLAGS:
        raise Fail(errno.EOPNOTSUPP)  # ioas.c 302-305
    if max(call.length, call.src_iova, call.dst_iova) >= ULONG_MAX:
        raise Fail(errno.EOVERFLOW)  # 306-308
    if not call.flags & (MAP_READABLE | MAP_WRITEABLE):
        raise Fail(errno.EINVAL)  # 310-312
    source = get_ioas(state, call.src_ioas_id)
    pages = source_pages(source, call.src_iova, call.length)
    get_ioas(state, call.dst_ioas_id)
    readable, writable = _prot(call.flags)
    state, iova = map_pages(session, state, call.dst_ioas_id, pages, call.dst_iova,
                            fixed=bool(call.flags & MAP_FIXED_IOVA), readable=readable, writable=writable,
                            choices=choices)
    return state, {"dst_iova": iova}


def source_pages(ioas: Ioas, iova: int, length: int) -> tuple[Pages, ...]:
    """iopt_get_pages: the pages behind ``[iova, iova + length)``, which contiguous areas must cover
    entirely (a sub-range of an area is fine): COPY maps the same pages again."""
    if length == 0:
        raise Fail(errno.EINVAL)  # io_pagetable.c 708-709
    last = iova + length - 1
    if last > ULONG_MAX:
        raise Fail(errno.EOVERFLOW)  # 710-711
    pages, position = [], iova
    while position <= last:
        area = next((a for a in ioas.areas if a.iova <= position <= a.last), None)
        if area is None:
            raise Fail(errno.ENOENT)  # 728-731
        end = min(area.last, last)
        pages.append(Pages(area.user_va + position - area.iova, end - position + 1, area.pages_writable))
        position = end + 1
    return tuple(pages)


def ioas_unmap(session: Session, state: IommufdState, call: IoasUnmap, choices: Iommufd) -> Result:
    get_ioas(state, call.ioas_id)
    unmap_all = call.iova == 0 and call.length == U64_MAX
    if unmap_all:
        state, removed = unmap_range(session, state, call.ioas_id, 0, ULONG_MAX, choices)  # ioas.c 357-360
        return state, {"length": removed}
    if call.iova >= ULONG_MAX or call.length >= ULONG_MAX:
        raise Fail(errno.EOVERFLOW)  # ioas.c 362-363
    if call.length == 0:
        raise Fail(errno.EINVAL)  # io_pagetable.c 849-850
    if call.iova + call.length - 1 > ULONG_MAX:
        raise Fail(errno.EOVERFLOW)  # 852-853
    state, removed = unmap_range(session, state, call.ioas_id, call.iova, call.iova + call.length - 1, choices)
    if not removed:
        raise Fail(errno.ENOENT)  # ioas.c 370-372
    return state, {"length": removed}


def unmap_range(session: Session, state: IommufdState, ioas_id: int, first: int, last: int,
                choices: Iommufd) -> tuple[IommufdState, int]:
    """iopt_unmap_iova_range: remove the areas meeting ``[first, last]`` lowest first. It is not atomic:
    on a partly covered area (ENOENT, 780-783) or a pinned one (EBUSY, 775-778) the areas already
    removed stay removed."""
    removed = 0
    pinned = [(q.iova, q.iova + q.length - 1) for _, q in state.of_kind(HwQueue)
              if hw_queue_ioas(state, q) == ioas_id]
    while True:
        area = next((a for a in state.get(ioas_id).areas if intersects((a.iova, a.last), (first, last))), None)
        if area is None:
            return state, removed
        if any(intersects(p, (area.iova, area.last)) for p in pinned):
            raise Fail(errno.EBUSY, state=state, partial=True)
        if area.iova < first or area.last > last:
            if not choices.unmap_partial_splits:
                raise Fail(errno.ENOENT, state=state, partial=True)
            state, area = _split(state, ioas_id, area, first, last)
        state = remove_area(session, state, ioas_id, area)
        removed += area.length


def _split(state: IommufdState, ioas_id: int, area: Area, first: int, last: int) -> tuple[IommufdState, Area]:
    """The fault ``unmap-partial-splits``: cut the area at the range's ends (Linux never does this on
    UNMAP) and return the piece inside the range."""
    start, end = max(area.iova, first), min(area.last, last)
    pieces = [(area.iova, start - 1), (start, end), (end + 1, area.last)]
    parts = [replace(area, iova=a, length=b - a + 1, user_va=area.user_va + a - area.iova)
             for a, b in pieces if a <= b]
    ioas = state.get(ioas_id)
    areas = tuple(sorted([a for a in ioas.areas if a != area] + parts, key=lambda a: a.iova))
    return state.put(ioas_id, replace(ioas, areas=areas)), next(p for p in parts if p.iova == start)


def ioas_iova_ranges(session: Session, state: IommufdState, call: IoasIovaRanges, choices: Iommufd) -> Result:
    if call.reserved:
        raise Fail(errno.EOPNOTSUPP)  # ioas.c 75-76
    get_ioas(state, call.ioas_id)
    usable = iova_space.holes(reserved_ranges(state, call.ioas_id), 0, ULONG_MAX)
    out = {"num_iovas": len(usable), "allowed_iovas": tuple(usable[:call.num_iovas]),
           "out_iova_alignment": iova_alignment(state, call.ioas_id)}
    if len(usable) > call.num_iovas:
        raise Fail(errno.EMSGSIZE, out=out)  # ioas.c 107-109: num_iovas is still written back
    return state, out


def ioas_allow_iovas(session: Session, state: IommufdState, call: IoasAllowIovas, choices: Iommufd) -> Result:
    if call.reserved:
        raise Fail(errno.EOPNOTSUPP)  # ioas.c 155-156
    ioas = get_ioas(state, call.ioas_id)
    if call.num_iovas > len(call.allowed_iovas):
        raise Fail(errno.EFAULT)  # ioas.c 126-127: the user buffer holds fewer entries
    ranges = tuple(tuple(r) for r in call.allowed_iovas[:call.num_iovas])
    for index, (start, last) in enumerate(ranges):
        if start >= last:
            raise Fail(errno.EINVAL)  # 129-130
        if any(intersects((start, last), other) for other in ranges[:index]):
            raise Fail(errno.EINVAL)  # 132-133
    reserved = reserved_ranges(state, call.ioas_id)
    if any(intersects(r, s) for r in ranges for s in reserved):
        raise Fail(errno.EADDRINUSE)  # io_pagetable.c 876-879
    return state.put(call.ioas_id, replace(ioas, allowed=tuple(sorted(ranges)))), {}
