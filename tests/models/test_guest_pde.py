"""The guest-dimension page-directory cache: what a fill keeps, that a walk resumed below it gives the
fresh result (v2 alone and nested over v1), that a guest directory change makes it stale, and which
INVALIDATE_IOMMU_PAGES commands clear it."""

import pytest

from amdvi.models import software as sw
from amdvi.models.caches import Caches, GuestPdeSlot, invalidate
from amdvi.models.dma import ServeChoice, serve
from amdvi.models.iommu import Fill, step
from amdvi.spec.bitvec import INT
from amdvi.spec.translation import Request, translate
from amdvi.spec.choices import Hardware

LAYOUT = sw.Layout()
DEVICE, DOMAIN, PASID = 0x10, 7, 3
GCR3_TABLE, GUEST_ROOT = 0x50_0000, 0x60_0000
GVA = 0x7F12_3456_7000


def v2_memory(nested: bool):
    """A device with one PASID whose guest table maps GVA and GVA + 4 KiB (and, nested, an identity
    v1 table under every guest-physical page used)."""
    memory: dict[int, int] = {}
    host_root, free = 0x90_0000, 0xA0_0000
    memory[sw.gcr3_entry_address(GCR3_TABLE, PASID)] = sw.gcr3_entry(GUEST_ROOT)
    m = sw.v2_map(memory, GUEST_ROOT, GVA, 0x1234_5000, 0x61_0000)
    m = sw.v2_map(m.memory, GUEST_ROOT, GVA + 0x1000, 0x1234_6000, m.next_free)
    memory, guest_free = m.memory, m.next_free
    if nested:
        pages = [GCR3_TABLE, 0x1234_5000, 0x1234_6000] + list(range(GUEST_ROOT, guest_free, 0x1000))
        for page in pages:
            mapped = sw.v1_map(memory, host_root, 2, page, page, free)
            memory, free = mapped.memory, mapped.next_free
    dte = sw.v2_dte(DOMAIN, GCR3_TABLE, host_root=host_root if nested else 0, host_mode=2 if nested else 0)
    return sw.write_dte(memory, LAYOUT, DEVICE, dte), m


def request(address, write=False):
    return Request(device_id=DEVICE, address=address, write=write, pasid=PASID, has_pasid=True)


@pytest.mark.parametrize("nested", [False, True], ids=["v2", "nested"])
@pytest.mark.parametrize("level_index", [0, 1, 2])
def test_a_walk_resumed_below_a_filled_slot_is_the_fresh_walk(nested, level_index):
    memory, _ = v2_memory(nested)
    state = sw.initial_state(LAYOUT, memory, Caches.empty(guest_pde=1))
    state, _ = step(INT, state, Fill("guest_pde", 0, request(GVA), level_index))
    slot = state.caches.guest_pde[0]
    assert slot.valid and slot.domain_id == DOMAIN and slot.pasid == PASID
    assert slot.level == 3 - level_index and slot.shift == 12 + 9 * (4 - level_index - 1)
    for address in (GVA, GVA + 0x1000 + 0x18, GVA + 0x2000):
        for write in (False, True):
            r = request(address, write)
            served = serve(INT, state.memory, state.regs.dev_tab_bar, state.caches, r, ServeChoice(guest_pde=0))
            fresh = translate(INT, state.memory, state.regs.dev_tab_bar, r)
            assert (served.ok, served.spa) == (fresh.ok, fresh.spa)
            # the slot was used: the resumed walk read fewer guest entries than the fresh one
            read = [s for s in served.outcome.active_steps() if s.table == "GPTE"]
            assert len(read) == len([s for s in fresh.active_steps() if s.table == "GPTE"]) - level_index - 1


def test_a_leaf_or_a_faulting_walk_fills_nothing():
    memory, _ = v2_memory(False)
    state = sw.initial_state(LAYOUT, memory, Caches.empty(guest_pde=1))
    leaf, _ = step(INT, state, Fill("guest_pde", 0, request(GVA), 3))  # level 1 is a leaf
    unmapped, _ = step(INT, state, Fill("guest_pde", 0, request(0x1000), 0))  # top entry not present
    no_pasid, _ = step(INT, state, Fill("guest_pde", 0, Request(DEVICE, GVA, pasid=4, has_pasid=True), 0))
    assert not leaf.caches.guest_pde[0].valid and not unmapped.caches.guest_pde[0].valid
    assert not no_pasid.caches.guest_pde[0].valid  # PASID 4 has no GCR3 entry


def test_a_repointed_guest_directory_makes_the_slot_stale_until_invalidated():
    memory, m = v2_memory(False)
    state = sw.initial_state(LAYOUT, memory, Caches.empty(guest_pde=1))
    state, _ = step(INT, state, Fill("guest_pde", 0, request(GVA), 2))  # the level-2 entry -> level-1 table
    changed = dict(state.memory)
    changed[m.directory_addresses[2]] = 0  # software unmaps the 2 MiB region's table
    state = state.replace(memory=changed)
    stale = serve(INT, state.memory, state.regs.dev_tab_bar, state.caches, request(GVA), ServeChoice(guest_pde=0))
    assert stale.ok and not translate(INT, state.memory, state.regs.dev_tab_bar, request(GVA)).ok
    command = sw.inv_pages(DOMAIN, GVA & ~0x1F_FFFF, 0x20_0000, pasid=PASID)
    cleared = invalidate(INT, state.caches, command)
    assert not cleared.guest_pde[0].valid
    kept = invalidate(INT, state.caches, sw.inv_pages(DOMAIN, GVA & ~0x1F_FFFF, 0x20_0000, pasid=PASID, pde=False))
    assert kept.guest_pde[0].valid  # without PDE = 1 the directory cache keeps it


def slot(pasid=PASID, base=0x4000_0000, shift=30, domain=DOMAIN):
    return GuestPdeSlot(True, domain, pasid, base, shift, 0x61_0000, 2, True, True, False)


def valid(c):
    return [s.valid for s in c.guest_pde]


def test_which_page_invalidations_clear_guest_directory_slots():
    c = Caches(guest_pde=(slot(), slot(pasid=4), slot(base=0x8000_0000), slot(domain=8)))
    # GN = 1, PDE = 1: the PASID's slots overlapping the range
    assert valid(invalidate(INT, c, sw.inv_pages(DOMAIN, 0x4000_1000, 0x1000, pasid=PASID))) == [False, True, True, True]
    # GN = 0, PDE = 1: every guest directory slot of the domain (modelling choice: a host-table change
    # may move any guest table such a slot points to)
    assert valid(invalidate(INT, c, sw.inv_pages(DOMAIN, 0x1000, 0x1000))) == [False, False, False, True]
    # PDE = 0 keeps them; INVALIDATE_IOMMU_ALL clears them all
    assert valid(invalidate(INT, c, sw.inv_pages(DOMAIN, 0x1000, 0x1000, pde=False))) == [True] * 4
    assert valid(invalidate(INT, c, sw.inv_all())) == [False] * 4
    broken = invalidate(INT, c, sw.inv_pages(DOMAIN, pasid=PASID), choices=Hardware(invalidate_pages_keeps_pde_cache=True))
    assert valid(broken) == [True] * 4
