"""A Hypothesis state machine over the real system (iommufd over the AMD driver over the IOMMU): a VMM
makes calls with arguments drawn from small domains (valid and invalid), devices DMA in between, and
every property `amdvi check` checks holds on the sequence so far. A failed ioctl changes nothing (but
a partial unmap, which Linux documents)."""

import errno
import os

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from amdvi.frontend.sequence_library import RAM, RW, _call, attach, bind, destroy, detach, dma, hwpt, ioas, unmap
from amdvi.models import system
from amdvi.models.iommufd import uapi as U
from amdvi.models.iommufd.driver_api import PciDevice
from amdvi.properties import sequence, sequence_check

ATS = PciDevice("nic", 0x10, ats=True)
BRIDGED = PciDevice("disk", 0x20, aliases=(0x21,))
SCENARIO = system.Scenario(devices=(ATS, BRIDGED), user_memory=((RAM, 0x10_0000),))

DEVICES = st.sampled_from(["nic", "disk"])
IOAS_NAMES = st.sampled_from(["a", "b"])
HWPT_NAMES = st.sampled_from(["h1", "h2"])
IOVAS = st.sampled_from([0x10_0000, 0x10_1000, 0x20_0000, 0x0, 0x10_0800])
LENGTHS = st.sampled_from([0x1000, 0x2000, 0x0, 0x1800])
USER_VAS = st.sampled_from([RAM, RAM + 0x1000, RAM + 0x10_0000 - 0x1000, 0x0])  # the last two: the end, outside
FLAGS = st.sampled_from([RW, RW, U.MAP_FIXED_IOVA | U.MAP_READABLE, U.MAP_READABLE | U.MAP_WRITEABLE, 0])
BAD_ID = 0x99  # an object id nothing has
PER_STEP = (sequence_check.ERRNO, sequence_check.LIFETIME, sequence.ISOLATION)  # after each step
AT_END = sequence_check.ALL_PROPERTIES  # once per example, on the whole sequence


class SystemMachine(RuleBasedStateMachine):
    @initialize()
    def boot(self):
        self.state, _ = system.boot(SCENARIO)
        self.steps = []
        self.bound = set()

    def _name_or_bad(self, data, names):
        known = [n for n in names if n in self.bound]
        return data.draw(st.sampled_from(known + [BAD_ID]))

    def _step(self, step):
        before = self.state
        if isinstance(step, system.Call):
            system.check_call(step, self.bound, {d.name for d in SCENARIO.devices})
        after, result = system.apply(SCENARIO, before, step)
        if result.errno and not (isinstance(step, system.Call) and step.name == U.IoasUnmap.name
                                 and result.errno == errno.ENOENT):
            assert after.iommufd == before.iommufd and after.driver == before.driver, step
            assert result.steps == (), step
        self.steps.append(step)
        self.state = after
        if isinstance(step, system.Call) and result.errno == 0:
            self.bound |= set(step.bind.values())
        self._check(PER_STEP)

    def _check(self, properties):
        ex = sequence_check.execute(SCENARIO, self.steps)
        bad = [(v.property, v.violation.what) for v in sequence_check.check(ex, properties) if not v.holds]
        assert not bad, (bad, self.steps)

    # -- the VMM's calls ---------------------------------------------------------------------------------

    @rule(device=DEVICES)
    def bind_device(self, device):
        self._step(bind(device))

    @rule(name=IOAS_NAMES)
    def alloc_ioas(self, name):
        self._step(ioas(name))

    @rule(data=st.data(), iova=IOVAS, user_va=USER_VAS, length=LENGTHS, flags=FLAGS)
    def map(self, data, iova, user_va, length, flags):
        self._step(_call(U.IoasMap.name, ioas_id=self._name_or_bad(data, ["a", "b"]), flags=flags, user_va=user_va,
                         length=length, iova=iova))

    @rule(data=st.data(), iova=IOVAS, length=LENGTHS | st.just(2 ** 64 - 1))
    def unmap(self, data, iova, length):
        self._step(unmap(iova, length, ioas_name=self._name_or_bad(data, ["a", "b"])))

    @rule(data=st.data(), device=DEVICES, name=HWPT_NAMES)
    def alloc_hwpt(self, data, device, name):
        if device + "_dev" not in self.bound:
            return
        self._step(hwpt(device, self._name_or_bad(data, ["a", "b"]), name))

    @rule(data=st.data(), device=DEVICES)
    def attach_device(self, data, device):
        self._step(attach(device, self._name_or_bad(data, ["a", "b", "h1", "h2"])))

    @rule(device=DEVICES)
    def detach_device(self, device):
        self._step(detach(device))

    @rule(data=st.data())
    def destroy_object(self, data):
        self._step(destroy(self._name_or_bad(data, ["a", "b", "h1", "h2"])))

    # -- devices -------------------------------------------------------------------------------------------

    @rule(device=DEVICES, address=IOVAS, write=st.booleans())
    def device_dma(self, device, address, write):
        self._step(dma(device, address, write))

    def teardown(self):
        if getattr(self, "steps", None):
            self._check(AT_END)


TestSystemMachine = SystemMachine.TestCase
# AMDVI_MACHINE_EXAMPLES: more examples (random, not derandomised) to hunt for bugs
EXAMPLES = int(os.environ.get("AMDVI_MACHINE_EXAMPLES", "0"))
TestSystemMachine.settings = settings(max_examples=EXAMPLES or 12, stateful_step_count=15 if EXAMPLES else 10,
                                      deadline=None, derandomize=not EXAMPLES,
                                      suppress_health_check=list(HealthCheck))
