"""The HW-vIOMMU guest event log: a refused guest command is reported in the guest's own log, through its
stage 2; a full log overflows; an unmapped log raises GUEST_EVENT_FAULT in the host's; INSERT_GUEST_EVENT
copies the host's event at its head (each reading pinned)."""

import dataclasses

import pytest

from amdvi.models import rings
from amdvi.models import software as sw
from amdvi.models import viommu as vi
from amdvi.models.command_buffer import Effect
from amdvi.models.viommu_host import GuestSetup, build
from amdvi.spec import viommu as V
from amdvi.spec.bitvec import INT
from amdvi.spec.choices import Hardware
from amdvi.spec.commands import INSERT_GUEST_EVENT
from amdvi.spec.device_table import DTE
from amdvi.spec.events import GUEST_EVENT_FAULT, ILLEGAL_COMMAND_ERROR, IO_PAGE_FAULT, event_structure

CMD_GPA, EVT_GPA = 0x1000, 0x3000
GUEST_A = GuestSetup(guest_id=1, translate_device_id=0x30, pages={CMD_GPA: 0xA0_1000, EVT_GPA: 0xA0_3000},
                     devices={0x08: 0x10}, domains={5: 0x21}, command_buffer=CMD_GPA, event_log=EVT_GPA)
GUEST_B = GuestSetup(guest_id=2, translate_device_id=0x31, pages={CMD_GPA: 0xB0_1000, EVT_GPA: 0xB0_3000},
                     devices={0x08: 0x18}, domains={7: 0x22}, command_buffer=CMD_GPA, event_log=EVT_GPA)
GUESTS = (GUEST_A, GUEST_B)
UNMAPPED_DOMAIN = 9  # guest A has no map entry for it: the vIOMMU refuses the command
HOST_LOG = sw.Layout().event_log


def _submit(state, guest, commands):
    memory = dict(state.memory)
    base = guest.pages[guest.command_buffer]
    for i, c in enumerate(commands):
        memory[base + 16 * i], memory[base + 16 * i + 8] = c & (2 ** 64 - 1), c >> 64
    return vi.vf_write(INT, state.replace(memory=memory), guest.guest_id, 0x08, V.VF_CMD_TAIL.encode(Pointer=len(commands)))


def _block(state, guest, offset):
    return vi.TranslatedPrivateSpace().read(INT, state, vi.block_address(INT, guest.guest_id, offset), Hardware())[1]


def _entry(state, spa):
    return state.memory.get(spa, 0) | state.memory.get(spa + 8, 0) << 64


def _refused(guests=GUESTS, choices=Hardware(), commands=1):
    """Guest ``guests[0]`` submits ``commands`` commands naming a domain it has not mapped; the vIOMMU takes
    the first (skipping refused ones, so the next step takes the next)."""
    choices = dataclasses.replace(choices, viommu_refused_command="skip")
    state = _submit(build(guests, choices=choices), guests[0], [sw.inv_pages(UNMAPPED_DOMAIN)] * commands)
    return vi.process_guest_command(INT, state, guests[0].guest_id, choices=choices)


def test_a_refused_command_is_an_illegal_command_error_in_the_guests_own_log():
    state, e = _refused()
    assert e.refused and e.event.written and not e.event.faulted
    record = _entry(state, GUEST_A.pages[EVT_GPA])
    assert event_structure(record) is ILLEGAL_COMMAND_ERROR
    assert ILLEGAL_COMMAND_ERROR.view(record).Address == CMD_GPA  # the guest's own address of its command
    status = V.GUEST_EVT_STATE.view(_block(state, GUEST_A, vi.EVT_STATE_OFFSET))
    assert status.Pointer == 1 and status.EventLogInt == 1 and status.EventOverflow == 0
    assert _entry(state, GUEST_B.pages[EVT_GPA]) == 0 and state.memory.get(HOST_LOG, 0) == 0


def test_under_the_reading_none_a_refused_command_is_reported_nowhere():
    state, e = _refused(choices=Hardware(viommu_refused_command_event="none"))
    assert e.refused and not e.event.attempted and _entry(state, GUEST_A.pages[EVT_GPA]) == 0


def test_a_guest_without_an_enabled_event_log_gets_nothing():
    state, e = _refused(guests=(dataclasses.replace(GUEST_A, event_log=None), GUEST_B))
    assert e.refused and not e.event.attempted and _entry(state, GUEST_A.pages[EVT_GPA]) == 0


def test_a_full_log_overflows_writes_nothing_and_stays_stopped_until_the_guest_clears_the_bit():
    small = dataclasses.replace(GUEST_A, event_len=1)  # two entries: one record fills it
    state, e1 = _refused(guests=(small, GUEST_B), commands=3)
    assert e1.event.written
    state, e2 = vi.process_guest_command(INT, state, 1, choices=Hardware(viommu_refused_command="skip"))
    assert e2.event.dropped and not e2.event.written
    assert V.GUEST_EVT_STATE.view(_block(state, GUEST_A, vi.EVT_STATE_OFFSET)).EventOverflow == 1
    assert _entry(state, small.pages[EVT_GPA] + 16) == 0
    # the guest consumes its entry (head 1) and clears EventOverflow (RW1C in its VF Status): logging resumes
    state = vi.vf_write(INT, state, 1, 0x10, V.VF_EVT_HEAD.encode(Pointer=1))
    state = vi.vf_write(INT, state, 1, 0x20, V.VF_STATUS.encode(EventOverflow=1))
    assert V.GUEST_EVT_STATE.view(_block(state, GUEST_A, vi.EVT_STATE_OFFSET)).EventLogInt == 1  # kept: not cleared
    state, e3 = vi.process_guest_command(INT, state, 1, choices=Hardware(viommu_refused_command="skip"))
    assert e3.event.written and e3.event.system_address == small.pages[EVT_GPA] + 16


def test_a_log_stage_2_does_not_map_is_not_written_and_the_host_log_gets_guest_event_fault():
    unmapped = dataclasses.replace(GUEST_A, event_log=0x7000)  # no page of the guest is there
    state, e = _refused(guests=(unmapped, GUEST_B))
    assert e.event.faulted and not e.event.written and e.event.host_logged
    host = _entry(state, HOST_LOG)
    assert event_structure(host) is GUEST_EVENT_FAULT and GUEST_EVENT_FAULT.view(host).GuestID == 1
    assert V.GUEST_EVT_STATE.view(_block(state, GUEST_A, vi.EVT_STATE_OFFSET)).Pointer == 0  # the tail stays
    assert rings.tail(INT, state.regs, rings.EVENT_LOG) == 16


def test_under_the_broken_untranslated_base_the_record_lands_at_the_guest_physical_address():
    state, e = _refused(choices=Hardware(viommu_guest_event_log_untranslated=True))
    assert e.event.written and e.event.system_address == EVT_GPA
    assert event_structure(_entry(state, EVT_GPA)) is ILLEGAL_COMMAND_ERROR
    assert _entry(state, GUEST_A.pages[EVT_GPA]) == 0


# -- INSERT_GUEST_EVENT -----------------------------------------------------------------------------

FAULT_OF_0x10 = IO_PAGE_FAULT.encode({"DeviceID": 0x10, "Address": 0x4000})


def _host_event(choices, record=FAULT_OF_0x10, dte_guest=1):
    """Guest A's host device 0x10 has a vIOMMU DTE naming guest ``dte_guest``; the host's log holds ``record``."""
    state = build(GUESTS, choices=choices)
    layout = sw.Layout()
    memory = sw.write_dte(state.memory, layout, 0x10, DTE.encode(V=1, vImuEn=1, GDeviceID=0x08, GuestID=dte_guest))
    if record is not None:
        memory[HOST_LOG], memory[HOST_LOG + 8] = record & (2 ** 64 - 1), record >> 64
        state = state.replace(regs=rings.with_tail(INT, state.regs, rings.EVENT_LOG, 16))
    return state.replace(memory=memory)


def _insert(state, guest_id, choices):
    effect = Effect(processed=True, illegal=False, opcode=INSERT_GUEST_EVENT.field("Opcode").fixed,
                    command=INSERT_GUEST_EVENT.encode(GuestID=guest_id), address=0, store=False, store_address=0,
                    store_data=0, interrupt=False)
    return vi.host_command_effect(INT, state, effect, choices=choices)


def test_insert_guest_event_copies_the_hosts_head_event_with_the_guest_device_id_its_dte_records():
    state = _insert(_host_event(Hardware()), 1, Hardware())
    record = _entry(state, GUEST_A.pages[EVT_GPA])
    assert IO_PAGE_FAULT.view(record).DeviceID == 0x08 and IO_PAGE_FAULT.view(record).Address == 0x4000
    assert rings.head(INT, state.regs, rings.EVENT_LOG) == 0  # the host's software consumes its own log


def test_an_event_of_a_device_the_dte_gives_another_guest_is_not_inserted_unless_copied_unchanged():
    state = _insert(_host_event(Hardware(), dte_guest=2), 1, Hardware())
    assert _entry(state, GUEST_A.pages[EVT_GPA]) == 0
    unchanged = Hardware(viommu_guest_event_device_id="unchanged")
    state = _insert(_host_event(unchanged, dte_guest=2), 1, unchanged)
    assert _entry(state, GUEST_A.pages[EVT_GPA]) == FAULT_OF_0x10  # the host DeviceID reaches the guest


@pytest.mark.parametrize("choices,record", [(Hardware(viommu_insert_guest_event="none"), FAULT_OF_0x10),
                                            (Hardware(), None)])
def test_insert_guest_event_inserts_nothing_under_none_or_from_an_empty_host_log(choices, record):
    state = _insert(_host_event(choices, record=record), 1, choices)
    assert _entry(state, GUEST_A.pages[EVT_GPA]) == 0
    assert V.GUEST_EVT_STATE.view(_block(state, GUEST_A, vi.EVT_STATE_OFFSET)).Pointer == 0


def test_the_readings_default_to_the_guest_log_the_host_head_and_the_dte_device():
    options = Hardware.options()
    assert Hardware().viommu_refused_command_event == "guest-log"
    assert Hardware().viommu_insert_guest_event == "host-log-head"
    assert Hardware().viommu_guest_event_device_id == "dte-guest-device"
    assert "viommu-amdese-facts.md §6" in options["viommu_refused_command_event"].values["guest-log"]
    assert "FreeBSD" in options["viommu_insert_guest_event"].values["host-log-head"]
    assert "§9.1" in options["viommu_guest_event_device_id"].values["dte-guest-device"]
