"""The nested entries of ``amdvi check``'s library (guest v2 tables over a host v1 stage 2): each run
through ``amdvi.properties.sequence_check`` (execute + check), the correct one holding every property,
each bug example (and the level-switch finding) refuted on the property it claims; their files current;
and the isolation the correct sequence shows being meaningful (the data frame reached only through the
guest's table)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from amdvi.frontend import sequence_library as L
from amdvi.models.software import Layout, registers
from amdvi.models.system import Call
from amdvi.properties import sequence_check
from amdvi.spec.bitvec import INT
from amdvi.spec.translation import Request, translate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / L.FOLDER
FILES = ("nested-device.json", "nested-guest-level-switch.json", "bug-gdte-not-validated.json",
         "bug-parent-flush-misses-hdomids.json", "bug-nested-shares-parent-domain-id.json",
         "bug-dte-halves-wrong-order.json", "nested-back-to-parent.json", "nested-hdomid-freed-unflushed.json",
         "nested-direct-attach-unwaited-flush.json")
NESTED = {e.file: e for e in L.ENTRIES if e.file in FILES}
BAR = registers(Layout()).dev_tab_bar


@functools.lru_cache(maxsize=None)
def execution(file: str) -> sequence_check.Execution:
    e = NESTED[file]
    return sequence_check.execute(e.scenario, e.steps, probes=e.probes)


def verdict(file: str, prop: str) -> sequence_check.Verdict:
    [v] = sequence_check.check(execution(file), [prop])
    return v


def walk(ex: sequence_check.Execution, at: int, address: int, device_id: int = 0x10):
    return translate(INT, ex.run.boundaries[at].memory, BAR, Request(device_id, address))


def after(ex: sequence_check.Execution, name: str, pt: str) -> int:
    """The boundary after the step attaching to ``pt`` (the last such step)."""
    return [r.end for r in ex.records if isinstance(r.step, Call) and r.step.name == name
            and r.step.args.get("pt_id") == pt][-1]


def test_the_nested_entries_are_there():
    assert sorted(NESTED) == sorted(FILES)
    assert NESTED["nested-device.json"].claims is None


@pytest.mark.parametrize("file", sorted(NESTED))
def test_generated_file_is_current(file):
    assert (EXAMPLES / file).read_text() == L.render(NESTED[file])


@pytest.mark.parametrize("file", sorted(NESTED))
def test_every_call_succeeds(file):
    ex = execution(file)
    assert [(r.index + 1, r.errno) for r in ex.records if r.errno] == []


@pytest.mark.parametrize("prop", sequence_check.ALL_PROPERTIES)
def test_nested_device_holds(prop):
    v = verdict("nested-device.json", prop)
    assert v.holds, v.violation.what


def test_claims():
    """Each refuted entry's claim is the property its own test below refutes."""
    assert {f: e.claims for f, e in NESTED.items() if e.claims} == {
        "nested-guest-level-switch.json": "isolation", "bug-gdte-not-validated.json": "isolation",
        "bug-parent-flush-misses-hdomids.json": "isolation",
        "bug-nested-shares-parent-domain-id.json": "domain-id-uniqueness",
        "bug-dte-halves-wrong-order.json": "no-torn-dte", "nested-back-to-parent.json": "domain-id-uniqueness",
        "nested-hdomid-freed-unflushed.json": "domain-id-uniqueness",
        "nested-direct-attach-unwaited-flush.json": "isolation"}


def test_parent_domain_id_on_a_nested_dte_tags_two_contexts():
    """The disk on the stage 2 and the nic on the guest table carry the parent's DomainID at once."""
    v = verdict("bug-nested-shares-parent-domain-id.json", "domain-id-uniqueness")
    assert "tags 2 different translation contexts" in v.violation.what


def test_isolation_is_meaningful():
    """After the nested attach the GVA reaches DATA's frame through the guest walk, DATA's own GPA faults
    (the guest table does not map it), and before it neither the GVA reached anything."""
    ex = execution("nested-device.json")
    attached = after(ex, "VFIO_DEVICE_ATTACH_IOMMUFD_PT", "nested")
    on_s2 = after(ex, "VFIO_DEVICE_ATTACH_IOMMUFD_PT", "s2")
    through = walk(ex, attached, L.GVA)
    assert through.ok and through.guest and through.spa == L.RAM + L.DATA
    assert not walk(ex, attached, L.DATA).ok
    assert not walk(ex, on_s2, L.GVA).ok and walk(ex, on_s2, L.DATA).spa == L.RAM + L.DATA
    final = walk(ex, len(ex.run.boundaries) - 1, L.GVA)
    assert final.ok and final.spa == L.RAM + L.DATA  # the spare page's unmap left the guest's mapping


def test_unvalidated_guest_stage2_reaches_the_device_table():
    v = verdict("bug-gdte-not-validated.json", "isolation")
    assert v.violation.request.address == L.GVA and v.violation.served.result.spa == Layout().dev_tab


def test_parent_flush_missing_hdomid_leaves_a_stale_iotlb_entry():
    v = verdict("bug-parent-flush-misses-hdomids.json", "isolation")
    assert v.violation.served.result.spa == L.RAM + L.DATA
    assert [kind for kind, _, _ in v.violation.served.used] == ["iotlb"]


def test_wrong_order_walks_the_5_level_table_as_4_level():
    v = verdict("bug-dte-halves-wrong-order.json", "no-torn-dte")
    assert v.violation.request.address == 0 and "0x1000a000" in v.violation.what  # the table's last page


def test_level_switch_passes_dma_untranslated_while_v_is_0():
    """The finding: the clear lower half (V = 0) of update_dte256's level-change branch lets a DMA through
    untranslated (the address it names is the system address it reaches)."""
    ex = execution("nested-guest-level-switch.json")
    v = verdict("nested-guest-level-switch.json", "isolation")
    r = v.violation.request
    assert v.violation.served.result.spa == r.address and not v.violation.served.used
    memory = ex.run.boundaries[v.violation.at].memory
    dte_low = memory.get(Layout().dte_address(0x10), 0)
    assert dte_low & 1 == 0  # V = 0
    switch = [rec for rec in ex.records if isinstance(rec.step, Call) and rec.step.args.get("pt_id") == "nested5"][-1]
    assert switch.start < v.violation.at < switch.end
    assert any("cleared" in s.what for s in switch.hardware if hasattr(s, "writes"))


def test_the_level_switch_finding_rests_on_the_v0_reading():
    """Under the reading that a V = 0 DTE blocks instead of passing untranslated, the window is harmless."""
    import dataclasses

    from amdvi.spec.choices import Hardware

    entry = next(e for e in L.ENTRIES if e.file == "nested-guest-level-switch.json")
    scenario = dataclasses.replace(entry.scenario, hardware=Hardware(invalid_dte="blocked"))
    assert sequence_check.violated(scenario, entry.steps, "isolation", entry.probes) is None


def test_back_to_the_parent_keeps_the_nested_dte_and_its_freed_domain_id_is_reused():
    """The finding rests on the reading that nested attach leaves the previous paging domain in place."""
    import dataclasses

    from amdvi.models.amd_driver.choices import Driver
    from amdvi.spec.device_table import DTE

    v = verdict("nested-back-to-parent.json", "domain-id-uniqueness")
    assert "tags 2 different translation contexts" in v.violation.what
    ex = execution("nested-back-to-parent.json")
    back = [r for r in ex.records if isinstance(r.step, Call) and r.step.args.get("pt_id") == "s2"][-1]
    assert back.errno == 0 and back.hardware == ()  # the replace does nothing to the hardware
    nic_dte = sum(ex.run.boundaries[-1].memory.get(Layout().dte_address(0x10) + 8 * i, 0) << (64 * i) for i in range(4))
    assert DTE.view(nic_dte)["GV"] == 1
    entry = NESTED["nested-back-to-parent.json"]
    detached = dataclasses.replace(entry.scenario, driver=Driver(nested_attach_previous="detached"))
    assert sequence_check.violated(detached, entry.steps, "domain-id-uniqueness", entry.probes) is None


def test_a_replaced_nested_domain_leaves_its_freed_host_domain_id_cached_unless_it_is_flushed():
    """The finding rests on the reading that neither nested attach nor nested_domain_free flushes the
    hDomID; under the fix reading the free queues an every-page INVALIDATE_IOMMU_PAGES of it and waits."""
    import dataclasses

    from amdvi.models.amd_driver.choices import Driver

    entry = NESTED["nested-hdomid-freed-unflushed.json"]
    v = verdict("nested-hdomid-freed-unflushed.json", "domain-id-uniqueness")
    assert "reused before it was flushed" in v.violation.what
    free = [r for r in execution(entry.file).records if isinstance(r.step, Call) and r.step.name == "IOMMU_DESTROY"][0]
    assert free.errno == 0 and not any("flush" in getattr(h, "what", "") for h in free.hardware)
    fixed = dataclasses.replace(entry.scenario, driver=Driver(nested_free_flush="flush"))
    assert sequence_check.violated(fixed, entry.steps, "domain-id-uniqueness", entry.probes) is None
    flushed = sequence_check.execute(fixed, entry.steps, probes=entry.probes)
    free = [r for r in flushed.records if isinstance(r.step, Call) and r.step.name == "IOMMU_DESTROY"][0]
    assert [h.what for h in free.hardware if "flush_tlb_domid" in getattr(h, "what", "")]


def test_a_stage_2_unmap_under_a_directly_attached_nested_device_is_not_waited_for():
    """The finding rests on domain_flush_complete waiting only on the parent's own iommu_array: the unmap
    queues the hDomID invalidation and no COMPLETION_WAIT; under the fix reading it waits."""
    import dataclasses

    from amdvi.models.amd_driver.choices import Driver

    entry = NESTED["nested-direct-attach-unwaited-flush.json"]
    unmap = [r for r in execution(entry.file).records if isinstance(r.step, Call) and r.step.name == "IOMMU_IOAS_UNMAP"][0]
    queued = [h.what for h in unmap.hardware if type(h).__name__ in ("Queue", "Wait")]
    assert queued == ["amd_iommu_iotlb_sync: iommu_flush_pages_v1_hdom_ids"]
    fixed = dataclasses.replace(entry.scenario, driver=Driver(hdomid_flush_wait="viommu-iommus"))
    assert sequence_check.violated(fixed, entry.steps, "isolation", entry.probes) is None


REFUTED = {  # every property's verdict, as the model gives it (the claim is one of them)
    "nested-device.json": set(),
    "nested-guest-level-switch.json": {"isolation", "no-torn-dte"},
    "bug-gdte-not-validated.json": {"isolation"},
    "bug-parent-flush-misses-hdomids.json": {"isolation", "flush-completeness"},
    "bug-nested-shares-parent-domain-id.json": {"domain-id-uniqueness"},
    "bug-dte-halves-wrong-order.json": {"no-torn-dte", "flush-completeness"},
    "nested-back-to-parent.json": {"domain-id-uniqueness"},
    "nested-hdomid-freed-unflushed.json": {"domain-id-uniqueness"},
    "nested-direct-attach-unwaited-flush.json": {"isolation", "flush-completeness"},
}


@pytest.mark.deep
@pytest.mark.parametrize("file", sorted(REFUTED))
def test_every_verdict(file):
    """All properties of each entry (10 to 25 s each): which are refuted besides the claim."""
    refuted = {v.property for v in sequence_check.check(execution(file)) if not v.holds}
    assert refuted == REFUTED[file]


def test_a_guest_table_change_it_has_not_invalidated_is_not_the_hosts_flush_to_make():
    """The guest repoints its leaf at SPARE and invalidates nothing; the VMM's next step settles the
    caches, but an IOTLB entry still giving DATA is what the guest's tables gave when it was filled:
    flush-completeness holds. A host change in the same window (a stage-2 unmap whose flush misses the
    hDomIDs) is still caught: with the guest's word as it was, the tables give a fault, not DATA."""
    import dataclasses

    from amdvi.models.amd_driver.choices import Driver
    from amdvi.models.system import GuestWrite

    leaf = GuestWrite("ioas", L.GUEST_ROOT + 0x3000, L.SPARE | 0x7)
    correct = NESTED["nested-device.json"].scenario
    steps = L._nested() + (leaf, L.ioas("other"), L.dma("nic", L.GVA))
    ex = sequence_check.execute(correct, steps, probes=(L.GVA,))
    [v] = sequence_check.check(ex, ["flush-completeness"])
    assert v.holds and ex.promise.guest_pending_at
    broken = dataclasses.replace(correct, driver=Driver(parent_flush_misses_hdomids=True))
    steps = L._nested() + (leaf, L.unmap(L.DATA, L.PAGE), L.dma("nic", L.GVA))
    [v] = sequence_check.check(sequence_check.execute(broken, steps, probes=(L.GVA,)), ["flush-completeness"])
    assert not v.holds and "iotlb" in v.violation.what


# -- two HW-vIOMMU guests: each guest's not-yet-invalidated table words are its own ------------------------

B_RAM = L.RAM + 0x80_0000  # the second guest's memory
TWO_GUESTS = L._scenario(L.NIC, L.DISK, **L.HW_VIOMMU)
SETUP = L.hw_viommu_guest("nic") + L.hw_viommu_guest("disk", ram=B_RAM, suffix="_b")
LEAF = L.software.v2_map({}, L.GUEST_ROOT, L.GVA, L.DATA, L.GUEST_ROOT + L.PAGE, levels=4).leaf_address


def _guest_invalidates(viommu: str, domain: int = L.GDOM_ID):
    from amdvi.models.system import GuestCommands

    return GuestCommands(viommu, (L.software.inv_pages(domain, L.GVA, L.PAGE, pasid=0),), L.SEMAPHORE)


def _flush(scenario, *steps):
    ex = sequence_check.execute(scenario, SETUP + steps, probes=(L.GVA,))
    [v] = sequence_check.check(ex, ["flush-completeness"])
    return ex, v


def test_another_guests_invalidation_leaves_a_guests_own_table_change_its_own():
    """Guest A clears its leaf and invalidates nothing; guest B invalidates its own domain; A's device then
    reads its GVA. Its IOTLB entry still gives DATA's frame there (the tables give a fault): A's staleness,
    which only A's invalidation removes, so flush-completeness holds. (With one set of pending words for
    every guest, B's invalidation made A's words the host's promise: a false counterexample.)"""
    from amdvi.models.system import GuestWrite

    ex, v = _flush(TWO_GUESTS, GuestWrite("ioas", LEAF, 0), _guest_invalidates("viommu_b"), L.dma("nic", L.GVA))
    assert v.holds
    at = ex.records[-1].end
    assert at in ex.promise.settled and L.RAM + LEAF in ex.promise.guest_pending_at[at]
    [read] = [r for r in sequence_check.requests(ex) if (r.device_id, r.address, r.write, r.has_pasid)
              == (L.NIC.device_id, L.GVA, False, False)]
    stale = [s for s in sequence_check.windows_of(ex, [read]).outcomes(at, read) if s.used and s.ok]
    assert any(s.result.spa == L.RAM + L.DATA for s in stale)  # the excuse is used, not vacuous
    assert not walk(ex, at, L.GVA).ok


def test_a_guests_own_wrong_invalidation_after_another_guests_is_caught():
    """The same, then A invalidates with a DomainID its DTE does not carry: from A's own invalidation on its
    words are its promise, and the entry B's invalidation could not reach is a counterexample."""
    from amdvi.models.system import GuestWrite

    _, v = _flush(TWO_GUESTS, GuestWrite("ioas", LEAF, 0), _guest_invalidates("viommu_b"),
                  _guest_invalidates("viommu", domain=2), L.dma("nic", L.GVA))
    assert not v.holds and "iotlb" in v.violation.what and v.violation.request.device_id == L.NIC.device_id


def test_a_host_flush_bug_is_still_caught_while_a_guest_has_pending_words():
    """A repoints its leaf (pending, B invalidates its own); the VMM unmaps A's DATA and the broken driver's
    flush misses the hDomIDs: with A's word as it was the tables give a fault, not DATA: refuted."""
    import dataclasses

    from amdvi.models.amd_driver.choices import Driver
    from amdvi.models.system import GuestWrite

    broken = dataclasses.replace(TWO_GUESTS, driver=Driver(hw_viommu="amd-wip", parent_flush_misses_hdomids=True))
    steps = (GuestWrite("ioas", LEAF, L.SPARE | 0x7), _guest_invalidates("viommu_b"), L.unmap(L.DATA, L.PAGE),
             L.dma("nic", L.GVA))
    _, v = _flush(broken, *steps)
    assert not v.holds and "iotlb" in v.violation.what
    assert _flush(TWO_GUESTS, *steps)[1].holds


def test_two_guests_each_invalidating_their_own_change_hold():
    """Both guests clear their leaf, each invalidates its own domain through its own command buffer, both
    devices read their GVA: every property holds (and the reads fault: the entries are gone)."""
    from amdvi.models.system import GuestWrite

    steps = (GuestWrite("ioas", LEAF, 0), GuestWrite("ioas_b", LEAF, 0), _guest_invalidates("viommu_b"),
             _guest_invalidates("viommu"), L.dma("nic", L.GVA), L.dma("disk", L.GVA))
    ex = sequence_check.execute(TWO_GUESTS, SETUP + steps, probes=(L.GVA,))
    refuted = [v.violation for v in sequence_check.check(ex) if not v.holds]
    assert not refuted, refuted
    assert not ex.promise.pending_guest_writes and not ex.run.guest_hangs
