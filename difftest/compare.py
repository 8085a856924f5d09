"""Where QEMU's observation of a case leaves the set of outcomes the model allows.

Each :class:`Mismatch` names one observable (``dma``, ``head``, ``status.<bit>``, ``store``,
``register.<name>``, ``event-missing``, ``event-unexpected``, ``hang``), what QEMU showed and what the
spec allows, and a ``shape`` (e.g. ``dma-read:qemu-ok/spec-blocked``: QEMU reached a page where every
allowed outcome is blocked; ``hang:<op>``, the case file's name of the step QEMU hung at) that groups the
same kind of divergence across cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from amdvi.spec.mmio import STATUS, STATUS_RW1C_MASK

from .case import Case, CpuStore, EduDma, step_json
from .layout import EMPTY, RAM_BYTES, pattern, pattern_address
from .model_side import Allowed, Expectation
from .qemu_side import DATA_REGIONS, DmaSeen, Observation

UNOBSERVABLE = object()  # an allowed word the harness cannot tell from an aborted access


@dataclass(frozen=True)
class Mismatch:
    step: int | None
    observable: str
    seen: str
    allowed: str
    shape: str

    def line(self) -> str:
        where = f"step {self.step}" if self.step is not None else "end"
        return f"{where}: {self.observable}: QEMU {self.seen}; the spec allows {self.allowed}"


def _in_data(address: int) -> bool:
    return any(lo <= address < hi for lo, hi in DATA_REGIONS)


def expected_word(case: Case, memory: Mapping[int, int], spa: int) -> object:
    """The value a read of system address ``spa`` gives on the harness's machine (UNOBSERVABLE when the
    harness put nothing recognisable there)."""
    word = spa & ~7
    owned = {a for a, _ in case.memory} | {s.address for s in case.steps if isinstance(s, CpuStore)}
    if word in owned:
        return memory.get(word, 0)
    if word < RAM_BYTES and _in_data(word):
        return pattern(word)
    return UNOBSERVABLE


def describe_value(value: int) -> str:
    if value == 0:
        return "got 0 (the read was aborted)"
    if value == EMPTY:
        return "did not perform the read"
    spa = pattern_address(value)
    return f"read the word at {spa:#x}" if spa is not None else f"read {value:#x}"


def describe_allowed(allowed: Iterable[Allowed]) -> str:
    parts = sorted({"blocked" if not a.ok else f"{a.spa:#x}" for a in allowed})
    return " or ".join(parts) if parts else "nothing"


def dma_consistent(case: Case, memory: Mapping[int, int], allowed: Iterable[Allowed], seen: DmaSeen) -> bool:
    """Whether QEMU's DMA result is one of the ``allowed`` outcomes."""
    for a in allowed:
        if seen.write:
            if not a.ok and seen.landed is None:
                return True
            if a.ok:
                want = expected_word(case, memory, a.spa)
                if want is UNOBSERVABLE and seen.landed is None:
                    return True
                if seen.landed == a.spa & ~7:
                    return True
        else:
            if seen.value is None:
                return True
            if not a.ok and seen.value == 0:
                return True
            if a.ok:
                want = expected_word(case, memory, a.spa)
                if want is UNOBSERVABLE and pattern_address(seen.value) is None and seen.value != EMPTY:
                    return True
                if want == seen.value:
                    return True
    return False


def _seen_kind(seen: DmaSeen) -> str:
    if seen.write:
        return "ok" if seen.landed is not None else "blocked"
    return "blocked" if seen.value in (0, EMPTY) else "ok"


def _dma_shape(seen: DmaSeen, allowed: tuple[Allowed, ...]) -> str:
    """``dma-read:qemu-ok/spec-blocked``, ``dma-write:qemu-blocked/spec-ok``, ``dma-read:other-page``..."""
    kinds = {"ok" if a.ok else "blocked" for a in allowed}
    got = _seen_kind(seen)
    access = "write" if seen.write else "read"
    if got == "ok" and "ok" in kinds:
        return f"dma-{access}:other-page"
    return f"dma-{access}:qemu-{got}/spec-{'-or-'.join(sorted(kinds))}"


def compare(case: Case, expectation: Expectation, observation: Observation) -> list[Mismatch]:
    out: list[Mismatch] = []
    for i, seen in sorted(observation.dmas.items()):
        expected = expectation.dmas.get(i)
        if expected is None or dma_consistent(case, expected.memory, expected.allowed, seen):
            continue
        what = (f"wrote to {seen.landed:#x}" if seen.landed is not None else "wrote nowhere watched (blocked)") \
            if seen.write else describe_value(seen.value or 0)
        out.append(Mismatch(i, "dma", what, describe_allowed(expected.allowed), _dma_shape(seen, expected.allowed)))
    for i, seen in sorted(observation.batches.items()):
        want = expectation.batches.get(i)
        if want is None:
            continue
        if want.head is not None and seen.head != want.head:
            out.append(Mismatch(i, "head", f"CMD_BUF_HEAD = {seen.head:#x}", f"{want.head:#x}", "head"))
        for name, value in want.status.items():
            if name not in observation.sticky_status and seen.status.get(name) != value:
                out.append(Mismatch(i, f"status.{name}", f"{name} = {seen.status.get(name)}", str(value),
                                    f"status.{name}:{seen.status.get(name)}->{value}"))
        for address, value in want.stores.items():
            got = seen.stores.get(address)
            if got != value:
                out.append(Mismatch(i, "store", f"left {got:#x} at {address:#x}", f"{value:#x}",
                                    "store:" + ("missing" if got == 0 else "extra" if value == 0 else "value")))
    for i, seen in sorted(observation.registers.items()):
        want = expectation.registers.get(i)
        if want is None:
            continue
        if want.name == "STATUS":
            written = case.steps[i].value & STATUS_RW1C_MASK  # type: ignore[union-attr]
            stuck = [f.name for f in STATUS.named_fields if f.mask & written and seen.value & f.mask
                     and f.name not in observation.sticky_status]
            if stuck:
                out.append(Mismatch(i, "register.STATUS", f"kept {', '.join(stuck)} after writing 1 to clear it",
                                    "cleared (RW1C)", "register.STATUS:not-cleared"))
        elif seen.value != want.value:
            out.append(Mismatch(i, f"register.{want.name}", f"reads back {seen.value:#x}", f"{want.value:#x}",
                                f"register.{want.name}"))
    if observation.events is not None and observation.hang is None:
        got = set(observation.events)
        missing = sorted(expectation.certain_events - got)
        unexpected = sorted(got - expectation.possible_events)
        if missing:
            out.append(Mismatch(None, "event-missing", f"logged {len(got)} record(s)",
                                f"{len(missing)} more: " + ", ".join(f"{r:#034x}" for r in missing[:3]),
                                "event-missing"))
        if unexpected:
            out.append(Mismatch(None, "event-unexpected", ", ".join(f"{r:#034x}" for r in unexpected[:3]),
                                "no such record", "event-unexpected"))
    if observation.hang is not None:
        step, message = observation.hang
        kind = step_json(case.steps[step])["op"] if step is not None and 0 <= step < len(case.steps) else "?"
        out.append(Mismatch(step, "hang", f"stopped answering ({message})", "an answer", f"hang:{kind}"))
    return out


def dma_steps(case: Case) -> list[int]:
    return [i for i, s in enumerate(case.steps) if isinstance(s, EduDma)]
