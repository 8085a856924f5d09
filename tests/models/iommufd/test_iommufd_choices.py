"""The iommufd layer's choices: declared like the hardware's, each reading changes the model where it
says, and each fault switch is caught."""

import errno

import pytest

from amdvi.models.iommufd.choices import MAINLINE, Iommufd
from amdvi.models.iommufd.ioctls import ioctl
from amdvi.models.iommufd.objects import references
from amdvi.models.iommufd.uapi import Destroy, HwptAlloc, IoasMap, IoasUnmap, ViommuAlloc
from amdvi.spec.choices import FAULT, READING

from fake_driver import FakeDriver
from iommufd_world import FIXED_RW, MEMORY_BASE, World

GUEST_DTE = (0x3, 0x1000_0000_0000, 0, 0)


def test_defaults_are_mainline_and_every_choice_is_declared():
    assert Iommufd() == MAINLINE and MAINLINE.changed() == {} and Iommufd.layer == "iommufd"
    for name, option in Iommufd.options().items():
        assert option.kind in (READING, FAULT) and option.doc and option.section, name
    assert MAINLINE.assign(["nested-alloc=amd-tree"]).nested_alloc == "amd-tree"
    with pytest.raises(ValueError, match="unknown iommufd choice"):
        MAINLINE.assign(["no-such=on"])


def test_a_stray_value_in_place_of_choices_is_refused():
    w = World()
    with pytest.raises(TypeError, match="Iommufd"):
        ioctl(w.driver, w.driver_state, w.state, Destroy(id=1), choices=frozenset())


def _nested_setup(choices):
    w = World(choices=choices)
    ioas, dev = w.ioas(), w.bind()
    return w, dev, w.viommu(dev, w.nest_parent(dev, ioas))


def test_nested_alloc_through_a_viommu():
    nested = dict(data_type=3, data_len=32, data=GUEST_DTE)
    w, dev, viommu = _nested_setup(MAINLINE)
    w.fails(HwptAlloc(dev_id=dev, pt_id=viommu, **nested), errno.EOPNOTSUPP)
    w, dev, viommu = _nested_setup(Iommufd(nested_alloc="amd-tree"))
    assert w.run(HwptAlloc(dev_id=dev, pt_id=viommu, **nested)).steps[0].what == "domain_alloc_nested"


def test_viommu_type():
    w, dev, _ = _nested_setup(MAINLINE)
    parent = w.nest_parent(dev, 1)
    w.viommu(dev, parent, type=1)  # mainline: any non-zero type
    w.choices = Iommufd(viommu_type="amd-tree")
    w.fails(ViommuAlloc(type=1, dev_id=dev, hwpt_id=parent), errno.EOPNOTSUPP)
    w.viommu(dev, parent, type=3)


# hw_queue's two readings: test_iommufd_objects.test_hw_queue_mainline_and_amd_tree


def test_fault_destroy_ignores_users_is_caught():
    w = World(choices=Iommufd(destroy_ignores_users=True))
    ioas, dev = w.ioas(), w.bind()
    w.attach("nic", ioas)
    outcome = w.run(Destroy(id=ioas))
    assert outcome.errno == 0  # the correct model says EBUSY
    dangling = [r for o in w.state.objects.values() for r in references(o) if r not in w.state.objects]
    assert dangling == [ioas]


def test_fault_failed_map_keeps_area_is_caught():
    w = World(choices=Iommufd(failed_map_keeps_area=True), driver=FakeDriver(failures=(("map", errno.ENOMEM, None),)))
    ioas = w.ioas()
    w.bind()
    w.driver = FakeDriver()
    w.ok(HwptAlloc(dev_id=2, pt_id=ioas))
    w.driver = FakeDriver(failures=(("map", errno.ENOMEM, None),))
    before = w.state
    outcome = w.run(IoasMap(flags=FIXED_RW, ioas_id=ioas, user_va=MEMORY_BASE, length=0x1000, iova=0x10000))
    assert outcome.errno == errno.ENOMEM and outcome.state != before  # a failed ioctl changed the IOAS


def test_fault_hwpt_alloc_bad_pt_enoent_is_caught():
    w = World(choices=Iommufd(hwpt_alloc_bad_pt_enoent=True))
    dev = w.bind()
    assert w.run(HwptAlloc(dev_id=dev, pt_id=42)).errno == errno.ENOENT != errno.EINVAL


def test_fault_unmap_partial_splits_is_caught():
    w = World(choices=Iommufd(unmap_partial_splits=True))
    ioas = w.ioas()
    w.map(ioas, 0x10000, length=0x4000)
    outcome = w.run(IoasUnmap(ioas_id=ioas, iova=0x11000, length=0x1000))
    assert outcome.errno == 0  # the correct model says ENOENT
    assert [(a.iova, a.length) for a in w.state.get(ioas).areas] == [(0x10000, 0x1000), (0x12000, 0x2000)]
