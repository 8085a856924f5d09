"""HW-vIOMMU guests in the reachability graph: which guest owns which host devices and domains, and which
system frames each guest reaches, read back from the hardware state.

Nothing here comes from a declaration of the guests. The private pages are those the IOMMU's own DTE
maps (its v1 table, enumerated by :class:`~amdvi.properties.reachability.HostMap`); a guest is a GuestID
whose MMIO block in those pages holds anything, or whose maps hold a valid entry; each map entry that
is not all zero (a zero entry is unmapped whatever its layout) is read with the model's own
``lookup_device`` / ``lookup_domain``, and each guest's registers, its translate DeviceID among them,
with ``guest_registers`` (``models.viommu``). So the graph shows what the hardware would do with
the memory, including what a driver got wrong.

Added to :func:`~amdvi.properties.reachability.build_graph`'s graph:

* ``("guest", gid)``: edges to the host devices its DeviceID map gives (``via`` "DeviceID map", one
  ``maps`` pair (guest ID, host ID) per entry) and to its translate DeviceID (``via`` "stage 2"),
  both followed by DMA (``reach``), and to ``("domain", host DomainID)`` nodes its DomainID map gives
  (``reach`` False: a DomainID tags caches, it maps no memory);
* ``("domain", id)``: dotted edges to the devices whose valid DTE carries that DomainID;
* ``guests`` on every device and domain node a guest reaches; ``shared_by`` when two or more do
  (``graph.graph["sharing"]``); ``dangling`` on a map edge whose host device has no valid DTE, or
  whose host DomainID no valid DTE carries (``graph.graph["dangling"]``).

A guest's frames are those of its stage 2 and of each mapped device, as :func:`reachable_frames`
gives them for a device. Reading is bounded (``MAX_SCANS``, ``MAX_LOOKUPS``; ``graph.graph["truncated"]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping

import networkx as nx

from amdvi.models.caches import Caches
from amdvi.models.iommu import IommuState
from amdvi.models.registers import Registers
from amdvi.models.viommu import TranslatedPrivateSpace, ViommuConfig, guest_registers, lookup_device, lookup_domain
from amdvi.spec import viommu as V
from amdvi.spec.bitvec import INT
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.device_table import DTE

from .reachability import HostMap, NodeId, build_graph, reachable_frames

MAX_SCANS = 1 << 20  # map entries and MMIO blocks scanned per graph (~1 s)
MAX_LOOKUPS = 1 << 14  # of those, the non-zero ones looked up with the model (~2 s)
IOMMU_ROLE = "IOMMU (its private address space)"


@dataclass(frozen=True)
class GuestView:
    """One guest as the hardware holds it: its translate DeviceID (None when its MMIO block is not
    readable) and the valid entries of its maps (guest ID -> host ID)."""

    guest_id: int
    translate_device_id: int | None
    devices: Mapping[int, int]
    domains: Mapping[int, int]
    command_buffer_enabled: bool


# ---- reading the private address space -----------------------------------------------------------

def _state(memory: Mapping[int, int], dev_tab_bar: int) -> IommuState:
    return IommuState(memory=memory, regs=Registers(dev_tab_bar=dev_tab_bar), caches=Caches.empty())


def private_map(memory: Mapping[int, int], dev_tab_bar: int, config: ViommuConfig) -> HostMap | None:
    """The IOMMU's own v1 table (its private address space), or None when its DTE holds none."""
    graph = build_graph(memory, dev_tab_bar, [config.iommu_device_id])
    attrs = graph.nodes[("device", config.iommu_device_id)]
    if not attrs.get("status", "").startswith("translated") or not attrs["mode"]:
        return None
    root = DTE.view(attrs["dte"])["Host Page Table Root Pointer"] << 12
    return HostMap(memory, root, attrs["mode"])


class _Budget:
    """What reading the private space may still scan (slots) and look up (non-zero slots)."""

    def __init__(self, scans: int, lookups: int):
        self.left = {"scan": scans, "lookup": lookups}
        self.cut = False

    def take(self, what: str) -> bool:
        self.left[what] -= 1
        self.cut = self.cut or self.left[what] < 0
        return not self.cut


def _slots(memory: Mapping[int, int], hmap: HostMap, region: V.Region, budget: _Budget) -> Iterator[tuple[int, int]]:
    """(GuestID, index) of every entry (or MMIO block) of ``region`` on a private page the table maps and
    not all zero in memory: a zero word reads as an unmapped entry whatever the layout, so only the rest
    need the model's look-up."""
    step = region.entry or region.per_guest
    end = region.base + V.MAX_GUESTS * region.per_guest
    for leaf in hmap.leaves:
        lo, hi = max(leaf.lo, region.base), min(leaf.lo + leaf.span, end)
        first = region.base + -(-(lo - region.base) // step) * step
        for address in range(first, hi, step):
            if not budget.take("scan"):
                return
            if any(memory.get(leaf.spa(address + k), 0) for k in range(0, step, 8)):
                if not budget.take("lookup"):
                    return
                guest_id, offset = divmod(address - region.base, region.per_guest)
                yield guest_id, offset // step


def read_guests(memory: Mapping[int, int], dev_tab_bar: int, config: ViommuConfig = ViommuConfig(),
                choices: Hardware = SPEC, scans: int = MAX_SCANS,
                lookups: int = MAX_LOOKUPS) -> tuple[tuple[GuestView, ...], bool]:
    """Every guest the private address space holds, and whether the reading was cut short."""
    hmap = private_map(memory, dev_tab_bar, config)
    if hmap is None:
        return (), False
    state, space = _state(memory, dev_tab_bar), TranslatedPrivateSpace(config)
    budget = _Budget(scans, lookups)

    def slots(region: V.Region) -> Iterator[tuple[int, int]]:
        return _slots(memory, hmap, region, budget)

    blocks = {}
    for gid, _ in slots(V.GUEST_MMIO):
        regs = guest_registers(INT, state, gid, space, choices)
        if regs.readable and (regs.misc_control or regs.cmd_control or regs.head or regs.tail):
            blocks[gid] = regs
    devices: dict[int, dict[int, int]] = {}
    domains: dict[int, dict[int, int]] = {}
    for maps, region, lookup in ((devices, V.DEVID_MAP, lookup_device), (domains, V.DOMID_MAP, lookup_domain)):
        for gid, index in slots(region):
            found = lookup(INT, state, gid, index, space, choices)
            if found.mapped:
                maps.setdefault(gid, {})[index] = found.host_id
    guests = []
    for gid in sorted({*blocks, *devices, *domains}):
        regs = blocks.get(gid)
        guests.append(GuestView(
            guest_id=gid,
            translate_device_id=V.MISC_CONTROL.view(regs.misc_control)["TranslateDeviceID"] if regs else None,
            devices=devices.get(gid, {}), domains=domains.get(gid, {}),
            command_buffer_enabled=bool(regs and V.CMD_CONTROL.view(regs.cmd_control)["CmdBufEn"])))
    return tuple(guests), budget.cut or hmap.truncated


# ---- the graph --------------------------------------------------------------------------------------

def _valid(graph: nx.DiGraph, device_id: int) -> bool:
    return graph.nodes[("device", device_id)].get("status", "").startswith("translated")


def _link(graph: nx.DiGraph, u: NodeId, v: NodeId, via: str, reach: bool, pair: tuple[int, int] | None) -> None:
    """A guest's edge; a second map entry to the same host ID adds its pair."""
    if not graph.has_edge(u, v):
        graph.add_edge(u, v, r=True, w=True, via=via, reach=reach, indices=[], entry_addresses=[], maps=[])
    if pair is not None:
        graph.edges[u, v]["maps"].append(pair)


def _mark_owner(graph: nx.DiGraph, node: NodeId, guest_id: int) -> None:
    owners = graph.nodes[node].setdefault("guests", [])
    if guest_id not in owners:
        owners.append(guest_id)


def _add_guest(graph: nx.DiGraph, g: GuestView) -> None:
    gnode = ("guest", g.guest_id)
    graph.add_node(gnode, node="guest", guest_id=g.guest_id, translate_device_id=g.translate_device_id,
                   command_buffer_enabled=g.command_buffer_enabled)
    if g.translate_device_id is not None:
        stage2 = ("device", g.translate_device_id)
        _link(graph, gnode, stage2, "stage 2", True, None)
        graph.nodes[stage2].setdefault("roles", []).append(f"stage 2 of guest {g.guest_id}")
        _mark_owner(graph, stage2, g.guest_id)
    for guest_device, host_device in sorted(g.devices.items()):
        _link(graph, gnode, ("device", host_device), "DeviceID map", True, (guest_device, host_device))
        _mark_owner(graph, ("device", host_device), g.guest_id)
    for guest_domain, host_domain in sorted(g.domains.items()):
        dnode = ("domain", host_domain)
        if dnode not in graph:
            graph.add_node(dnode, node="domain", domain_id=host_domain)
        _link(graph, gnode, dnode, "DomainID map", False, (guest_domain, host_domain))
        _mark_owner(graph, dnode, g.guest_id)


def _link_domains(graph: nx.DiGraph) -> None:
    """Each domain node to the devices whose valid DTE carries its DomainID (what its flushes reach)."""
    devices = [n for n in graph if n[0] == "device" and _valid(graph, n[1])]
    for dnode in [n for n in graph if n[0] == "domain"]:
        for dev in devices:
            if graph.nodes[dev].get("domain_id") == dnode[1]:
                _link(graph, dnode, dev, "DTE.DomainID", False, None)


def _flag(graph: nx.DiGraph) -> None:
    """Cross-guest sharing, and map edges that lead nowhere valid."""
    sharing, dangling = [], []
    for n, attrs in graph.nodes(data=True):
        if n[0] in ("device", "domain") and len(attrs.get("guests", ())) > 1:
            attrs["shared_by"] = sorted(attrs["guests"])
            sharing.append({"kind": n[0], "id": n[1], "guests": attrs["shared_by"]})
    for u, v, d in graph.edges(data=True):
        if u[0] != "guest":
            continue
        reason = None
        if v[0] == "device" and not _valid(graph, v[1]):
            reason = f"DeviceID {v[1]:#06x} has no valid DTE ({graph.nodes[v].get('status', '')})"
        elif v[0] == "domain" and not any(w[0] == "device" for w in graph.successors(v)):
            reason = f"no device with a valid DTE has DomainID {v[1]:#x}"
        if reason:
            d["dangling"] = reason
            dangling.append({"guest": u[1], "kind": v[0], "id": v[1], "via": d["via"], "maps": d["maps"],
                             "reason": reason})
    graph.graph["sharing"], graph.graph["dangling"] = sharing, dangling


def build_guest_graph(memory: Mapping[int, int], dev_tab_bar: int, device_ids: tuple[int, ...] | list[int],
                      config: ViommuConfig = ViommuConfig(), choices: Hardware = SPEC) -> nx.DiGraph:
    """:func:`build_graph` over ``device_ids`` and every device the guests name, with the guests added."""
    guests, cut = read_guests(memory, dev_tab_bar, config, choices)
    named = {g.translate_device_id for g in guests if g.translate_device_id is not None}
    named |= {h for g in guests for h in g.devices.values()}
    graph = build_graph(memory, dev_tab_bar, sorted({*device_ids, *named, config.iommu_device_id}))
    graph.nodes[("device", config.iommu_device_id)].setdefault("roles", []).append(IOMMU_ROLE)
    for g in guests:
        _add_guest(graph, g)
    _link_domains(graph)
    _flag(graph)
    graph.graph["guests"] = [g.guest_id for g in guests]
    graph.graph["truncated"] = graph.graph["truncated"] or cut
    return graph


# ---- what each guest reaches -------------------------------------------------------------------------

Frames = dict[tuple[int, int], tuple[bool, bool]]


def guest_frames_by_source(graph: nx.DiGraph, guest_id: int) -> dict[str, Frames]:
    """``{"stage 2" or host DeviceID as 0x....: frames}``: each path by which the guest reaches memory."""
    out: dict[str, Frames] = {}
    edges = sorted(graph.out_edges(("guest", guest_id), data=True), key=lambda e: (e[2]["via"] != "stage 2", e[1]))
    for _, dev, d in edges:
        if d["reach"] and dev[0] == "device":
            out["stage 2" if d["via"] == "stage 2" else f"{dev[1]:#06x}"] = reachable_frames(graph, dev[1])
    return out


def guest_frames(graph: nx.DiGraph, guest_id: int) -> Frames:
    """Every frame the guest reaches (permissions OR across its stage 2 and its devices)."""
    out: Frames = {}
    for frames in guest_frames_by_source(graph, guest_id).values():
        for f, (r, w) in frames.items():
            pr, pw = out.get(f, (False, False))
            out[f] = (pr or r, pw or w)
    return out


def owned(graph: nx.DiGraph, guest_id: int, kind: str) -> list[tuple[int, int]]:
    """The guest's (guest ID, host ID) map pairs of ``kind`` ("device" or "domain"), by guest ID."""
    pairs = [p for _, v, d in graph.out_edges(("guest", guest_id), data=True) if v[0] == kind for p in d["maps"]]
    return sorted(pairs)

