"""A Hypothesis state machine over a HW-vIOMMU guest and its VMM (the library's ``hw-viommu-guest.json``
set-up): the guest issues any commands with any of its IDs (mapped or not, and commands it may not issue),
rewrites its own tables, enables its event log; the VMM creates and destroys nested domains and vDEVICEs;
devices DMA. Mapping-table integrity and isolation hold after every step; every word a step of the guest's
command buffer writes (a refused command's ILLEGAL_COMMAND_ERROR, a COMPLETION_WAIT store) is one its stage
2 gave (``properties.viommu_events``); every other ``amdvi check`` property but flush-completeness (AT_END)
holds at the end.

It lives here, not in ``amdvi.properties``, because its steps are the sequence library's vocabulary
(``frontend.sequence_library``), which ``amdvi.properties`` does not import. ``amdvi mutants`` runs it
(``presets.VIOMMU_MACHINE``) on each hardware preset that names it; what counts as caught is a
:class:`ViommuViolation`, never another exception (a step the model cannot carry out, a crash).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import HealthCheck, Phase, seed, settings, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

from amdvi.frontend import sequence_library as L
from amdvi.models import software as sw
from amdvi.models.amd_driver.choices import Driver
from amdvi.models.iommufd import uapi as U
from amdvi.models.system import GuestCommands, GuestWrite, Scenario
from amdvi.properties import sequence, sequence_check, viommu_events
from amdvi.spec.choices import Hardware

SETUP = L._hw_viommu(teardown=False)
GUEST_IDS = st.integers(0, 4)
COMMANDS = st.one_of(
    st.builds(lambda d, pasid: sw.inv_pages(d, L.GVA, 0x1000, pasid=pasid), GUEST_IDS, st.sampled_from([0, None])),
    st.builds(sw.inv_devtab, st.sampled_from([L.VIRT_ID, 0, 9])),
    st.builds(lambda d: sw.inv_iotlb(d, L.GVA, 0x1000), st.sampled_from([L.VIRT_ID, 9])),
    st.just(sw.inv_all()))
PER_STEP = (sequence.MAPS, sequence.ISOLATION)
# Every ``amdvi check`` property but flush-completeness, at the end: that one holds a guest's driver to the
# invalidations its commands promise (a GuestCommands step counts as the guest having invalidated), and
# this guest is adversarial: it rewrites its tables and issues any commands, so a stale translation of its
# own tables is its own doing, on the correct model too (a table word cleared, then only INVALIDATE_DEVTAB
# and INVALIDATE_ALL sent). A stale translation reaching memory the guest does not own is isolation's.
AT_END = tuple(p for p in sequence_check.ALL_PROPERTIES if p != sequence.FLUSH)
STRAY_WRITE = "guest-command-stage-2-writes"  # the machine's own check: a command step writes only through stage 2

# The default budget, half a second an example. The examples come from a fixed seed, the same wherever the
# machine runs (as derandomize's), but not re-drawn whenever the class's source text changes (derandomize
# seeds from a digest of it), so a docstring edit does not change what the budget explores.
EXAMPLES, STEP_COUNT, SEED = 20, 6, 0
# The correct model: the HW-vIOMMU flow with mainline's unflushed hDomID free fixed (replacing a nested
# domain otherwise refutes domain-id-uniqueness: examples/sequences/nested-hdomid-freed-unflushed.json).
CORRECT = L._scenario(L.NIC, iommufd=L.HW_VIOMMU["iommufd"],
                      driver=Driver(hw_viommu="amd-wip", nested_free_flush="flush"))


class ViommuViolation(AssertionError):
    """A property the machine checks broke: ``property`` (an ``amdvi check`` property, or STRAY_WRITE),
    ``what`` it saw, after the machine's ``steps`` (from SETUP on). The only failure counted as caught."""

    def __init__(self, property: str, what: str, steps: tuple[Any, ...]) -> None:
        super().__init__(f"{property}: {what} (after {len(steps)} steps: {steps})")
        self.property, self.what, self.steps = property, what, steps


def scenario(hardware: Hardware = Hardware()) -> Scenario:
    """The correct model's scenario under ``hardware`` (a preset's choices)."""
    return dataclasses.replace(CORRECT, hardware=hardware)


def machine(scenario: Scenario) -> type[RuleBasedStateMachine]:
    """The machine class over ``scenario`` (a HW-vIOMMU scenario: the NIC given to one guest by SETUP)."""
    class ViommuMachine(RuleBasedStateMachine):
        @initialize(event_log=st.booleans())
        def boot(self, event_log=False):
            """SETUP, and in half the examples the guest's event log enabled at once: a refused command
            writes to it only once it is on, and a refused command before that can halt the guest's queue."""
            self.clean = False  # True between actions that ended normally: teardown checks only then
            self.ex = sequence_check.execute(scenario, SETUP)
            self.nested = 0
            self.event_log = False
            self.checked = len(self.ex.run.guest_steps)  # the guest steps whose writes were checked
            self.clean = True
            if event_log:
                self.enable_event_log()

        def _violated(self, property: str, what: str) -> ViommuViolation:
            return ViommuViolation(property, what, tuple(self.ex.steps[len(SETUP):]))

        def _step(self, step):
            self.clean, since = False, self.ex.run.now
            sequence_check.advance(self.ex, step)
            for v in sequence_check.check(self.ex, properties=PER_STEP, since=since):
                if v.violation is not None:
                    raise self._violated(v.property, v.violation.what)
            self.clean = True

        @rule(commands=st.lists(COMMANDS, min_size=1, max_size=3))
        def guest_commands(self, commands):
            """At least one command (each step ends with a COMPLETION_WAIT anyway): a budget spent on empty
            steps rarely has a refused command follow the guest's log being enabled."""
            self._step(GuestCommands("viommu", tuple(commands), L.SEMAPHORE))

        @rule(gpa=st.sampled_from([L.GUEST_ROOT, L.GUEST_ROOT + 0x3000, L.GCR3_TABLE]), value=st.sampled_from([0, 0x3007]))
        def guest_write(self, gpa, value):
            self._step(GuestWrite("ioas", gpa, value))

        @rule(domain=st.integers(1, 3))
        def new_nested_domain(self, domain):
            """The guest rewrote its DTE with another DomainID: a new nested HWPT replaces the old one."""
            self.nested += 1
            name = f"nested{self.nested}"
            self._step(L.nested_hwpt("nic", name, L.guest_dte(DomainID=domain)))
            self._step(L.attach("nic", name))
            previous = "nested" if self.nested == 1 else f"nested{self.nested - 1}"
            self._step(L.destroy(previous))

        @rule()
        def vdevice_again(self):
            self._step(L.destroy("nic_vdev"))
            self._step(L.vdevice("nic", L.VIRT_ID))

        @rule()
        def dma(self):
            self._step(L.dma("nic", L.GVA))

        @precondition(lambda self: not self.event_log)
        @rule()
        def enable_event_log(self):
            """The guest enables its event log: the VMM gives the page it names as a HW queue of type EVT."""
            self.event_log = True
            self._step(L.map_fixed(L.EVENT_LOG, L.RAM + L.EVENT_LOG, L.PAGE))
            self._step(L.hw_queue(L.EVENT_LOG, L.PAGE, name="evtq", queue_type=U.HW_QUEUE_TYPE_AMD_EVT))

        @invariant()
        def guest_steps_write_only_what_their_stage_2_gave(self):
            self.clean, run = False, self.ex.run
            owners = sequence_check.translate_owners(self.ex.state.driver)
            for g in run.guest_steps[self.checked:]:
                stray = viommu_events.stray_words(g.before, g.guest_id, lambda d: owners.get(d, 0),
                                                  config=run.viommu, choices=run.choices)
                if stray:
                    raise self._violated(STRAY_WRITE, f"guest {g.guest_id}'s command step wrote "
                                         f"{', '.join(map(hex, stray))}, which no translation through its stage 2 gave")
            self.checked, self.clean = len(run.guest_steps), True

        def teardown(self):
            """Hypothesis calls it after a failure too: then the failure stands, unmasked (a crash is not
            turned into a violation found after it)."""
            if not getattr(self, "clean", False):
                return
            for v in sequence_check.check(self.ex, properties=AT_END):
                if v.violation is not None:
                    raise self._violated(v.property, v.violation.what)

    return seed(SEED)(ViommuMachine)


def budget(*, max_examples: int | None = None, stateful_step_count: int | None = None,
           shrink: bool = False) -> settings:
    """The settings of a run: the fixed seed's examples, by default the machine's own budget (EXAMPLES of at
    most STEP_COUNT rules), unshrunk (shrinking a failure takes minutes)."""
    return settings(max_examples=EXAMPLES if max_examples is None else max_examples,
                    stateful_step_count=STEP_COUNT if stateful_step_count is None else stateful_step_count,
                    deadline=None, database=None, derandomize=True, report_multiple_bugs=False,
                    suppress_health_check=list(HealthCheck),
                    phases=(Phase.explicit, Phase.generate) + ((Phase.shrink,) if shrink else ()))


def run(scenario: Scenario = CORRECT, config: settings | None = None) -> Exception | None:
    """Run the machine over ``scenario`` once under Hypothesis (``config``: :func:`budget`); ``None`` when no
    example failed, else the failure (a :class:`ViommuViolation` when a property broke)."""
    try:
        run_state_machine_as_test(machine(scenario), settings=config or budget())
    except Exception as failure:  # noqa: BLE001 - the caller decides what a failure means
        return failure
    return None
