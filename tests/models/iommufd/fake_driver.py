"""A trivial IommuDriver for iommufd's tests: domains hold their mappings, devices their domain.

Failures are injected per operation (optionally per domain handle); ``lazy`` makes unmap park its
range until flush_queue_drain. A domain only accepts devices behind the IOMMU of the device it was
allocated for (attach EINVAL otherwise), so automatic-domain reuse can be seen.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field, replace

from amdvi.models.iommufd.driver_api import DriverResult, PciDevice
from amdvi.models.iommufd.objects import Table
from amdvi.models.timeline import Store

EFR = (1 << 4) | (1 << 48) | (1 << 52)  # GTSup, GIoSup, HDSup
EFR2 = 0x1234


@dataclass(frozen=True)
class FakeDomain:
    kind: str  # "paging" or "nested"
    iommu: int
    nest_parent: bool = False
    viommu: int | None = None
    mappings: tuple[tuple[int, int, int, bool, bool], ...] = ()  # (iova, pa, length, r, w)


@dataclass(frozen=True)
class FakeState:
    next_handle: int = 1
    domains: Table = field(default_factory=Table)  # handle -> FakeDomain
    attached: Table = field(default_factory=Table)  # device name -> domain handle (absent: blocked)
    viommus: Table = field(default_factory=Table)  # handle -> parent domain handle
    queue: tuple[tuple[int, int, int], ...] = ()  # lazy: (domain, iova, length) not flushed yet


def _step(what: str, *words: int) -> tuple[Store, ...]:
    return (Store(tuple((0x1000 + 8 * i, w & (2**64 - 1)) for i, w in enumerate(words)), what),)


@dataclass(frozen=True)
class FakeDriver:
    failures: tuple[tuple[str, int, int | None], ...] = ()  # (operation, errno, domain handle or None)
    lazy: bool = False
    dirty_tracking: bool = False

    def _failure(self, operation: str, domain: int | None = None) -> int:
        return next((e for op, e, d in self.failures if op == operation and d in (None, domain)), 0)

    def _refuse(self, state: FakeState, operation: str, domain: int | None = None) -> DriverResult | None:
        failure = self._failure(operation, domain)
        return DriverResult(state, failure) if failure else None

    def hw_info(self, state: FakeState, device: PciDevice, data_type: int) -> DriverResult:
        if data_type not in (0, 4):
            return DriverResult(state, errno.EOPNOTSUPP)
        return self._refuse(state, "hw_info") or DriverResult(state, 0, (4, (EFR, EFR2)))

    def _new(self, state: FakeState, domain: FakeDomain, operation: str) -> DriverResult:
        handle = state.next_handle
        new = replace(state, next_handle=handle + 1, domains=state.domains.set(handle, domain))
        return DriverResult(new, 0, handle, _step(operation, handle))

    def domain_alloc_paging(self, state: FakeState, device: PciDevice, *, nest_parent: bool, dirty_tracking: bool,
                            pasid: bool) -> DriverResult:
        if (dirty_tracking and not self.dirty_tracking) or (pasid and not device.pasid):
            return DriverResult(state, errno.EOPNOTSUPP)
        return self._refuse(state, "domain_alloc_paging") or \
            self._new(state, FakeDomain("paging", device.iommu, nest_parent), "domain_alloc_paging")

    def domain_alloc_nested(self, state: FakeState, device: PciDevice, viommu: int, data_type: int,
                            data: tuple[int, ...]) -> DriverResult:
        if data_type != 3:
            return DriverResult(state, errno.EOPNOTSUPP)
        if len(data) < 4 or viommu not in state.viommus:
            return DriverResult(state, errno.EINVAL)
        if any(data[4:]):
            return DriverResult(state, errno.E2BIG)
        return self._refuse(state, "domain_alloc_nested") or \
            self._new(state, FakeDomain("nested", device.iommu, viommu=viommu), "domain_alloc_nested")

    def domain_free(self, state: FakeState, domain: int) -> DriverResult:
        return self._refuse(state, "domain_free", domain) or DriverResult(
            replace(state, domains=state.domains.remove(domain)), 0, None, _step("domain_free", domain))

    def attach(self, state: FakeState, device: PciDevice, domain: int) -> DriverResult:
        target = state.domains.get(domain)
        if target is None or target.iommu != device.iommu:
            return DriverResult(state, errno.EINVAL)
        return self._refuse(state, "attach", domain) or DriverResult(
            replace(state, attached=state.attached.set(device.name, domain)), 0, None,
            _step("attach", device.device_id, domain))

    def block(self, state: FakeState, device: PciDevice) -> DriverResult:
        return self._refuse(state, "block") or DriverResult(
            replace(state, attached=state.attached.remove(device.name)), 0, None, _step("block", device.device_id))

    def map(self, state: FakeState, domain: int, iova: int, pa: int, length: int, *, readable: bool,
            writable: bool) -> DriverResult:
        target = state.domains.get(domain)
        if target is None or any(i < iova + length and iova < i + n for i, _, n, _, _ in target.mappings):
            return DriverResult(state, errno.EINVAL)
        refused = self._refuse(state, "map", domain)
        if refused:
            return refused
        mappings = tuple(sorted(target.mappings + ((iova, pa, length, readable, writable),)))
        return DriverResult(replace(state, domains=state.domains.set(domain, replace(target, mappings=mappings))),
                            0, None, _step("map", domain, iova, pa, length))

    def unmap(self, state: FakeState, domain: int, iova: int, length: int) -> DriverResult:
        target = state.domains.get(domain)
        if target is None:
            return DriverResult(state, errno.EINVAL)
        kept = []
        for i, pa, n, r, w in target.mappings:  # cut [iova, iova + length) out of each mapping
            if i < iova:
                kept.append((i, pa, min(n, iova - i), r, w))
            if i + n > iova + length:
                start = max(i, iova + length)
                kept.append((start, pa + start - i, i + n - start, r, w))
        new = replace(state, domains=state.domains.set(domain, replace(target, mappings=tuple(kept))))
        if self.lazy:
            return DriverResult(replace(new, queue=new.queue + ((domain, iova, length),)), 0, False,
                                _step("unmap-lazy", domain, iova, length))
        return DriverResult(new, 0, True, _step("unmap", domain, iova, length))

    def flush_queue_drain(self, state: FakeState) -> DriverResult:
        return DriverResult(replace(state, queue=()), 0, state.queue, _step("drain", len(state.queue)))

    def viommu_init(self, state: FakeState, device: PciDevice, parent: int, viommu_type: int,
                    data: tuple[int, ...]) -> DriverResult:
        target = state.domains.get(parent)
        if target is None or not target.nest_parent:
            return DriverResult(state, errno.EINVAL)
        refused = self._refuse(state, "viommu_init")
        if refused:
            return refused
        handle = state.next_handle
        return DriverResult(replace(state, next_handle=handle + 1, viommus=state.viommus.set(handle, parent)),
                            0, handle, _step("viommu_init", handle))

    def viommu_destroy(self, state: FakeState, viommu: int) -> DriverResult:
        return DriverResult(replace(state, viommus=state.viommus.remove(viommu)), 0, None,
                            _step("viommu_destroy", viommu))

    def vdevice_init(self, state: FakeState, viommu: int, device: PciDevice, virt_id: int) -> DriverResult:
        return DriverResult(state, 0, None, _step("vdevice_init", viommu, virt_id))

    def vdevice_destroy(self, state: FakeState, viommu: int, device: PciDevice, virt_id: int) -> DriverResult:
        return DriverResult(state, 0, None, _step("vdevice_destroy", viommu, virt_id))

    def hw_queue_init(self, state: FakeState, viommu: int, queue_type: int, base: int, length: int) -> DriverResult:
        return DriverResult(state, 0, None, _step("hw_queue_init", viommu, queue_type))
