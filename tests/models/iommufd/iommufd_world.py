"""A small world for iommufd's tests: three devices, some process memory, the fake driver."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from amdvi.models.iommufd.choices import MAINLINE, Iommufd
from amdvi.models.iommufd.driver_api import PciDevice
from amdvi.models.iommufd.ioctls import Outcome, ioctl
from amdvi.models.iommufd.objects import IommufdState, initial_state
from amdvi.models.iommufd.uapi import (MAP_FIXED_IOVA, MAP_READABLE, MAP_WRITEABLE, DeviceAttach, DeviceBind,
                                       HwptAlloc, IoasAlloc, IoasMap, ViommuAlloc)

from fake_driver import FakeDriver, FakeState

DEVICES = (PciDevice("nic", 0x10), PciDevice("gpu", 0x18), PciDevice("far", 0x20, iommu=1))
MEMORY_BASE, MEMORY_SIZE = 0x10_0000, 0x100_0000  # 16 MiB of process memory at 1 MiB
RW = MAP_READABLE | MAP_WRITEABLE
FIXED_RW = MAP_FIXED_IOVA | RW


def fresh_state(**kwargs: Any) -> IommufdState:
    return initial_state(DEVICES, ((MEMORY_BASE, MEMORY_SIZE),), **kwargs)


@dataclass
class World:
    """Runs calls one after another, keeping both states (as the outcome gives them, even on error)."""

    driver: Any = field(default_factory=FakeDriver)
    choices: Iommufd = MAINLINE
    state: IommufdState = field(default_factory=fresh_state)
    driver_state: Any = field(default_factory=FakeState)
    last: Outcome | None = None

    def run(self, call: Any) -> Outcome:
        self.last = ioctl(self.driver, self.driver_state, self.state, call, choices=self.choices)
        self.state, self.driver_state = self.last.state, self.last.driver_state
        return self.last

    def ok(self, call: Any) -> dict:
        outcome = self.run(call)
        assert outcome.errno == 0, (call, outcome.errno)
        return dict(outcome.out)

    def fails(self, call: Any, expected: int) -> Outcome:
        """The call fails with ``expected`` and changes nothing."""
        before = (self.state, self.driver_state)
        outcome = self.run(call)
        assert outcome.errno == expected, (call, outcome.errno, expected)
        assert (outcome.state, outcome.driver_state) == before and outcome.steps == ()
        return outcome

    # -- common set-ups -------------------------------------------------------------------------
    def ioas(self) -> int:
        return self.ok(IoasAlloc())["out_ioas_id"]

    def bind(self, name: str = "nic") -> int:
        return self.ok(DeviceBind(device=name))["out_devid"]

    def map(self, ioas: int, iova: int, length: int = 0x2000, user_va: int = MEMORY_BASE, flags: int = FIXED_RW) -> int:
        return self.ok(IoasMap(flags=flags, ioas_id=ioas, user_va=user_va, length=length, iova=iova))["iova"]

    def attach(self, name: str, pt_id: int) -> int:
        return self.ok(DeviceAttach(device=name, pt_id=pt_id))["pt_id"]

    def nest_parent(self, dev: int, ioas: int) -> int:
        return self.ok(HwptAlloc(flags=1, dev_id=dev, pt_id=ioas))["out_hwpt_id"]

    def viommu(self, dev: int, hwpt: int, type: int = 3) -> int:
        return self.ok(ViommuAlloc(type=type, dev_id=dev, hwpt_id=hwpt))["out_viommu_id"]
