"""A differential case: the memory image and the steps both sides run, as versioned JSON.

Steps (each a point where the harness observes something):

* :class:`CpuStore` -- a CPU store of one 64-bit word (a DTE word, a page-table entry);
* :class:`EduDma` -- ``edu`` device ``device`` reads or writes the 64-bit word at ``address``
  (an IOVA, or a system address when untranslated); observed: blocked, or the system word reached;
* :class:`Commands` -- commands (128 bits each, 48882 §2.4) written at the tail and handed over with one
  CMD_BUF_TAIL write; observed: the head, Status, every COMPLETION_WAIT store word of the case;
* :class:`RegisterWrite` -- software writes an MMIO register (§3.4: STATUS's RW1C bits, EXCL_BASE);
  observed: the register read back.

At the end the event log is compared. File format (``kind`` and ``version`` checked; numbers may be
hex strings)::

    {"kind": "amdvi-qemu-case", "version": 1, "title": "...", "devices": 2, "ring_start": "0xfe0",
     "memory": {"0x100018": "0x6000000000200603", ...},
     "steps": [{"op": "store", "address": "0x200000", "value": "0x..."},
               {"op": "dma", "device": 0, "address": "0x1000", "access": "read"},
               {"op": "commands", "commands": ["0x3000...."]},
               {"op": "register", "name": "STATUS", "value": "0x4"}]}

A finding written by ``amdvi diff-qemu`` is a case with a ``finding`` object (what was seen, what the
spec allows, the classification); the loader keeps it for display only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

from amdvi.spec.commands import COMMAND_BYTES
from amdvi.spec.mmio import OFFSETS

from .layout import ACCESS_BYTES, EDU_BUFFER_BYTES, EDU_SLOTS, LAYOUT, RAM_BYTES, STAGING

KIND = "amdvi-qemu-case"
VERSION = 1
WRITABLE_REGISTERS = ("STATUS", "EXCL_BASE", "EXCL_LIMIT", "CMD_BUF_TAIL")
MAX_BATCH = (1 << LAYOUT.cmd_len) - 1  # a batch never fills the ring (one entry stays free)
MAX_DMAS = EDU_BUFFER_BYTES // ACCESS_BYTES  # per device: each DMA has its own word of edu's buffer
# the harness's own pages: a case may not store into them
RESERVED = ((LAYOUT.cmd_ring, LAYOUT.ring_bytes), (LAYOUT.event_log, 16 << LAYOUT.event_len),
            (LAYOUT.semaphore, 4096), (STAGING, 4096 * len(EDU_SLOTS)))


class CaseError(ValueError):
    """A case file or object that is not a valid case (one line says where and why)."""


@dataclass(frozen=True)
class CpuStore:
    address: int
    value: int


@dataclass(frozen=True)
class EduDma:
    device: int
    address: int
    write: bool = False


@dataclass(frozen=True)
class Commands:
    commands: tuple[int, ...]


@dataclass(frozen=True)
class RegisterWrite:
    name: str
    value: int


Step = Union[CpuStore, EduDma, Commands, RegisterWrite]


@dataclass(frozen=True)
class Case:
    devices: int
    memory: tuple[tuple[int, int], ...]  # (address, value), 8-byte aligned, sorted
    steps: tuple[Step, ...]
    title: str = ""
    finding: Mapping[str, Any] | None = field(default=None, compare=False)
    ring_start: int = 0  # CMD_BUF_HEAD = CMD_BUF_TAIL at the start (byte offset): a wrap needs few commands

    def words(self) -> dict[int, int]:
        return dict(self.memory)

    def with_(self, **changes: Any) -> "Case":
        values = {"devices": self.devices, "memory": self.memory, "steps": self.steps, "title": self.title,
                  "finding": self.finding, "ring_start": self.ring_start}
        values.update(changes)
        return Case(**values)


def _number(value: Any, where: str, bits: int) -> int:
    if isinstance(value, bool):
        raise CaseError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            raise CaseError(f"{where}: {value!r} is not a number") from None
    if not isinstance(value, int):
        raise CaseError(f"{where}: expected a number, got {value!r}")
    if not 0 <= value < 1 << bits:
        raise CaseError(f"{where}: {value:#x} does not fit in {bits} bits")
    return value


def _word_address(value: Any, where: str) -> int:
    address = _number(value, where, 64)
    if address % 8:
        raise CaseError(f"{where}: {address:#x} is not 8-byte aligned")
    if address >= RAM_BYTES:
        raise CaseError(f"{where}: {address:#x} is beyond the machine's {RAM_BYTES >> 20} MiB of RAM")
    for base, size in RESERVED:
        if base <= address < base + size:
            raise CaseError(f"{where}: {address:#x} is in a page the harness owns ({base:#x}..{base + size - 1:#x})")
    return address


def _step(obj: Any, where: str, devices: int) -> Step:
    if not isinstance(obj, dict):
        raise CaseError(f"{where}: expected an object")
    op = obj.get("op")
    keys = {"store": {"address", "value"}, "dma": {"device", "address", "access"}, "commands": {"commands"},
            "register": {"name", "value"}}
    if op not in keys:
        raise CaseError(f"{where}: unknown op {op!r}; known: {', '.join(keys)}")
    extra = set(obj) - keys[op] - {"op", "text"}
    if extra:
        raise CaseError(f"{where}: unknown field {sorted(extra)[0]!r} for op {op}")
    missing = keys[op] - set(obj)
    if missing:
        raise CaseError(f"{where}: op {op} needs {sorted(missing)[0]!r}")
    if op == "store":
        return CpuStore(_word_address(obj["address"], f"{where}.address"), _number(obj["value"], f"{where}.value", 64))
    if op == "dma":
        device = _number(obj["device"], f"{where}.device", 8)
        if device >= devices:
            raise CaseError(f"{where}.device: {device} but the case has {devices} device(s)")
        if obj["access"] not in ("read", "write"):
            raise CaseError(f"{where}.access: {obj['access']!r} is not read or write")
        address = _number(obj["address"], f"{where}.address", 64)
        if RAM_BYTES <= address < 1 << 32:
            raise CaseError(f"{where}.address: {address:#x} is in the MMIO hole above RAM (untranslated, a DMA there "
                            f"would reach QEMU's devices)")
        if address % 8:
            raise CaseError(f"{where}.address: {address:#x} is not 8-byte aligned (a DMA moves one 64-bit word)")
        return EduDma(device, address, obj["access"] == "write")
    if op == "commands":
        commands = obj["commands"]
        if not isinstance(commands, list) or not 1 <= len(commands) <= MAX_BATCH:
            raise CaseError(f"{where}.commands: expected a list of 1 to {MAX_BATCH} commands")
        return Commands(tuple(_number(c, f"{where}.commands[{i}]", 8 * COMMAND_BYTES) for i, c in enumerate(commands)))
    name = str(obj["name"]).upper()
    if name not in WRITABLE_REGISTERS:
        raise CaseError(f"{where}.name: {obj['name']!r} is not one of {', '.join(WRITABLE_REGISTERS)}")
    return RegisterWrite(name, _number(obj["value"], f"{where}.value", 64))


def from_json(obj: Any, source: str = "case") -> Case:
    """The case an object describes (CaseError with one line on anything wrong)."""
    if not isinstance(obj, dict):
        raise CaseError(f"{source}: expected a JSON object")
    if obj.get("kind") != KIND:
        raise CaseError(f"{source}: kind is {obj.get('kind')!r}, not {KIND!r}")
    if obj.get("version") != VERSION:
        raise CaseError(f"{source}: version {obj.get('version')!r} is not supported (this tool reads {VERSION})")
    devices = _number(obj.get("devices", 1), f"{source}.devices", 8)
    if not 1 <= devices <= len(EDU_SLOTS):
        raise CaseError(f"{source}.devices: {devices} is not between 1 and {len(EDU_SLOTS)}")
    memory = obj.get("memory", {})
    if not isinstance(memory, dict):
        raise CaseError(f"{source}.memory: expected an object of address: value")
    words = {_word_address(a, f"{source}.memory[{a!r}]"): _number(v, f"{source}.memory[{a!r}]", 64)
             for a, v in memory.items()}
    steps = obj.get("steps", [])
    if not isinstance(steps, list):
        raise CaseError(f"{source}.steps: expected a list")
    parsed = tuple(_step(s, f"{source}.steps[{i}]", devices) for i, s in enumerate(steps))
    for device in range(devices):
        if sum(isinstance(s, EduDma) and s.device == device for s in parsed) > MAX_DMAS:
            raise CaseError(f"{source}.steps: device {device} has more than {MAX_DMAS} DMAs (one buffer word each)")
    finding = obj.get("finding")
    ring_start = _number(obj.get("ring_start", 0), f"{source}.ring_start", 32)
    if ring_start % COMMAND_BYTES or ring_start >= LAYOUT.ring_bytes:
        raise CaseError(f"{source}.ring_start: {ring_start:#x} is not a 16-byte offset inside the "
                        f"{LAYOUT.ring_bytes:#x}-byte ring")
    return Case(devices, tuple(sorted(words.items())), parsed, str(obj.get("title", "")),
                finding if isinstance(finding, dict) else None, ring_start)


def step_json(step: Step) -> dict[str, Any]:
    if isinstance(step, CpuStore):
        return {"op": "store", "address": hex(step.address), "value": hex(step.value)}
    if isinstance(step, EduDma):
        return {"op": "dma", "device": step.device, "address": hex(step.address),
                "access": "write" if step.write else "read"}
    if isinstance(step, Commands):
        return {"op": "commands", "commands": [hex(c) for c in step.commands]}
    return {"op": "register", "name": step.name, "value": hex(step.value)}


def to_json(case: Case) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": KIND, "version": VERSION, "title": case.title, "devices": case.devices,
                           "ring_start": hex(case.ring_start), "memory": {hex(a): hex(v) for a, v in case.memory},
                           "steps": [step_json(s) for s in case.steps]}
    if case.finding is not None:
        out["finding"] = dict(case.finding)
    return out


def dumps(case: Case) -> str:
    return json.dumps(to_json(case), indent=1) + "\n"


def loads(text: str, source: str = "case") -> Case:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise CaseError(f"{source}: not JSON: {e.msg} at line {e.lineno}") from None
    return from_json(obj, source)


def register_offset(name: str) -> int:
    return OFFSETS[name]
