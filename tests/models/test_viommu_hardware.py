"""The HW-vIOMMU hardware: guest commands carried out with their IDs translated, and refused otherwise."""

import dataclasses

import pytest

from amdvi.models import software as sw
from amdvi.models import viommu as vi
from amdvi.models.caches import Caches, TlbSlot
from amdvi.models.iommu import retire
from amdvi.models.viommu_host import GuestSetup, HostSetup, build, private_pages_distinct
from amdvi.spec import viommu as V
from amdvi.spec.bitvec import INT
from amdvi.spec.choices import Hardware

HOST = HostSetup()
CMD_GPA, SEM_GPA = 0x1000, 0x2000
GUEST_A = GuestSetup(guest_id=1, translate_device_id=0x30, pages={CMD_GPA: 0xA0_1000, SEM_GPA: 0xA0_2000},
                     devices={0x08: 0x10}, domains={5: 0x21}, command_buffer=CMD_GPA)
GUEST_B = GuestSetup(guest_id=2, translate_device_id=0x31, pages={CMD_GPA: 0xB0_1000, SEM_GPA: 0xB0_2000},
                     devices={0x08: 0x18}, domains={7: 0x22}, command_buffer=CMD_GPA)
GUESTS = (GUEST_A, GUEST_B)


def _submit(state, guest, commands):
    """The guest writes ``commands`` at its ring's start and moves its tail (its VF doorbell)."""
    memory = dict(state.memory)
    base = guest.pages[guest.command_buffer]
    for i, c in enumerate(commands):
        memory[base + 16 * i], memory[base + 16 * i + 8] = c & (2 ** 64 - 1), c >> 64
    state = state.replace(memory=memory)
    return vi.vf_write(INT, state, guest.guest_id, 0x08, V.VF_CMD_TAIL.encode(Pointer=len(commands)))


def _step(state, guest, choices=Hardware()):
    return vi.process_guest_command(INT, state, guest.guest_id, choices=choices)


def _block(state, guest, offset):
    return vi.TranslatedPrivateSpace().read(INT, state, vi.block_address(INT, guest.guest_id, offset), Hardware())[1]


def test_the_host_set_up_gives_each_private_page_its_own_system_page():
    state = build(GUESTS)
    assert private_pages_distinct(state, GUESTS)
    assert V.CMD_CONTROL.view(_block(state, GUEST_A, 0x20)).CmdBufEn == 1


def test_a_guest_invalidation_takes_effect_with_the_host_domain_id():
    state = _submit(build(GUESTS), GUEST_A, [sw.inv_pages(5, 0x4000, 0x1000)])
    state, e = _step(state, GUEST_A)
    assert e.processed and e.accepted and not e.refused
    assert e.domain == 0x21 and V.VF_CMD_HEAD.view(_block(state, GUEST_A, vi.HEAD_OFFSET)).Pointer == 1
    assert state.in_flight[0].command == sw.inv_pages(0x21, 0x4000, 0x1000)
    # retired, it clears the IOTLB entry of host domain 0x21 and not another guest's
    slot = TlbSlot(valid=True, owner=0x21, page=0x4000, page_shift=12, spa=0x5000, readable=True, present=True)
    other = dataclasses.replace(slot, owner=0x22)
    caches = Caches.empty(iotlb=2).with_slot("iotlb", 0, slot).with_slot("iotlb", 1, other)
    after = retire(INT, state.replace(caches=caches), 0)
    assert not after.caches.iotlb[0].valid and after.caches.iotlb[1].valid


def test_a_guest_device_id_is_translated_through_its_own_map():
    state = _submit(build(GUESTS), GUEST_B, [sw.inv_iotlb(0x08, 0x4000, 0x1000)])
    _, e = _step(state, GUEST_B)
    assert e.accepted and e.device == 0x18  # guest B's 0x08 is host 0x18, not guest A's 0x10


@pytest.mark.parametrize("command", [sw.inv_pages(6), sw.inv_devtab(0x09), sw.inv_all()],
                         ids=["unmapped-domain", "unmapped-device", "invalidate-all"])
def test_a_command_the_vIOMMU_does_not_carry_out_stops_the_guest_buffer(command):
    state = _submit(build(GUESTS), GUEST_A, [command, sw.inv_pages(5)])
    state, e = _step(state, GUEST_A)
    assert e.refused and not e.processed and not any(q.valid for q in state.in_flight)
    assert V.CMD_CONTROL.view(_block(state, GUEST_A, 0x20)).CmdBufEn == 0
    assert V.VF_CMD_HEAD.view(_block(state, GUEST_A, vi.HEAD_OFFSET)).Pointer == 0
    _, again = _step(state, GUEST_A)
    assert not again.fetched  # stopped


def test_under_skip_a_refused_command_is_passed_over():
    state = _submit(build(GUESTS), GUEST_A, [sw.inv_pages(6), sw.inv_pages(5)])
    state, e = _step(state, GUEST_A, Hardware(viommu_refused_command="skip"))
    assert e.refused and V.VF_CMD_HEAD.view(_block(state, GUEST_A, vi.HEAD_OFFSET)).Pointer == 1
    _, e = _step(state, GUEST_A, Hardware(viommu_refused_command="skip"))
    assert e.accepted and e.domain == 0x21


def test_a_guest_completion_wait_waits_for_the_invalidation_then_stores_into_guest_memory():
    state = _submit(build(GUESTS), GUEST_A, [sw.inv_pages(5), sw.completion_wait(SEM_GPA, 0x77)])
    state, _ = _step(state, GUEST_A)
    blocked_state, e = _step(state, GUEST_A)
    assert e.blocked and not e.store
    state = retire(INT, blocked_state, 0)
    state, e = _step(state, GUEST_A)
    assert e.store and state.memory[GUEST_A.pages[SEM_GPA]] == 0x77


def test_broken_a_shared_domain_map_lets_a_guest_reach_another_guests_domain():
    """Guest B names DomainID 5, which only guest A mapped; with one map for every guest it reaches A's host
    domain (0x21); with per-guest maps it is refused."""
    shared = Hardware(viommu_domain_map_shared=True)
    a_shared = dataclasses.replace(GUEST_A, guest_id=0)  # the shared map is the one at GuestID 0's place
    state = _submit(build((a_shared, GUEST_B), choices=shared), GUEST_B, [sw.inv_pages(5)])
    _, e = _step(state, GUEST_B, shared)
    assert e.accepted and e.domain == 0x21
    _, e = _step(_submit(build(GUESTS), GUEST_B, [sw.inv_pages(5)]), GUEST_B)
    assert e.refused


def test_broken_an_untranslated_device_id_reaches_a_device_of_another_guest():
    broken = Hardware(viommu_device_id_untranslated=True)
    state = _submit(build(GUESTS), GUEST_B, [sw.inv_iotlb(0x10)])  # 0x10: guest A's host device
    _, e = _step(state, GUEST_B, broken)
    assert e.accepted and e.device == 0x10
    _, e = _step(state, GUEST_B)
    assert e.refused  # guest B never mapped a guest DeviceID 0x10


def test_reset_vmmio_clears_the_guest_block():
    state = _submit(build(GUESTS), GUEST_A, [sw.inv_pages(5)])
    state = vi.reset_vmmio(INT, state, GUEST_A.guest_id)
    assert _block(state, GUEST_A, 0x20) == 0 and _block(state, GUEST_A, vi.TAIL_OFFSET) == 0
    assert _block(state, GUEST_B, 0x20) != 0
    _, e = _step(state, GUEST_A)
    assert not e.fetched


def test_bad_register_offsets_are_refused():
    with pytest.raises(ValueError, match="VFCtrl offset 0x18"):
        vi.vfctrl_write(INT, build(GUESTS), 1, 0x18, 0)
    with pytest.raises(ValueError, match="VF offset 0x18"):  # the event-log tail is the IOMMU's
        vi.vf_write(INT, build(GUESTS), 1, 0x18, 0)
