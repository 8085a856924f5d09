"""The June-2023 HW-vIOMMU RFC's ioctls as a second hypervisor interface (iommufd reading
``viommu-interface``): the uAPI declaration, the dispatch, and the errnos of viommu.md §7.2 and §7.3."""

import dataclasses
import errno

import pytest

from amdvi.frontend import sequence_library as L
from amdvi.models import system
from amdvi.models.iommufd import uapi as U
from amdvi.models.iommufd.choices import Iommufd
from amdvi.spec.mmio import CMD_BUF_BAR, CONTROL, EFR

RFC = L._scenario(L.NIC, **L.RFC)
MAINLINE = dataclasses.replace(RFC, iommufd=Iommufd())
SETUP = L._rfc_guest(teardown=False)[:7]  # the nic on its stage 2
INIT = L.rfc_call(U.RfcIommuInit, {"gid": "guest"})
ATTACHED = SETUP + (INIT, L.rfc_call(U.RfcDeviceAttach, gid="guest", hdev_id=0x10, gdev_id=L.VIRT_ID))


def run(steps, scenario=RFC):
    """The system state after ``steps`` and each step's result (no hardware run)."""
    state, _ = system.boot(scenario)
    results = []
    for step in steps:
        state, result = system.apply(scenario, state, step)
        results.append(result)
    return state, results


def last(steps, scenario=RFC):
    return run(steps, scenario)[1][-1]


def unchanged(steps, scenario=RFC):
    """Whether the last step left the software state as it was and did nothing to the hardware."""
    before, _ = run(steps[:-1], scenario)
    after, results = run(steps, scenario)
    return (after.iommufd, after.driver) == (before.iommufd, before.driver) and results[-1].steps == ()


def rfc(call, **args):
    return L.rfc_call(call, **args)


# -- the declaration -----------------------------------------------------------------------------------------


def test_the_rfc_structs_numbers_and_min_sizes():
    """[RFC-12] include/uapi/linux/amd_viommu.h; min_size = offsetofend(last field) [RFC-21]."""
    layout = {c.name: (c.number, c.struct_size, c.min_size, [(f.name, f.offset, f.bits) for f in U.fields(c)
                                                              if f.offset is not None])
              for c in U.RFC_CALLS}
    head = [("size", 0, 32), ("iommu_id", 4, 32), ("gid", 8, 32)]
    assert layout["VIOMMU_IOMMU_INIT"] == (0x60, 12, 12, head)
    assert layout["VIOMMU_IOMMU_DESTROY"] == (0x61, 12, 12, head)
    dev = head + [("hdev_id", 12, 16), ("gdev_id", 14, 16), ("queue_id", 16, 16)]
    assert layout["VIOMMU_DEVICE_ATTACH"] == (0x62, 20, 18, dev) and layout["VIOMMU_DEVICE_DETACH"] == (0x63, 20, 18, dev)
    dom = head + [("gdev_id", 12, 16), ("gdom_id", 14, 16)]
    assert layout["VIOMMU_DOMAIN_ATTACH"] == (0x64, 16, 16, dom) and layout["VIOMMU_DOMAIN_DETACH"] == (0x65, 16, 16, dom)
    assert layout["VIOMMU_MMIO_ACCESS"] == (0x66, 32, 29, head + [("offset", 12, 32), ("value", 16, 64),
                                                                    ("mmio_size", 24, 32), ("is_write", 28, 8)])
    assert layout["VIOMMU_CMDBUF_UPDATE"] == (0x67, 24, 24, head + [("cmdbuf_size", 12, 32), ("hva", 16, 64)])
    assert all(U.CALLS[c.name] is c for c in U.RFC_CALLS)
    assert system.id_fields("VIOMMU_DEVICE_ATTACH") == {"gid"} and system.id_fields("VIOMMU_IOMMU_INIT") == frozenset()


# -- dispatch ------------------------------------------------------------------------------------------------

MAINLINE_ANSWERS = {"VIOMMU_IOMMU_INIT": errno.ENOTTY, "VIOMMU_IOMMU_DESTROY": errno.ENOTTY,
                    "VIOMMU_DEVICE_ATTACH": errno.ENOTTY, "VIOMMU_DEVICE_DETACH": errno.ENOTTY,
                    "VIOMMU_DOMAIN_ATTACH": 0,  # VFIO_GET_API_VERSION
                    "VIOMMU_DOMAIN_DETACH": 0,  # VFIO_CHECK_EXTENSION of an unknown extension
                    "VIOMMU_MMIO_ACCESS": errno.EINVAL,  # VFIO_SET_IOMMU of a type that is not TYPE1
                    "VIOMMU_CMDBUF_UPDATE": errno.ENOTTY}


@pytest.mark.parametrize("name", MAINLINE_ANSWERS)
def test_without_the_rfc_its_numbers_are_iommufds_vfio_compat_answers(name):
    """iommufd_fops_ioctl hands numbers outside its table to iommufd_vfio_ioctl; 0x64-0x66 are VFIO's own."""
    step = L.rfc_call(U.CALLS[name], gid=1)
    assert last(SETUP + (step,), MAINLINE).errno == MAINLINE_ANSWERS[name]
    assert unchanged(SETUP + (step,), MAINLINE)


def test_the_iommufd_viommu_calls_work_under_either_interface():
    steps = (L.bind("nic"), L.ioas(), L.hwpt("nic", "ioas", "s2", flags=U.HWPT_ALLOC_NEST_PARENT), L.viommu("nic", "s2"))
    assert last(steps, RFC).errno == 0 and last(steps, MAINLINE).errno == 0


@pytest.mark.parametrize("call", U.RFC_CALLS, ids=lambda c: c.name)
def test_amd_dispatchers_size_rules(call):
    """[RFC-21]: size unreadable EFAULT, below min_size EOPNOTSUPP (iommufd says EINVAL), non-zero bytes past
    the struct E2BIG; a zero tail, or a size between min_size and the struct's, passes to the handler."""
    assert last((L.rfc_call(call, gid=1, unreadable=True),)).errno == errno.EFAULT
    assert last((L.rfc_call(call, gid=1, size=call.min_size - 1),)).errno == errno.EOPNOTSUPP
    assert last((L.rfc_call(call, gid=1, size=call.struct_size + 4, trailing_nonzero=True),)).errno == errno.E2BIG
    assert last((L.rfc_call(call, gid=1, size=call.struct_size + 4),)).errno not in (errno.E2BIG, errno.EOPNOTSUPP)
    assert last((L.rfc_call(call, gid=1, size=call.min_size),)).errno not in (errno.E2BIG, errno.EOPNOTSUPP)


@pytest.mark.parametrize("call", U.RFC_CALLS, ids=lambda c: c.name)
def test_an_iommu_id_that_names_no_iommu_is_enodev(call):
    step = L._call(call.name, iommu_id=0x99, gid=1)
    assert last(SETUP + (INIT, step)).errno == errno.ENODEV and unchanged(SETUP + (INIT, step))


# -- per ioctl (§7.3) -----------------------------------------------------------------------------------------


def test_init_gives_guest_ids_from_one_and_a_copy_back_fault_keeps_the_guest():
    state, results = run((INIT, L.rfc_call(U.RfcIommuInit, {"gid": "second"})))
    assert [r.out["gid"] for r in results] == [1, 2]
    faulted = (L.rfc_call(U.RfcIommuInit, unwritable=True), INIT)
    state, results = run(faulted)
    assert results[0].errno == errno.EFAULT and results[0].steps  # the work is done before the copy back
    assert results[1].out["gid"] == 2 and set(state.driver.rfc_guests) == {1, 2}


def test_destroy_of_a_guest_id_no_init_gave_is_einval():
    assert last((L.rfc_call(U.RfcIommuDestroy, gid=5),)).errno == errno.EINVAL
    steps = (INIT, L.rfc_call(U.RfcIommuDestroy, gid="guest"), L.rfc_call(U.RfcIommuDestroy, gid="guest"))
    assert [r.errno for r in run(steps)[1]] == [0, 0, errno.EINVAL]


def test_device_attach_of_a_device_on_no_domain_is_einval_after_its_writes():
    """[RFC-16]: the host domain is looked up after the DTE and map writes, which stay."""
    steps = (L.bind("nic"), INIT, L.rfc_call(U.RfcDeviceAttach, gid="guest", hdev_id=0x10, gdev_id=L.VIRT_ID))
    result = last(steps)
    assert result.errno == errno.EINVAL and result.steps and not unchanged(steps)


def test_device_attach_and_detach_do_not_check_the_guest_id():
    assert last(SETUP + (L.rfc_call(U.RfcDeviceAttach, gid=9, hdev_id=0x10, gdev_id=1),)).errno == 0
    assert last(SETUP + (L.rfc_call(U.RfcDeviceDetach, gid=9, hdev_id=0x10, gdev_id=1),)).errno == 0


def test_a_guest_id_past_the_models_bound_is_einval():
    assert last(ATTACHED[:-1] + (L.rfc_call(U.RfcDeviceAttach, gid="guest", hdev_id=0x10, gdev_id=64),)).errno == 22
    assert last(ATTACHED + (L.rfc_call(U.RfcDomainAttach, gid="guest", gdev_id=8, gdom_id=64),)).errno == 22


def test_domain_attach_of_an_unknown_guest_is_einval():
    assert last(SETUP + (L.rfc_call(U.RfcDomainAttach, gid=3, gdev_id=8, gdom_id=1),)).errno == errno.EINVAL


def test_mmio_writes_land_in_vfctrl_and_read_back():
    cmd_base = L.guest_mmio_write(0x08, CMD_BUF_BAR.encode(ComBase=0xE, ComLen=9))
    control = L.guest_mmio_write(0x18, CONTROL.encode(CmdBufEn=1, EventLogEn=1, PprAutoRspAon=1))

    def read(offset, **extra):
        return L.rfc_call(U.RfcMmioAccess, gid="guest", offset=offset, is_write=0, **extra)
    state, results = run((INIT, cmd_base, control, read(0x18), read(0x08), read(0x30), read(0x40)))
    assert results[3].out["value"] == CONTROL.encode(CmdBufEn=1, EventLogEn=1, PprAutoRspAon=1)
    assert results[4].out["value"] == CMD_BUF_BAR.encode(ComLen=9)  # the base itself is not kept
    assert EFR.view(results[5].out["value"])["PASmax"] == 0xF and results[6].out["value"] == 0
    ignored = L.guest_mmio_write(0x40, 1)
    assert last((INIT, ignored)).errno == 0 and unchanged((INIT, ignored))
    assert last((INIT, read(0x18, unwritable=True))).errno == errno.EFAULT


def test_cmdbuf_update_errnos():
    update = dict(gid="guest", cmdbuf_size=0x1000)
    assert last((L.rfc_call(U.RfcCmdbufUpdate, gid=4, cmdbuf_size=0x1000, hva=L.RAM),)).errno == errno.EINVAL
    assert last((INIT, L.rfc_call(U.RfcCmdbufUpdate, hva=0x4000_0000, **update))).errno == errno.EINVAL  # no pin
    too_big = L.rfc_call(U.RfcCmdbufUpdate, gid="guest", cmdbuf_size=0x81000, hva=L.RAM)
    assert last((INIT, too_big)).errno == errno.EINVAL
    assert last((INIT, L.rfc_call(U.RfcCmdbufUpdate, hva=L.RAM, **update))).errno == 0
