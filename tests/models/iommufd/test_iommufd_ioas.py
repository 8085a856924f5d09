"""IOAS ioctls: MAP, UNMAP, COPY, IOVA_RANGES, ALLOW_IOVAS errnos and semantics (iommufd-errnos.md §3.2-3.3, §4)."""

import errno

import pytest

from amdvi.models.iommufd.isolation_view import device_mappings
from amdvi.models.iommufd.objects import AMD_MSI_RANGE, PAGE_SIZE, U64_MAX
from amdvi.models.iommufd.uapi import (MAP_READABLE, DeviceAttach, FlushQueueDrain, IoasAllowIovas, IoasCopy, IoasIovaRanges,
                                       IoasMap, IoasUnmap)

from fake_driver import FakeDriver
from iommufd_world import FIXED_RW, MEMORY_BASE, RW, World


def mapped(world, ioas):
    return [(a.iova, a.length) for a in world.state.get(ioas).areas]


@pytest.mark.parametrize("call,expected", [
    (dict(flags=8 | RW), errno.EOPNOTSUPP),  # unknown flag: ioas.c 258-262
    (dict(reserved=1), errno.EOPNOTSUPP),
    (dict(iova=U64_MAX), errno.EOVERFLOW),  # 263-264
    (dict(length=U64_MAX), errno.EOVERFLOW),
    (dict(flags=1), errno.EINVAL),  # neither R nor W: 266-268
    (dict(ioas_id=99), errno.ENOENT),
    (dict(length=0), errno.EINVAL),  # io_pagetable.c 273-276
])
def test_map_refusals(call, expected):
    w = World()
    ioas = w.ioas()
    base = dict(flags=FIXED_RW, ioas_id=ioas, user_va=MEMORY_BASE, length=0x2000, iova=0x1_0000)
    w.fails(IoasMap(**{**base, **call}), expected)


def test_fixed_map_into_reserved_is_einval_and_overlap_eexist():
    w = World()
    ioas, dev = w.ioas(), w.bind()
    w.attach("nic", ioas)  # the device's MSI window is now reserved in the IOAS
    fixed = dict(flags=FIXED_RW, ioas_id=ioas, user_va=MEMORY_BASE, length=0x2000)
    w.fails(IoasMap(**fixed, iova=AMD_MSI_RANGE[0]), errno.EINVAL)  # io_pagetable.c 196-198
    w.map(ioas, 0x4000)
    w.fails(IoasMap(**fixed, iova=0x5000), errno.EEXIST)  # 200-202
    w.fails(IoasMap(**fixed, iova=0x4800), errno.EINVAL)  # misaligned to 4 KiB once a domain is there: 190-191
    w.fails(IoasMap(**{**fixed, "length": 0x1800}, iova=0x8000), errno.EINVAL)  # length: 273-276
    w.fails(IoasMap(**{**fixed, "user_va": MEMORY_BASE + 0x800}, iova=0x8000), errno.EINVAL)  # page offset: 220-222
    w.fails(IoasMap(**fixed, iova=U64_MAX - 0xfff), errno.EOVERFLOW)  # 193-194


def test_map_fills_every_domain_and_a_driver_error_undoes_all():
    w = World()
    ioas, nic, gpu = w.ioas(), w.bind("nic"), w.bind("gpu")
    first, second = w.nest_parent(nic, ioas), w.nest_parent(gpu, ioas)
    w.map(ioas, 0x10000)
    domains = [w.state.get(h).domain for h in (first, second)]
    assert all(w.driver_state.domains[d].mappings == ((0x10000, MEMORY_BASE, 0x2000, True, True),) for d in domains)
    w.driver = FakeDriver(failures=(("map", errno.ENOMEM, domains[1]),))  # the second domain refuses
    w.fails(IoasMap(flags=FIXED_RW, ioas_id=ioas, user_va=MEMORY_BASE, length=0x1000, iova=0x20000), errno.ENOMEM)


def test_pinning_is_lazy_memory_outside_the_process_fails_only_with_a_domain():
    w = World()
    ioas = w.ioas()
    w.map(ioas, 0x10000, user_va=0x4000_0000)  # nothing pinned yet: accepted
    w.bind("nic")
    w.fails(DeviceAttach(device="nic", pt_id=ioas), errno.EFAULT)
    w.ok(IoasUnmap(ioas_id=ioas, iova=0, length=U64_MAX))
    w.attach("nic", ioas)
    w.fails(IoasMap(flags=FIXED_RW, ioas_id=ioas, user_va=0x4000_0000, length=0x1000, iova=0), errno.EFAULT)


def test_auto_iova_alignment_window_and_enospc():
    w = World()
    ioas = w.ioas()
    assert w.map(ioas, 0, length=0x1000, flags=RW) == PAGE_SIZE  # the window starts at PAGE_SIZE
    assert w.map(ioas, 0, length=0x4000, flags=RW) == 0x4000  # aligned to roundup_pow2(length)
    assert w.map(ioas, 0, length=0x3000, user_va=MEMORY_BASE + 0x1000, flags=RW) == 0x8000  # no 0x3000 hole below
    assert w.map(ioas, 0, length=0x2000, user_va=MEMORY_BASE + 0x1000, flags=RW) == 0x2000  # the uva's low bit
    w.ok(IoasAllowIovas(ioas_id=ioas, num_iovas=1, allowed_iovas=((0x100000, 0x101fff),)))
    assert w.map(ioas, 0, length=0x1000, flags=RW) == 0x100000
    assert w.map(ioas, 0, length=0x1000, flags=RW) == 0x101000
    w.fails(IoasMap(flags=RW, ioas_id=ioas, user_va=MEMORY_BASE, length=0x1000), errno.ENOSPC)  # 180
    w.fails(IoasMap(flags=RW, ioas_id=ioas, user_va=MEMORY_BASE, length=2**63), errno.EOVERFLOW)  # 132-133


def test_without_a_domain_the_alignment_is_one_byte():
    w = World()
    ioas = w.ioas()
    w.map(ioas, 0x10001, length=0x1001, user_va=MEMORY_BASE + 1)
    w.bind("nic")
    w.fails(DeviceAttach(device="nic", pt_id=ioas), errno.EADDRINUSE)  # raising it to 4 KiB: 1118-1123


def test_auto_iova_alignment_below_the_ioas_alignment_is_einval():
    w = World()
    ioas = w.ioas()
    w.bind("nic")
    w.attach("nic", ioas)  # iova_alignment is now 4 KiB
    w.fails(IoasMap(flags=RW, ioas_id=ioas, user_va=MEMORY_BASE + 0x800, length=0x1000), errno.EINVAL)  # 153-154


def test_unmap_whole_areas_partial_is_enoent_and_not_atomic():
    w = World()
    ioas = w.ioas()
    for iova in (0x10000, 0x20000, 0x30000):
        w.map(ioas, iova)
    w.fails(IoasUnmap(ioas_id=ioas, iova=0x50000, length=0x1000), errno.ENOENT)  # nothing: ioas.c 370-372
    w.fails(IoasUnmap(ioas_id=ioas, iova=0x10000, length=0), errno.EINVAL)  # io_pagetable.c 849-850
    w.fails(IoasUnmap(ioas_id=ioas, iova=0x10000, length=U64_MAX), errno.EOVERFLOW)  # ioas.c 362-363
    w.fails(IoasUnmap(ioas_id=99, iova=0, length=U64_MAX), errno.ENOENT)
    # [0x10000, 0x31000) covers the first two and half the third: the first two go, then ENOENT
    outcome = w.run(IoasUnmap(ioas_id=ioas, iova=0x10000, length=0x21000))
    assert outcome.errno == errno.ENOENT and mapped(w, ioas) == [(0x30000, 0x2000)]  # io_pagetable.c 780-783
    assert w.ok(IoasUnmap(ioas_id=ioas, iova=0, length=U64_MAX)) == {"length": 0x2000}
    assert w.ok(IoasUnmap(ioas_id=ioas, iova=0, length=U64_MAX)) == {"length": 0}  # never ENOENT: 357-360


def test_unmap_partial_at_the_start_removes_nothing():
    w = World()
    ioas = w.ioas()
    w.map(ioas, 0x10000)
    w.map(ioas, 0x20000)
    w.fails(IoasUnmap(ioas_id=ioas, iova=0x11000, length=0x20000), errno.ENOENT)


def test_copy_maps_the_same_pages_and_needs_full_coverage():
    w = World()
    src, dst = w.ioas(), w.ioas()
    w.map(src, 0x10000, length=0x2000, user_va=MEMORY_BASE)
    w.map(src, 0x12000, length=0x1000, user_va=MEMORY_BASE + 0x8000, flags=MAP_READABLE | 1)
    copy = dict(flags=FIXED_RW, dst_ioas_id=dst, src_ioas_id=src, dst_iova=0x40000)
    w.fails(IoasCopy(**copy, length=0x3000, src_iova=0x10000), errno.EPERM)  # W from read-only pages: 216-217
    w.fails(IoasCopy(**copy, length=0x4000, src_iova=0x10000), errno.ENOENT)  # a gap: 728-731
    w.fails(IoasCopy(**copy, length=0, src_iova=0x10000), errno.EINVAL)  # 708-709
    w.fails(IoasCopy(**{**copy, "flags": 0}, length=0x1000, src_iova=0x10000), errno.EINVAL)  # 310-312
    w.fails(IoasCopy(**{**copy, "src_ioas_id": 77}, length=0x1000, src_iova=0x10000), errno.ENOENT)
    w.ok(IoasCopy(**{**copy, "flags": MAP_READABLE | 1}, length=0x2000, src_iova=0x11000))  # a sub-range, 2 areas
    assert [(a.iova, a.length, a.user_va) for a in w.state.get(dst).areas] == \
        [(0x40000, 0x1000, MEMORY_BASE + 0x1000), (0x41000, 0x1000, MEMORY_BASE + 0x8000)]


def test_iova_ranges_and_emsgsize_writes_back_the_count():
    w = World()
    ioas = w.ioas()
    assert w.ok(IoasIovaRanges(ioas_id=ioas, num_iovas=4)) == \
        {"num_iovas": 1, "allowed_iovas": ((0, U64_MAX),), "out_iova_alignment": 1}
    w.bind("nic")
    w.attach("nic", ioas)
    out = w.fails(IoasIovaRanges(ioas_id=ioas, num_iovas=1), errno.EMSGSIZE).out  # ioas.c 107-109
    assert out["num_iovas"] == 3 and out["allowed_iovas"] == ((0, AMD_MSI_RANGE[0] - 1),)
    assert out["out_iova_alignment"] == PAGE_SIZE
    w.fails(IoasIovaRanges(ioas_id=ioas, num_iovas=4, reserved=1), errno.EOPNOTSUPP)  # 75-76


def test_allow_iovas_rules():
    w = World()
    ioas = w.ioas()
    allow = dict(ioas_id=ioas)
    w.fails(IoasAllowIovas(**allow, num_iovas=1, allowed_iovas=((5, 5),)), errno.EINVAL)  # 129-130
    w.fails(IoasAllowIovas(**allow, num_iovas=2, allowed_iovas=((0, 0x1fff), (0x1000, 0x3000))), errno.EINVAL)
    w.fails(IoasAllowIovas(**allow, num_iovas=2, allowed_iovas=((0, 0x1fff),)), errno.EFAULT)
    w.fails(IoasAllowIovas(**allow, reserved=1), errno.EOPNOTSUPP)  # 155-156
    w.bind("nic")
    w.attach("nic", ioas)
    w.fails(IoasAllowIovas(**allow, num_iovas=1, allowed_iovas=((0, 0xFFFF_FFFF),)), errno.EADDRINUSE)  # 876-879
    w.ok(IoasAllowIovas(**allow, num_iovas=1, allowed_iovas=((0, 0xFFFF),)))
    w.ok(IoasAllowIovas(**allow))  # the empty list allows everything again
    assert w.state.get(ioas).allowed == ()


def test_attach_refused_when_a_reserved_region_meets_an_area_or_allowed_range():
    w = World()
    ioas = w.ioas()
    w.bind("nic")
    w.map(ioas, AMD_MSI_RANGE[0])
    w.fails(DeviceAttach(device="nic", pt_id=ioas), errno.EADDRINUSE)  # io_pagetable.c 893-895
    w.ok(IoasUnmap(ioas_id=ioas, iova=0, length=U64_MAX))
    w.ok(IoasAllowIovas(ioas_id=ioas, num_iovas=1, allowed_iovas=((0xF000_0000, 0xFFFF_FFFF),)))
    w.fails(DeviceAttach(device="nic", pt_id=ioas), errno.EADDRINUSE)


def test_lazy_unmap_parks_the_range_until_the_drain():
    w = World(driver=FakeDriver(lazy=True))
    ioas = w.ioas()
    w.bind("nic")
    w.attach("nic", ioas)
    w.map(ioas, 0x10000)
    w.ok(IoasUnmap(ioas_id=ioas, iova=0x10000, length=0x2000))
    assert w.state.get(ioas).areas == ()
    assert device_mappings(w.state, "nic") == ((0x10000, MEMORY_BASE, 0x2000, True, True),)  # still reachable
    w.fails(IoasMap(flags=FIXED_RW, ioas_id=ioas, user_va=MEMORY_BASE, length=0x1000, iova=0x10000), errno.EINVAL)
    assert w.ok(IoasIovaRanges(ioas_id=ioas, num_iovas=8))["num_iovas"] == 4  # the parked range is reserved
    w.ok(FlushQueueDrain())
    assert device_mappings(w.state, "nic") == () and w.state.parked == ()
    w.map(ioas, 0x10000)


def test_strict_unmap_releases_at_once():
    w = World()
    ioas = w.ioas()
    w.bind("nic")
    w.attach("nic", ioas)
    w.map(ioas, 0x10000)
    w.ok(IoasUnmap(ioas_id=ioas, iova=0x10000, length=0x2000))
    assert device_mappings(w.state, "nic") == () and w.state.parked == ()
    w.map(ioas, 0x10000)
