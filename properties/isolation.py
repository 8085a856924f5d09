"""Isolation of a nested (v2 over v1) device against an adversarial guest.

The hypervisor owns the device table and the host (v1) table; the guest owns everything else:
the GCR3 root pointer and guest fields of the DTE, the GCR3 table and its page tables, wherever
they are. Claim: whatever the guest writes, every system address the IOMMU reaches for the
device, its final target and every guest-table read, lies in a frame the host table maps (the
hypervisor's own tables aside). Everything the guest chooses is free: the DTE's guest fields
(GIoV, GLX, GPM, the GCR3 root), the request (address, PASID, read or write) and every word of
memory outside the hypervisor's region. The same query refutes the broken model (fault switch) that skips translating
guest table pointers through the host table, and the counterexample is a concrete memory image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import z3

from amdvi.spec.bitvec import INT, Z3, OverlayMemory
from amdvi.spec.device_table import DTE
from amdvi.spec.guest_page_table import GCR3_ENTRY, GPTE
from amdvi.spec.host_page_table import PDE, PTE
from amdvi.spec.mmio import DEV_TAB_BAR
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.translation import GUEST, Outcome, Request, translate

from .proof import REFUTED, ProofResult, Witness, prove

DEVICE = 0x10
DEVICE_TABLE = 0x100000
HOST_ROOT = 0x200000
HYPERVISOR_REGION = (DEVICE_TABLE, 0x203000)  # the device table and the three host table pages
SMALL_PAGES = 16  # GPA 0 .. 64 KiB -> SPA 0x4000_0000 .., 4 KiB pages
SMALL_SPA = 0x4000_0000
LARGE_GPA, LARGE_SPA = 0x1_0000, 0x8000_0000  # one 64 KiB page
HUGE_GPA, HUGE_SPA = 0x20_0000, 0xC000_0000  # one 2 MiB page


# The DTE fields the guest chooses (through the vIOMMU): all free, including the GCR3 table depth
# (GLX) and the guest table depth (GPM); reserved encodings make the entry illegal.
GUEST_DTE_FIELDS = ("GIoV", "GLX", "GPM", "GCR3 Table Root Pointer[14:12]", "GCR3 Table Root Pointer[30:15]",
                    "GCR3 Table Root Pointer[51:31]")


@dataclass(frozen=True)
class HostLayout:
    """The hypervisor's part of memory, as a concrete image, and the frames its v1 table maps.

    ``regions``: the [start, end) ranges the hypervisor owns (fixed to ``words``; the guest owns the
    rest); ``device``: the nested device; ``dte_fixed``: its DTE's host-owned fields, as field values,
    or (``dte_bits``) as the whole concrete DTE whose guest fields the guest then chooses."""

    words: dict[int, int]
    dev_tab_bar: int
    mapped: tuple[tuple[int, int], ...]  # (system address, size)
    dte_fixed: dict[str, int]
    regions: tuple[tuple[int, int], ...] = (HYPERVISOR_REGION,)
    device: int = DEVICE
    dte_bits: int | None = None

    def dte_address(self) -> int:
        return (DEV_TAB_BAR.view(self.dev_tab_bar)["DevTabBase"] << 12) + 32 * self.device

    def guest_dte(self, guest_fields: dict[str, Any], backend: Any = Z3) -> Any:
        """The device's DTE with ``guest_fields`` (values or terms) in the guest's fields."""
        if self.dte_bits is None:
            return DTE.encode({**self.dte_fixed, **guest_fields}, backend=backend)
        host_only = self.dte_bits & ~DTE.encode({name: (1 << DTE.field(name).width) - 1 for name in GUEST_DTE_FIELDS})
        guest = DTE.encode(guest_fields, backend=backend)
        return guest | host_only if backend is INT else z3.BitVecVal(host_only, 256) | guest


def host_layout() -> HostLayout:
    """A 3-level host table (a skipped level is left to the walk tests) for device 0x10: sixteen 4 KiB pages at GPA 0 (one read-only), one 64 KiB
    page at GPA 0x10000 (Next Level 7, sixteen copies) and one 2 MiB page at GPA 0x20_0000 (a level-2 leaf).
    """
    words: dict[int, int] = {}
    l3, l2, l1 = HOST_ROOT, HOST_ROOT + 0x1000, HOST_ROOT + 0x2000
    rw = {"IR": 1, "IW": 1}
    words[l3] = PDE.encode({"PR": 1, "Next Level": 2, "Next Table Address": l2 >> 12, **rw})
    words[l2] = PDE.encode({"PR": 1, "Next Level": 1, "Next Table Address": l1 >> 12, **rw})
    words[l2 + 8] = PTE.encode({"PR": 1, "Page Address": HUGE_SPA >> 12, **rw})
    for i in range(SMALL_PAGES):
        words[l1 + 8 * i] = PTE.encode({"PR": 1, "Page Address": (SMALL_SPA >> 12) + i, "IR": 1, "IW": int(i != 3)})
    encoded_64k = (LARGE_SPA >> 12) | 0b0111  # bits 14:12 set, bit 15 clear: 2^(15+1) = 64 KiB
    for i in range(16):
        words[l1 + 8 * (16 + i)] = PTE.encode({"PR": 1, "Next Level": 7, "Page Address": encoded_64k, **rw})
    dte_fixed = {"V": 1, "TV": 1, "Mode": 3, "Host Page Table Root Pointer": l3 >> 12, "IR": 1, "IW": 1,
                 "DomainID": 1, "GV": 1}
    mapped = ((SMALL_SPA, SMALL_PAGES * 0x1000), (LARGE_SPA, 0x1_0000), (HUGE_SPA, 0x20_0000))
    return HostLayout(words, DEV_TAB_BAR.encode(DevTabBase=DEVICE_TABLE >> 12, Size=0), mapped, dte_fixed)


def _inside(address: Any, ranges: tuple[tuple[int, int], ...]) -> Any:
    return z3.Or([z3.And(z3.UGE(address, lo), z3.ULT(address, lo + size)) for lo, size in ranges])


@dataclass(frozen=True)
class IsolationQuery:
    result: ProofResult
    layout: HostLayout
    image: dict[int, int] | None  # a concrete counterexample memory image when refuted
    request: Request | None


def nested_isolation(choices: Hardware = SPEC, timeout_ms: int = 300_000, *, layout: HostLayout | None = None,
                     witness: tuple[dict[int, int], dict[str, int], Request] | None = None,
                     name: str = "nested-isolation") -> IsolationQuery:
    """Prove (or refute, for a broken model) isolation of the nested device against any guest.

    ``layout`` (default :func:`host_layout`) fixes the hypervisor's memory; ``witness`` is a guest
    (memory image, DTE guest fields, request) whose nested translation succeeds, showing the claim's
    premises can hold (default: :func:`good_guest_image`)."""
    layout = layout or host_layout()
    guest_memory = Z3.memory_function("guest_memory")
    guest_dte = {name: z3.BitVec(f"dte_{name}", DTE.field(name).width) for name in GUEST_DTE_FIELDS}
    dte = layout.guest_dte(guest_dte)
    words: dict[int, Any] = dict(layout.words)
    for i in range(4):
        # simplified to constants and the guest's variables, so that the hypervisor's fields (V, TV, Mode,
        # the host root) fold when the walk reads them: the walk then has the host table's 3 levels, not
        # up to 6 (39 entries read instead of 69; about 9 s -> 3 s on 2 cores)
        words[layout.dte_address() + 8 * i] = z3.simplify(z3.Extract(64 * i + 63, 64 * i, dte))
    memory = OverlayMemory(guest_memory, layout.regions, words)
    request = Request(device_id=layout.device, address=z3.BitVec("address", 64), write=z3.Bool("write"),
                      pasid=z3.BitVec("pasid", 20), has_pasid=z3.Bool("has_pasid"))
    out = translate(Z3, memory, layout.dev_tab_bar, request, choices=choices)
    reads_inside = [z3.Implies(s.active, _inside(s.entry_address, layout.mapped))
                    for s in out.steps if s.dimension == GUEST]
    claim = z3.And(z3.Implies(out.ok, _inside(out.spa, layout.mapped)), *reads_inside)
    uses_guest = z3.Or(request.has_pasid, guest_dte["GIoV"] == 1)
    result = prove(
        f"{name}{'[' + choices.label() + ']' if choices.changed() else ''}",
        assumptions=[],
        claim=claim,
        witnesses=[Witness("a nested translation that succeeds", z3.And(out.ok, uses_guest),
                           _good_guest(guest_memory, guest_dte, request, witness))],
        timeout_ms=timeout_ms,
        strategy="bit-blast",
    )
    if result.status != REFUTED:
        return IsolationQuery(result, layout, None, None)
    return IsolationQuery(result, layout, *_counterexample(result.model, layout, out, request, guest_dte))


def good_guest_image() -> tuple[dict[int, int], dict[str, int], Request]:
    """A well-behaved guest: GCR3 table at GPA 0x1000, PASID 1's 4-level table mapping GVA 0 to GPA 0x6000.

    Guest pages sit in the host's small-page window (GPA x -> SPA 0x4000_0000 + x).
    """
    spa = lambda gpa: SMALL_SPA + gpa  # noqa: E731
    table = {"P": 1, "R/W": 1, "U/S": 1}
    image = {spa(0x1000 + 8 * 1): GCR3_ENTRY.encode(V=1, GCR3=0x2)}
    for level, gpa in enumerate((0x2000, 0x3000, 0x4000, 0x5000)):
        image[spa(gpa)] = GPTE.encode({**table, "Address": (gpa >> 12) + 1})
    gcr3 = 0x1000
    dte = {"GIoV": 0, "GLX": 0, "GPM": 0, **DTE.split("GCR3 Table Root Pointer", gcr3)}
    return image, dte, Request(device_id=DEVICE, address=0x0, write=False, pasid=1, has_pasid=True)


def _good_guest(guest_memory: Any, guest_dte: dict[str, Any], request: Request,
                witness: tuple[dict[int, int], dict[str, int], Request] | None = None) -> tuple[tuple[Any, Any], ...]:
    image, dte, concrete = witness or good_guest_image()
    return (
        (guest_memory, _as_function_body(image)),
        *[(var, z3.BitVecVal(dte[name], var.size())) for name, var in guest_dte.items()],
        (request.address, z3.BitVecVal(concrete.address, 64)),
        (request.write, z3.BoolVal(concrete.write)),
        (request.pasid, z3.BitVecVal(concrete.pasid, 20)),
        (request.has_pasid, z3.BoolVal(concrete.has_pasid)),
    )


def _as_function_body(image: dict[int, int]) -> Any:
    """The memory function's body for a concrete image (z3.Var(0) is the address; 0 elsewhere)."""
    address = z3.Var(0, z3.BitVecSort(64))
    body: Any = z3.BitVecVal(0, 64)
    for a, v in sorted(image.items()):
        body = z3.If(address == a, z3.BitVecVal(v, 64), body)
    return body


def _counterexample(model: z3.ModelRef, layout: HostLayout, out: Outcome, request: Request,
                    guest_dte: dict[str, Any]) -> tuple[dict[int, int], Request]:
    """The model as a concrete memory image (every word the walk read) and request."""
    def ev(t: Any) -> Any:
        if isinstance(t, bool):
            return z3.BoolVal(t)
        if isinstance(t, int):
            return z3.BitVecVal(t, 64)
        return model.eval(t, model_completion=True)

    image = dict(layout.words)
    dte = layout.guest_dte({k: ev(v).as_long() for k, v in guest_dte.items()}, INT)
    for i in range(4):
        image[layout.dte_address() + 8 * i] = (dte >> (64 * i)) & ((1 << 64) - 1)
    for s in out.steps:
        if z3.is_true(ev(s.active)):
            image.setdefault(ev(s.entry_address).as_long(), ev(s.entry).as_long())
    concrete = Request(device_id=layout.device, address=ev(request.address).as_long(), write=z3.is_true(ev(request.write)),
                       pasid=ev(request.pasid).as_long(), has_pasid=z3.is_true(ev(request.has_pasid)))
    return image, concrete


def escapes(image: dict[int, int], request: Request, layout: HostLayout, choices: Hardware = SPEC) -> bool:
    """Replay on Python ints: does this image make the device reach outside the mapped frames?"""
    out = translate(INT, image, layout.dev_tab_bar, request, choices=choices)
    inside = lambda x: any(lo <= x < lo + size for lo, size in layout.mapped)  # noqa: E731
    bad_reads = [s for s in out.active_steps() if s.dimension == GUEST and not inside(s.entry_address)]
    return bool(bad_reads) or (out.ok and not inside(out.spa))
