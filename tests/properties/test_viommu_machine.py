"""The HW-vIOMMU Hypothesis machine (``frontend/viommu_machine.py``): it holds on the correct model within its
default budget and catches, within that budget, each hardware preset that names it (``presets.VIOMMU_MACHINE``);
a broken hypervisor reading and a broken guest event log are caught by its rules on short sequences; what
counts as caught is its ViommuViolation, not a crash."""

import os

import pytest

from amdvi.frontend import sequence_library as L
from amdvi.frontend import tasks
from amdvi.frontend import viommu_machine as V
from amdvi.frontend.viommu_machine import STRAY_WRITE, ViommuViolation, machine
from amdvi.models import software as sw
from amdvi.models.amd_driver.choices import Driver
from amdvi.models.system import StepError
from amdvi.properties import sequence, sequence_check
from amdvi.properties.presets import PRESETS, VIOMMU_MACHINE, caught_by

EXAMPLES = int(os.environ.get("AMDVI_MACHINE_EXAMPLES", V.EXAMPLES))  # more: AMDVI_MACHINE_EXAMPLES, the deep test
FIXED = V.CORRECT
KEPT = L._scenario(L.NIC, iommufd=L.HW_VIOMMU["iommufd"], driver=Driver(hw_viommu="amd-wip", domid_map_on_free="kept"))


def test_the_viommu_machine_holds_on_the_correct_model():
    """Correct, with mainline's unflushed hDomID free fixed: replacing a nested domain otherwise refutes
    domain-id-uniqueness (examples/sequences/nested-hdomid-freed-unflushed.json). Its default budget,
    half a second an example."""
    assert V.run(FIXED, V.budget(max_examples=EXAMPLES)) is None


@pytest.mark.parametrize("preset", caught_by(VIOMMU_MACHINE))
def test_each_hardware_preset_naming_the_machine_is_caught_within_its_default_budget(preset):
    """As ``amdvi mutants`` runs it: the preset's choices on the correct model, the default budget, and the
    failure is the machine's ViommuViolation of the property the preset breaks."""
    failure = V.run(V.scenario(PRESETS[preset].choices))
    assert isinstance(failure, ViommuViolation), failure
    assert failure.property in BREAKS[preset], failure


BREAKS = {"viommu-guest-event-log-untranslated": (STRAY_WRITE, sequence.GUEST_EVENTS)}  # what each preset breaks


def test_every_preset_naming_the_machine_says_what_it_breaks():
    assert caught_by(VIOMMU_MACHINE) and set(caught_by(VIOMMU_MACHINE)) == set(BREAKS)
    assert all(not PRESETS[p].driver.faults() for p in caught_by(VIOMMU_MACHINE))  # hardware presets only


def test_the_mutant_task_counts_only_the_machines_violation_as_caught(monkeypatch):
    """``amdvi mutants``'s task (which catches the presets: tests/cli/test_fanout.py): it passes on the
    correct model (a small budget here: the test above runs the default one), and any other failure, a
    crash, is reported but not caught."""
    preset = caught_by(VIOMMU_MACHINE)[0]
    assert tasks.MachineTask(VIOMMU_MACHINE, examples=2).run() == {"caught": False, "failure": None}
    monkeypatch.setattr(V, "run", lambda scenario, config: RuntimeError("a crash"))
    crashed = tasks.MachineTask(VIOMMU_MACHINE, tuple(PRESETS[preset].choices.as_assignments())).run()
    assert crashed == {"caught": False, "failure": "RuntimeError: a crash"}


def test_the_machine_rules_catch_a_hypervisor_that_keeps_freed_domain_ids_mapped():
    """The machine's own checks on a short rule sequence: the guest moves its device to DomainID 2, the
    old nested domain is freed, and its gDomID 1 still names the freed hDomID."""
    m = machine(KEPT)()
    m.boot()
    with pytest.raises(ViommuViolation, match="mapping-table-integrity") as raised:
        m.new_nested_domain(domain=2)
    assert raised.value.property == sequence.MAPS
    m = machine(FIXED)()
    m.boot()
    m.new_nested_domain(domain=2)
    m.guest_commands([sw.inv_pages(1, L.GVA, 0x1000, pasid=0)])
    m.dma()
    m.teardown()


# A guest that clears its GCR3 entry and points its root elsewhere, then sends only commands that do not
# invalidate that (INVALIDATE_IOTLB_PAGES, INVALIDATE_DEVTAB_ENTRY, INVALIDATE_ALL, which it may not send):
# the IOTLB keeps its GVA's translation, into its own page. Found by the machine with flush-completeness
# checked at the end, on the correct model.
STALE_BY_ITS_OWN_DOING = [
    ("guest_write", dict(gpa=L.GCR3_TABLE, value=0)), ("guest_write", dict(gpa=L.GUEST_ROOT, value=0x3007)),
    ("guest_commands", dict(commands=[sw.inv_iotlb(L.VIRT_ID, L.GVA, 0x1000), sw.inv_devtab(0)])),
    ("guest_commands", dict(commands=[sw.inv_devtab(0), sw.inv_all(), sw.inv_iotlb(9, L.GVA, 0x1000)])),
    ("guest_commands", dict(commands=[sw.inv_devtab(9), sw.inv_all()]))]


def test_a_guest_staleness_of_its_own_doing_is_not_a_violation():
    """flush-completeness holds a guest's driver to its invalidations; this guest sends any commands, so the
    machine leaves that property out (AT_END), and checks every other one."""
    m = machine(FIXED)()
    m.boot()
    for name, args in STALE_BY_ITS_OWN_DOING:
        getattr(m, name)(**args)
        m.guest_steps_write_only_what_their_stage_2_gave()
    m.teardown()
    [flush] = sequence_check.check(m.ex, properties=(sequence.FLUSH,))
    assert flush.violation is not None and "after software relied on its flushes" in flush.violation.what
    assert set(V.AT_END) == set(sequence_check.ALL_PROPERTIES) - {sequence.FLUSH}


@pytest.mark.deep
def test_the_viommu_machine_holds_under_a_longer_exploration():
    assert V.run(FIXED, V.budget(max_examples=40, stateful_step_count=10)) is None


@pytest.mark.deep
def test_the_viommu_machine_finds_a_hypervisor_that_keeps_freed_domain_ids_mapped():
    failure = V.run(KEPT, V.budget(max_examples=30, shrink=True))
    assert isinstance(failure, ViommuViolation) and failure.property == sequence.MAPS, failure


UNTRANSLATED_LOG = V.scenario(PRESETS["viommu-guest-event-log-untranslated"].choices)
REFUSED = [sw.inv_devtab(L.UNMAPPED_VIRT_ID)]  # a guest DeviceID without a vDEVICE: refused, logged


def test_the_event_log_check_catches_a_log_base_used_untranslated():
    """A short rule sequence: the guest enables its log and issues a refused command. Correct: its
    ILLEGAL_COMMAND_ERROR is written through stage 2 (into the guest's page) and the check passes, and the
    check has work to do (a record was written); broken: the record lands at the base taken as a system
    address, which no stage-2 translation gave."""
    m = machine(FIXED)()
    m.boot()
    m.enable_event_log()
    m.guest_commands(REFUSED)
    m.guest_steps_write_only_what_their_stage_2_gave()
    [event] = [g.effect.event for g in m.ex.run.guest_steps if g.effect.event.written]
    assert event.system_address == L.RAM + L.EVENT_LOG
    m = machine(UNTRANSLATED_LOG)()
    m.boot(event_log=True)  # enabled at boot, as in half the examples
    m.guest_commands(REFUSED)
    with pytest.raises(ViommuViolation, match=f"wrote {L.EVENT_LOG:#x}, ") as raised:
        m.guest_steps_write_only_what_their_stage_2_gave()
    assert raised.value.property == STRAY_WRITE


def test_a_crash_after_a_violation_in_the_making_stays_a_crash():
    """Hypothesis calls teardown after a failure too; the machine's end-of-run checks run only after actions
    that ended normally, so a crash is not reported as the violation teardown would find after it."""
    m = machine(UNTRANSLATED_LOG)()
    m.boot(event_log=True)
    m.guest_commands(REFUSED)  # the stray record is written; the invariant has not run yet
    with pytest.raises(StepError):
        m._step(L.destroy("no-such-object"))
    m.teardown()  # nothing raised: the StepError stands
    m.clean = True
    with pytest.raises(ViommuViolation, match=sequence.GUEST_EVENTS):
        m.teardown()
