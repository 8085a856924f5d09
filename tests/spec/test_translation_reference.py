"""Differential tests: ``amdvi.spec.translation.translate`` against the naive reference walker.

Hypothesis builds random but structured memory images: a device table with a few DTEs (any
Mode, V/TV, IR/IW, GV/GIoV/GLX/GPM, SA/SE, now and then a reserved bit or a random entry),
host (v1) tables of random depth built along target IOVAs (present or not, IR/IW, skipped
levels, Next Level 7 sizes legal or not, reserved bits), GCR3 tables and guest (v2) tables
along target PASIDs/GVAs, nested images whose guest pointers the host table maps, and a few
random words over existing tables. Requests mostly aim at the targets. The two implementations
must agree on every observable field (spa, page size and permissions when the access is allowed).

Each answer is also compared, type for type, with ``walk_request`` on Python ints (the reference engine)
when ``translate`` ran the staged engine (``tests/spec/test_staged.py`` forces compiled paths).

The Z3 tests run the same spec function symbolically: with concrete request values as Z3
constants every Outcome field must simplify to the INT answer; with a free address and a free
memory array pinned by a solver, every field must evaluate to it under the model.
"""

from __future__ import annotations

import pytest
import z3
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from amdvi.spec.bitvec import INT, Z3, Z3_TERMS
from amdvi.spec.device_table import DTE
from amdvi.spec.guest_page_table import GCR3_ENTRY, GPTE
from amdvi.spec.host_page_table import PDE, PTE
from amdvi.spec.mmio import DEV_TAB_BAR
from amdvi.spec import staged
from amdvi.spec.translation import Request, translate, walk_request

from reference_walker import Req, reference_translate

M64 = (1 << 64) - 1
HOST_TABLES = 0x20_0000_0000  # system physical pages for host tables
GPA_PAGES = 0x1000  # guest-physical pages for GCR3 and guest tables
DEV_TABS = (0x100_0000, 0x3_0000_0000, 0xF_FFFF_FF00_0000)
NESTED_OFFSETS = (0, 1 << 39, 1 << 44)  # SPA = GPA + offset for guest structures of nested DTEs

SLOW = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def shift_of(level: int) -> int:
    return 12 + 9 * (level - 1)


def idx(address: int, level: int) -> int:
    return (address >> shift_of(level)) & 0x1FF


def spread(value: int, positions: tuple[int, ...]) -> int:
    """Bits of ``value`` placed at ``positions``."""
    return sum(((value >> i) & 1) << p for i, p in enumerate(positions))


PDE_NOISE = (1, 2, 3, 4, 5, 6, 7, 8, 63)
PTE_NOISE = (1, 2, 3, 4, 5, 6, 7, 8, 59, 60, 63)
GPTE_NOISE = (3, 4, 5, 6, 8, 9, 10, 11, 52, 55, 58, 62)


class ImageBuilder:
    """Draws one memory image and the requests aimed at it."""

    def __init__(self, draw, kind: str):
        self.draw = draw
        self.kind = kind
        self.mem: dict[int, int] = {}
        self.next_host = HOST_TABLES
        self.next_gpa = GPA_PAGES
        self.table_pages: list[int] = []  # SPAs of every table built (for random overwrites)

    # -- drawing helpers -----------------------------------------------------------------
    def pick(self, *options):
        """One of ``(value, weight)`` options; shrinks toward the first.

        The first option also fills the top of the range: Hypothesis draws the extremes of an
        integer range far more often than their share, and the rare options sit in between.
        """
        options = [(v, w) for v, w in options if w > 0]
        first, weight = options[0]
        low = (weight + 1) // 2
        layout = [(first, low), *options[1:], (first, weight - low)]
        n = self.draw(st.integers(0, sum(w for _, w in layout) - 1))
        for value, w in layout:
            if n < w:
                return value
            n -= w
        raise AssertionError

    def chance(self, percent: int) -> bool:
        """True with about ``percent`` % probability (shrinks toward the likelier answer)."""
        if percent >= 50:
            return self.pick((True, percent), (False, 100 - percent))
        return self.pick((False, 100 - percent), (True, percent))

    def bits(self, width: int) -> int:
        return self.draw(st.integers(0, (1 << width) - 1))

    def noise(self, positions: tuple[int, ...]) -> int:
        return spread(self.bits(len(positions)), positions) if self.chance(30) else 0

    def structured_address(self, width: int) -> int:
        """A ``width``-bit address whose 9-bit table indices are often 0 (so skipped levels work)."""
        if self.chance(10):
            return self.bits(width)
        out = self.bits(12)
        for level in range(1, 7):
            lo = shift_of(level)
            if lo >= width:
                break
            hi = min(lo + 9, width)
            if not self.chance(40):
                out |= self.bits(hi - lo) << lo
        return out

    def alloc_host(self) -> int:
        page = self.next_host
        self.next_host += 0x1000
        self.table_pages.append(page)
        return page

    def alloc_gpa(self) -> int:
        page = self.next_gpa
        self.next_gpa += 0x1000
        return page

    # -- host (v1) tables ------------------------------------------------------------------
    def host_leaf(self, level: int, leaf_page: int | None, careful: bool = False) -> int:
        page = leaf_page if leaf_page is not None else self.bits(40) << 12
        fields = {"PR": 1, "IR": int(self.chance(99 if careful else 90)), "IW": int(self.chance(85))}
        nl = self.pick((0, 70), (7, 30))
        if nl == 7:
            lo, hi = shift_of(level) + 1, min(shift_of(level + 1), 52)
            if lo <= hi and self.chance(99 if careful else 85):
                size_shift = self.draw(st.integers(lo, hi))
            else:
                size_shift = self.pick((self.draw(st.integers(13, 52)), 9), (None, 1))
            if size_shift is None:  # bits 51:12 all ones: no size encoded
                page = ((1 << 40) - 1) << 12
            else:
                z = size_shift - 1
                page = (page & ~((1 << (z + 1)) - 1)) | (((1 << z) - 1) & ~0xFFF)
                page &= (1 << 52) - 1
        entry = PTE.encode({**fields, "Next Level": nl, "Page Address": page >> 12}) | self.noise(PTE_NOISE)
        if self.chance(1 if careful else 4):
            entry |= 1 << self.draw(st.integers(52, 58))
        return entry

    def host_path(self, root: int, mode: int, target: int, leaf_page: int | None = None,
                  careful: bool = False) -> None:
        """Entries along ``target``'s walk, following those already there (``careful``: faults
        are rarer, for the host mappings of guest structures)."""
        level, table = mode, root
        for _ in range(6):
            slot = table + 8 * idx(target, level)
            if slot in self.mem:
                e = self.mem[slot]
                nl = (e >> 9) & 7
                if not (e & 1 and 1 <= nl < level):
                    return
                if any(idx(target, s) for s in range(level - 1, nl, -1)):
                    return
                table, level = ((e >> 12) & ((1 << 40) - 1)) << 12, nl
                continue
            kind = self.pick(("pde", 140 if level > 1 else 0), ("leaf", 36 if level <= 3 else 8),
                             ("absent", 2 if careful else 12), ("bad-nl", 1 if careful else 6))
            if kind == "absent":
                if self.chance(50):
                    self.mem[slot] = self.bits(64) & ~1
                return
            if kind == "bad-nl":
                nl = self.draw(st.integers(level, 6)) if level <= 6 else 6
                self.mem[slot] = PDE.encode({"PR": 1, "IR": 1, "IW": 1, "Next Level": max(nl, 1),
                                             "Next Table Address": self.alloc_host() >> 12})
                return
            if kind == "leaf" or level == 1:
                if leaf_page is not None:
                    leaf_page = (leaf_page & ~((1 << shift_of(level)) - 1)) & ((1 << 52) - 1)
                self.mem[slot] = self.host_leaf(level, leaf_page, careful)
                return
            nl = level - 1 if self.chance(90 if careful else 75) else self.draw(st.integers(1, level - 1))
            nxt = self.alloc_host()
            entry = PDE.encode({"PR": 1, "IR": int(self.chance(99 if careful else 92)), "IW": int(self.chance(90)),
                                "Next Level": nl, "Next Table Address": nxt >> 12}) | self.noise(PDE_NOISE)
            if self.chance(1 if careful else 3):
                entry |= 1 << self.draw(st.integers(52, 60))
            self.mem[slot] = entry
            if any(idx(target, s) for s in range(level - 1, nl, -1)):
                return  # the target cannot go on through this skip
            table, level = nxt, nl

    # -- guest (v2) tables -----------------------------------------------------------------
    def gcr3_path(self, root: int, glx: int, pasid: int, to_spa) -> int | None:
        """GCR3 entries for ``pasid``; the guest CR3 (a GPA) when they were all made valid."""
        table = root
        for j in range(glx, -1, -1):
            slot = to_spa(table + 8 * ((pasid >> (9 * j)) & 0x1FF))
            if slot in self.mem:
                e = self.mem[slot]
                if not (e & 1) or e & GCR3_ENTRY.reserved_mask:
                    return None
                table = ((e >> 12) & ((1 << 40) - 1)) << 12
                continue
            kind = self.pick(("valid", 90), ("invalid", 5), ("reserved", 5))
            if kind == "invalid":
                self.mem[slot] = self.bits(64) & ~1 if self.chance(50) else 0
                return None
            nxt = self.alloc_gpa()
            entry = GCR3_ENTRY.encode(V=1, GCR3=nxt >> 12)
            if kind == "reserved":
                entry |= 1 << self.pick((self.draw(st.integers(1, 11)), 1), (self.draw(st.integers(52, 63)), 1))
            self.mem[slot] = entry
            table = nxt
        return table

    def guest_path(self, cr3: int, depth: int, gva: int, to_spa, data_width: int) -> int | None:
        """Guest entries for ``gva``; the final GPA (for the host to map) when a leaf was written."""
        level, table = depth, cr3
        while True:
            slot = to_spa(table + 8 * idx(gva, level))
            if slot in self.mem:
                e = self.mem[slot]
                if not (e & 1) or level == 1 or (e >> 7) & 1:
                    return None
                table, level = ((e >> 12) & ((1 << 40) - 1)) << 12, level - 1
                continue
            kind = self.pick(("table", 80 if level > 1 else 0), ("leaf", 95 if level == 1 else 0),
                             ("big", 15 if level in (2, 3) else 0), ("absent", 5), ("bad-ps", 3 if level >= 4 else 0))
            perms = {"P": 1, "R/W": int(self.chance(85)), "U/S": int(self.chance(85)), "NX": int(self.chance(15))}
            noise = self.noise(GPTE_NOISE)
            if kind == "absent":
                self.mem[slot] = (self.bits(64) & ~1) if self.chance(50) else 0
                return None
            if kind in ("table", "bad-ps"):
                nxt = self.alloc_gpa()
                self.mem[slot] = GPTE.encode({**perms, "PS": int(kind == "bad-ps"), "Address": nxt >> 12}) | noise
                if kind == "bad-ps":
                    return None
                table, level = nxt, level - 1
                continue
            size_shift = 12 if level == 1 else shift_of(level)
            data = self.structured_address(data_width) & ~((1 << size_shift) - 1)
            if kind == "big" and self.chance(5):
                data |= self.bits(size_shift - 12) << 12  # misaligned large page
            ps = int(kind == "big") if level > 1 else int(self.chance(20))  # bit 7 is PAT at level 1
            self.mem[slot] = GPTE.encode({**perms, "PS": ps, "Address": (data >> 12) & ((1 << 40) - 1)}) | noise
            return (data & ~((1 << size_shift) - 1)) | (gva & ((1 << size_shift) - 1))

    # -- one device ------------------------------------------------------------------------
    def device(self, dev_tab: int, device_id: int, offset: int) -> list[dict]:
        """Writes one DTE and its tables; returns the requests aimed at it (as Request kwargs)."""
        draw = self.draw
        v = int(self.chance(92))
        tv = int(self.chance(92))
        mode = self.pick(*((m, w) for m, w in zip(range(8), (12, 8, 10, 16, 22, 12, 14, 6))))
        if self.kind == "guest" and mode == 7:
            mode = 4
        if self.kind == "host" and mode == 0:
            mode = 3
        gv = int(self.kind == "guest" or (self.kind == "any" and self.chance(45)))
        if self.kind == "host":
            gv = 0
        giov = int(self.chance(40))
        glx = self.pick((0, 50), (1, 30), (2, 20), (3, 1))
        gpm = self.pick((0, 55), (1, 45), (2, 1), (3, 1))
        fields = {
            "V": v, "TV": tv, "Mode": mode, "IR": int(self.chance(90)), "IW": int(self.chance(85)),
            "DomainID": self.bits(16), "GV": gv, "GIoV": giov, "GLX": glx, "GPM": gpm,
            "SA": int(self.chance(12)), "SE": int(self.chance(8)),
        }
        if self.chance(30):  # fields the walk must not care about
            fields.update({"HAD": self.bits(2), "PPR": self.bits(1), "I": self.bits(1), "Cache": self.bits(1),
                           "IV": self.bits(1), "IntTabLen": draw(st.integers(0, 11)), "IntCtl": draw(st.integers(0, 2)),
                           "IoCtl": draw(st.integers(0, 2)), "SysMgt": self.bits(2), "AttrV": self.bits(1),
                           "SnoopAttribute": self.bits(8), "Interrupt Table Root Pointer": self.bits(46)})
        host_root = self.alloc_host()
        gcr3_root = self.alloc_gpa()
        fields["Host Page Table Root Pointer"] = host_root >> 12
        fields["GCR3 Table Root Pointer[14:12]"] = (gcr3_root >> 12) & 0x7
        fields["GCR3 Table Root Pointer[30:15]"] = (gcr3_root >> 15) & 0xFFFF
        fields["GCR3 Table Root Pointer[51:31]"] = (gcr3_root >> 31) & 0x1FFFFF
        dte = DTE.encode(fields)
        if self.chance(4):  # a reserved bit
            dte |= 1 << draw(st.sampled_from([2, 3, 4, 5, 6, 63, 106, 180, 181, 187, 192, 200, 206, 240, 245]))
        if self.chance(4):  # a reserved encoding: GLX, GPM stop DMA; IoCtl, IntTabLen, IntCtl do not
            hi, lo, value = draw(st.sampled_from([(57, 56, 3), (183, 182, 2), (183, 182, 3), (100, 99, 3),
                                                  (132, 129, 12), (132, 129, 15), (189, 188, 3)]))
            dte = (dte & ~(((1 << (hi - lo + 1)) - 1) << lo)) | (value << lo)
        if self.chance(2):
            dte = self.bits(256) | 1
        for i in range(4):
            self.mem[dev_tab + 32 * device_id + 8 * i] = (dte >> (64 * i)) & M64

        nested = gv == 1 and 1 <= mode <= 6
        off = offset if nested else 0

        def to_spa(gpa: int) -> int:
            return gpa + off

        host_limit = 64 if mode in (0, 6, 7) else shift_of(mode + 1)
        requests: list[dict] = []
        host_targets: list[tuple[int, int | None, bool]] = []  # (iova, leaf page, careful)
        if 1 <= mode <= 6 and not (gv == 1 and giov == 1):
            for _ in range(draw(st.integers(1, 3))):
                iova = self.structured_address(host_limit) if self.chance(95) else self.bits(64)
                host_targets.append((iova, None, False))
                requests.append({"device_id": device_id, "address": iova})
        if gv == 1 and glx < 3 and gpm < 2:
            depth = 5 if gpm == 1 else 4
            pasids = [self.pick((0, 1), (self.bits(9), 2), (self.structured_address(20 + 12) >> 12, 2))
                      for _ in range(draw(st.integers(1, 2)))]
            if giov:
                pasids.append(0)
            for pasid in pasids:
                cr3 = self.gcr3_path(gcr3_root, glx, pasid, to_spa)
                if cr3 is None:
                    requests.append({"device_id": device_id, "address": self.bits(48), "pasid": pasid,
                                     "has_pasid": True})
                    continue
                for _ in range(draw(st.integers(1, 2))):
                    top = 47 if depth == 4 else 56
                    gva = self.structured_address(top + 1)
                    if (gva >> top) & 1:
                        gva |= M64 & ~((1 << (top + 1)) - 1)  # sign-extend: canonical
                    if self.chance(5):
                        gva ^= 1 << draw(st.integers(top + 1, 63))
                    data_width = min(host_limit, 52) if nested else 52
                    final = self.guest_path(cr3, depth, gva, to_spa, data_width)
                    if nested and final is not None:
                        host_targets.append((final, (final + self.bits(20)) & ~0xFFF & ((1 << 52) - 1), True))
                    use_pasid = pasid != 0 or not giov or self.chance(50)
                    requests.append({"device_id": device_id, "address": gva, "pasid": pasid,
                                     "has_pasid": use_pasid})
            if nested:  # every guest structure page must be reachable through the host table
                for gpa in range(gcr3_root, self.next_gpa, 0x1000):
                    host_targets.append((gpa, gpa + off, True))
        if 1 <= mode <= 6:
            for target, leaf, careful in host_targets:
                self.host_path(host_root, mode, target, leaf, careful)
        return requests

    def image(self):
        draw = self.draw
        dev_tab = draw(st.sampled_from(DEV_TABS))
        size = draw(st.integers(0, 2))
        bar = DEV_TAB_BAR.encode(DevTabBase=dev_tab >> 12, Size=size)
        entries = (size + 1) * 128
        device_ids = draw(st.lists(st.integers(0, entries - 1), min_size=1, max_size=3, unique=True))
        offset = draw(st.sampled_from(NESTED_OFFSETS))
        aims: list[dict] = []
        for device_id in device_ids:
            aims += self.device(dev_tab, device_id, offset)
        for _ in range(self.pick((0, 80), (1, 12), (3, 8))):  # random words over built tables
            if self.table_pages:
                page = draw(st.sampled_from(self.table_pages))
                self.mem[page + 8 * draw(st.integers(0, 511))] = self.bits(64)
        requests = []
        for _ in range(draw(st.integers(1, 5))):
            how = self.pick(("aimed", 85), ("device", 10), ("any", 5))
            if how == "aimed" and aims:
                req = dict(draw(st.sampled_from(aims)))
                if self.chance(30):
                    req["address"] ^= self.bits(12)
            elif how == "device":
                req = {"device_id": draw(st.sampled_from(device_ids)), "address": self.structured_address(64)}
            else:
                req = {"device_id": self.bits(16), "address": self.bits(64)}
            req.setdefault("pasid", 0)
            req.setdefault("has_pasid", False)
            if self.chance(10):
                req["has_pasid"] = not req["has_pasid"]
                req["pasid"] = req["pasid"] if self.chance(50) else self.bits(20)
            req.update(write=self.draw(st.booleans()), user=self.chance(20), execute=self.chance(20),
                       ats=self.chance(15))
            requests.append(req)
        return self.mem, bar, requests


@st.composite
def scenarios(draw, kind: str = "any"):
    return ImageBuilder(draw, kind).image()


# ---- comparison ----------------------------------------------------------------------------------

def observable(o) -> dict:
    out = {"ok": bool(o.ok), "dimension": int(o.dimension), "logged": bool(o.logged), "event": int(o.event),
           "domain_id": int(o.domain_id)}
    if out["ok"]:
        out.update(spa=int(o.spa), page_shift=int(o.page_shift), readable=bool(o.readable),
                   writable=bool(o.writable))
    return out


def check_agree(mem: dict, bar: int, req: dict):
    want = observable(reference_translate(mem, bar, Req(**req)))
    spec = translate(INT, mem, bar, Request(**req))  # the staged engine where a path is compiled
    assert staged.same(spec, walk_request(INT, mem, bar, Request(**req))), "staged != the INT semantics"
    got = observable(spec)
    if got != want:
        diff = {k: (f"{got.get(k):#x}" if isinstance(got.get(k), int) and not isinstance(got.get(k), bool)
                    else got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
        raise AssertionError(f"spec != reference for {req} (bar {bar:#x}): {diff} "
                             f"(event spec {got['event']:#034x} ref {want['event']:#034x})")
    return spec


@settings(max_examples=700, **SLOW)
@given(scenarios("any"))
def test_reference_agrees_on_mixed_images(scenario):
    mem, bar, requests = scenario
    for req in requests:
        check_agree(mem, bar, req)


@settings(max_examples=600, **SLOW)
@given(scenarios("host"))
def test_reference_agrees_on_host_tables(scenario):
    mem, bar, requests = scenario
    for req in requests:
        check_agree(mem, bar, req)


@settings(max_examples=700, **SLOW)
@given(scenarios("guest"))
def test_reference_agrees_on_guest_and_nested_tables(scenario):
    mem, bar, requests = scenario
    for req in requests:
        check_agree(mem, bar, req)


@pytest.mark.deep
@pytest.mark.parametrize("kind", ["any", "host", "guest"])
def test_reference_agrees_deep(kind, request):

    @settings(max_examples=5000, **SLOW)
    @given(scenarios(kind))
    def run(scenario):
        mem, bar, requests = scenario
        for req in requests:
            check_agree(mem, bar, req)

    run()


# ---- Z3 --------------------------------------------------------------------------------------------

def z3_request(req: dict, address=None) -> Request:
    return Request(device_id=z3.BitVecVal(req["device_id"], 16),
                   address=z3.BitVecVal(req["address"], 64) if address is None else address,
                   write=z3.BoolVal(req["write"]), pasid=z3.BitVecVal(req["pasid"], 20),
                   has_pasid=z3.BoolVal(req["has_pasid"]), user=z3.BoolVal(req["user"]),
                   execute=z3.BoolVal(req["execute"]), ats=z3.BoolVal(req["ats"]))


OUTCOME_FIELDS = ("ok", "spa", "page_shift", "readable", "writable", "domain_id", "logged", "event", "dimension")
STEP_FIELDS = ("dimension", "level", "entry_address", "entry", "readable", "writable", "active")


def concrete(x):
    return bool(x) if isinstance(x, bool) else int(x)


def compare_terms(evaluate, symbolic, expected) -> None:
    """Every Outcome field of ``symbolic`` evaluates to ``expected``'s, and so does every field of
    the steps that happen (a symbolic run also unrolls steps that cannot happen: inactive ones)."""
    for name in OUTCOME_FIELDS:
        got = evaluate(getattr(symbolic, name))
        assert concrete(got) == concrete(getattr(expected, name)), (name, got, getattr(expected, name))
    happened = [s for s in symbolic.steps if evaluate(s.active) is True]
    want = [s for s in expected.steps if s.active]
    assert [s.table for s in happened] == [s.table for s in want]
    for i, (s, e) in enumerate(zip(happened, want)):
        for name in STEP_FIELDS:
            got = evaluate(getattr(s, name))
            assert concrete(got) == concrete(getattr(e, name)), (i, s.table, name, got, getattr(e, name))


# Z3 examples are slow (about a second each): no shrinking, the failing example is printed as drawn.
Z3_SETTINGS = dict(SLOW, phases=(Phase.explicit, Phase.reuse, Phase.generate))


@settings(max_examples=10, **Z3_SETTINGS)
@given(scenarios("any"))
def test_z3_with_concrete_inputs_simplifies_to_the_int_answer(scenario):
    mem, bar, requests = scenario
    req = requests[0]
    expected = check_agree(mem, bar, req)
    symbolic = translate(Z3_TERMS, Z3.memory_from(mem), Z3.const(bar, 64), z3_request(req))  # unfolded terms
    compare_terms(Z3.value, symbolic, expected)


@settings(max_examples=6, **Z3_SETTINGS)
@given(scenarios("guest"))
def test_z3_free_address_and_memory_evaluate_to_the_int_answer_under_a_model(scenario):
    mem, bar, requests = scenario
    req = requests[0]
    expected = check_agree(mem, bar, req)
    address = z3.BitVec("address", 64)
    memory = Z3.memory_var("memory")
    symbolic = translate(Z3, memory, Z3.const(bar, 64), z3_request(req, address=address))
    solver = z3.Solver()
    solver.add(address == req["address"])
    for a, value in mem.items():
        solver.add(z3.Select(memory, z3.BitVecVal(a, 64)) == value)
    # words outside the image read as 0, as on the concrete side
    solver.add(memory == Z3.memory_from(mem))
    assert solver.check() == z3.sat
    model = solver.model()

    def evaluate(term):
        if isinstance(term, (bool, int)):
            return term
        v = model.eval(term, model_completion=True)
        if z3.is_true(v):
            return True
        if z3.is_false(v):
            return False
        assert z3.is_bv_value(v), v
        return v.as_long()

    compare_terms(evaluate, symbolic, expected)

    # and no other outcome is possible for this address and memory
    solver.add(z3.Or(symbolic.ok != z3.BoolVal(bool(expected.ok)),
                     symbolic.spa != z3.BitVecVal(expected.spa, symbolic.spa.size()),
                     symbolic.event != z3.BitVecVal(expected.event, symbolic.event.size())))
    assert solver.check() == z3.unsat
