"""The structural reachability graph, cross-checked against ``translate`` (the spec's walk)."""

from pathlib import Path

from hypothesis import given, settings, strategies as st

from amdvi.frontend import scenario
from amdvi.properties.reachability import (
    ALL_MEMORY, HostMap, build_graph, host_entry, reachable_frames, table_cycles, to_dot,
)
from amdvi.spec.bitvec import INT
from amdvi.spec.device_table import DTE
from amdvi.spec.guest_page_table import GCR3_ENTRY, GPTE
from amdvi.spec.host_page_table import PDE, PTE
from amdvi.spec.mmio import DEV_TAB_BAR
from amdvi.spec.translation import Request, translate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


def frames_of(name, device):
    s = scenario.load(EXAMPLES / name)
    return reachable_frames(build_graph(s.memory, s.dev_tab_bar, s.devices), device), s


def agrees_with_translate(s, device, address, frames, pasid=None):
    """A successful translation lands in a reachable frame with at most the frame's permissions."""
    for write in (False, True):
        out = translate(INT, s.memory, s.dev_tab_bar,
                        Request(device, address, write, pasid or 0, pasid is not None))
        if out.ok:
            size = 1 << out.page_shift
            assert (out.spa & ~(size - 1) & (ALL_MEMORY - 1), size) in frames, hex(address)
            r, w = frames[(out.spa & ~(size - 1) & (ALL_MEMORY - 1), size)]
            assert (out.readable <= r) and (out.writable <= w)


# ---- the example scenarios ---------------------------------------------------------------

def test_v1_4level_frames_read_only_page_and_large_pages():
    frames, s = frames_of("v1-4level.json", 0x10)
    assert frames == {(0x400000, 4 * KIB): (True, True), (0x401000, 4 * KIB): (True, False),
                      (0x408000, 32 * KIB): (True, True), (0x800000, 2 * MIB): (True, True),
                      (0xA00000, 2 * MIB): (True, True)}
    for iova in (0x0, 0x1000, 0x8000, 0xF000, 0x200000, 0x3FFFFF, 0x8000000000, 0x2000, 0x8040000000):
        agrees_with_translate(s, 0x10, iova, frames)


def test_mode0_and_untranslated_devices_reach_all_memory():
    frames, _ = frames_of("v1-4level.json", 0x08)
    assert frames == {(0, ALL_MEMORY): (True, False)}
    g = build_graph({}, DEV_TAB_BAR.encode({"DevTabBase": 0x100}), [3])
    assert reachable_frames(g, 3) == {(0, ALL_MEMORY): (True, True)}  # V = 0
    assert g.nodes[("device", 3)]["status"] == "untranslated (V = 0)"


def test_nested_frames_combine_guest_and_host_permissions():
    frames, s = frames_of("nested.json", 0x20)
    # PASID 1 through the guest table (GVA 0x0 rw, 0x1000 host read-only, 0x2000 guest read-only,
    # 0x200000 a 2 MiB page); GVA 0x3000's GPA is not mapped by the host.
    assert frames[(0x320000, 4 * KIB)] == (True, True)
    assert frames[(0x321000, 4 * KIB)] == (True, False)
    assert frames[(0x1000000, 2 * MIB)] == (True, True)
    # GIoV = 0: requests without a PASID use the host table alone, so the GPA-mapped table pages are
    # reachable read-only, and GPA 0x12000 (guest read-only) is writable that way.
    assert frames[(0x310000, 4 * KIB)] == (True, False) and frames[(0x322000, 4 * KIB)] == (True, True)
    for gva in (0x0, 0x1000, 0x2000, 0x3000, 0x200000, 0x3FF000):
        agrees_with_translate(s, 0x20, gva, frames, pasid=1)
    for gpa in (0x1000, 0x11000, 0x12000, 0x40000):
        agrees_with_translate(s, 0x20, gpa, frames)


def test_nested_guest_only_view_when_giov_is_set():
    s = scenario.load(EXAMPLES / "nested.json")
    mem = dict(s.memory)
    dte_at = 0x100000 + 0x20 * 32
    bits = sum(mem[dte_at + 8 * k] << (64 * k) for k in range(4))
    bits = DTE.encode({**DTE.decode(bits), "GIoV": 1})
    for k in range(4):
        mem[dte_at + 8 * k] = (bits >> (64 * k)) & ((1 << 64) - 1)
    g = build_graph(mem, s.dev_tab_bar, [0x20])
    frames = reachable_frames(g, 0x20)
    assert set(frames) == set(frames_of("nested.json", 0x20)[0]) - {
        (a, 4 * KIB) for a in (0x310000, 0x311000, 0x312000, 0x313000, 0x314000)}
    assert frames[(0x322000, 4 * KIB)] == (True, False)  # only through the guest's read-only entry
    host_edge = g.edges[("device", 0x20), next(v for v in g.successors(("device", 0x20)) if v[1] == "host")]
    assert host_edge["reach"] is False


def test_v2_guest_only_frames():
    frames, s = frames_of("v2-5level.json", 0x30)
    assert frames == {(0x600000, 4 * KIB): (True, True), (0x601000, 4 * KIB): (True, True),
                      (0x602000, 4 * KIB): (True, True), (0x80000000, GIB): (True, True),
                      (0x700000, 4 * KIB): (True, False)}
    for gva in (0x0, 0x1000, 0x2000, 0x40000000, 0x7FFFF000):
        agrees_with_translate(s, 0x30, gva, frames, pasid=0x205)
    agrees_with_translate(s, 0x30, 0x0, frames)


def test_faulting_devices_reach_nothing_and_say_why():
    s = scenario.load(EXAMPLES / "faults.json")
    g = build_graph(s.memory, s.dev_tab_bar, s.devices)
    assert all(reachable_frames(g, d) == {} for d in s.devices)
    assert g.nodes[("device", 0x40)]["status"].startswith("fault: TV = 0")
    assert "GLX=3" in g.nodes[("device", 0x41)]["status"]
    faults = g.nodes[("table", "host", 1, 0x201000, None)]["faults"]
    assert [f["index"] for f in faults] == [0, 1] and "reserved" in faults[0]["reason"]


def test_unresolved_guest_pointer_is_marked():
    s = scenario.load(EXAMPLES / "nested.json")
    mem = dict(s.memory)
    mem[0x314000 + 8 * 4] = 0  # nothing else changes; now point the GCR3 entry at an unmapped GPA
    mem[0x310008] = 0x77000 | 1
    g = build_graph(mem, s.dev_tab_bar, s.devices)
    bad = [a for n, a in g.nodes(data=True) if n[0] == "unresolved"]
    assert len(bad) == 1 and bad[0]["gpa"] == 0x77000 and bad[0]["reason"] == "no host (v1) mapping"
    assert "unresolved" in to_dot(g)


# ---- bounded on cycles and shared tables ------------------------------------------------------

def _host_memory(root_mode, entries):
    bar = DEV_TAB_BAR.encode({"DevTabBase": 0x100})
    mem = {0x100000: DTE.encode({"V": 1, "TV": 1, "Mode": root_mode, "Host Page Table Root Pointer": 0x200,
                                 "IR": 1, "IW": 1})}
    mem.update(entries)
    return mem, bar


def test_self_referencing_tables_terminate_and_are_found_as_cycles():
    pde = lambda nl, to: PDE.encode({"PR": 1, "Next Level": nl, "Next Table Address": to >> 12, "IR": 1, "IW": 1})  # noqa: E731
    # every entry points back at the root table, one level down per quarter: 128^5 paths, six nodes
    nl = lambda i: 5 - i // 128  # noqa: E731
    mem, bar = _host_memory(6, {0x200000 + 8 * i: pde(nl(i), 0x200000) for i in range(512)})
    g = build_graph(mem, bar, [0])
    assert g.number_of_nodes() == 6 and not g.graph["truncated"]
    assert table_cycles(g) == [[0x200000, 0x200000]]
    assert reachable_frames(g, 0) == {}
    hmap = HostMap(mem, 0x200000, 6, visits=1000)  # the per-path enumeration is cut off, not hung
    assert hmap.truncated and hmap.leaves == []


def test_graph_is_bounded_by_its_table_limit():
    pde = lambda to: PDE.encode({"PR": 1, "Next Level": 3, "Next Table Address": to >> 12, "IR": 1, "IW": 1})  # noqa: E731
    mem, bar = _host_memory(4, {0x200000 + 8 * i: pde(0x300000 + 0x1000 * i) for i in range(512)})
    g = build_graph(mem, bar, [0], limit=10)
    assert g.graph["truncated"] is True


# ---- random host tables: structure agrees with the spec's walk --------------------------------

TABLES = [0x200000 + 0x1000 * k for k in range(5)]
INDICES = [0, 1, 2, 127, 511]


@st.composite
def host_tables(draw):
    mode = draw(st.integers(1, 6))
    entries = {}
    for t in TABLES:
        for i in draw(st.lists(st.sampled_from(INDICES), max_size=3, unique=True)):
            kind = draw(st.sampled_from(["pde", "pte", "pte7", "raw"]))
            perms = {"IR": draw(st.integers(0, 1)), "IW": draw(st.integers(0, 1))}
            if kind == "pde":
                e = PDE.encode({"PR": 1, "Next Level": draw(st.integers(1, 6)),
                                "Next Table Address": draw(st.sampled_from(TABLES)) >> 12, **perms})
            elif kind == "pte":
                e = PTE.encode({"PR": 1, "Page Address": draw(st.integers(0x400, 0x4FF)), **perms})
            elif kind == "pte7":
                ones = draw(st.integers(0, 20))
                page = (draw(st.integers(1, 7)) << 21) | ((1 << ones) - 1)
                e = PTE.encode({"PR": 1, "Next Level": 7, "Page Address": page, **perms})
            else:
                e = draw(st.integers(0, (1 << 64) - 1)) | 1
            entries[t + 8 * i] = e
    dte_perms = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    return mode, entries, dte_perms


def _probe(draw, mode):
    iova = draw(st.integers(0, 0xFFF))
    for level in range(mode, 0, -1):
        idx = draw(st.sampled_from([i for i in INDICES if level < 6 or i < 128]))
        iova |= idx << (12 + 9 * (level - 1))
    if draw(st.booleans()):
        iova ^= 1 << draw(st.integers(12, 63))
    return iova


@settings(max_examples=60)
@given(host_tables(), st.data())
def test_host_map_and_graph_agree_with_translate(tables, data):
    mode, entries, (ir, iw) = tables
    bar = DEV_TAB_BAR.encode({"DevTabBase": 0x100})
    mem = {0x100000: DTE.encode({"V": 1, "TV": 1, "Mode": mode, "Host Page Table Root Pointer": TABLES[0] >> 12,
                                 "IR": ir, "IW": iw})}
    mem.update(entries)
    hmap = HostMap(mem, TABLES[0], mode)
    # each leaf, and random addresses: ok exactly when the leaf exists and permits the access
    probes = [leaf.lo | 0x123 for leaf in hmap.leaves[:8]] + [_probe(data.draw, mode) for _ in range(6)]
    for iova in probes:
        leaf = hmap.lookup(iova)
        for write in (False, True):
            out = translate(INT, mem, bar, Request(0, iova, write))
            allowed = leaf is not None and (leaf.w and iw if write else leaf.r and ir)
            assert bool(out.ok) == bool(allowed), (hex(iova), write, leaf)
            if out.ok:
                assert out.spa == leaf.spa(iova) and 1 << out.page_shift == leaf.size
                assert (out.readable, out.writable) == (bool(leaf.r and ir), bool(leaf.w and iw))
    # the per-table graph and the per-path enumeration give the same frames
    expected: dict = {}
    for leaf in hmap.leaves:
        r, w = expected.get((leaf.base, leaf.size), (False, False))
        expected[(leaf.base, leaf.size)] = (r or (leaf.r and bool(ir)), w or (leaf.w and bool(iw)))
    expected = {f: p for f, p in expected.items() if p[0] or p[1]}
    assert reachable_frames(build_graph(mem, bar, [0]), 0) == expected


def test_host_entry_classification_matches_the_encoded_size_rule():
    leaf = host_entry(PTE.encode({"PR": 1, "Next Level": 7, "Page Address": 0x40B, "IR": 1}), 1)
    assert (leaf.kind, leaf.address, leaf.size, leaf.r, leaf.w) == ("leaf", 0x408000, 32 * KIB, True, False)
    assert host_entry(PTE.encode({"PR": 1, "Next Level": 7, "Page Address": 0x5FF}), 1).kind == "fault"  # 4 MiB at L1
    assert host_entry(PDE.encode({"PR": 1, "Next Level": 2, "Next Table Address": 1}), 2).kind == "fault"
    assert host_entry(PTE.encode({"PR": 1}), 6).kind == "fault"
    assert host_entry(0, 3) is None


# ---- random guest tables (Mode 0): what translate allows, the graph shows ------------------------

GCR3_TABLE = 0x380000


def _guest_table(level, j):
    return 0x300000 + 0x10000 * level + 0x1000 * j


@st.composite
def guest_tables(draw):
    gpm = draw(st.integers(0, 1))
    depth = 5 if gpm else 4
    tables = [(level, _guest_table(level, j)) for level in range(1, depth + 1) for j in range(2)]
    entries = {GCR3_TABLE + 8 * p: GCR3_ENTRY.encode({"V": 1, "GCR3": _guest_table(depth, draw(st.integers(0, 1))) >> 12})
               for p in draw(st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True))}
    for level, t in tables:
        for i in draw(st.lists(st.sampled_from(INDICES), min_size=1, max_size=3, unique=True)):
            down = st.integers(0, 1).map(lambda j, lv=level: _guest_table(max(lv - 1, 1), j))
            anywhere = st.sampled_from([a for _, a in tables])
            page = st.one_of(st.integers(0x400, 0x4FF).map(lambda p: p << 12),
                             st.integers(1, 3).map(lambda k: k << 21), st.integers(1, 3).map(lambda k: k << 30))
            kind = draw(st.sampled_from(["down", "down", "down", "anywhere", "page"]))
            target = draw({"down": down, "anywhere": anywhere, "page": page}[kind])
            ps = kind == "page" and draw(st.booleans()) or draw(st.integers(0, 9)) == 0
            entries[t + 8 * i] = GPTE.encode({"P": int(draw(st.integers(0, 9)) > 0), "R/W": draw(st.integers(0, 1)),
                                              "PS": int(ps), "Address": target >> 12})
    return gpm, entries


@settings(max_examples=40)
@given(guest_tables(), st.data())
def test_guest_graph_covers_what_translate_allows(tables, data):
    gpm, entries = tables
    bar = DEV_TAB_BAR.encode({"DevTabBase": 0x100})
    mem = {0x100000 + 8 * k: w for k, w in enumerate(
        (scenario.encode_fields(DTE, {"V": 1, "TV": 1, "GV": 1, "GPM": gpm, "GCR3 Table Root Pointer": GCR3_TABLE,
                                      "IR": 1, "IW": 1}, "dte") >> (64 * k)) & ((1 << 64) - 1) for k in range(4))}
    mem.update(entries)
    frames = reachable_frames(build_graph(mem, bar, [0]), 0)
    depth = 5 if gpm else 4
    for _ in range(8):
        # probes follow the entries present (the oracle is translate; this only steers the addresses)
        pasid = data.draw(st.integers(0, 2))
        table = mem.get(GCR3_TABLE + 8 * pasid, 0) & ~0xFFF
        gva = data.draw(st.integers(0, 0xFFF))
        for level in range(depth, 0, -1):
            present = [i for i in INDICES if mem.get(table + 8 * i, 0)]
            i = data.draw(st.sampled_from(present or INDICES))
            gva |= i << (12 + 9 * (level - 1))
            table = GPTE.view(mem.get(table + 8 * i, 0))["Address"] << 12
        if (gva >> (47 + 9 * gpm)) & 1:
            gva |= ((1 << 64) - 1) >> (47 + 9 * gpm) << (47 + 9 * gpm)  # canonical
        for write in (False, True):
            out = translate(INT, mem, bar, Request(0, gva, write, pasid, True))
            if out.ok:
                size = 1 << out.page_shift
                frame = (out.spa & ~(size - 1), size)
                assert frame in frames, (hex(gva), pasid, frame)
                assert out.writable <= frames[frame][1]
