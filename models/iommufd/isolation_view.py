"""What a bound device may reach, as iommufd's objects say: the isolation oracle's view.

A device attached to a paging HWPT reaches the areas of that HWPT's IOAS; attached to a nested HWPT
it reaches (at most) its parent's IOAS, the stage 2 bounding whatever the guest's stage 1 maps. Lazy
mode adds the ranges parked in that domain's flush queue. A detached (blocked) or unbound device
reaches nothing.
"""

from __future__ import annotations

from amdvi.models.iommufd.objects import Device, IommufdState, paging_of

Mapping = tuple[int, int, int, bool, bool]  # (iova, pa, length, readable, writable)


def device_mappings(state: IommufdState, device_name: str) -> tuple[Mapping, ...]:
    """``(iova, pa, length, readable, writable)`` for each range the device may reach, sorted."""
    device = next((d for _, d in state.of_kind(Device) if d.pci.name == device_name), None)
    behind = paging_of(state, device.hwpt) if device is not None else None
    if behind is None:
        return ()
    hwpt_id, hwpt = behind
    ioas = state.get(hwpt.ioas)
    if ioas is None:  # only a broken iommufd (a fault switch) lets an IOAS in use go: its pages are unpinned
        return ()
    reach = [(a.iova, a.user_va, a.length, a.readable, a.writable) for a in ioas.areas]
    reach += [(p.iova, p.pa, p.length, p.readable, p.writable) for p in state.parked if p.hwpt == hwpt_id]
    return tuple(sorted(reach))
