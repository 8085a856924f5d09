"""update_dte256's order of the two 128-bit halves for each V / GV transition (linux-driver-sequences.md
§1.2), checked on the DTE images the Store steps produce, and amd_iommu_update_dte's flushes."""

from amdvi.models.amd_driver import Driver
from amdvi.models.amd_driver.decode import commands, dte_images
from amdvi.models.amd_driver.domain_ids import DomainIds
from amdvi.models.amd_driver.dte_update import amd_iommu_update_dte, update_dte256, words
from amdvi.models.amd_driver.state import DeviceState, DriverConfig, DriverState, Work
from amdvi.models.timeline import Store, Wait
from amdvi.spec.device_table import DTE

from driver_helpers import ATS

DEV = 0x20
V1 = DTE.encode({"V": 1, "TV": 1, "Mode": 3, "Host Page Table Root Pointer": 0x800, "IR": 1, "IW": 1,
                 "DomainID": 5, "SnoopAttribute": 5})
NESTED = DTE.encode({"V": 1, "TV": 1, "Mode": 3, "Host Page Table Root Pointer": 0x800, "IR": 1, "IW": 1,
                     "DomainID": 6, "GV": 1, "GLX": 1, "GCR3 Table Root Pointer": 0x9000, "GPM": 0})


def run(old: int, new: int, choices=Driver()):
    config = DriverConfig(choices=choices)
    address = config.layout.dte_address(DEV)
    memory = {address + 8 * i: w for i, w in enumerate(words(old)) if w}
    work = Work(config, DriverState(memory=memory, ids=DomainIds()))
    update_dte256(work, DEV, new, "test")
    return memory, work.steps, dte_images(memory, work.steps, address)


def halves(steps):
    return [s.what.rsplit(": ", 1)[1] for s in steps if isinstance(s, Store)]


def flushes(steps):
    return [(c.name, c.fields.get("DeviceID")) for c in commands(steps)]


def test_invalid_to_valid_writes_upper_then_lower():
    _, steps, images = run(0, V1)
    assert halves(steps) == ["upper half", "lower half"]
    assert images[0]["V"] == 0 and images[0]["SnoopAttribute"] == 5  # upper new, V still 0
    assert DTE.encode(images[1]) == V1
    assert flushes(steps) == [("INVALIDATE_DEVTAB_ENTRY", DEV), ("COMPLETION_WAIT", None)]
    assert isinstance(steps[-1], Wait)


def test_valid_to_invalid_writes_lower_then_upper():
    _, steps, images = run(V1, 0)
    assert halves(steps) == ["lower half", "upper half"]
    assert images[0]["V"] == 0 and images[0]["SnoopAttribute"] == 5  # V cleared while the old upper half stays
    assert flushes(steps)[0] == ("INVALIDATE_DEVTAB_ENTRY", DEV)


def test_setting_gv_writes_upper_then_lower():
    _, steps, images = run(V1, NESTED)
    assert halves(steps) == ["upper half", "lower half"]
    assert images[0]["GV"] == 0 and images[0]["GCR3 Table Root Pointer[51:31]"] == 0
    assert images[1]["GV"] == 1


def test_clearing_gv_writes_lower_then_upper():
    _, steps, images = run(NESTED, V1)
    assert halves(steps) == ["lower half", "upper half"]
    assert images[0]["GV"] == 0 and images[0]["DomainID"] == 5


def test_gv_level_change_disables_flushes_then_rewrites():
    five_level = NESTED | DTE.encode({"GPM": 1})
    _, steps, images = run(NESTED, five_level)
    assert halves(steps) == ["lower half", "upper half", "lower half"]
    assert images[0]["V"] == 0 and images[0]["DomainID"] == 0  # a cleared lower half
    assert images[1]["GPM"] == 1 and images[1]["V"] == 0
    assert DTE.encode(images[2]) == five_level
    kinds = [type(s).__name__ for s in steps]
    assert kinds == ["Store", "Queue", "Queue", "Wait", "Store", "Store", "Queue", "Queue", "Wait"]


def test_gv_same_level_writes_lower_only_without_flush():
    other_root = NESTED & ~DTE.field("GLX").mask
    _, steps, images = run(NESTED, other_root)
    assert halves(steps) == ["lower half"] and not commands(steps)


def test_upper_half_keeps_interrupt_bits():
    old = V1 | DTE.encode({"IV": 1, "IntTabLen": 9, "Interrupt Table Root Pointer": 0x1234})
    _, _, images = run(old, NESTED)
    assert images[-1]["IV"] == 1 and images[-1]["IntTabLen"] == 9


def test_update_dte_clones_aliases_then_flushes_each_and_the_iotlb():
    config = DriverConfig(devices=(ATS,))
    state = DriverState(memory={}, ids=DomainIds(), devices={ATS.device_id: DeviceState(pci=ATS, ats_enabled=True)})
    work = Work(config, state)
    amd_iommu_update_dte(work, ATS.device_id, V1, "test")
    assert [(c.name, c.fields.get("DeviceID")) for c in commands(work.steps)] == [
        ("INVALIDATE_DEVTAB_ENTRY", 0x10), ("COMPLETION_WAIT", None),  # update_dte256 of the device
        ("INVALIDATE_DEVTAB_ENTRY", 0x11), ("COMPLETION_WAIT", None),  # clone_aliases
        ("INVALIDATE_DEVTAB_ENTRY", 0x10), ("INVALIDATE_DEVTAB_ENTRY", 0x11),  # device_flush_dte
        ("INVALIDATE_IOTLB_PAGES", 0x10), ("COMPLETION_WAIT", None)]
    alias = dte_images({}, work.steps, config.layout.dte_address(0x11))
    assert DTE.encode(alias[-1]) == V1
    waits = [s.sequence for s in work.steps if isinstance(s, Wait)]
    assert waits == [1, 2, 3]


def test_fault_dte_halves_wrong_order_writes_lower_first_when_enabling():
    _, steps, images = run(0, V1, Driver(dte_halves_wrong_order=True))
    assert halves(steps) == ["lower half", "upper half"]
    assert images[0]["V"] == 1 and images[0]["SnoopAttribute"] == 0  # V = 1 seen with the old upper half
