"""HW-vIOMMU guests in the reachability graph, read back from the hardware state."""

from pathlib import Path

import pytest

from amdvi.frontend import scenario
from amdvi.models import software as sw
from amdvi.models import viommu as vi
from amdvi.models.viommu_host import GuestSetup, HostSetup, build
from amdvi.properties import viommu_reach as vr
from amdvi.properties.reachability import ALL_MEMORY, to_dot
from amdvi.spec.bitvec import INT
from amdvi.spec.choices import SPEC

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "viommu-guests.json"
PAGE = 0x1000
RW, RO = (True, True), (True, False)


@pytest.fixture(scope="module")
def example():
    s = scenario.load(EXAMPLE)
    return s, vr.build_guest_graph(s.memory, s.dev_tab_bar, s.devices, s.viommu)


def _pages(*addresses):
    return {(a, PAGE): RW for a in addresses}


def test_the_example_guests_own_the_devices_and_domains_their_maps_give(example):
    _, g = example
    assert g.graph["guests"] == [1, 2, 3]
    assert vr.owned(g, 1, "device") == [(0x08, 0x10), (0x09, 0x11)]
    assert vr.owned(g, 2, "device") == [(0x08, 0x18)]
    assert vr.owned(g, 3, "domain") == [(1, 0x24), (2, 0x21)]
    for gid, translate in ((1, 0xF1), (2, 0xF2), (3, 0xF3)):
        assert g.edges[("guest", gid), ("device", translate)]["via"] == "stage 2"
        assert g.nodes[("device", translate)]["roles"] == [f"stage 2 of guest {gid}"]
    assert g.edges[("guest", 1), ("domain", 0x21)]["reach"] is False
    assert g.has_edge(("domain", 0x21), ("device", 0x10))  # the device whose DTE carries DomainID 0x21


def test_each_example_guest_reaches_its_stage_2_and_its_devices_frames(example):
    _, g = example
    assert vr.guest_frames(g, 1) == _pages(0xA00000, 0xA01000, 0xA02000, 0xA03000)
    assert vr.guest_frames(g, 2) == _pages(0xB00000, 0xB01000)
    assert vr.guest_frames(g, 3) == _pages(0xC00000, 0xC01000)
    by_source = vr.guest_frames_by_source(g, 1)
    assert list(by_source) == ["stage 2", "0x0010", "0x0011"]
    assert by_source["0x0010"] == {(0xA01000, PAGE): RW, (0xA02000, PAGE): RO}


def test_the_example_flags_the_domain_guests_1_and_3_share(example):
    _, g = example
    assert g.graph["sharing"] == [{"kind": "domain", "id": 0x21, "guests": [1, 3]}]
    assert g.nodes[("domain", 0x21)]["shared_by"] == [1, 3]
    assert g.graph["dangling"] == [] and not g.graph["truncated"]


def test_dot_shows_each_guest_and_the_sharing(example):
    s, g = example
    dot = to_dot(g, "viommu-guests")
    for gid, translate in ((1, 0xF1), (2, 0xF2), (3, 0xF3)):
        assert f"guest {gid}\\ntranslate DeviceID {translate:#06x}" in dot
    assert dot.count("shape=house") == 3 and "SHARED by guests 1, 3" in dot and "color=red" in dot
    assert '"0x2 -> 0x21"' in dot and '"stage 2"' in dot


GUEST_A = GuestSetup(guest_id=1, translate_device_id=0x30, pages={0x0: 0xA0_0000}, devices={0x08: 0x10},
                     domains={5: 0x21})
GUEST_B = GuestSetup(guest_id=2, translate_device_id=0x31, pages={0x0: 0xB0_0000}, devices={0x08: 0x18},
                     domains={7: 0x22})


def _hardware(guests, devices=(0x10, 0x18)):
    """Memory with host devices (one page each, DomainIDs 0x21, 0x22, ...) and ``guests`` set up over it."""
    memory = {}
    for k, d in enumerate(devices):
        root = 0x20_0000 + k * PAGE
        memory = sw.write_dte(memory, HostSetup().layout, d, sw.v1_dte(0x21 + k, root, 1))
        memory = sw.v1_map(memory, root, 1, 0x0, 0xD0_0000 + k * PAGE, next_free=0).memory  # one-level table
    state = build(guests, HostSetup(), memory)
    return state, vr.build_guest_graph(state.memory, state.regs.dev_tab_bar, list(devices))


def test_guests_come_from_the_hardware_not_the_declaration():
    """Clearing guest B's DeviceID map entry in the private page takes device 0x18 away from guest B."""
    state, g = _hardware((GUEST_A, GUEST_B))
    assert vr.owned(g, 2, "device") == [(0x08, 0x18)]
    space = vi.TranslatedPrivateSpace()
    entry = vi.lookup_device(INT, state, 2, 0x08, space, SPEC).address
    _, spa = space.address(INT, state, entry, False, SPEC)
    memory = {**state.memory, spa: 0}
    g = vr.build_guest_graph(memory, state.regs.dev_tab_bar, [0x10, 0x18])
    assert vr.owned(g, 2, "device") == [] and vr.owned(g, 1, "device") == [(0x08, 0x10)]
    assert vr.guest_frames(g, 2) == _pages(0xB0_0000)


def test_a_map_entry_to_a_device_without_a_valid_dte_is_flagged_and_its_dma_shown():
    """Host DeviceID 0x40 has no DTE (V = 0: untranslated), host DomainID 0x99 is no valid DTE's."""
    odd = GuestSetup(guest_id=3, translate_device_id=0x32, pages={0x0: 0xC0_0000}, devices={0x01: 0x40},
                     domains={1: 0x99})
    _, g = _hardware((GUEST_A, odd))
    dangling = {(x["guest"], x["kind"], x["id"]): x["reason"] for x in g.graph["dangling"]}
    assert set(dangling) == {(3, "device", 0x40), (3, "domain", 0x99)}
    assert "has no valid DTE (untranslated (V = 0))" in dangling[3, "device", 0x40]
    assert vr.guest_frames(g, 3)[(0, ALL_MEMORY)] == RW  # what the hardware does with that device's DMA
    assert "DANGLING" in to_dot(g) and g.edges[("guest", 3), ("device", 0x40)]["dangling"]


def test_a_host_device_in_two_guests_maps_is_flagged():
    both = GuestSetup(guest_id=4, translate_device_id=0x33, pages={}, devices={0x02: 0x10})
    _, g = _hardware((GUEST_A, GUEST_B, both))
    assert {"kind": "device", "id": 0x10, "guests": [1, 4]} in g.graph["sharing"]


def test_without_an_iommu_private_table_there_are_no_guests():
    state, _ = _hardware(())
    memory = sw.write_dte(state.memory, HostSetup().layout, vi.IOMMU_DEVICE_ID, 0)
    g = vr.build_guest_graph(memory, state.regs.dev_tab_bar, [0x10])
    assert g.graph["guests"] == [] and not [n for n in g if n[0] == "guest"]


def test_reading_the_private_space_is_bounded():
    s = scenario.load(EXAMPLE)
    guests, cut = vr.read_guests(s.memory, s.dev_tab_bar, s.viommu, lookups=4)
    assert cut and len(guests) <= 4
    assert vr.read_guests(s.memory, s.dev_tab_bar, s.viommu)[1] is False
