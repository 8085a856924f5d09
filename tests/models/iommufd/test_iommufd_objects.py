"""HWPT, device attach, vIOMMU, vDEVICE, HW queue, DESTROY, INVALIDATE, GET_HW_INFO and the dispatcher
(iommufd-errnos.md §3.1, §3.4, §3.5, §4)."""

import errno

import pytest

from amdvi.models.iommufd.choices import Iommufd
from amdvi.models.iommufd.isolation_view import device_mappings
from amdvi.models.iommufd.objects import U64_MAX, users
from amdvi.models.iommufd.uapi import (CALLS, HW_QUEUE_TYPE_AMD_CMD, Destroy, DeviceAttach, DeviceBind,
                                       DeviceDetach, DeviceUnbind, GetHwInfo, HwptAlloc, HwptInvalidate,
                                       HwQueueAlloc, IoasAlloc, IoasMap, IoasUnmap, VdeviceAlloc, ViommuAlloc,
                                       as_record, fields, from_record)
from amdvi.models.timeline import Store

from fake_driver import EFR, EFR2, FakeDriver
from iommufd_world import MEMORY_BASE, World

AMD_TREE = Iommufd(nested_alloc="amd-tree", viommu_type="amd-tree", hw_queue="amd-tree")
GUEST_DTE = (0x3, 0x1000_0000_0000, 0, 0)


# -- dispatcher ------------------------------------------------------------------------------------


def test_size_below_the_minimum_is_einval_and_nonzero_trailing_bytes_e2big():
    w = World()
    w.fails(Destroy(size=4, id=1), errno.EINVAL)  # main.c 525-526
    w.fails(Destroy(size=16, id=1, trailing_nonzero=True), errno.E2BIG)  # 529-532
    w.fails(Destroy(size=16, id=1), errno.ENOENT)  # a longer struct with a zero tail is the same call
    assert w.ok(IoasAlloc(size=12, trailing_nonzero=True)) == {"out_ioas_id": 1}  # not longer: no tail to read


def test_a_shorter_extensible_struct_reads_its_missing_fields_as_zero():
    w = World()
    ioas, dev = w.ioas(), w.bind()
    out = w.ok(HwptAlloc(size=24, dev_id=dev, pt_id=ioas, data_type=3, data_len=32, data=GUEST_DTE))
    assert w.state.get(out["out_hwpt_id"]).nest_parent is False
    w.fails(HwptAlloc(size=20, dev_id=dev, pt_id=ioas), errno.EINVAL)


def test_the_registry_names_every_call_and_records_round_trip():
    assert set(CALLS) >= {"IOMMU_IOAS_MAP", "IOMMU_HWPT_ALLOC", "VFIO_DEVICE_ATTACH_IOMMUFD_PT", "IOMMU_DESTROY"}
    for name, cls in CALLS.items():
        assert cls.name == name and all(f.meaning for f in fields(cls))
        assert from_record(as_record(cls())) == cls()
    call = HwptAlloc(dev_id=2, pt_id=1, data_type=3, data_len=32, data=GUEST_DTE)
    assert from_record(as_record(call)) == call and as_record(call)["data"] == list(GUEST_DTE)
    assert {f.name: f.offset for f in fields(IoasMap)}["iova"] == 32
    with pytest.raises(ValueError, match="unknown field"):
        from_record({"call": "IOMMU_DESTROY", "idd": 1})


# -- HWPT_ALLOC --------------------------------------------------------------------------------------


def test_hwpt_alloc_errnos():
    w = World(choices=AMD_TREE)
    ioas, dev = w.ioas(), w.bind()
    w.fails(HwptAlloc(dev_id=dev, pt_id=ioas, reserved=1), errno.EOPNOTSUPP)  # hw_pagetable.c 360-361
    w.fails(HwptAlloc(dev_id=dev, pt_id=ioas, data_len=8), errno.EINVAL)  # 362-364
    w.fails(HwptAlloc(dev_id=dev, pt_id=ioas, data_type=3), errno.EINVAL)
    w.fails(HwptAlloc(dev_id=ioas, pt_id=ioas), errno.ENOENT)  # dev_id not a device: 366-368
    w.fails(HwptAlloc(dev_id=dev, pt_id=77), errno.EINVAL)  # pt_id missing: EINVAL, 370-373
    w.fails(HwptAlloc(dev_id=dev, pt_id=dev), errno.EINVAL)  # a device as pt: 417-419
    w.fails(HwptAlloc(dev_id=dev, pt_id=ioas, flags=16), errno.EOPNOTSUPP)  # 134-135
    w.fails(HwptAlloc(dev_id=dev, pt_id=ioas, flags=2), errno.EOPNOTSUPP)  # no dirty tracking (driver)
    w.fails(HwptAlloc(dev_id=dev, pt_id=ioas, flags=1 | 4), errno.EOPNOTSUPP)  # 139-141
    w.fails(HwptAlloc(dev_id=dev, pt_id=ioas, flags=4), errno.ENOENT)  # bad fault_id: 423-430
    w.fails(HwptAlloc(dev_id=dev, pt_id=ioas, data_type=3, data_len=32, data=GUEST_DTE), errno.EOPNOTSUPP)
    parent = w.nest_parent(dev, ioas)
    w.fails(HwptAlloc(dev_id=dev, pt_id=parent, data_type=3, data_len=32, data=GUEST_DTE), errno.EOPNOTSUPP)
    viommu = w.viommu(dev, parent)
    nested = w.ok(HwptAlloc(dev_id=dev, pt_id=viommu, data_type=3, data_len=32, data=GUEST_DTE))["out_hwpt_id"]
    w.fails(HwptAlloc(dev_id=dev, pt_id=nested, data_type=3, data_len=32, data=GUEST_DTE), errno.EINVAL)
    w.fails(HwptAlloc(dev_id=dev, pt_id=viommu, flags=1, data_type=3, data_len=32, data=GUEST_DTE),
            errno.EOPNOTSUPP)  # 306-307
    w.fails(HwptAlloc(dev_id=dev, pt_id=viommu, data_type=3, data_len=24, data=GUEST_DTE), errno.EINVAL)  # driver
    w.fails(HwptAlloc(dev_id=dev, pt_id=viommu, data_type=3, data_len=40, data=GUEST_DTE + (1,)), errno.E2BIG)
    far = w.bind("far")
    w.fails(HwptAlloc(dev_id=far, pt_id=viommu, data_type=3, data_len=32, data=GUEST_DTE), errno.EINVAL)  # 406-409


def test_a_user_hwpt_lives_until_destroy_and_is_busy_while_used():
    w = World(choices=AMD_TREE)
    ioas, dev = w.ioas(), w.bind()
    parent = w.nest_parent(dev, ioas)
    w.fails(Destroy(id=ioas), errno.EBUSY)  # the HWPT holds the IOAS
    w.attach("nic", parent)
    w.fails(Destroy(id=parent), errno.EBUSY)  # attached
    w.ok(DeviceDetach(device="nic"))
    assert w.state.get(parent) is not None  # not automatic: it stays
    viommu = w.viommu(dev, parent)
    w.fails(Destroy(id=parent), errno.EBUSY)  # the vIOMMU holds it
    nested = w.ok(HwptAlloc(dev_id=dev, pt_id=viommu, data_type=3, data_len=32, data=GUEST_DTE))["out_hwpt_id"]
    w.fails(Destroy(id=viommu), errno.EBUSY)  # the nested HWPT holds the vIOMMU
    w.attach("nic", nested)
    w.fails(Destroy(id=nested), errno.EBUSY)
    w.attach("nic", parent)  # replace
    for object_id in (nested, viommu, parent, ioas):
        if object_id == parent:
            w.ok(DeviceDetach(device="nic"))
        w.ok(Destroy(id=object_id))
    w.fails(Destroy(id=ioas), errno.ENOENT)
    w.fails(Destroy(id=0), errno.ENOENT)
    w.fails(Destroy(id=dev), errno.EBUSY)  # VFIO holds a bound device
    assert w.driver_state.domains == {} and w.driver_state.viommus == {}


def test_an_automatic_hwpt_is_made_on_attach_shared_and_dies_with_its_last_device():
    w = World()
    ioas, nic, gpu, far = w.ioas(), w.bind("nic"), w.bind("gpu"), w.bind("far")
    w.map(ioas, 0x10000)
    auto = w.attach("nic", ioas)
    hwpt = w.state.get(auto)
    assert hwpt.auto_domain and hwpt.ioas == ioas and users(w.state, ioas) == 2
    assert w.driver_state.domains[hwpt.domain].mappings == ((0x10000, MEMORY_BASE, 0x2000, True, True),)
    assert w.attach("gpu", ioas) == auto  # compatible: shared
    other = w.attach("far", ioas)  # the fake driver refuses another IOMMU's domain (EINVAL): a new one
    assert other != auto
    w.fails(Destroy(id=auto), errno.EBUSY)
    w.ok(DeviceDetach(device="nic"))
    assert w.state.get(auto) is not None
    w.ok(DeviceUnbind(device="gpu"))
    assert w.state.get(auto) is None and hwpt.domain not in w.driver_state.domains
    w.fails(Destroy(id=auto), errno.ENOENT)
    w.ok(DeviceDetach(device="nic"))  # detaching a detached device is silent


def test_first_attach_attaches_before_filling_replace_fills_before_attaching():
    w = World()
    first_ioas, second_ioas = w.ioas(), w.ioas()
    w.map(first_ioas, 0x10000)
    w.map(second_ioas, 0x10000)
    w.bind("nic")
    w.run(DeviceAttach(device="nic", pt_id=first_ioas))
    assert [s.what for s in w.last.steps] == ["domain_alloc_paging", "attach", "map"]
    w.run(DeviceAttach(device="nic", pt_id=second_ioas))  # replace: the old automatic HWPT then dies
    assert [s.what for s in w.last.steps] == ["domain_alloc_paging", "map", "attach", "unmap", "domain_free"]
    assert all(isinstance(s, Store) for s in w.last.steps)


def test_attach_errnos():
    w = World()
    ioas = w.ioas()
    w.fails(DeviceAttach(device="nic", pt_id=ioas), errno.EINVAL)  # not bound
    w.fails(DeviceBind(device="nope"), errno.ENOENT)
    dev = w.bind()
    w.fails(DeviceBind(device="nic"), errno.EINVAL)  # bound twice
    w.fails(DeviceAttach(device="nic", pt_id=99), errno.ENOENT)
    w.fails(DeviceAttach(device="nic", pt_id=dev), errno.EINVAL)
    w.fails(DeviceAttach(device="nic", pt_id=ioas, argsz=8), errno.EINVAL)
    w.fails(DeviceAttach(device="nic", pt_id=ioas, flags=2), errno.EINVAL)


# -- vIOMMU / vDEVICE / HW queue / INVALIDATE / HW_INFO -----------------------------------------------


def test_viommu_alloc_errnos():
    w = World()
    ioas, dev = w.ioas(), w.bind()
    plain = w.ok(HwptAlloc(dev_id=dev, pt_id=ioas))["out_hwpt_id"]
    w.fails(ViommuAlloc(type=0, dev_id=dev, hwpt_id=plain), errno.EOPNOTSUPP)  # viommu.c 32-33
    w.fails(ViommuAlloc(type=3, flags=1, dev_id=dev, hwpt_id=plain), errno.EOPNOTSUPP)
    w.fails(ViommuAlloc(type=3, dev_id=99, hwpt_id=plain), errno.ENOENT)
    w.fails(ViommuAlloc(type=3, dev_id=dev, hwpt_id=0), errno.ENOENT)  # 59-63
    w.fails(ViommuAlloc(type=3, dev_id=dev, hwpt_id=ioas), errno.ENOENT)
    w.fails(ViommuAlloc(type=3, dev_id=dev, hwpt_id=plain), errno.EINVAL)  # not NEST_PARENT: 65-68


def test_vdevice_rules_and_tombstone():
    w = World()
    ioas, nic, gpu, far = w.ioas(), w.bind("nic"), w.bind("gpu"), w.bind("far")
    viommu = w.viommu(nic, w.nest_parent(nic, ioas))
    alloc = w.ok(VdeviceAlloc(viommu_id=viommu, dev_id=nic, virt_id=0x99))["out_vdevice_id"]
    w.fails(VdeviceAlloc(viommu_id=viommu, dev_id=nic, virt_id=0x88), errno.EEXIST)  # one per device: 178-180
    w.fails(VdeviceAlloc(viommu_id=viommu, dev_id=gpu, virt_id=0x99), errno.EEXIST)  # one per virt_id: 223-225
    w.fails(VdeviceAlloc(viommu_id=viommu, dev_id=far, virt_id=0x77), errno.EINVAL)  # another IOMMU: 168-170
    w.fails(VdeviceAlloc(viommu_id=99, dev_id=gpu, virt_id=0x77), errno.ENOENT)
    w.fails(Destroy(id=viommu), errno.EBUSY)
    w.ok(DeviceUnbind(device="nic"))
    assert alloc in w.state.tombstones
    w.fails(Destroy(id=alloc), errno.ENOENT)  # the tombstone
    fresh = w.ok(VdeviceAlloc(viommu_id=viommu, dev_id=gpu, virt_id=0x99))["out_vdevice_id"]
    assert fresh != alloc  # the tombstone's id is not reused
    w.ok(Destroy(id=fresh))
    w.ok(Destroy(id=viommu))


def test_hw_queue_mainline_and_amd_tree():
    w = World()
    ioas, dev = w.ioas(), w.bind()
    viommu = w.viommu(dev, w.nest_parent(dev, ioas))
    w.map(ioas, 0x10000)
    queue = dict(viommu_id=viommu, type=HW_QUEUE_TYPE_AMD_CMD, nesting_parent_iova=0x10000, length=0x1000)
    w.fails(HwQueueAlloc(**queue), errno.EOPNOTSUPP)  # mainline: viommu.c 381-398
    w.choices = Iommufd(hw_queue="amd-tree")
    w.fails(HwQueueAlloc(**{**queue, "type": 0}), errno.EOPNOTSUPP)  # 369-370
    w.fails(HwQueueAlloc(**{**queue, "length": 0}), errno.EINVAL)  # 371-372
    w.fails(HwQueueAlloc(**{**queue, "nesting_parent_iova": U64_MAX}), errno.EOVERFLOW)  # 373-375
    w.fails(HwQueueAlloc(**{**queue, "nesting_parent_iova": 0x30000}), errno.ENOENT)  # not mapped
    w.fails(HwQueueAlloc(**{**queue, "type": 7}), errno.EOPNOTSUPP)
    made = w.ok(HwQueueAlloc(**queue))["out_hw_queue_id"]
    w.fails(HwQueueAlloc(**queue), errno.EEXIST)
    w.fails(IoasUnmap(ioas_id=ioas, iova=0x10000, length=0x2000), errno.EBUSY)  # pinned: io_pagetable.c 775-778
    w.fails(Destroy(id=viommu), errno.EBUSY)
    w.ok(Destroy(id=made))
    w.ok(IoasUnmap(ioas_id=ioas, iova=0x10000, length=0x2000))


def test_hw_queue_pages_must_be_contiguous():
    w = World(choices=Iommufd(hw_queue="amd-tree"))
    ioas, dev = w.ioas(), w.bind()
    viommu = w.viommu(dev, w.nest_parent(dev, ioas))
    w.map(ioas, 0x10000, length=0x1000, user_va=MEMORY_BASE)
    w.map(ioas, 0x11000, length=0x1000, user_va=MEMORY_BASE + 0x5000)
    w.fails(HwQueueAlloc(viommu_id=viommu, type=HW_QUEUE_TYPE_AMD_CMD, nesting_parent_iova=0x10000, length=0x2000),
            errno.EFAULT)  # viommu.c 337-339


def test_invalidate_writes_back_zero_and_is_eopnotsupp_on_amd():
    w = World(choices=AMD_TREE)
    ioas, dev = w.ioas(), w.bind()
    parent = w.nest_parent(dev, ioas)
    viommu = w.viommu(dev, parent)
    nested = w.ok(HwptAlloc(dev_id=dev, pt_id=viommu, data_type=3, data_len=32, data=GUEST_DTE))["out_hwpt_id"]
    for hwpt_id, expected in ((nested, errno.EOPNOTSUPP), (viommu, errno.EOPNOTSUPP), (parent, errno.EINVAL),
                              (ioas, errno.EINVAL), (99, errno.ENOENT)):
        assert w.fails(HwptInvalidate(hwpt_id=hwpt_id, data_uptr=1, entry_len=16, entry_num=2), expected).out == \
            {"entry_num": 0}
    assert w.fails(HwptInvalidate(hwpt_id=nested, entry_num=1), errno.EINVAL).out == {"entry_num": 0}  # 528-529
    w.fails(HwptInvalidate(hwpt_id=nested, reserved=1), errno.EOPNOTSUPP)  # 523-524


def test_get_hw_info_returns_efr_and_efr2():
    w = World()
    dev = w.bind()
    out = w.ok(GetHwInfo(dev_id=dev, data_len=16))
    assert out["data"] == (EFR, EFR2) and out["out_data_type"] == 4 and out["data_len"] == 16
    assert out["out_capabilities"] == 1  # EFR.HDSup
    assert w.ok(GetHwInfo(dev_id=dev, data_len=4))["data"] == (EFR & 0xFFFF_FFFF,)
    assert w.ok(GetHwInfo(dev_id=dev, flags=1, in_data_type=4, data_len=32))["data_len"] == 16
    w.fails(GetHwInfo(dev_id=dev, flags=1, in_data_type=2), errno.EOPNOTSUPP)  # the AMD driver's answer
    w.fails(GetHwInfo(dev_id=dev, flags=2), errno.EOPNOTSUPP)
    w.fails(GetHwInfo(dev_id=dev, reserved=1), errno.EOPNOTSUPP)
    w.fails(GetHwInfo(dev_id=99), errno.ENOENT)


def test_isolation_view_follows_attachment_and_nesting():
    w = World(choices=AMD_TREE)
    ioas, dev = w.ioas(), w.bind()
    w.map(ioas, 0x10000)
    assert device_mappings(w.state, "nic") == ()  # blocked
    parent = w.nest_parent(dev, ioas)
    nested = w.ok(HwptAlloc(dev_id=dev, pt_id=w.viommu(dev, parent), data_type=3, data_len=32,
                            data=GUEST_DTE))["out_hwpt_id"]
    w.attach("nic", nested)
    assert device_mappings(w.state, "nic") == ((0x10000, MEMORY_BASE, 0x2000, True, True),)  # the stage 2
    w.ok(DeviceDetach(device="nic"))
    assert device_mappings(w.state, "nic") == () == device_mappings(w.state, "gpu")


def test_a_driver_error_on_attach_changes_nothing():
    w = World()
    ioas = w.ioas()
    w.map(ioas, 0x10000)
    w.bind()
    w.driver = FakeDriver(failures=(("attach", errno.ENOMEM, None),))
    w.fails(DeviceAttach(device="nic", pt_id=ioas), errno.ENOMEM)
    w.driver = FakeDriver(failures=(("map", errno.ENOMEM, None),))
    w.fails(DeviceAttach(device="nic", pt_id=ioas), errno.ENOMEM)
    w.fails(HwptAlloc(dev_id=2, pt_id=ioas, flags=1), errno.ENOMEM)
