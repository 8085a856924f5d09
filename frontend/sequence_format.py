"""The sequence file: a scenario and the steps a VMM, a guest and devices take (``kind: "sequence"``).

Declared once as data with the trace declaration's types (``frontend.trace_format``): the loader's
validation, the writer and the JSON Schema come from :data:`SEQUENCE`. Numbers are hex strings; an
ioctl's arguments are checked against the uAPI declaration of ``models.iommufd.uapi`` (its field
names and types), and a string where an object id is expected names an object an earlier step bound
with ``bind``. A bad file is one line naming the step, the field and why (exit 2).
"""

from __future__ import annotations

import errno as errnos
import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from amdvi.frontend.errors import InputError
from amdvi.frontend.trace_format import (
    VERSION, Built, Const, Field, Flag, Hex, Invalid, ListOf, Nullable, OneOf, Record, Tagged, Text, _kind, dumps, where,
)
from amdvi.models import system
from amdvi.models.amd_driver.choices import Driver
from amdvi.models.iommufd import uapi
from amdvi.models.iommufd.choices import Iommufd
from amdvi.models.iommufd.driver_api import PciDevice
from amdvi.properties import sequence_check
from amdvi.spec.choices import SPEC, Hardware

KIND = "sequence"
# what a sequence may claim to violate: the properties `amdvi check` checks, and a command that never completes
CLAIMABLE = sequence_check.ALL_PROPERTIES + ("command-completion",)
LAYERS: Mapping[str, type] = {"hardware": Hardware, "driver": Driver, "iommufd": Iommufd}


@dataclass(frozen=True)
class ErrnoName:
    """An errno by name ("EINVAL"), or "0" for success."""

    about: str

    def read(self, value: Any, path: Sequence[Any]) -> int:
        if value == "0":
            return 0
        if not isinstance(value, str) or not hasattr(errnos, value) or value not in errnos.errorcode.values():
            raise Invalid(path, f"{json.dumps(value)} is not an errno name such as \"EINVAL\" (or \"0\")")
        return getattr(errnos, value)

    def write(self, value: int) -> str:
        return "0" if value == 0 else errnos.errorcode[value]

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": "^(0|E[A-Z0-9]+)$", "description": self.about}


@dataclass(frozen=True)
class Names:
    """An object from output field names to the names they bind."""

    about: str

    def read(self, value: Any, path: Sequence[Any]) -> dict[str, str]:
        if not isinstance(value, dict) or not all(isinstance(v, str) and v for v in value.values()):
            raise Invalid(path, f"is {_kind(value)}, not an object of names")
        return dict(value)

    def write(self, value: Mapping[str, str]) -> dict[str, str]:
        return dict(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": {"type": "string"}, "description": self.about}


@dataclass(frozen=True)
class Args:
    """An ioctl's arguments: each field of the call's uAPI declaration, hex for numbers, true/false for
    flags, a name for an object id, a list of hex for data words."""

    about: str

    def read(self, value: Any, path: Sequence[Any]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Invalid(path, f"is {_kind(value)}, not an object")
        return {name: _arg(v, [*path, name]) for name, v in value.items()}

    def write(self, value: Mapping[str, Any]) -> dict[str, Any]:
        return {n: _write_arg(v) for n, v in value.items()}

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "description": self.about, "additionalProperties": {"oneOf": [
            {"type": "string"}, {"type": "boolean"}, {"type": "array", "items": {"type": "string"}}]}}


def _arg(value: Any, path: Sequence[Any]) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return Hex(64, "").read(value, path) if value.lower().startswith("0x") else value
    if isinstance(value, list):
        return tuple(Hex(64, "a data word").read(v, [*path, i]) for i, v in enumerate(value))
    raise Invalid(path, f"{json.dumps(value)} is not a hex string, a name, true/false or a list of hex words")


def _write_arg(value: Any) -> Any:
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return [hex(v) for v in value]
    return hex(value)


TEXT = Field(Text("the step in words (not read)"), False, ignored=True)
CALL = Built(Record({
    "name": Field(OneOf(tuple(uapi.CALLS), "the ioctl or VFIO call")),
    "args": Field(Args("its arguments (uAPI field names)"), False, {}),
    "bind": Field(Names("output field -> a name later steps use for it"), False, {}),
    "expect": Field(Nullable(ErrnoName("the errno the uAPI promises (checked by errno-conformance)")), False, None),
    "text": TEXT,
}, "an iommufd ioctl or VFIO cdev call"), system.Call)
GUEST_WRITE = Built(Record({
    "ioas": Field(Text("the IOAS that is the guest's memory (its name)")),
    "gpa": Field(Hex(64, "guest physical address")), "value": Field(Hex(64, "the word stored")), "text": TEXT,
}, "a guest stores a word in its own memory"), system.GuestWrite)
DMA = Built(Record({
    "device": Field(Text("device name")), "address": Field(Hex(64, "address the device asks for")),
    "write": Field(Flag("a write (else a read)"), False, False),
    "pasid": Field(Nullable(Hex(20, "PASID (absent or null: none)")), False, None), "text": TEXT,
}, "a device DMA whose outcome is shown"), system.DeviceDma)
DRAIN = Built(Record({"text": TEXT}, "lazy mode: the flush-queue timer fires"), system.FlushQueueDrain)
GUEST_COMMANDS = Built(Record({
    "viommu": Field(Text("the vIOMMU whose guest issues them (its name)")),
    "commands": Field(ListOf(Hex(128, "a command, with the guest's own IDs"), "the commands, in order")),
    "semaphore": Field(Hex(64, "guest physical address of its COMPLETION_WAIT store")), "text": TEXT,
}, "a HW-vIOMMU guest's driver: commands into its command buffer, doorbell, wait"), system.GuestCommands)
STEP = Tagged("step", {"Call": CALL, "GuestWrite": GUEST_WRITE, "DeviceDma": DMA, "FlushQueueDrain": DRAIN,
                       "GuestCommands": GUEST_COMMANDS},
              "one step of the sequence")

DEVICE = Record({
    "name": Field(Text("a name steps use")), "device_id": Field(Hex(16, "DeviceID (requester ID)")),
    "aliases": Field(ListOf(Hex(16, "DeviceID"), "other DeviceIDs its DMA may carry"), False, []),
    "ats": Field(Flag("has ATS (its own IOTLB)"), False, False), "pasid": Field(Flag("has PASID"), False, False),
    "pri": Field(Flag("has PRI"), False, False), "iommu": Field(Hex(8, "which IOMMU it is behind"), False, 0),
}, "a PCI device")
SCENARIO = Record({
    "devices": Field(ListOf(DEVICE, "the devices")),
    "user_memory": Field(ListOf(Record({"base": Field(Hex(64, "address")), "bytes": Field(Hex(64, "size"))},
                                       "a range"), "the VMM's memory (identity-mapped frames)"), False,
                         [{"base": 0x1000_0000, "bytes": 0x100_0000}]),
    "mode": Field(OneOf(system.MODES, "strict: each unmap flushes before it returns; lazy: the flush queue"),
                  False, "strict"),
    "np_cache": Field(Flag("the IOMMU caches not-present entries (CAP NpCache)"), False, False),
    "reserved_domain_ids": Field(ListOf(Hex(16, "DomainID"), "DomainIDs found in copied DTEs at boot"), False, []),
    "choices": Field(Record({layer: Field(ListOf(Text("NAME=VALUE"), f"{layer} choices"), False, [])
                             for layer in LAYERS}, "the choices of each layer (what differs from the defaults)"),
                     False, {layer: [] for layer in LAYERS}),
    "probes": Field(ListOf(Hex(64, "address"), "addresses checked beyond the mapped pages"), False, []),
    "bounds": Field(Record({
        "iovas": Field(ListOf(Hex(64, "IOVA"), "IOVAs MAP and UNMAP may use")),
        "lengths": Field(ListOf(Hex(64, "bytes"), "lengths MAP and UNMAP may use")),
        "user_pages": Field(ListOf(Hex(64, "address"), "user pages MAP may use")),
    }, "the arguments bounded model checking (amdvi check --depth) draws from"), False, None),
}, "what the sequence runs on")
SEQUENCE = Record({
    "version": Field(Const(VERSION, "format version")),
    "kind": Field(Const(KIND, "a driver and ioctl sequence")),
    "title": Field(Text("what the sequence does")),
    "notes": Field(ListOf(Text("a note"), "notes for people"), False, []),
    "scenario": Field(SCENARIO),
    "steps": Field(ListOf(STEP, "the steps, in order")),
    "violation": Field(Record({"property": Field(OneOf(CLAIMABLE, "the property")), "text": Field(Text("in words"), False)},
                              "the violation this sequence shows (a counterexample's claim)"), False, None),
}, "an amdvi driver and ioctl sequence")


@dataclass(frozen=True)
class LoadedSequence:
    title: str
    scenario: system.Scenario
    steps: tuple[Any, ...]
    probes: tuple[int, ...]
    notes: tuple[str, ...] = ()
    claimed: str | None = None  # the property a counterexample says it violates
    bounds: Any = None  # properties.sequence_bmc.Bounds for amdvi check --depth (None: the default)


def load(obj: Any, source: str) -> LoadedSequence:
    try:
        return _load(obj)
    except Invalid as e:
        raise InputError(f"{source}: {where(e.path, obj, 'steps', ('name', 'step'))}{e.why}") from None


def _choices(layer: str, assignments: list[str]) -> Any:
    try:
        return LAYERS[layer]().assign(assignments)
    except ValueError as e:
        raise Invalid(["scenario", "choices", layer], str(e)) from None


def _load(obj: Any) -> LoadedSequence:
    if not isinstance(obj, dict):
        raise Invalid([], f"a sequence is a JSON object, not {_kind(obj)}")
    v = SEQUENCE.read(obj, [])
    s = v["scenario"]
    devices = tuple(PciDevice(d["name"], d["device_id"], tuple(d["aliases"]), d["ats"], d["pasid"], d["pri"],
                              d["iommu"]) for d in s["devices"])
    try:
        scenario = system.Scenario(
            devices=devices, user_memory=tuple((r["base"], r["bytes"]) for r in s["user_memory"]), mode=s["mode"],
            np_cache=s["np_cache"], reserved_domain_ids=tuple(s["reserved_domain_ids"]),
            hardware=_choices("hardware", s["choices"]["hardware"]), driver=_choices("driver", s["choices"]["driver"]),
            iommufd=_choices("iommufd", s["choices"]["iommufd"]))
    except ValueError as e:
        raise Invalid(["scenario"], str(e)) from None
    steps = tuple(v["steps"])
    _check_steps(scenario, steps)
    violation = v["violation"]
    bounds = None
    if s["bounds"] is not None:
        from amdvi.properties.sequence_bmc import Bounds

        try:
            bounds = Bounds(tuple(s["bounds"]["iovas"]), tuple(s["bounds"]["lengths"]),
                            tuple(s["bounds"]["user_pages"]))
        except ValueError as e:
            raise Invalid(["scenario", "bounds"], str(e)) from None
    return LoadedSequence(v["title"], scenario, steps, tuple(s["probes"]), tuple(v["notes"]),
                          None if violation is None else violation["property"], bounds)


def _check_steps(scenario: system.Scenario, steps: Sequence[Any]) -> None:
    """What the declaration alone cannot say: arguments the call has, names bound before use, devices."""
    bound: set[str] = set()
    names = {d.name for d in scenario.devices}
    for i, step in enumerate(steps):
        if isinstance(step, system.Call):
            try:
                system.check_call(step, bound, names)
            except ValueError as e:
                raise Invalid(["steps", i, "bind" if isinstance(e, system.BadBind) else "args"], str(e)) from None
            bound |= set(step.bind.values())
        elif isinstance(step, system.DeviceDma) and step.device not in names:
            raise Invalid(["steps", i, "device"], f"no device {step.device!r}; devices: {', '.join(sorted(names))}")
        elif isinstance(step, system.GuestWrite) and step.ioas not in bound:
            raise Invalid(["steps", i, "ioas"], f"no earlier step bound the name {step.ioas!r}")
        elif isinstance(step, system.GuestCommands) and step.viommu not in bound:
            raise Invalid(["steps", i, "viommu"], f"no earlier step bound the name {step.viommu!r}")


def to_json(loaded: LoadedSequence, *, violation: tuple[str, str] | None = None,
            describe: Any = None) -> dict[str, Any]:
    """The file of a sequence (``violation``: the (property, words) it is a counterexample for)."""
    sc = loaded.scenario
    obj: dict[str, Any] = {
        "version": VERSION, "kind": KIND, "title": loaded.title, "notes": list(loaded.notes),
        "scenario": {
            "devices": [{"name": d.name, "device_id": hex(d.device_id), "aliases": [hex(a) for a in d.aliases],
                         "ats": d.ats, "pasid": d.pasid, "pri": d.pri, "iommu": hex(d.iommu)} for d in sc.devices],
            "user_memory": [{"base": hex(b), "bytes": hex(n)} for b, n in sc.user_memory],
            "mode": sc.mode, "np_cache": sc.np_cache,
            "reserved_domain_ids": [hex(d) for d in sc.reserved_domain_ids],
            "choices": {"hardware": sc.hardware.as_assignments(), "driver": sc.driver.as_assignments(),
                        "iommufd": sc.iommufd.as_assignments()},
            "probes": [hex(p) for p in loaded.probes],
            **({} if loaded.bounds is None else {"bounds": {
                "iovas": [hex(x) for x in loaded.bounds.iovas], "lengths": [hex(x) for x in loaded.bounds.lengths],
                "user_pages": [hex(x) for x in loaded.bounds.user_pages]}}),
        },
        "steps": [{**STEP.write(s), **({"text": describe(s)} if describe else {})} for s in loaded.steps],
    }
    if violation is not None:
        obj["violation"] = {"property": violation[0], "text": violation[1]}
    return obj


def is_sequence(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("kind") == KIND


__all__ = ["load", "to_json", "is_sequence", "SEQUENCE", "LoadedSequence", "dumps", "SPEC"]
