"""A walk of known depth gives each step a constant level (``host_walk`` below a level-2 directory,
``guest_walk`` from a known first level): on any memory and request its outcome is the one of the walk
that follows its level step by step, which it takes when the depth is a variable (here one fixed only
by an assumption). Shown by Z3 over symbolic memory; the Python-int engine always knows the depth, so
the differential tests against the reference walker check the same code on concrete tables."""

from __future__ import annotations

import pytest
import z3

from amdvi.spec.bitvec import Z3, OverlayMemory
from amdvi.spec.device_table import DTE
from amdvi.spec.mmio import DEV_TAB_BAR
from amdvi.spec.translation import Request, translate

DEV_TAB, DEVICE = 0x10_0000, 0x10
BAR = DEV_TAB_BAR.encode(DevTabBase=DEV_TAB >> 12, Size=0)
FREE = ("DomainID", "Host Page Table Root Pointer", "IR", "IW", "GIoV", "GCR3 Table Root Pointer[14:12]",
        "GCR3 Table Root Pointer[30:15]", "GCR3 Table Root Pointer[51:31]")
OUTPUTS = ("ok", "spa", "page_shift", "readable", "writable", "logged", "event", "dimension", "guest", "walked")


def _outcome(shape: dict[str, int], general: str | None):
    """The walk's outcome for a DTE of ``shape`` (its other fields free), with the field ``general`` a
    variable rather than a constant; and the assumption that fixes it."""
    fields = {n: z3.BitVec(f"dte_{n}", DTE.field(n).width) for n in FREE + ((general,) if general else ())}
    dte = z3.simplify(DTE.encode({**{k: v for k, v in shape.items() if k != general}, **fields}, backend=Z3))
    words = {DEV_TAB + 32 * DEVICE + 8 * i: z3.simplify(z3.Extract(64 * i + 63, 64 * i, dte)) for i in range(4)}
    memory = OverlayMemory(Z3.memory_function("memory"), ((DEV_TAB, DEV_TAB + 0x1000),), words)
    request = Request(device_id=DEVICE, address=z3.BitVec("address", 64), write=z3.Bool("write"),
                      pasid=z3.BitVec("pasid", 20), has_pasid=z3.Bool("has_pasid"), user=z3.Bool("user"),
                      execute=z3.Bool("execute"))
    fixed = fields[general] == shape[general] if general else z3.BoolVal(True)
    return translate(Z3, memory, BAR, request), fixed


def _as_expr(x):
    return x if z3.is_expr(x) else (z3.BoolVal(x) if isinstance(x, bool) else z3.BitVecVal(x, 64))


V1 = {"V": 1, "TV": 1}
V2 = {"V": 1, "TV": 1, "Mode": 0, "GV": 1, "GLX": 0}
NESTED = {"V": 1, "TV": 1, "Mode": 2, "GV": 1, "GLX": 0}


@pytest.mark.parametrize("shape,general", [
    pytest.param({**V1, "Mode": 2}, "Mode", id="host-2-levels"),
    pytest.param({**V1, "Mode": 3}, "Mode", id="host-3-levels"),
    pytest.param({**V1, "Mode": 6}, "Mode", id="host-6-levels"),
    pytest.param({**V2, "GPM": 0}, "GPM", id="guest-4-levels"),
    pytest.param({**V2, "GPM": 1}, "GPM", id="guest-5-levels"),
    pytest.param({**NESTED, "GPM": 0}, "GPM", id="nested-guest-4-levels", marks=pytest.mark.deep),
])
def test_a_walk_of_known_depth_has_the_outcome_of_one_that_follows_its_level(shape, general):
    known, _ = _outcome(shape, None)
    followed, fixed = _outcome(shape, general)
    constant = [sum(1 for s in w.steps if z3.is_bv_value(z3.simplify(_as_expr(s.level)))) for w in (known, followed)]
    assert constant[0] > constant[1]  # the known depth is used: more steps at a constant level
    differ = z3.Or([_as_expr(getattr(known, n)) != _as_expr(getattr(followed, n)) for n in OUTPUTS])
    solver = z3.Then("simplify", "ackermannize_bv", "simplify", "bit-blast", "sat").solver()
    solver.set(timeout=300_000)
    solver.add(fixed, differ)
    assert solver.check() == z3.unsat
