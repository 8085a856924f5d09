"""Shared scenario for the AMD driver model tests: one IOMMU, a plain device, an ATS device with an
alias, and the EFR bits that allow nest parents."""


from amdvi.models.amd_driver import AmdDriver, Driver, DriverConfig
from amdvi.models.iommufd.driver_api import PciDevice
from amdvi.spec.mmio import EFR, EFR2

PLAIN = PciDevice("plain", 0x08)
ATS = PciDevice("ats", 0x10, aliases=(0x11,), ats=True)
NEST_EFR = EFR.encode({"GTSup": 1, "GIoSup": 1})
NEST_EFR2 = EFR2.encode({"GCR3TRPModeSup": 1})


def make(**config) -> AmdDriver:
    choices = config.pop("choices", Driver())
    config.setdefault("devices", (PLAIN, ATS))
    config.setdefault("efr", NEST_EFR)
    config.setdefault("efr2", NEST_EFR2)
    return AmdDriver(DriverConfig(choices=choices, **config))


def ok(result):
    assert result.errno == 0, result.errno
    return result


def paging(driver, state, device=PLAIN, nest_parent=False):
    r = ok(driver.domain_alloc_paging(state, device, nest_parent=nest_parent, dirty_tracking=False, pasid=False))
    return r.state, r.value


