"""How an IOAS keeps its paging domains in step with its areas (io_pagetable.c's domain side)."""

from __future__ import annotations

import errno
from dataclasses import replace

from amdvi.models.iommufd.errors import Fail, Session
from amdvi.models.iommufd.objects import (PAGE_SIZE, Area, HwptPaging, IommufdState, Ioas, Parked)


def pin(state: IommufdState, areas: tuple[Area, ...] | list[Area]) -> None:
    """Pinning user pages outside the process's memory fails EFAULT. Linux pins lazily, when a domain
    (or an access) first needs the pages: a MAP into an IOAS with no domain pins nothing."""
    for area in areas:
        if not state.scenario.user_memory_covers(area.user_va, area.length):
            raise Fail(errno.EFAULT)


def fill(session: Session, state: IommufdState, domain: int, areas: tuple[Area, ...] | list[Area]) -> None:
    """Map ``areas`` into ``domain`` (driver.map each; its error fails the ioctl)."""
    pin(state, areas)
    for area in areas:
        session.call("map", domain, area.iova, area.user_va, area.length,
                     readable=area.readable, writable=area.writable)


def add_domain(session: Session, state: IommufdState, ioas_id: int, hwpt_id: int) -> IommufdState:
    """iopt_table_add_domain: the AMD v1 aperture is the whole space, so nothing is reserved for it;
    the IOAS alignment rises to 4 KiB, refused while an area is misaligned (io_pagetable.c 1118-1123);
    then every area is mapped into the new domain."""
    ioas: Ioas = state.get(ioas_id)
    for area in ioas.areas:
        if area.iova % PAGE_SIZE or area.length % PAGE_SIZE or area.user_va % PAGE_SIZE:
            raise Fail(errno.EADDRINUSE)
    fill(session, state, state.get(hwpt_id).domain, ioas.areas)
    return state.put(ioas_id, replace(ioas, domains=ioas.domains + (hwpt_id,)))


def remove_area(session: Session, state: IommufdState, ioas_id: int, area: Area) -> IommufdState:
    """Take ``area`` out of the IOAS and unmap it from every domain. A domain whose unmap is lazy
    (value False) keeps the range parked until the flush queue drains."""
    ioas: Ioas = state.get(ioas_id)
    parked = list(state.parked)
    for hwpt_id in ioas.domains:
        domain = state.get(hwpt_id).domain
        if session.call("unmap", domain, area.iova, area.length) is False:
            parked.append(Parked(ioas_id, hwpt_id, domain, area.iova, area.length, area.user_va,
                                 area.readable, area.writable))
    state = state.put(ioas_id, replace(ioas, areas=tuple(a for a in ioas.areas if a != area)))
    return replace(state, parked=tuple(parked))


def destroy_paging(session: Session, state: IommufdState, hwpt_id: int) -> IommufdState:
    """iommufd_hwpt_paging_destroy: unmap every area from the domain, free it, and take it out of the
    IOAS's domain list (the last one moves into its slot). Parked ranges of the domain go with it:
    freeing the domain is the driver's last flush."""
    hwpt: HwptPaging = state.get(hwpt_id)
    ioas: Ioas = state.get(hwpt.ioas)
    if ioas is not None:
        for area in ioas.areas:
            session.call("unmap", hwpt.domain, area.iova, area.length)
    session.call("domain_free", hwpt.domain)
    if ioas is not None and hwpt_id in ioas.domains:
        domains = list(ioas.domains)
        slot, last = domains.index(hwpt_id), domains.pop()
        if last != hwpt_id:
            domains[slot] = last
        state = state.put(hwpt.ioas, replace(ioas, domains=tuple(domains)))
    state = replace(state, parked=tuple(p for p in state.parked if p.hwpt != hwpt_id))
    return state.drop(hwpt_id)
