"""Structural reachability: which system pages each device can reach, as a networkx graph.

48882 §2.2.2 (device table), §2.2.3 (host, v1 tables), §2.2.6 (guest, v2 tables and the GCR3 table).
This is a structural view over plain ints, not a proof: it enumerates the table entries a walk
could follow (the rules of ``amdvi.spec.translation``: present entries, legal Next Level
encodings, no reserved bits, legal encoded page sizes) instead of translating one address.
The tests cross-check it against ``translate``.

Nodes (the node id is a tuple, its first element the node type; attributes say the rest):

* ``("device", id)``: ``status`` says how the device's DMA is handled;
* ``("table", kind, level, address, ctx)``: a host (``"host"``), GCR3 (``"gcr3"``) or guest
  (``"guest"``) table at a system address. ``ctx`` is ``None`` unless the table was reached
  through guest-physical pointers (nested: the device's host table translates them), then it
  names that host table ``(root, mode, DTE.IR)`` and ``gpa`` holds the guest-physical address.
  GCR3 levels count down from DTE.GLX to 0 (the level whose entries hold the guest CR3), as
  ``translate``'s walk steps number them;
* ``("frame", address, size)``: a system page (``size`` 2**64 for untranslated access);
* ``("unresolved", kind, level, gpa, ctx)``: a guest-physical pointer the host table does not
  translate for reading; ``reason`` says why;
* ``("guest", id)`` and ``("domain", id)``: HW-vIOMMU guests and the host domains their maps give,
  added by :mod:`amdvi.properties.viommu_reach` (read from the hardware state).

Edges carry the permission the entry itself grants (``r``, ``w``: IR/IW of a DTE or host entry,
present and R/W of a guest entry, combined with the host page's IR/IW for a nested guest leaf),
the entry ``indices`` and ``entry_addresses`` (parallel entries to one target are merged), ``via``
(the structure read) and ``reach`` (whether DMA follows the edge; an edge used only to translate
guest-physical table pointers has ``reach`` False). :func:`reachable_frames` accumulates the
permissions along paths (AND along a path, OR across paths). Permissions are those of
supervisor, non-execute requests; guest U/S and NX are not shown.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator, Mapping

import networkx as nx

from amdvi.spec.device_table import DTE, ENTRY_BYTES, ILLEGAL_DTE, IO_PAGE_FAULT
from amdvi.spec.guest_page_table import GCR3_ENTRY
from amdvi.spec.bitvec import INT
from amdvi.spec.guest_translation import guest_entry as spec_guest_entry
from amdvi.spec.host_translation import host_entry as spec_host_entry
from amdvi.spec.levels import level_shift
from amdvi.spec.mmio import DEV_TAB_BAR
from amdvi.spec.translation import MEMORY_SCOPES

PAGE = 4096
ENTRIES = 512
ALL_MEMORY = 1 << 64  # the size of the "frame" an untranslated device reaches
MAX_TABLES = 4096  # table nodes expanded per graph
MAX_HOST_LEAVES = 1 << 16  # host leaves enumerated per host table (nested look-ups)
MAX_HOST_VISITS = 1 << 14  # table visits of that enumeration (shared tables multiply paths)
MAX_PIECES = 1 << 16  # frames produced per graph
PASID_BITS = 20

NodeId = tuple[Any, ...]


def level_size(level: int) -> int:
    """Default page size mapped by an entry at ``level`` (1: 4 KiB, 2: 2 MiB, ...)."""
    return 1 << level_shift(level)


def _word(memory: Mapping[int, int], address: int) -> int:
    return memory.get(address, 0)


def _bit(x: int) -> bool:
    return bool(x)


# ---- entry classification: the one place each table format's walk rules are read ---------------

@dataclass(frozen=True)
class Step:
    """What one present entry does: ``next`` table (with its level) or a leaf page, or a fault."""

    kind: str  # "table", "leaf" or "fault"
    r: bool = True
    w: bool = True
    address: int = 0  # next table, or page base
    level: int = 0  # next table's level
    size: int = 0  # page size of a leaf
    reason: str = ""


@lru_cache(maxsize=1 << 14)
def host_entry(entry: int, level: int) -> Step | None:
    """A v1 entry read at ``level`` (None when not present), as the spec's walk reads it."""
    e = spec_host_entry(INT, entry, level)
    if not e.present:
        return None
    if e.reserved_set:
        return Step("fault", reason=f"reserved {'PTE' if e.leaf else 'PDE'} bits set")
    if e.bad_encoding:
        what = "leaf (encoded page size, or a leaf at level 6)" if e.leaf else f"Next Level {e.next_level}"
        return Step("fault", reason=f"invalid {what} at level {level}")
    if e.leaf:
        return Step("leaf", e.readable, e.writable, e.address, size=1 << e.page_shift)
    return Step("table", e.readable, e.writable, e.address, level=e.next_level)


@lru_cache(maxsize=1 << 14)
def guest_entry(entry: int, level: int) -> Step | None:
    """A guest (v2) entry read at ``level`` (None when not present), as the spec's walk reads it."""
    e = spec_guest_entry(INT, entry, level)
    if not e.present:
        return None
    if e.invalid:
        return Step("fault", reason=f"invalid large page at guest level {level} (PS at level 4/5, or misaligned)")
    if e.leaf:
        return Step("leaf", True, e.writable, e.address, size=1 << e.page_shift)
    return Step("table", True, e.writable, e.address, level=level - 1)


@lru_cache(maxsize=1 << 12)
def gcr3_entry(entry: int, level: int) -> Step | None:
    """A GCR3 entry at GCR3 ``level`` (0 = last). A last-level entry's ``table`` is the guest root."""
    v = GCR3_ENTRY.view(entry)
    if not v["V"]:
        return None
    if entry & GCR3_ENTRY.reserved_mask:
        return Step("fault", reason="reserved GCR3 entry bits set")
    return Step("table", address=v["GCR3"] << 12, level=level - 1)


def _host_indices(level: int) -> range:
    """Level 6 takes only IOVA bits 63:57: 128 entries."""
    return range(128 if level == 6 else ENTRIES)


# ---- host leaves as IOVA ranges (for translating guest-physical addresses) --------------------

@dataclass(frozen=True)
class HostLeaf:
    """IOVAs [lo, lo + span) use this leaf; they land in the page (base, size)."""

    lo: int
    span: int
    base: int
    size: int
    r: bool
    w: bool

    def spa(self, iova: int) -> int:
        return self.base | (iova & (self.size - 1))


class HostMap:
    """Every leaf of one host table, by IOVA, enumerated path by path (bounded)."""

    def __init__(self, memory: Mapping[int, int], root: int, mode: int, limit: int = MAX_HOST_LEAVES,
                 visits: int = MAX_HOST_VISITS):
        self.truncated = False
        leaves: list[HostLeaf] = []
        tables: dict[tuple[int, int], list[tuple[int, Step]]] = {}
        stack = [(root, mode, 0, True, True)]
        while stack:
            table, level, prefix, r, w = stack.pop()
            visits -= 1
            if visits < 0:  # shared or self-referencing tables: paths multiply, tables do not
                self.truncated = True
                break
            if (table, level) not in tables:
                steps = ((i, host_entry(_word(memory, table + 8 * i), level)) for i in _host_indices(level))
                tables[table, level] = [(i, x) for i, x in steps if x is not None and x.kind != "fault"]
            for i, step in tables[table, level]:
                iova = prefix | (i << level_shift(level))
                if step.kind == "table":
                    stack.append((step.address, step.level, iova, r and step.r, w and step.w))
                    continue
                if len(leaves) >= limit:
                    self.truncated = True
                    stack.clear()
                    break
                leaves.append(HostLeaf(iova, level_size(level), step.address, step.size, r and step.r, w and step.w))
        leaves.sort(key=lambda x: x.lo)
        self.leaves = leaves
        self._los = [x.lo for x in leaves]

    def lookup(self, iova: int) -> HostLeaf | None:
        k = bisect.bisect_right(self._los, iova) - 1
        if k >= 0 and iova < self.leaves[k].lo + self.leaves[k].span:
            return self.leaves[k]
        return None

    def overlapping(self, lo: int, size: int) -> Iterator[HostLeaf]:
        k = max(bisect.bisect_right(self._los, lo) - 1, 0)
        while k < len(self.leaves) and self.leaves[k].lo < lo + size:
            leaf = self.leaves[k]
            if leaf.lo + leaf.span > lo:
                yield leaf
            k += 1


# ---- the graph ---------------------------------------------------------------------------------

class _Builder:
    def __init__(self, memory: Mapping[int, int], limit: int):
        self.memory = memory
        self.g = nx.DiGraph()
        self.limit = limit
        self.expanded = 0
        self.pieces = 0
        self.host_maps: dict[tuple[int, int], HostMap] = {}

    # -- helpers ----------------------------------------------------------------
    def node(self, nid: NodeId, **attrs: Any) -> NodeId:
        if nid not in self.g:
            self.g.add_node(nid, **attrs)
        return nid

    def table(self, kind: str, level: int, address: int, ctx: Any = None, gpa: int | None = None) -> NodeId:
        return self.node(("table", kind, level, address, ctx), node="table", kind=kind, level=level,
                         address=address, gpa=gpa, nested=ctx is not None)

    def frame(self, address: int, size: int) -> NodeId:
        return self.node(("frame", address, size), node="frame", address=address, size=size)

    def edge(self, u: NodeId, v: NodeId, r: bool, w: bool, via: str, index: int | None = None,
             entry_address: int | None = None, reach: bool = True, **extra: Any) -> None:
        if self.g.has_edge(u, v):
            d = self.g.edges[u, v]
            d["r"], d["w"] = d["r"] or r, d["w"] or w
            if index is not None:
                d["indices"].append(index)
                d["entry_addresses"].append(entry_address)
            for k, val in extra.items():
                if isinstance(d.get(k), list):
                    d[k].extend(val if isinstance(val, list) else [val])
            return
        self.g.add_edge(u, v, r=r, w=w, via=via, reach=reach,
                        indices=[] if index is None else [index],
                        entry_addresses=[] if index is None else [entry_address], **extra)

    def host_map(self, root: int, mode: int) -> HostMap:
        key = (root, mode)
        if key not in self.host_maps:
            self.host_maps[key] = HostMap(self.memory, root, mode)
            if self.host_maps[key].truncated:
                self.g.graph["truncated"] = True
        return self.host_maps[key]

    def resolve(self, ctx: Any, gpa: int) -> tuple[int | None, str, HostLeaf | None]:
        """System address of a guest-physical table pointer (None and a reason when unresolved)."""
        if ctx is None:
            return gpa, "", None
        root, mode, dte_ir = ctx
        leaf = self.host_map(root, mode).lookup(gpa)
        if leaf is None:
            return None, "no host (v1) mapping", None
        if not (leaf.r and dte_ir):
            return None, "host mapping not readable", leaf
        return leaf.spa(gpa), "", leaf

    def pointer(self, u: NodeId, kind: str, level: int, gpa: int, ctx: Any, r: bool, w: bool, via: str,
                index: int | None, entry_address: int | None, **extra: Any) -> NodeId | None:
        """Edge from ``u`` to the table at ``gpa`` (system, or resolved through ``ctx``)."""
        spa, reason, _ = self.resolve(ctx, gpa)
        if spa is None:
            v = self.node(("unresolved", kind, level, gpa, ctx), node="unresolved", kind=kind, level=level,
                          gpa=gpa, reason=reason)
            self.edge(u, v, r, w, via, index, entry_address, **extra)
            return None
        v = self.table(kind, level, spa, ctx, gpa if ctx is not None else None)
        self.edge(u, v, r, w, via, index, entry_address, **extra)
        return v

    def budget(self) -> bool:
        if self.expanded >= self.limit or self.pieces >= MAX_PIECES:
            self.g.graph["truncated"] = True
            return False
        self.expanded += 1
        return True

    # -- expansion ------------------------------------------------------------------
    def expand(self, start: NodeId) -> None:
        work = [start]
        while work:
            nid = work.pop()
            attrs = self.g.nodes[nid]
            if attrs.get("expanded") or not self.budget():
                continue
            attrs["expanded"] = True
            kind, level, address, ctx = nid[1], nid[2], nid[3], nid[4]
            if kind == "host":
                work.extend(self._expand_host(nid, address, level))
            elif kind == "gcr3":
                work.extend(self._expand_gcr3(nid, address, level, ctx))
            else:
                work.extend(self._expand_guest(nid, address, level, ctx))

    def _guest_levels(self, v: NodeId, glevels: int) -> None:
        """Record the guest table depth a GCR3 table leads to (first device wins; a clash is noted)."""
        a = self.g.nodes[v]
        if a.setdefault("guest_levels", glevels) != glevels:
            a["note"] = "shared by devices with different guest paging modes (GPM); the first is shown"

    def _faulty(self, nid: NodeId, index: int, step: Step) -> None:
        self.g.nodes[nid].setdefault("faults", []).append({"index": index, "reason": step.reason})

    def _expand_host(self, nid: NodeId, table: int, level: int) -> list[NodeId]:
        out = []
        for i in _host_indices(level):
            ea = table + 8 * i
            step = host_entry(_word(self.memory, ea), level)
            if step is None:
                continue
            if step.kind == "fault":
                self._faulty(nid, i, step)
            elif step.kind == "table":
                v = self.table("host", step.level, step.address)
                self.edge(nid, v, step.r, step.w, "PDE", i, ea)
                out.append(v)
            else:
                self.pieces += 1
                self.edge(nid, self.frame(step.address, step.size), step.r, step.w, "PTE", i, ea)
        return out

    def _expand_gcr3(self, nid: NodeId, table: int, level: int, ctx: Any) -> list[NodeId]:
        out = []
        for i in range(ENTRIES):
            if (i << (9 * level)) >> PASID_BITS:
                break  # PASIDs have 20 bits: level 2 is indexed by PASID[19:18] only
            ea = table + 8 * i
            step = gcr3_entry(_word(self.memory, ea), level)
            if step is None:
                continue
            if step.kind == "fault":
                self._faulty(nid, i, step)
                continue
            glevels = self.g.nodes[nid]["guest_levels"]
            if level > 0:
                v = self.pointer(nid, "gcr3", level - 1, step.address, ctx, True, True, "GCR3", i, ea)
            else:
                v = self.pointer(nid, "guest", glevels, step.address, ctx, True, True, "GCR3", i, ea)
            if v is not None:
                self._guest_levels(v, glevels)
                out.append(v)
        return out

    def _expand_guest(self, nid: NodeId, table: int, level: int, ctx: Any) -> list[NodeId]:
        out = []
        for i in range(ENTRIES):
            ea = table + 8 * i
            step = guest_entry(_word(self.memory, ea), level)
            if step is None:
                continue
            if step.kind == "fault":
                self._faulty(nid, i, step)
            elif step.kind == "table":
                v = self.pointer(nid, "guest", step.level, step.address, ctx, step.r, step.w, "GPTE", i, ea)
                if v is not None:
                    out.append(v)
            else:
                self._guest_leaf(nid, i, ea, step, ctx)
        return out

    def _guest_leaf(self, nid: NodeId, i: int, ea: int, step: Step, ctx: Any) -> None:
        if ctx is None:
            self.pieces += 1
            self.edge(nid, self.frame(step.address, step.size), step.r, step.w, "GPTE", i, ea)
            return
        root, mode, _ = ctx
        hmap = self.host_map(root, mode)
        covered = 0
        for leaf in hmap.overlapping(step.address, step.size):
            lo = max(step.address, leaf.lo)
            hi = min(step.address + step.size, leaf.lo + leaf.span)
            covered += hi - lo
            size = min(step.size, leaf.size)
            spa = leaf.spa(lo) & ~(size - 1)
            self.pieces += 1
            self.edge(nid, self.frame(spa, size), step.r and leaf.r, step.w and leaf.w, "GPTE", i, ea,
                      gpas=[lo])
        if covered < step.size:
            self.g.nodes[nid].setdefault("unmapped_gpas", []).append(
                {"index": i, "gpa": step.address, "size": step.size, "mapped": covered})

    # -- devices --------------------------------------------------------------------
    def device(self, dev_tab_bar: int, device_id: int) -> None:
        bar = DEV_TAB_BAR.view(dev_tab_bar)
        base, length = bar["DevTabBase"] << 12, (bar["Size"] + 1) * PAGE
        did = self.node(("device", device_id), node="device", device_id=device_id)
        attrs = self.g.nodes[did]
        if device_id * ENTRY_BYTES >= length:
            attrs["status"] = "fault: DTE beyond the device table (ILLEGAL_DEV_TABLE_ENTRY)"
            return
        ea = base + device_id * ENTRY_BYTES
        bits = sum(_word(self.memory, ea + 8 * k) << (64 * k) for k in range(4))
        dte = DTE.view(bits)
        attrs.update(dte_address=ea, dte=bits, domain_id=dte["DomainID"], mode=dte["Mode"])
        if not dte["V"]:
            attrs["status"] = "untranslated (V = 0)"
            self.edge(did, self.frame(0, ALL_MEMORY), True, True, "DTE")
            return
        broken = [r for r in DTE.validate(bits) if r.scope in MEMORY_SCOPES]
        illegal = [r.name for r in broken if r.event == ILLEGAL_DTE]
        if illegal:
            attrs["status"] = f"fault: ILLEGAL_DEV_TABLE_ENTRY ({', '.join(illegal)})"
            return
        if not dte["TV"]:
            attrs["status"] = "fault: TV = 0 (IO_PAGE_FAULT)"
            return
        page_fault = [r.name for r in broken if r.event == IO_PAGE_FAULT]
        if page_fault:
            attrs["status"] = f"fault: IO_PAGE_FAULT ({', '.join(page_fault)})"
            return
        mode = dte["Mode"]
        r, w = _bit(dte["IR"]), _bit(dte["IW"])
        guest, giov = bool(dte["GV"]), bool(dte["GIoV"])
        host_root = dte["Host Page Table Root Pointer"] << 12
        views = []
        if mode:
            views.append("host" if not (guest and giov) else "host (GPA -> SPA only)")
            v = self.table("host", mode, host_root)
            self.edge(did, v, r, w, "DTE", view="requests without PASID", reach=not (guest and giov))
            self.expand(v)
        elif not (guest and giov):
            views.append("passthrough (Mode 0)")
            self.edge(did, self.frame(0, ALL_MEMORY), r, w, "DTE", view="requests without PASID (Mode 0)")
        if guest:
            ctx = (host_root, mode, r) if mode else None
            gl = 5 if dte["GPM"] == 1 else 4
            root = dte["GCR3 Table Root Pointer"]
            v = self.pointer(did, "gcr3", dte["GLX"], root, ctx, r, w, "DTE", None, None,
                             view="requests with PASID" + (" and without (GIoV = 1: PASID 0)" if giov else ""))
            views.append("guest (nested)" if mode else "guest")
            if v is not None:
                self._guest_levels(v, gl)
                self.expand(v)
        attrs["status"] = "translated: " + ", ".join(views)


def build_graph(memory: Mapping[int, int], dev_tab_bar: int, device_ids: tuple[int, ...] | list[int],
                limit: int = MAX_TABLES) -> nx.DiGraph:
    """The structural graph of the given devices' tables (bounded: ``graph.graph['truncated']``)."""
    b = _Builder(memory, limit)
    b.g.graph.update(dev_tab_bar=dev_tab_bar, truncated=False)
    for d in device_ids:
        b.device(dev_tab_bar, d)
    return b.g


def reachable_frames(graph: nx.DiGraph, device_id: int) -> dict[tuple[int, int], tuple[bool, bool]]:
    """``{(frame address, size): (readable, writable)}`` for DMA of ``device_id``.

    Permissions AND along a path and OR across paths; frames with neither are left out. Bounded:
    each node is computed once and a node met again on the current path (a cycle) adds nothing.
    """
    start = ("device", device_id)
    if start not in graph:
        return {}
    memo: dict[NodeId, dict[tuple[int, int], tuple[bool, bool]]] = {}
    on_path: set[NodeId] = set()

    def frames(n: NodeId) -> dict[tuple[int, int], tuple[bool, bool]]:
        if n in memo:
            return memo[n]
        if n in on_path:
            return {}
        on_path.add(n)
        out: dict[tuple[int, int], tuple[bool, bool]] = {}
        for _, v, d in graph.out_edges(n, data=True):
            if not d.get("reach", True):
                continue
            below = {(v[1], v[2]): (True, True)} if v[0] == "frame" else frames(v)
            for f, (cr, cw) in below.items():
                r, w = d["r"] and cr, d["w"] and cw
                pr, pw = out.get(f, (False, False))
                out[f] = (pr or r, pw or w)
        on_path.discard(n)
        memo[n] = out
        return out

    return {f: p for f, p in frames(start).items() if p[0] or p[1]}


def table_cycles(graph: nx.DiGraph) -> list[list[int]]:
    """Cycles of table addresses: a table reachable from itself through entries a walk follows.

    Tables are nodes per (kind, level, context) in the graph, so a table pointing back to itself
    appears as the same address at a lower level; here the graph is projected onto addresses.
    """
    proj = nx.DiGraph()
    for u, v in graph.edges:
        if u[0] == "table" and v[0] == "table":
            proj.add_edge(u[3], v[3])
    cycles = []
    for comp in nx.strongly_connected_components(proj):
        if len(comp) > 1 or any(proj.has_edge(a, a) for a in comp):
            cyc = nx.find_cycle(proj, source=min(comp))
            cycles.append([a for a, _ in cyc] + [cyc[0][0]])
    return cycles


def tables_reached(graph: nx.DiGraph, device_id: int) -> set[NodeId]:
    """Table nodes reachable from the device (any edge)."""
    start = ("device", device_id)
    if start not in graph:
        return set()
    return {n for n in nx.descendants(graph, start) if n[0] == "table"}


# ---- DOT ---------------------------------------------------------------------------------------

def size_str(size: int) -> str:
    if size >= ALL_MEMORY:
        return "all memory"
    for unit, shift in (("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size:#x} bytes"


def perm_str(r: bool, w: bool) -> str:
    return ("r" if r else "-") + ("w" if w else "-")


def _ranges(xs: list[int]) -> str:
    xs = sorted(set(xs))
    out, k = [], 0
    while k < len(xs):
        j = k
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        out.append(str(xs[k]) if j == k else f"{xs[k]}-{xs[j]}")
        k = j + 1
    return ",".join(out)


def _shared_line(a: Mapping[str, Any]) -> str:
    shared = a.get("shared_by")
    return f"\nSHARED by guests {', '.join(map(str, shared))}" if shared else ""


def node_label(graph: nx.DiGraph, n: NodeId) -> str:
    a = graph.nodes[n]
    if n[0] == "device":
        d = a["device_id"]
        bdf = f"{d >> 8:02x}:{(d >> 3) & 0x1F:02x}.{d & 7:x}"
        roles = "".join(f"\n{r}" for r in a.get("roles", ()))
        return f"device {d:#06x} ({bdf}){roles}\n{a.get('status', '')}{_shared_line(a)}"
    if n[0] == "guest":
        t = a["translate_device_id"]
        stage2 = "MMIO block unreadable" if t is None else f"translate DeviceID {t:#06x}"
        return f"guest {a['guest_id']}\n{stage2}\ncommand buffer {'on' if a['command_buffer_enabled'] else 'off'}"
    if n[0] == "domain":
        return f"host domain {a['domain_id']:#x}{_shared_line(a)}"
    if n[0] == "frame":
        return "all memory (untranslated)" if a["size"] >= ALL_MEMORY else f"page {a['address']:#x}\n{size_str(a['size'])}"
    if n[0] == "unresolved":
        return f"{a['kind']} L{a['level']} at GPA {a['gpa']:#x}\nunresolved: {a['reason']}"
    where = f"{a['address']:#x}" if a["gpa"] is None else f"GPA {a['gpa']:#x} -> {a['address']:#x}"
    faults = f"\n{len(a['faults'])} faulting entries" if a.get("faults") else ""
    return f"{a['kind']} table L{a['level']}\n{where}{faults}"


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_SHAPES = {"device": "box", "table": "box3d", "frame": "note", "unresolved": "octagon", "guest": "house",
           "domain": "ellipse"}


def _node_style(graph: nx.DiGraph, n: NodeId) -> str:
    a = graph.nodes[n]
    style = ', style=dashed' if n[0] == "unresolved" else ', style=bold' if n[0] == "guest" else ""
    return style + (", color=red" if a.get("shared_by") else "")


def edge_label(d: Mapping[str, Any]) -> str:
    """Permissions and entry indices, or for a guest's edge the map entries (guest ID -> host ID)."""
    if d.get("maps"):
        label = "\n".join(f"{g:#x} -> {h:#x}" for g, h in d["maps"])
    elif d["via"] in ("stage 2", "DTE.DomainID"):
        label = d["via"]
    else:
        label = perm_str(d["r"], d["w"])
        if d["indices"]:
            label = f"[{_ranges(d['indices'])}] {label}"
    if d.get("view"):
        label += f"\n{d['view']}"
    if d.get("dangling"):
        label += f"\nDANGLING: {d['dangling']}"
    return label


def _edge_style(d: Mapping[str, Any]) -> str:
    style = "" if d.get("reach", True) else ", style=dotted"
    return style + (", color=red" if d.get("dangling") else "")


def to_dot(graph: nx.DiGraph, name: str = "amdvi") -> str:
    """The graph in Graphviz DOT."""
    ids = {n: f"n{k}" for k, n in enumerate(graph.nodes)}
    out = [f"digraph {_quote(name)} {{", "  rankdir=LR;", '  node [fontname="monospace", fontsize=10];',
           '  edge [fontname="monospace", fontsize=9];']
    for n in graph.nodes:
        out.append(f"  {ids[n]} [label={_quote(node_label(graph, n))}, shape={_SHAPES[n[0]]}{_node_style(graph, n)}];")
    for u, v, d in graph.edges(data=True):
        out.append(f"  {ids[u]} -> {ids[v]} [label={_quote(edge_label(d))}{_edge_style(d)}];")
    out.append("}")
    return "\n".join(out) + "\n"
