"""Typed hardware choices: an unknown name or value is refused with one line, a stray set of names is
never taken for the specification, and every reading changes what the model does."""

import pytest

from amdvi.models import software as sw
from amdvi.models.caches import Caches, TlbSlot, invalidate
from amdvi.models.command_buffer import step_command
from amdvi.models.event_log import log_event
from amdvi.models.iommu import step
from amdvi.properties import invalidation
from amdvi.spec.bitvec import INT
from amdvi.spec.choices import FAULT, READING, SPEC, Hardware
from amdvi.spec.mmio import CONTROL

from test_command_buffer import head_of, place, regs, status
from test_event_log import RECORD, regs as log_regs


def test_defaults_are_the_specification_and_every_choice_is_declared_with_its_meaning():
    assert Hardware() == SPEC and SPEC.changed() == {} and SPEC.label() == "defaults"
    for name, option in Hardware.options().items():
        assert option.kind in (READING, FAULT) and option.doc and option.section, name
        assert getattr(SPEC, name) in option.values
        if option.kind == FAULT:
            assert getattr(SPEC, name) is False


@pytest.mark.parametrize("assignment,message", [
    ("no-such=on", "unknown hardware choice 'no-such'"),
    ("illegal-command=maybe", "'maybe' is not one of stop, continue"),
    ("completion-wait-early=perhaps", "'perhaps' is not on or off"),
    ("illegal-command", "write NAME=VALUE"),
])
def test_an_unknown_name_or_value_is_one_line(assignment, message):
    with pytest.raises(ValueError, match=message) as e:
        SPEC.assign([assignment])
    assert "\n" not in str(e.value)


def test_a_value_of_the_wrong_type_is_refused_when_built():
    with pytest.raises(ValueError, match="illegal-command"):
        Hardware(illegal_command="halt")
    with pytest.raises(ValueError, match="completion-wait-early"):
        Hardware(completion_wait_early="yes")
    with pytest.raises(TypeError):
        Hardware(no_such_choice=True)


def test_assignments_round_trip():
    c = SPEC.assign(["illegal-command=continue", "completion_wait_early=on"])
    assert c.changed() == {"illegal-command": "continue", "completion-wait-early": True}
    assert SPEC.assign(c.as_assignments()) == c and c.faults() == ("completion-wait-early",)


def test_a_set_of_names_in_place_of_choices_is_refused():
    # the old interface took a set of mutant names; passing one now must not run the correct model
    with pytest.raises(TypeError, match="Hardware"):
        step(INT, sw.initial_state(sw.Layout()), None, choices=frozenset({"devtab-invalidation-ignored"}))
    with pytest.raises((TypeError, AttributeError)):
        invalidation.fresh_after_change("dte", "dte", "v1", choices=frozenset({"devtab-invalidation-ignored"}))


# -- each reading changes the model, exactly where it says --------------------------------------------


def test_illegal_command_stops_or_continues():
    memory, r = place([1]), regs(tail=16)  # opcode 00h is undefined
    _, stopped, e = step_command(INT, memory, r)
    assert e.illegal and head_of(stopped) == 0 and status(stopped).CmdBufRun == 0
    _, going, e = step_command(INT, memory, r, choices=Hardware(illegal_command="continue"))
    assert e.illegal and not e.processed and head_of(going) == 16 and status(going).CmdBufRun == 1


def test_event_overflow_with_or_without_the_interrupt_enable():
    full = log_regs(tail=0x30, head=0x40)
    _, r = log_event(INT, {}, full, RECORD)
    assert r.view(INT, "status").EventOverflow == 1
    _, r = log_event(INT, {}, full, RECORD, choices=Hardware(event_overflow="with-interrupt"))
    assert r.view(INT, "status").EventOverflow == 0
    enabled = full.replace(control=CONTROL.encode(EventLogEn=1, EventIntEn=1))
    _, r = log_event(INT, {}, enabled, RECORD, choices=Hardware(event_overflow="with-interrupt"))
    assert r.view(INT, "status").EventOverflow == 1


def test_device_iotlb_gn0_scope():
    tagged = TlbSlot(valid=True, owner=0x11, guest=True, pasid=3, page=0x4000, page_shift=12, spa=0x8000,
                     readable=True, writable=True)
    caches = Caches(device_iotlb=(tagged,))
    every = invalidate(INT, caches, sw.inv_iotlb(0x11))
    assert not every.device_iotlb[0].valid
    untagged = invalidate(INT, caches, sw.inv_iotlb(0x11), choices=Hardware(device_iotlb_gn0="untagged-only"))
    assert untagged.device_iotlb[0].valid


def test_not_present_cache_keeps_a_fault_until_software_invalidates():
    from amdvi.models.dma import ServeChoice
    from amdvi.models.iommu import Dma, Fill, Retire, ProcessCommand
    from amdvi.properties import stateful
    from amdvi.spec.translation import Request, translate

    np_cache = Hardware(not_present_cache="iotlb")
    state, next_free = stateful.platform()
    request = Request(stateful.PLAIN_DEVICE, 0x8010)  # its PTE is not present: IO_PAGE_FAULT, PR = 0
    for choices, kept in ((SPEC, False), (np_cache, True)):
        filled, _ = step(INT, state, Fill("iotlb", 0, request), choices=choices)
        assert bool(filled.caches.iotlb[0].valid) is kept
    filled, _ = step(INT, state, Fill("iotlb", 0, request), choices=np_cache)
    assert filled.caches.iotlb[0].present is False
    # software maps the page and sends nothing: the remembered fault still answers
    mapped = sw.v1_map(filled.memory, stateful.DOMAIN_ROOTS[5], stateful.MODE, 0x8000, stateful.POOL[0], next_free)
    after = filled.replace(memory=mapped.memory)
    assert translate(INT, after.memory, after.regs.dev_tab_bar, request).ok
    _, out = step(INT, after, Dma(request, ServeChoice(iotlb=0)), choices=np_cache)
    assert not out.dma.ok
    # with the invalidation Linux sends when NpCache is set, the slot is gone and the DMA goes through
    for move in sw.queue_moves(after, sw.Layout(), [sw.inv_pages(5, 0x8000, 0x1000, pde=False)]):
        after, _ = step(INT, after, move, choices=np_cache)
    after, _ = step(INT, after, ProcessCommand(), choices=np_cache)
    after, _ = step(INT, after, Retire(0), choices=np_cache)
    _, out = step(INT, after, Dma(request, ServeChoice(iotlb=0)), choices=np_cache)
    assert out.dma.ok


def test_a_v0_dte_passes_untranslated_or_is_blocked():
    from amdvi.models import software as sw
    from amdvi.spec.translation import Request, translate

    bar = sw.registers(sw.Layout()).dev_tab_bar
    request = Request(device_id=1, address=0x1234_5000)
    passed = translate(INT, {}, bar, request)
    assert passed.ok and passed.spa == 0x1234_5000
    blocked = translate(INT, {}, bar, request, choices=Hardware(invalid_dte="blocked"))
    assert not blocked.ok and not blocked.logged
