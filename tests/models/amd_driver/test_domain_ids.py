"""DomainID allocation (the pdom_ids IDA): lowest free from 1, freed IDs reusable at once, reserved
IDs never handed out, exhaustion."""

import errno

from amdvi.models.amd_driver import DomainIds
from amdvi.spec.device_table import DTE

from driver_helpers import PLAIN, make, ok, paging


def test_lowest_free_from_one_and_immediate_reuse():
    ids, a = DomainIds().alloc()
    ids, b = ids.alloc()
    assert (a, b) == (1, 2)
    ids, again = ids.free(1).alloc()
    assert again == 1


def test_reserved_ids_are_skipped():
    ids, first = DomainIds.at_boot([1, 3]).alloc()
    ids, second = ids.alloc()
    assert (first, second) == (2, 4)


def test_boot_dte_domain_ids_are_reserved():
    driver = make(boot_dtes=((0x40, DTE.encode({"V": 1, "TV": 1, "DomainID": 1})),), reserved_domain_ids=(2,))
    state, handle = paging(driver, driver.initial_state())
    assert state.domains[handle].domain_id == 3


def test_exhaustion_paging_enomem_nested_enospc():
    driver = make(max_domain_id=2)
    state, parent = paging(driver, driver.initial_state(), nest_parent=True)  # DomainID 1
    viommu = ok(driver.viommu_init(state, PLAIN, parent, 0, ())).state, None
    state = viommu[0]
    v = max(state.viommus)
    state, _ = paging(driver, state)  # DomainID 2: the last
    assert driver.domain_alloc_paging(state, PLAIN, nest_parent=False, dirty_tracking=False,
                                      pasid=False).errno == errno.ENOMEM  # protection_domain_alloc
    gdte = (DTE.encode({"V": 1, "GV": 1, "GCR3 Table Root Pointer": 0x5000, "DomainID": 7}) & ((1 << 256) - 1))
    data = tuple((gdte >> (64 * i)) & ((1 << 64) - 1) for i in range(4))
    result = driver.domain_alloc_nested(state, PLAIN, v, 3, data)
    assert result.errno == errno.ENOSPC and result.state is state


def test_freed_domain_id_is_reused_by_the_next_domain():
    driver = make()
    state, a = paging(driver, driver.initial_state())
    state = ok(driver.domain_free(state, a)).state
    state, b = paging(driver, state)
    assert state.domains[b].domain_id == 1
