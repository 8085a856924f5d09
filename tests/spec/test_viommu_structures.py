"""The HW-vIOMMU declarations: the facts the model takes from AMD's RFC and later code, pinned."""

from amdvi.spec import catalog
from amdvi.spec import viommu as V


def test_map_controls_put_the_guest_id_at_61_46_and_the_host_id_at_29_14():
    for s, guest, host in ((V.DID_MAP_CONTROL, "GuestDeviceID", "HostDeviceID"),
                           (V.DOMID_MAP_CONTROL, "GuestDomainID", "HostDomainID")):
        assert (s.field(guest).hi, s.field(guest).lo) == (61, 46) and (s.field(host).hi, s.field(host).lo) == (29, 14)
        assert s.encode({"V": 1, "Write": 1, host: 0x21, guest: 5}) == (1 << 63) | (5 << 46) | (0x21 << 14) | 1


def test_the_ppr_log_base_sits_higher_than_the_others():
    assert V.PPR_CONTROL.field("Base").lo == 16 and V.CMD_CONTROL.field("Base").lo == 12


def test_the_host_device_id_of_a_map_entry_is_read_at_39_24_and_the_rest_is_the_models_own():
    f = V.DEVID_MAP_ENTRY.field("HostDeviceID")
    assert (f.hi, f.lo) == (39, 24) and f.sources == ("AMD-RFC",)
    assert V.DEVID_MAP_ENTRY.field("V").sources == () and V.DOMID_MAP_ENTRY.field("HostDomainID").sources == ()


def test_regions_are_per_guest_and_do_not_overlap_for_every_guest_id():
    spans = sorted((r.base, r.base + r.per_guest * V.MAX_GUESTS) for r in V.REGIONS if r.per_guest)
    assert all(hi <= lo for (_, hi), (lo, _) in zip(spans, spans[1:]))
    assert V.DEVID_MAP.address(2, 3) == 0x10_0000_0000 + 2 * (1 << 20) + 3 * 16


def test_the_structures_are_in_the_catalog():
    assert catalog.find_structure("GUEST_CMD_CONTROL") is V.CMD_CONTROL
    assert catalog.resolve("DEVID_MAP_ENTRY.HostDeviceID")


def test_the_guest_event_log_registers_are_inferred_or_the_models_own_and_say_so():
    assert V.VF_OFFSETS[0x10] is V.VF_EVT_HEAD and V.VF_OFFSETS[0x20] is V.VF_STATUS and 0x18 not in V.VF_OFFSETS
    assert V.VF_EVT_HEAD.field("Pointer").sources == () and "inferred" in V.VF_EVT_HEAD.field("Pointer").note
    assert "model's own" in V.GUEST_EVT_STATE.note
    # the Status bits sit where the host's Status has them (§3.4.13), so one writer serves both logs
    from amdvi.spec.mmio import STATUS
    for name in ("EventOverflow", "EventLogInt"):
        assert V.GUEST_EVT_STATE.field(name).lo == V.VF_STATUS.field(name).lo == STATUS.field(name).lo
