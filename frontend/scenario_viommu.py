"""A scenario's optional ``"viommu"`` section: HW-vIOMMU guests declared at the hardware level, as
``models.viommu_host.GuestSetup`` has them, and set up over the scenario's own memory by
``models.viommu_host.build`` (the IOMMU's DTE and private table, each guest's stage 2 behind its
translate DeviceID, the VFCtrl writes that fill its maps).

```
"viommu": {"host": {"iommu_device_id": "00:00.2", "private_root": "0x700000",
                    "table_pages": "0x710000", "private_frames": "0x900000"},
           "guests": [{"guest_id": 1, "translate_device_id": "0xf1",
                       "pages": {"0x0": "0xa00000"},           # GPA -> system page (the stage 2)
                       "devices": {"0x08": "0x10"},            # guest DeviceID -> host DeviceID
                       "domains": {"1": "0x21"},               # guest DomainID -> host DomainID
                       "command_buffer": "0x0"}]}              # GPA; also com_len, stage2_domain_id
```

``host`` and each of its keys are optional (``HostSetup``'s defaults). The declared devices' DTEs and
tables stay as written; the set-up owns the DTEs of the translate DeviceIDs and of the IOMMU, and the
pages it allocates, so a clash with the scenario is refused rather than silently overwritten.
What ``amdvi graph`` shows is read back from the resulting memory, not from this declaration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from amdvi.frontend.errors import InputError
from amdvi.frontend.scenario import COMMENT, PAGE, _address, _check_keys, _num, _obj, field_value, parse_device_id
from amdvi.models import software as sw
from amdvi.models import viommu_host as vh
from amdvi.models.viommu import ViommuConfig
from amdvi.spec import viommu as V
from amdvi.spec.device_table import DTE
from amdvi.spec.levels import level_shift

TOP_KEYS = ("host", "guests", COMMENT)
HOST_KEYS = ("iommu_device_id", "private_root", "table_pages", "private_frames", COMMENT)
GUEST_KEYS = ("guest_id", "translate_device_id", "pages", "devices", "domains", "command_buffer", "com_len",
              "stage2_domain_id", COMMENT)
GPA_LIMIT = 1 << level_shift(vh.TABLE_MODE + 1)  # what a 3-level stage 2 can map
DOMAIN_ID_BITS = V.DOMID_MAP_CONTROL.field("GuestDomainID").width


@dataclass(frozen=True)
class Declaration:
    """The parsed section: the guests, the host set-up's own fields, and where each guest came from."""

    guests: tuple[vh.GuestSetup, ...]
    iommu_device_id: int
    host_addresses: Mapping[str, int]  # private_root, table_pages, private_frames
    guest_paths: tuple[str, ...] = ()

    def set_up_device_ids(self) -> dict[int, str]:
        """The DeviceIDs whose DTE the set-up writes, with the JSON path that names each."""
        ids = {self.iommu_device_id: "viommu.host.iommu_device_id"}
        for g, where in zip(self.guests, self.guest_paths):
            ids[g.translate_device_id] = f"{where}.translate_device_id"
        return ids

    def host_setup(self, dev_tab: int, dev_tab_pages: int) -> vh.HostSetup:
        return vh.HostSetup(layout=sw.Layout(dev_tab=dev_tab, dev_tab_pages=dev_tab_pages),
                            config=ViommuConfig(self.iommu_device_id), **self.host_addresses)


# ---- parsing -------------------------------------------------------------------------------------

def _guest_id(value: Any, where: str) -> int:
    n = _num(value, where)
    if n == 0:
        raise InputError(f"{where}: GuestID 0 is never given to a guest (use 1..{V.MAX_GUESTS - 1:#x})")
    if n >= V.MAX_GUESTS:
        raise InputError(f"{where}: GuestID {n:#x} does not fit in 16 bits")
    return n


def _domain_id(value: Any, where: str) -> int:
    n = _num(value, where)
    if n >> DOMAIN_ID_BITS:
        raise InputError(f"{where}: DomainID {n:#x} does not fit in {DOMAIN_ID_BITS} bits")
    return n


def _gpa(value: Any, where: str) -> int:
    n = _address(value, where, align=PAGE, what="guest physical page")
    if n >= GPA_LIMIT:
        raise InputError(f"{where}: guest physical page {n:#x} is beyond what the {vh.TABLE_MODE}-level stage 2 "
                         f"maps (below {GPA_LIMIT:#x})")
    return n


def _system_page(value: Any, where: str) -> int:
    return _address(value, where, align=PAGE, what="system page")


def _id_map(value: Any, where: str, key: Callable[[Any, str], int], val: Callable[[Any, str], int],
            what: str) -> dict[int, int]:
    """``{key: value}`` parsed both sides; two spellings of one key (``"8"``, ``"0x8"``) are refused."""
    out: dict[int, int] = {}
    spelled: dict[int, str] = {}
    for k, v in _obj(value, where).items():
        if k == COMMENT:
            continue
        n = key(k, f"{where}.{k}")
        if n in out:
            raise InputError(f"{where}.{k}: {what} {n:#x} given twice ({spelled[n]!r} and {k!r})")
        out[n], spelled[n] = val(v, f"{where}.{k}"), k
    return out


def _register_field(structure: Any, name: str, value: Any, where: str) -> int:
    """A value checked against the VFCtrl register field it is written to (an address stays an address)."""
    f = structure.field(name)
    return field_value(f, value, where, structure) << f.unit_shift


def _guest(obj: Any, where: str) -> vh.GuestSetup:
    g = _obj(obj, where)
    _check_keys(g, GUEST_KEYS, where, "guest key")
    for required in ("guest_id", "translate_device_id"):
        if required not in g:
            raise InputError(f"{where}: missing {json.dumps(required)}")
    extra: dict[str, int] = {}
    if "com_len" in g:
        extra["com_len"] = _register_field(V.CMD_CONTROL, "ComLen", g["com_len"], f"{where}.com_len")
    if "stage2_domain_id" in g:
        extra["stage2_domain_id"] = _register_field(DTE, "DomainID", g["stage2_domain_id"], f"{where}.stage2_domain_id")
    return vh.GuestSetup(
        guest_id=_guest_id(g["guest_id"], f"{where}.guest_id"),
        translate_device_id=parse_device_id(g["translate_device_id"], f"{where}.translate_device_id"),
        pages=_id_map(g.get("pages", {}), f"{where}.pages", _gpa, _system_page, "guest physical page"),
        devices=_id_map(g.get("devices", {}), f"{where}.devices", parse_device_id, parse_device_id, "guest DeviceID"),
        domains=_id_map(g.get("domains", {}), f"{where}.domains", _domain_id, _domain_id, "guest DomainID"),
        command_buffer=_register_field(V.CMD_CONTROL, "Base", g.get("command_buffer", 0), f"{where}.command_buffer"),
        **extra)


def parse_section(value: Any) -> Declaration:
    """The ``"viommu"`` object: its guests (GuestIDs and translate DeviceIDs distinct) and host fields."""
    top = _obj(value, "viommu")
    _check_keys(top, TOP_KEYS, "viommu", "key")
    host = _obj(top.get("host", {}), "viommu.host")
    _check_keys(host, HOST_KEYS, "viommu.host", "key")
    defaults = vh.HostSetup()
    iommu = parse_device_id(host.get("iommu_device_id", defaults.config.iommu_device_id), "viommu.host.iommu_device_id")
    addresses = {name: _address(host.get(name, getattr(defaults, name)), f"viommu.host.{name}", align=PAGE,
                                what=name.replace("_", " "))
                 for name in ("private_root", "table_pages", "private_frames")}
    guests_value = top.get("guests")
    if not isinstance(guests_value, list):
        got = "nothing" if guests_value is None else type(guests_value).__name__
        raise InputError(f"viommu.guests: expected a list of guests [{{\"guest_id\": ...}}, ...], got {got}")
    guests, paths = [], []
    for k, g in enumerate(guests_value):
        where = f"viommu.guests[{k}]"
        guest = _guest(g, where)
        for other, other_where in zip(guests, paths):
            if other.guest_id == guest.guest_id:
                raise InputError(f"{where}.guest_id: GuestID {guest.guest_id} is also {other_where}'s")
            if other.translate_device_id == guest.translate_device_id:
                raise InputError(f"{where}.translate_device_id: DeviceID {guest.translate_device_id:#06x} is already "
                                 f"{other_where}'s translate DeviceID (each guest's stage 2 has its own DTE)")
        if guest.translate_device_id == iommu:
            raise InputError(f"{where}.translate_device_id: DeviceID {iommu:#06x} is the IOMMU's own "
                             f"(viommu.host.iommu_device_id)")
        guests.append(guest)
        paths.append(where)
    return Declaration(tuple(guests), iommu, addresses, tuple(paths))


# ---- checks against the rest of the scenario, and the set-up ------------------------------------

def check_device_ids(decl: Declaration, declared: Mapping[int, str], entries: int) -> None:
    """The set-up's DTEs lie in the device table and are not ones the scenario declares."""
    for did, where in decl.set_up_device_ids().items():
        if did >= entries:
            raise InputError(f"{where}: the DTE of DeviceID {did:#x} lies outside the device table "
                             f"(DeviceIDs 0..{entries - 1:#x})")
        if did in declared:
            raise InputError(f"{where}: DeviceID {did:#06x} is also declared in devices.{declared[did]}, but the "
                             f"host set-up writes its DTE")


@dataclass(frozen=True)
class _Range:
    """Bytes [lo, hi) the set-up writes, the JSON path that places them, and what they hold."""

    path: str
    what: str
    lo: int
    hi: int

    def overlaps(self, other: "_Range") -> bool:
        return self.lo < other.hi and other.lo < self.hi

    def __str__(self) -> str:
        return f"{self.what} at {self.lo:#x}..{self.hi - 1:#x}"


def _ranges(decl: Declaration, dev_tab: int, dev_tab_bytes: int) -> list[_Range]:
    """Every range the set-up writes (the table range is an upper bound: ``table_pages_needed``)."""
    a = decl.host_addresses
    tables = vh.table_pages_needed(decl.guests) * PAGE
    frames = len(vh.private_pages(decl.guests)) * PAGE
    return [_Range("device_table", "the device table", dev_tab, dev_tab + dev_tab_bytes),
            _Range("viommu.host.private_root", "the IOMMU's private table", a["private_root"], a["private_root"] + PAGE),
            _Range("viommu.host.table_pages", f"the host set-up's tables (up to {tables // PAGE} pages)",
                   a["table_pages"], a["table_pages"] + tables),
            _Range("viommu.host.private_frames", f"the IOMMU's private pages ({frames // PAGE})", a["private_frames"],
                   a["private_frames"] + frames)]


def _check_ranges(decl: Declaration, origin: Mapping[int, str], dev_tab: int, dev_tab_bytes: int) -> None:
    """The pages the set-up writes are its own: apart from each other, the scenario's words and guest pages."""
    ranges = _ranges(decl, dev_tab, dev_tab_bytes)
    for k, r in enumerate(ranges[1:], 1):
        for other in ranges[:k]:
            if r.overlaps(other):
                raise InputError(f"{r.path}: {r} and {other} overlap")
        used = sorted(a for a in origin if r.lo <= a < r.hi)
        if used:
            raise InputError(f"{r.path}: {r} would overwrite the word at {used[0]:#x} ({origin[used[0]]})")
        for g, where in zip(decl.guests, decl.guest_paths):
            for gpa, spa in sorted(g.pages.items()):
                if r.lo <= spa < r.hi:
                    raise InputError(f"{where}.pages.{gpa:#x}: system page {spa:#x} lies in {r} ({r.path})")


def apply(decl: Declaration, memory: Mapping[int, int], origin: Mapping[int, str], dev_tab: int,
          dev_tab_pages: int) -> dict[int, int]:
    """The scenario's memory once the hypervisor has set the guests up (``viommu_host.build``)."""
    _check_ranges(decl, origin, dev_tab, dev_tab_pages * PAGE)
    return vh.build(decl.guests, decl.host_setup(dev_tab, dev_tab_pages), memory).memory
