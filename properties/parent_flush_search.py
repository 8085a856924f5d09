"""The driver half of "a stage-2 change reaches every guest", checked in every state a small universe reaches.

Claim, for every nest parent P of every reachable driver and iommufd state: the INVALIDATE_IOMMU_PAGES
commands the driver's own flush code queues for a change of P's table (``models.amd_driver.flush.
domain_flush_pages`` run on the state, a page of P; the commands read back from the steps it records)
name, each with the page in its range, GN = 0 and PDE = 1 (what ``properties.viommu_stage2`` assumes
of a host flush):

* every hDomID in the gDomID record of every vIOMMU on P;
* with the HW-vIOMMU (driver reading ``hw-viommu=amd-wip``), every host DomainID the hardware's DomainID
  map of each such vIOMMU's GuestID gives (``models.viommu.lookup_domain`` on the private space the
  driver's VFCtrl map writes left, through ``models.viommu.vfctrl_write``: as the hardware reads them),
  except P's own DomainID: the vIOMMU pre-fills every unused gDomID with it, and no nested DTE carries
  it; a DTE that carries it is in the first set;

and every nested device's DTE carries the host DomainID its guest's map gives for the nested domain's
gDomID (:func:`untagged`; what the hardware half assumes of the hypervisor).

Not claimed, reported as :attr:`Result.dte_misses`: the DomainID of a scenario device's DTE whose stage 2
is P's table (V = 1, TV = 1, a host root that is P's root or one of P's table pages, as an old root is once
the table has grown) when the flush does not name it. Under the driver reading nested-attach-previous=kept
(the default) a device moved back from a nested HWPT to P keeps its nested DTE, whose hDomID was freed
with the nested HWPT and which P's flush no longer names: ``nested-back-to-parent.json``'s finding, seen
here from the flush's side (no vIOMMU maps that ID any more, so it is outside the claim); under
``detached`` there is none.

Not claimed either, reported as :attr:`Result.translate_misses`: the DomainID of a vIOMMU's translate DTE (also
P's table, tagged with P's own DomainID), flushed only while a device is attached to P itself. The
hardware model does not cache what the vIOMMU reads through it (``models.viommu.GuestSpace`` walks
afresh); real hardware may (papers/sources/viommu-amdese-facts.md §7.7 infers the gap).

The search: breadth first over every sequence of the :func:`alphabet` (vIOMMU alloc and destroy, nested
HWPT alloc on any vIOMMU for any gDomID, destroy, attach of any device to P or a nested HWPT, detach, and
a MAP that grows P's table by a level),
through the real models (``models.system.apply``: iommufd over the AMD driver), up to ``depth`` steps
after a fixed prefix, each state checked; a state already seen (:func:`canonical`: driver handles
renamed by the iommufd object that holds them, dicts as sorted items, counters left out) is not
extended again. A violation comes with the calls that reach it, which :func:`replay` runs again.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

from amdvi.models import system
from amdvi.models import viommu as vi
from amdvi.models.amd_driver import flush
from amdvi.models.amd_driver.choices import Driver
from amdvi.models.amd_driver.decode import commands, dte_at
from amdvi.models.amd_driver.state import NestedDomain, PagingDomain, Work
from amdvi.models.amd_driver.viommu_hw import PRIVATE
from amdvi.models.caches import Caches
from amdvi.models.iommu import IommuState
from amdvi.models.iommufd import uapi as U
from amdvi.models.iommufd.choices import Iommufd
from amdvi.models.iommufd.driver_api import PciDevice
from amdvi.models.iommufd.objects import HwptNested, HwptPaging, Viommu
from amdvi.models.registers import Registers
from amdvi.models.system import Call, Scenario, StepError
from amdvi.models.timeline import VfctrlWrite
from amdvi.spec.bitvec import INT
from amdvi.spec.choices import SPEC
from amdvi.spec.device_table import DTE

from .viommu_maps import FlatPrivateSpace

PARENT = "s2"
CHANGED_PAGE = 0x10_0000  # the page of the parent whose change is flushed
GROW_IOVA = 1 << 39  # a MAP here needs a fourth level: the parent's table grows (increase_top)
USER_PAGE = 0x1000_0000  # the VMM page it maps
FIRST, SECOND = PciDevice("nic", 0x10), PciDevice("disk", 0x18)


@dataclass(frozen=True)
class Universe:
    """What the search ranges over: the devices, how many vIOMMUs and nested HWPTs may exist at once,
    the gDomIDs a guest DTE may carry, and the driver's and iommufd's choices."""

    devices: tuple[PciDevice, ...] = (FIRST, SECOND)
    viommus: int = 2
    nested: int = 2
    gdom_ids: tuple[int, ...] = (1, 2, 3)
    driver: Driver = Driver()
    iommufd: Iommufd = Iommufd(nested_alloc="amd-tree", hw_queue="amd-tree")

    def scenario(self) -> Scenario:
        return Scenario(devices=self.devices, driver=self.driver, iommufd=self.iommufd, hardware=SPEC)


def _call(name: str, bind: dict[str, str] | None = None, **args: Any) -> Call:
    return Call(name, args, bind or {})


def guest_dte(gdom_id: int) -> tuple[int, ...]:
    """A guest DTE the driver accepts (V, GV, a GCR3 table) with DomainID ``gdom_id``."""
    dte = DTE.encode({"V": 1, "TV": 1, "GV": 1, "GIoV": 1, "GCR3 Table Root Pointer": 0x5000, "DomainID": gdom_id})
    return tuple((dte >> (64 * i)) & ((1 << 64) - 1) for i in range(4))


def prefix(u: Universe) -> tuple[Call, ...]:
    """Bind every device, an IOAS, the NEST_PARENT HWPT ``s2`` on it."""
    first = u.devices[0].name
    return (*(_call(U.DeviceBind.name, {"out_devid": f"{d.name}_dev"}, device=d.name) for d in u.devices),
            _call(U.IoasAlloc.name, {"out_ioas_id": "ioas"}),
            _call(U.HwptAlloc.name, {"out_hwpt_id": PARENT}, dev_id=f"{first}_dev", pt_id="ioas",
                  flags=U.HWPT_ALLOC_NEST_PARENT, data_type=U.HWPT_DATA_NONE, data_len=0, data=()))


def viommu_name(i: int) -> str:
    return f"viommu{i}"


def nested_name(i: int) -> str:
    return f"nested{i}"


def alphabet(u: Universe) -> tuple[Call, ...]:
    """Every step the search tries (an allocation only while its name is free, see :func:`_enabled`)."""
    first = u.devices[0].name
    steps: list[Call] = []
    for v in range(u.viommus):
        steps.append(_call(U.ViommuAlloc.name, {"out_viommu_id": viommu_name(v)}, type=U.VIOMMU_TYPE_AMD,
                           dev_id=f"{first}_dev", hwpt_id=PARENT))
        steps.append(_call(U.Destroy.name, id=viommu_name(v)))
    for k in range(u.nested):
        for v in range(u.viommus):
            for g in u.gdom_ids:
                data = guest_dte(g)
                steps.append(_call(U.HwptAlloc.name, {"out_hwpt_id": nested_name(k)}, dev_id=f"{first}_dev",
                                   pt_id=viommu_name(v), flags=0, data_type=U.HWPT_DATA_AMD_GUEST,
                                   data_len=8 * len(data), data=data))
        steps.append(_call(U.Destroy.name, id=nested_name(k)))
    for d in u.devices:
        for pt in (PARENT, *(nested_name(k) for k in range(u.nested))):
            steps.append(_call(U.DeviceAttach.name, device=d.name, pt_id=pt))
        steps.append(_call(U.DeviceDetach.name, device=d.name))
    steps.append(_call(U.IoasMap.name, ioas_id="ioas", flags=U.MAP_FIXED_IOVA | U.MAP_READABLE | U.MAP_WRITEABLE,
                       user_va=USER_PAGE, length=0x1000, iova=GROW_IOVA))
    return tuple(steps)


def _enabled(state: system.SystemState, call: Call) -> bool:
    """A call whose names are bound, and whose output name is free (so no object loses its name)."""
    if any(name in state.names for name in call.bind.values()):
        return False
    return all(value in state.names for key, value in call.args.items()
               if isinstance(value, str) and key != "device")


@dataclass(frozen=True)
class Node:
    """A reached state: the iommufd and driver state, the private space the VFCtrl map writes left, and
    each written GuestID's DomainID map as the hardware reads it (gDomID -> host DomainID, mapped
    entries only), read again only when a map write changes the space."""

    system: system.SystemState
    private: Any = field(default_factory=dict)  # private address -> word (INT memory)
    private_key: frozenset[tuple[int, int]] = frozenset()
    maps: tuple[tuple[int, tuple[tuple[int, int], ...]], ...] = ()


def domain_map(private: Any, guest_id: int, ids: int, choices: Any) -> tuple[tuple[int, int], ...]:
    """Guest ``guest_id``'s mapped DomainID entries (gDomID, host DomainID) for gDomIDs below ``ids``."""
    hw = IommuState(memory=private, regs=Registers(), caches=Caches.empty())
    looks = ((gd, vi.lookup_domain(INT, hw, guest_id, gd, FlatPrivateSpace(), choices)) for gd in range(ids))
    return tuple((gd, look.host_id) for gd, look in looks if look.mapped)


def _apply(scenario: Scenario, node: Node, call: Call, choices: Any, memo: dict[Any, Any] | None = None) -> Node | None:
    """``node`` after ``call``; None when it fails (an errno: the VMM's call is refused, nothing changed).
    ``memo``: the private space after the same map writes on the same space, kept (states share them)."""
    try:
        state, result = system.apply(scenario, node.system, call)
    except StepError:
        return None
    if result.errno:
        return None
    if call.name == U.Destroy.name:  # the name is free again
        state = dataclasses.replace(state, names={k: v for k, v in state.names.items() if k != call.args["id"]})
    writes = [w for step in result.steps if isinstance(step, VfctrlWrite) for w in step.writes]
    if not writes:
        return Node(state, node.private, node.private_key, node.maps)
    key = (node.private_key, node.maps, tuple(writes))
    if memo is None or key not in memo:
        hw = IommuState(memory=node.private, regs=Registers(), caches=Caches.empty())
        for guest_id, offset, value in writes:
            hw = vi.vfctrl_write(INT, hw, guest_id, offset, value, space=FlatPrivateSpace(), choices=choices)
        ids = scenario.driver_model().config.viommu_ids
        maps = dict(node.maps)
        maps.update({gid: domain_map(hw.memory, gid, ids, choices) for gid in {w[0] for w in writes}})
        made = (hw.memory, frozenset(hw.memory.items()), tuple(sorted(maps.items())))
        if memo is None:
            return Node(state, *made)
        memo[key] = made
    return Node(state, *memo[key])


# -- the check ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Miss:
    """A DomainID the parent's flush should name and does not: why it should."""

    domain_id: int
    why: str


def _host_root(dte: int) -> int | None:
    """The host table root of a DTE that translates with one (V = 1, TV = 1, Mode 1..6), else None."""
    view = DTE.view(dte)
    if not (view["V"] and view["TV"]) or not 1 <= view["Mode"] <= 6:
        return None
    return view["Host Page Table Root Pointer"] << 12


def flushed_domain_ids(scenario: Scenario, driver_state: Any, handle: int) -> frozenset[int]:
    """The DomainIDs the driver's flush of one page of ``handle`` names (page in range, GN = 0, PDE = 1)."""
    model = scenario.driver_model()
    work = Work(model.config, driver_state)
    flush.domain_flush_pages(work, handle, CHANGED_PAGE, 0x1000, "stage-2 change")
    out = set()
    for c in commands(work.steps):
        if c.name != "INVALIDATE_IOMMU_PAGES" or c.fields["GN"] or not c.fields["PDE"]:
            continue
        start, size = c.range()
        if start <= CHANGED_PAGE and CHANGED_PAGE + 0x1000 <= start + size:
            out.add(c.fields["DomainID"])
    return frozenset(out)


def required(scenario: Scenario, node: Node, handle: int) -> tuple[list[Miss], list[Miss], list[Miss]]:
    """(what the flush of ``handle`` must name, the DomainIDs of the device DTEs over its table, the translate
    DTEs' DomainIDs) with the reasons."""
    driver = node.system.driver
    parent = driver.domains[handle]
    layout = scenario.layout
    pages = {parent.root, *parent.table_pages}
    out: list[Miss] = []
    over: list[Miss] = []
    for rid in scenario.requester_ids:
        dte = dte_at(driver.memory, layout.dte_address(rid))
        if _host_root(dte) in pages:
            over.append(Miss(DTE.view(dte)["DomainID"], f"the DTE of DeviceID {rid:#06x} translates with the parent's "
                                                        "table"))
    translate: list[Miss] = []
    maps = dict(node.maps)
    for v in parent.viommus:
        entry = driver.viommus[v]
        for gdom_id, (hdom_id, _) in sorted(entry.gdom_ids.items()):
            out.append(Miss(hdom_id, f"a vIOMMU's gDomID {gdom_id} maps to it (the driver's record)"))
        if not entry.guest_id:
            continue
        for gdom_id, host in maps.get(entry.guest_id, ()):
            if host != parent.domain_id:
                out.append(Miss(host, f"GuestID {entry.guest_id}'s DomainID map gives it for gDomID {gdom_id} "
                                      "(the hardware's map)"))
        dte = dte_at(driver.memory, layout.dte_address(entry.translate_device_id))
        if _host_root(dte) in pages:
            translate.append(Miss(DTE.view(dte)["DomainID"], f"the translate DTE of GuestID {entry.guest_id} "
                                                             f"(DeviceID {entry.translate_device_id:#06x})"))
    return out, over, translate


def untagged(scenario: Scenario, node: Node) -> list[Miss]:
    """Nested devices whose DTE does not carry the host DomainID its guest's map gives for the nested
    domain's gDomID (the hardware half's assumption on the hypervisor): the hardware's DomainID map with the
    HW-vIOMMU, else the vIOMMU's gDomID record."""
    driver, maps, out = node.system.driver, dict(node.maps), []
    for device_id, state in sorted(driver.devices.items()):
        nested = driver.domains.get(state.nested) if state.nested is not None else None
        if not isinstance(nested, NestedDomain):
            continue
        entry = driver.viommus[nested.viommu]
        given = dict(maps.get(entry.guest_id, ())) if entry.guest_id else {
            g: h for g, (h, _) in entry.gdom_ids.items()}
        tag = DTE.view(dte_at(driver.memory, scenario.layout.dte_address(device_id)))["DomainID"]
        if given.get(nested.gdom_id) != tag:
            out.append(Miss(tag, f"the nested DTE of DeviceID {device_id:#06x} carries it, but its guest's map gives "
                                 f"{given.get(nested.gdom_id)} for gDomID {nested.gdom_id}"))
    return out


def misses(scenario: Scenario, node: Node, choices: Any = SPEC) -> tuple[list[Miss], list[Miss], list[Miss]]:
    """(the claim's misses, the device DTEs' over a parent, the translate DTEs') over every nest parent of
    ``node``; a nested device not tagged as its map says (:func:`untagged`) is one of the claim's."""
    driver = node.system.driver
    claim, stale, translate = untagged(scenario, node), [], []
    for handle, domain in sorted(driver.domains.items()):
        if not isinstance(domain, PagingDomain) or not domain.nest_parent or handle == PRIVATE:
            continue
        flushed = flushed_domain_ids(scenario, driver, handle)
        must, over, tdte = required(scenario, node, handle)
        claim += [m for m in must if m.domain_id not in flushed]
        stale += [m for m in over if m.domain_id not in flushed]
        translate += [m for m in tdte if m.domain_id not in flushed]
    return claim, stale, translate


# -- canonical states ---------------------------------------------------------------------------------


def _items(mapping: Any) -> tuple[Any, ...]:
    return tuple(sorted(mapping.items(), key=lambda kv: repr(kv[0])))


def canonical(node: Node) -> tuple[Any, ...]:
    """What decides every continuation and every check, with the driver's handles (a counter: the order of
    allocation) renamed by the iommufd object that holds each, dicts as sorted items, and the counters that
    only name (COMPLETION_WAIT sequence, next handle) left out."""
    fd, driver = node.system.iommufd, node.system.driver
    rename = {PRIVATE: PRIVATE}
    for object_id, obj in fd.objects.items():
        if isinstance(obj, (HwptPaging, HwptNested)):
            rename[obj.domain] = ("hwpt", object_id)
        elif isinstance(obj, Viommu):
            rename[obj.handle] = ("viommu", object_id)
    r = lambda h: None if h is None else rename.get(h, ("unowned", h))  # noqa: E731
    domains = []
    for h, d in driver.domains.items():
        if isinstance(d, NestedDomain):
            domains.append((r(h), dataclasses.replace(d, viommu=r(d.viommu))))
        else:
            domains.append((r(h), dataclasses.replace(d, viommus=tuple(r(v) for v in d.viommus))))
    viommus = [(r(h), dataclasses.replace(v, parent=r(v.parent), gdom_ids=_items(v.gdom_ids),
                                          vdevices=_items(v.vdevices))) for h, v in driver.viommus.items()]
    devices = [(i, dataclasses.replace(d, domain=r(d.domain), nested=r(d.nested))) for i, d in driver.devices.items()]
    return (repr(sorted(fd.objects.items())), repr(fd.tombstones), repr(fd.parked),
            repr(sorted(domains, key=repr)), repr(sorted(viommus, key=repr)), repr(sorted(devices)),
            _items(driver.memory), repr(driver.ids), repr(sorted(driver.pool_used)), repr(driver.flush_queue),
            _items(node.system.names), node.private_key)


# -- the search ---------------------------------------------------------------------------------------


@dataclass
class Result:
    """States covered (distinct, after dedup), sequences tried, the deepest level reached, seconds; the
    first violation (its calls from boot and what the flush missed); the first device-DTE and translate-DTE
    misses (not claimed)."""

    states: int = 0
    tried: int = 0
    depth: int = 0
    seconds: float = 0.0
    violation: tuple[tuple[Call, ...], tuple[Miss, ...]] | None = None
    dte_misses: tuple[tuple[Call, ...], tuple[Miss, ...]] | None = None
    translate_misses: tuple[tuple[Call, ...], tuple[Miss, ...]] | None = None
    per_depth: list[int] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return self.violation is None


def search(u: Universe = Universe(), depth: int = 6, *, choices: Any = SPEC) -> Result:
    """Every state reachable within ``depth`` steps of the alphabet after the prefix, checked."""
    start = time.perf_counter()
    scenario = u.scenario()
    state, memory = system.boot(scenario)
    node: Node | None = Node(state)
    for call in prefix(u):
        node = _apply(scenario, node, call, choices)
        if node is None:
            raise ValueError(f"the prefix call {call.name} fails in this universe")
    actions = alphabet(u)
    result, memo = Result(), {}
    seen = {canonical(node)}
    frontier: deque[tuple[Node, tuple[Call, ...]]] = deque([(node, ())])
    if _check(scenario, node, (), result, choices):
        return _done(result, start)
    for level in range(1, depth + 1):
        next_frontier: deque[tuple[Node, tuple[Call, ...]]] = deque()
        for parent_node, path in frontier:
            for call in actions:
                if not _enabled(parent_node.system, call):
                    continue
                result.tried += 1
                child = _apply(scenario, parent_node, call, choices, memo)
                if child is None:
                    continue
                key = canonical(child)
                if key in seen:
                    continue
                seen.add(key)
                steps = path + (call,)
                if _check(scenario, child, steps, result, choices):
                    result.depth = level
                    return _done(result, start, prefix(u))
                next_frontier.append((child, steps))
        result.per_depth.append(len(next_frontier))
        result.depth = level
        frontier = next_frontier
        if not frontier:
            break
    return _done(result, start, prefix(u))


def _check(scenario: Scenario, node: Node, steps: tuple[Call, ...], result: Result, choices: Any) -> bool:
    result.states += 1
    claim, stale, translate = misses(scenario, node, choices)
    if stale and result.dte_misses is None:
        result.dte_misses = (steps, tuple(stale))
    if translate and result.translate_misses is None:
        result.translate_misses = (steps, tuple(translate))
    if claim:
        result.violation = (steps, tuple(claim))
        return True
    return False


def _done(result: Result, start: float, head: tuple[Call, ...] = ()) -> Result:
    """The result, with each sequence given from boot (the prefix first)."""
    result.seconds = time.perf_counter() - start
    if result.violation is not None:
        result.violation = (head + result.violation[0], result.violation[1])
    for name in ("dte_misses", "translate_misses"):
        found = getattr(result, name)
        if found is not None:
            setattr(result, name, (head + found[0], found[1]))
    return result


def replay(u: Universe, calls: Iterable[Call], choices: Any = SPEC) -> tuple[list[Miss], list[Miss], list[Miss]]:
    """Run ``calls`` from boot (every one must succeed) and check the state they reach."""
    scenario = u.scenario()
    state, _ = system.boot(scenario)
    node: Node | None = Node(state)
    for call in calls:
        node = _apply(scenario, node, call, choices)
        if node is None:
            raise ValueError(f"{call.name} {dict(call.args)} fails on replay")
    return misses(scenario, node, choices)


def describe(calls: Iterable[Call]) -> str:
    """The calls in one line each: name and arguments (guest DTE data as its DomainID)."""
    lines = []
    for c in calls:
        args = {k: v for k, v in c.args.items() if k not in ("data", "data_len", "flags", "data_type", "type")}
        if c.args.get("data"):
            args["gDomID"] = DTE.view(sum(w << (64 * i) for i, w in enumerate(c.args["data"])))["DomainID"]
        out = "".join(f" -> {n}" for n in c.bind.values())
        lines.append(f"{c.name}({', '.join(f'{k}={v}' for k, v in args.items())}){out}")
    return "; ".join(lines)
