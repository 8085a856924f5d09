"""Random call sequences (valid and not) against the fake driver: references stay consistent, a failed
call changes nothing (except a non-atomic UNMAP), and the driver's domains mirror the IOAS areas."""

import errno

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from amdvi.models.iommufd.choices import Iommufd
from amdvi.models.iommufd.objects import (Device, HwptNested, HwptPaging, HwQueue, Ioas, Vdevice, Viommu,
                                          users)
from amdvi.models.iommufd.uapi import (HW_QUEUE_TYPE_AMD_CMD, Destroy, DeviceAttach, DeviceBind, DeviceDetach,
                                       DeviceUnbind, FlushQueueDrain, HwptAlloc, HwptInvalidate, HwQueueAlloc,
                                       IoasAlloc, IoasAllowIovas, IoasCopy, IoasIovaRanges, IoasMap, IoasUnmap,
                                       VdeviceAlloc, ViommuAlloc)

from fake_driver import FakeDriver
from iommufd_world import MEMORY_BASE, World

U64_MAX = 2**64 - 1
picks = st.integers(0, 31)  # mostly an existing object of the kind a field wants, sometimes any id
names = st.sampled_from(("nic", "gpu", "far", "nope"))
iovas = st.sampled_from((0, 0x1000, 0x10000, 0x10800, 0x11000, 0x20000, 0xFEE0_0000))
lengths = st.sampled_from((0, 0x1000, 0x2000, 0x3000, 0x20000))
user_vas = st.sampled_from((MEMORY_BASE, MEMORY_BASE + 0x800, MEMORY_BASE + 0x3000, 0x4000_0000))
map_flags = st.sampled_from((7, 7, 7, 6, 6, 5, 0, 1, 15))
IOAS, HWPT, VIOMMU, DEVICE = Ioas, (HwptPaging, HwptNested), Viommu, Device


class IommufdMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.world = World(choices=Iommufd(nested_alloc="amd-tree", hw_queue="amd-tree"))

    @initialize(mapped=st.booleans())
    def two_ioas_and_bound_devices(self, mapped):
        """A start most calls can use: two IOAS (the first maybe mapped) and every device bound."""
        for call in (IoasAlloc(), IoasAlloc(), DeviceBind(device="nic"), DeviceBind(device="gpu"),
                     DeviceBind(device="far")):
            self.step(call)
        if mapped:
            self.step(IoasMap(flags=7, ioas_id=1, user_va=MEMORY_BASE, length=0x2000, iova=0x10000))

    def pick(self, pick, kind):
        """An id: an object of ``kind`` for most picks, else 0..7 (missing, or of another kind)."""
        candidates = [i for i, o in self.world.state.objects.items() if isinstance(o, kind)]
        return candidates[pick % len(candidates)] if candidates and pick < 24 else pick % 8

    def step(self, call):
        w = self.world
        before = (w.state, w.driver_state)
        outcome = w.run(call)
        if outcome.errno and not (isinstance(call, IoasUnmap) and outcome.errno in (errno.ENOENT, errno.EBUSY)):
            assert (outcome.state, outcome.driver_state, outcome.steps) == (*before, ()), call
        if outcome.errno and isinstance(call, IoasUnmap):
            for ioas_id, ioas in outcome.state.of_kind(Ioas):
                assert set(ioas.areas) <= set(before[0].get(ioas_id).areas)

    # -- rules -------------------------------------------------------------------------------------
    @rule(lazy=st.booleans(), failing=st.sampled_from((None, "map", "attach", "domain_alloc_paging", "block")))
    def set_driver(self, lazy, failing):
        self.world.driver = FakeDriver(lazy=lazy, failures=((failing, errno.ENOMEM, None),) if failing else ())

    @rule(flags=st.sampled_from((0, 0, 1)))
    def ioas_alloc(self, flags):
        self.step(IoasAlloc(flags=flags))

    @rule(ioas=picks, iova=iovas, length=lengths, user_va=user_vas, flags=map_flags)
    def ioas_map(self, ioas, iova, length, user_va, flags):
        self.step(IoasMap(flags=flags, ioas_id=self.pick(ioas, IOAS), user_va=user_va, length=length, iova=iova))

    @rule(ioas=picks, iova=iovas, length=st.sampled_from((0, 0x1000, 0x2000, 0x21000, U64_MAX)))
    def ioas_unmap(self, ioas, iova, length):
        self.step(IoasUnmap(ioas_id=self.pick(ioas, IOAS), iova=iova, length=length))

    @rule(src=picks, dst=picks, src_iova=iovas, dst_iova=iovas, length=lengths, flags=map_flags)
    def ioas_copy(self, src, dst, src_iova, dst_iova, length, flags):
        self.step(IoasCopy(flags=flags, src_ioas_id=self.pick(src, IOAS), dst_ioas_id=self.pick(dst, IOAS), src_iova=src_iova, dst_iova=dst_iova,
                           length=length))

    @rule(ioas=picks, ranges=st.lists(st.tuples(iovas, iovas), max_size=2))
    def ioas_allow(self, ioas, ranges):
        self.step(IoasAllowIovas(ioas_id=self.pick(ioas, IOAS), num_iovas=len(ranges), allowed_iovas=tuple(ranges)))

    @rule(ioas=picks, capacity=st.integers(0, 3))
    def ioas_ranges(self, ioas, capacity):
        self.step(IoasIovaRanges(ioas_id=self.pick(ioas, IOAS), num_iovas=capacity))

    @rule(name=names)
    def bind(self, name):
        self.step(DeviceBind(device=name))

    @rule(name=names, pt=picks, to_ioas=st.booleans())
    def attach(self, name, pt, to_ioas):
        self.step(DeviceAttach(device=name, pt_id=self.pick(pt, IOAS if to_ioas else HWPT)))

    @rule(name=names)
    def detach(self, name):
        self.step(DeviceDetach(device=name))

    @rule(name=names)
    def unbind(self, name):
        self.step(DeviceUnbind(device=name))

    @rule(dev=picks, pt=picks, flags=st.sampled_from((0, 1, 1, 4)), nested=st.booleans())
    def hwpt_alloc(self, dev, pt, flags, nested):
        data = dict(data_type=3, data_len=32, data=(3, 0x1000, 0, 0)) if nested else {}
        self.step(HwptAlloc(flags=0 if nested else flags, dev_id=self.pick(dev, DEVICE),
                            pt_id=self.pick(pt, VIOMMU if nested else IOAS), **data))

    @rule(dev=picks, hwpt=picks, type=st.sampled_from((3, 3, 1, 0)))
    def viommu_alloc(self, dev, hwpt, type):
        self.step(ViommuAlloc(type=type, dev_id=self.pick(dev, DEVICE), hwpt_id=self.pick(hwpt, HwptPaging)))

    @rule(viommu=picks, dev=picks, virt_id=st.integers(1, 2))
    def vdevice_alloc(self, viommu, dev, virt_id):
        self.step(VdeviceAlloc(viommu_id=self.pick(viommu, VIOMMU), dev_id=self.pick(dev, DEVICE), virt_id=virt_id))

    @rule(viommu=picks, iova=iovas, index=st.integers(0, 1))
    def hw_queue_alloc(self, viommu, iova, index):
        self.step(HwQueueAlloc(viommu_id=self.pick(viommu, VIOMMU), type=HW_QUEUE_TYPE_AMD_CMD, index=index, nesting_parent_iova=iova,
                               length=0x1000))

    @rule(object_id=picks, kind=st.sampled_from((IOAS, HWPT, VIOMMU, Vdevice, HwQueue, DEVICE)))
    def destroy(self, object_id, kind):
        self.step(Destroy(id=self.pick(object_id, kind)))

    @rule(hwpt=picks)
    def invalidate(self, hwpt):
        self.step(HwptInvalidate(hwpt_id=self.pick(hwpt, HWPT), data_uptr=1, entry_len=16, entry_num=1))

    @rule()
    def drain(self):
        self.step(FlushQueueDrain())

    # -- invariants --------------------------------------------------------------------------------
    @invariant()
    def references_are_live_and_typed(self):
        state = self.world.state
        expected = {HwptPaging: {"ioas": Ioas}, HwptNested: {"parent": HwptPaging, "viommu": Viommu},
                    Viommu: {"hwpt": HwptPaging}, Vdevice: {"viommu": Viommu, "device": Device},
                    HwQueue: {"viommu": Viommu}, Device: {"hwpt": (HwptPaging, HwptNested)}}
        for obj in state.objects.values():
            for attribute, kind in expected.get(type(obj), {}).items():
                target = getattr(obj, attribute)
                assert target is None or isinstance(state.get(target), kind), (obj, attribute)
        for _, nested in state.of_kind(HwptNested):
            assert state.get(nested.parent).nest_parent
        for _, viommu in state.of_kind(Viommu):
            assert state.get(viommu.hwpt).nest_parent
        assert not state.tombstones & set(state.objects)

    @invariant()
    def counts_follow_references(self):
        state = self.world.state
        for ioas_id, ioas in state.of_kind(Ioas):
            assert sorted(ioas.domains) == sorted(i for i, h in state.of_kind(HwptPaging) if h.ioas == ioas_id)
        for hwpt_id, hwpt in state.of_kind(HwptPaging):
            assert not hwpt.auto_domain or users(state, hwpt_id) > 1  # an unused automatic HWPT is gone
        assert all(state.get(p.hwpt) is not None for p in state.parked)

    @invariant()
    def the_driver_mirrors_iommufd(self):
        state, fake = self.world.state, self.world.driver_state
        domains = {h.domain for _, h in state.of_kind(HwptPaging)} | {h.domain for _, h in state.of_kind(HwptNested)}
        assert set(fake.domains) == domains
        for _, hwpt in state.of_kind(HwptPaging):
            areas = tuple(sorted((a.iova, a.user_va, a.length, a.readable, a.writable)
                                 for a in state.get(hwpt.ioas).areas))
            assert fake.domains[hwpt.domain].mappings == areas
        for _, device in state.of_kind(Device):
            attached = state.get(device.hwpt).domain if device.hwpt is not None else None
            assert fake.attached.get(device.pci.name) == attached
        assert set(fake.viommus) == {v.handle for _, v in state.of_kind(Viommu)}


IommufdMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30)
TestIommufdMachine = IommufdMachine.TestCase
