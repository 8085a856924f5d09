"""The system a driver and ioctl sequence runs on: iommufd over the AMD driver over the IOMMU.

A :class:`Scenario` says what is there (devices with their DeviceIDs, aliases and ATS; the VMM's
memory; the driver's mode; the choices of each layer). A sequence is a list of steps, each what one
actor does:

* :class:`Call`: the VMM makes an iommufd ioctl or a VFIO cdev call (bind, attach, detach, unbind),
  naming objects by the names earlier calls bound their output ids to;
* :class:`GuestWrite`: a guest stores a word in its own memory (its page tables, its GCR3 table),
  i.e. at the system frame its IOAS maps the guest physical address to;
* :class:`DeviceDma`: a device reads or writes an address (the checkers let devices DMA at every
  point anyway; a DMA step asks for its outcome to be shown);
* :class:`GuestCommands`: a HW-vIOMMU guest's IOMMU driver (the guest kernel) puts commands with its
  own IDs in its command buffer, then a COMPLETION_WAIT on its own memory, rings its doorbell and waits;
* :class:`FlushQueueDrain`: lazy mode's flush-queue timer fires.

:func:`apply` is pure: ``(scenario, state, step) -> (state', StepResult)``; the result carries the
errno, the output fields and the hardware steps (``models.timeline``) the driver performed, which the
checkers run on the IOMMU model (``amdvi.properties.sequence_check``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from amdvi.spec.choices import SPEC, Hardware

from amdvi.spec.mmio import EFR, EFR2

from .amd_driver.choices import Driver
from .amd_driver.driver import AmdDriver
from .amd_driver.state import DriverConfig
from .iommufd import ioctls as iommufd_ioctls
from .iommufd import objects as iommufd_objects
from .iommufd import uapi
from .iommufd.objects import Ioas
from .iommufd.choices import Iommufd
from .iommufd.driver_api import PciDevice
from .software import Layout
from .timeline import GuestWait, Store, VfWrite

MODES = ("strict", "lazy")
MAX_USER_MEMORY = 256 << 20  # the VMM memory a scenario may give: every page may be mapped, one by one
# a recent IOMMU with guest translation: GTSup, GIoSup and EFR2 GCR3TRPModeSup make nest parents possible
# (is_nest_parent_supported), PASmax 15 (16-bit PASIDs), one GCR3 level more (GLXSup)
DEFAULT_EFR = EFR.encode({"GTSup": 1, "GIoSup": 1, "PPRSup": 1, "GLXSup": 1, "PASmax": 15})
DEFAULT_EFR2 = EFR2.encode({"GCR3TRPModeSup": 1})


@dataclass(frozen=True)
class Scenario:
    """What the sequence runs on."""

    devices: tuple[PciDevice, ...]
    user_memory: tuple[tuple[int, int], ...] = ((0x1000_0000, 0x100_0000),)  # (start, bytes) of VMM memory
    mode: str = "strict"
    np_cache: bool = False
    reserved_domain_ids: tuple[int, ...] = ()
    efr: int = DEFAULT_EFR
    efr2: int = DEFAULT_EFR2
    guest_5_level: bool = True  # amd_iommu_gpt_level: the host accepts 5-level guest tables
    hardware: Hardware = SPEC
    driver: Driver = field(default_factory=Driver)
    iommufd: Iommufd = field(default_factory=Iommufd)
    layout: Layout = field(default_factory=Layout)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        names = [d.name for d in self.devices]
        if len(set(names)) != len(names):
            raise ValueError("two devices have the same name")
        if sum(n for _, n in self.user_memory) > MAX_USER_MEMORY:
            raise ValueError(f"user_memory: at most {MAX_USER_MEMORY >> 20} MiB in all (the model maps page by page)")

    def device(self, name: str) -> PciDevice:
        for d in self.devices:
            if d.name == name:
                return d
        raise KeyError(f"no device {name!r}; devices: {', '.join(d.name for d in self.devices)}")

    @property
    def requester_ids(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(i for d in self.devices for i in d.requester_ids))

    def driver_model(self) -> AmdDriver:
        return AmdDriver(DriverConfig(layout=self.layout, devices=self.devices, lazy=self.mode == "lazy",
                                      np_cache=self.np_cache, efr=self.efr, efr2=self.efr2,
                                      guest_5_level=self.guest_5_level,
                                      reserved_domain_ids=self.reserved_domain_ids, choices=self.driver,
                                      rfc_interface=self.iommufd.viommu_interface == "rfc"))


# -- steps ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """An ioctl or VFIO call ``name`` (``models.iommufd.uapi``) with ``args``; a string where an id is
    expected names an object an earlier call bound; ``bind`` maps output fields to new names;
    ``expect``: the errno the sequence's author expects (checked by errno conformance)."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    bind: Mapping[str, str] = field(default_factory=dict)
    expect: int | None = None


@dataclass(frozen=True)
class GuestWrite:
    """A guest stores ``value`` at guest physical ``gpa`` of the IOAS named ``ioas`` (its memory)."""

    ioas: str
    gpa: int
    value: int


@dataclass(frozen=True)
class DeviceDma:
    """Device ``device`` reads (or writes) ``address`` (with ``pasid``, or none)."""

    device: str
    address: int
    write: bool = False
    pasid: int | None = None


@dataclass(frozen=True)
class FlushQueueDrain:
    """Lazy mode: the flush-queue timer fires."""


@dataclass(frozen=True)
class GuestCommands:
    """The guest of the vIOMMU named ``viommu`` (a HW-vIOMMU guest running its IOMMU driver in v2 mode)
    appends ``commands`` (128 bits each, with its own DeviceIDs and DomainIDs) and a COMPLETION_WAIT storing
    its next sequence number at guest physical ``semaphore`` to its command buffer (the vIOMMU's command
    HW queue), writes its tail (the VF page: no trap) and polls the semaphore. ``viommu`` may instead name
    an RFC GuestID (bound from VIOMMU_IOMMU_INIT): the ring is the buffer its CMDBUF_UPDATE gave, and the
    tail write traps to the VMM, which writes the VF tail (VIOMMU_MMIO_ACCESS of 0x2008)."""

    viommu: str
    commands: tuple[int, ...]
    semaphore: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "commands", tuple(self.commands))


STEP_TYPES = (Call, GuestWrite, DeviceDma, FlushQueueDrain, GuestCommands)


class StepError(ValueError):
    """A step that cannot be carried out as written (an unknown name, a guest address not mapped); the
    message starts with the step's field (``field gpa: ...``); the caller adds which step it is."""


class BadBind(ValueError):
    """A call binds an output field its call does not have (:func:`check_call`)."""


@dataclass(frozen=True)
class SystemState:
    iommufd: Any
    driver: Any
    names: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    guests: Mapping[str, tuple[int, int]] = field(default_factory=lambda: MappingProxyType({}))  # vIOMMU -> tail, seq
    gids: frozenset[str] = frozenset()  # the names bound to an RFC GuestID


@dataclass(frozen=True)
class StepResult:
    errno: int = 0
    out: Mapping[str, Any] = field(default_factory=dict)
    steps: tuple[Any, ...] = ()  # hardware steps (models.timeline)


def boot(scenario: Scenario) -> tuple[SystemState, dict[int, int]]:
    """The state after boot, and memory as the driver left it (every DTE blocking)."""
    driver_state = scenario.driver_model().initial_state()
    memory = dict(driver_state.memory)
    fd = iommufd_objects.initial_state(devices=scenario.devices, user_memory=scenario.user_memory)
    return SystemState(fd, driver_state), memory


def id_fields(name: str) -> frozenset[str]:
    """The input fields of call ``name`` that hold an object id or another value an earlier call gave
    (an RFC GuestID): a step may give a bound name there."""
    return frozenset(f.name for f in uapi.fields(uapi.CALLS[name]) if f.direction != uapi.OUT and f.named)


def check_call(call: Call, bound: set[str] | frozenset[str], devices: set[str] | frozenset[str]) -> None:
    """ValueError (one line) unless ``call`` names a known call with its fields, names bound earlier
    where ids go, and a scenario device where a device name goes."""
    if call.name not in uapi.CALLS:
        raise ValueError(f"unknown call {call.name!r}; known: {', '.join(uapi.CALLS)}")
    known = {f.name: f for f in uapi.fields(uapi.CALLS[call.name]) if f.direction != uapi.OUT}
    defaults = {f.name: f.default for f in dataclasses.fields(uapi.CALLS[call.name])}
    ids = id_fields(call.name)
    for name, value in call.args.items():
        if name not in known:
            raise ValueError(f"{call.name} has no input field {name!r}; fields: {', '.join(known)}")
        _check_kind(name, value, defaults[name])
        if name == "device":
            if value not in devices:
                raise ValueError(f"no device {value!r}; devices: {', '.join(sorted(devices))}")
        elif isinstance(value, str):
            if name not in ids:
                raise ValueError(f"{name} is a number, not a name")
            if value not in bound:
                raise ValueError(f"{name} names {value!r}, which no earlier step bound")
        elif isinstance(value, int) and not isinstance(value, bool) and value >> max(known[name].bits, 1):
            raise ValueError(f"{name} = {value:#x} is wider than {known[name].bits} bits")
    outputs = {f.name for f in uapi.fields(uapi.CALLS[call.name]) if f.direction != uapi.IN}
    for out_field in call.bind:
        if out_field not in outputs:
            raise BadBind(f"{call.name} has no output {out_field!r}; outputs: {', '.join(sorted(outputs)) or 'none'}")


def _check_kind(name: str, value: Any, default: Any) -> None:
    """ValueError unless ``value`` is what field ``name`` (whose default is ``default``) holds: a flag,
    a list of words, or a number (or a name, checked by the caller)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} is true or false, not {value!r}")
    elif isinstance(default, tuple):
        if not isinstance(value, (tuple, list)):
            raise ValueError(f"{name} is a list of hex words, not {value!r}")
        if name == "allowed_iovas":  # (start, last) pairs: a sequence file has no way to write them
            raise ValueError(f"{name} takes (start, last) pairs, which a sequence file cannot give")
    elif isinstance(value, (bool, tuple, list)):
        raise ValueError(f"{name} is a number (or a name), not {'true/false' if isinstance(value, bool) else 'a list'}")


def _resolve(state: SystemState, call: Call) -> dict[str, Any]:
    args = {}
    ids = id_fields(call.name) if call.name in uapi.CALLS else frozenset()
    for name, value in call.args.items():
        if isinstance(value, str) and name in ids:
            if value not in state.names:
                raise StepError(f"field args.{name}: {value!r} names no object an earlier step bound")
            value = state.names[value]
        args[name] = value
    return args


def resolved_id(state: SystemState, call: Call, field_name: str) -> int | None:
    """The object id ``call`` gives in ``field_name`` (a bound name resolved), or None."""
    return _resolve(state, call).get(field_name)


def guest_to_system(iommufd: Any, ioas_id: int, gpa: int) -> int | None:
    """The system address the IOAS maps guest physical ``gpa`` to (None: not mapped)."""
    ioas = iommufd.get(ioas_id, Ioas)
    for area in () if ioas is None else ioas.areas:
        if area.iova <= gpa <= area.last:
            return area.user_va + (gpa - area.iova)
    return None


def _guest_commands(state: SystemState, step: GuestCommands) -> tuple[SystemState, StepResult]:
    """The guest driver's commands: into its ring (guest memory), the doorbell, the wait (hardware steps)."""
    from amdvi.models import protocol
    from amdvi.spec.bitvec import INT
    from amdvi.spec.viommu import VF_CMD_TAIL

    if step.viommu not in state.names:
        raise StepError(f"field viommu: no earlier step bound the name {step.viommu!r}")
    ring = _rfc_ring(state, step) if step.viommu in state.gids else _queue_ring(state, step)
    guest_id, ioas_id, entries, ring_address, doorbell = ring
    tail, sequence = state.guests.get(step.viommu, (0, 0))
    commands = step.commands + (protocol.completion_wait(INT, step.semaphore, sequence + 1),)
    if len(commands) >= entries:
        raise StepError(f"field commands: {len(commands)} commands do not fit a ring of {entries}")
    words = []
    for command in commands:
        spa = ring_address(16 * tail)
        if spa is None:
            raise StepError(f"field viommu: {step.viommu!r}'s command buffer is not mapped")
        words += [(spa, command & ((1 << 64) - 1)), (spa + 8, command >> 64)]
        tail = (tail + 1) % entries
    semaphore = guest_to_system(state.iommufd, ioas_id, step.semaphore)
    if semaphore is None or step.semaphore % 8:
        raise StepError(f"field semaphore: GPA {step.semaphore:#x} is not a mapped, 8-byte aligned guest address")
    what = f"guest {guest_id} driver"
    hardware = (Store(tuple(words), f"{what}: {len(commands)} commands into its command buffer"),
                VfWrite(guest_id, 0x08, VF_CMD_TAIL.encode(Pointer=tail), f"{what}: {doorbell}"),
                GuestWait(guest_id, semaphore, sequence + 1, f"{what}: wait for its COMPLETION_WAIT"))
    guests = MappingProxyType({**state.guests, step.viommu: (tail, sequence + 1)})
    return dataclasses.replace(state, guests=guests), StepResult(steps=hardware)


def guest_memory(state: SystemState, step: GuestCommands) -> int:
    """The IOAS that is the memory of ``step``'s guest (what its :class:`GuestWrite` steps name): its
    vIOMMU's parent's IOAS, or the IOAS of an RFC guest's translate DeviceID (``state``: before the step)."""
    return (_rfc_ring(state, step) if step.viommu in state.gids else _queue_ring(state, step))[1]


def _queue_ring(state: SystemState, step: GuestCommands) -> tuple[int, int, int, Any, str]:
    """(GuestID, the guest's IOAS, ring entries, ring offset -> system address, doorbell) of an iommufd
    vIOMMU's guest: its command-buffer HW queue, a range of guest physical memory."""
    from amdvi.models.iommufd.objects import HwQueue, Viommu

    vobj = state.iommufd.get(state.names[step.viommu], Viommu)
    if vobj is None:
        raise StepError(f"field viommu: {step.viommu!r} is not a vIOMMU")
    guest_id = getattr(state.driver.viommus.get(vobj.handle), "guest_id", 0)
    if not guest_id:
        raise StepError(f"field viommu: {step.viommu!r} has no HW-vIOMMU guest (driver reading hw-viommu)")
    queue = next((q for _, q in state.iommufd.of_kind(HwQueue)
                  if q.viommu == state.names[step.viommu] and q.type == uapi.HW_QUEUE_TYPE_AMD_CMD), None)
    if queue is None:
        raise StepError(f"field viommu: {step.viommu!r} has no command-buffer HW queue")
    ioas_id = state.iommufd.get(vobj.hwpt).ioas
    return (guest_id, ioas_id, queue.length // 16,
            lambda offset: guest_to_system(state.iommufd, ioas_id, queue.iova + offset), "doorbell (tail)")


def _rfc_ring(state: SystemState, step: GuestCommands) -> tuple[int, int, int, Any, str]:
    """The same for an RFC guest: the buffer at the VMM address its CMDBUF_UPDATE gave (VMM addresses are
    system addresses), ComLen from its trapped base-register write, and the IOAS of its translate DeviceID
    (the device whose DTE translates its COMPLETION_WAIT's guest physical store)."""
    from amdvi.models.iommufd.objects import Device, device_ioas
    from amdvi.spec.viommu import CMD_CONTROL

    guest_id = state.names[step.viommu]
    guest = state.driver.rfc_guests.get(guest_id)
    if guest is None or not guest.cmdbuf_pages:
        raise StepError(f"field viommu: RFC guest {step.viommu!r} has no command buffer (VIOMMU_CMDBUF_UPDATE)")
    com_len = CMD_CONTROL.field("ComLen").read(guest.registers.get(0x20, 0))
    if not 8 <= com_len or 16 << com_len > guest.cmdbuf[1]:
        raise StepError(f"field viommu: RFC guest {step.viommu!r}'s ComLen {com_len} does not describe its buffer "
                        "(VIOMMU_MMIO_ACCESS of the command-buffer base)")
    device = next((d for _, d in state.iommufd.of_kind(Device) if d.pci.device_id == guest.translate_device_id), None)
    ioas_id = device_ioas(state.iommufd, device) if device is not None else None
    if ioas_id is None:
        raise StepError(f"field viommu: RFC guest {step.viommu!r}'s translate device is in no IOAS")
    hva = guest.cmdbuf[0]
    return (guest_id, ioas_id, 1 << com_len, lambda offset: hva + offset,
            "doorbell (tail: trapped, the VMM writes the VF tail)")


def apply(scenario: Scenario, state: SystemState, step: Any) -> tuple[SystemState, StepResult]:
    """One step of the sequence."""
    if isinstance(step, Call):
        try:
            request = uapi.from_record({"call": step.name, **_resolve(state, step)})
        except (TypeError, ValueError) as e:
            raise StepError(f"field args: {e}") from None
        o = iommufd_ioctls.ioctl(scenario.driver_model(), state.driver, state.iommufd, request,
                                 choices=scenario.iommufd)
        names = dict(state.names)
        if o.errno == 0:
            for out_field, name in step.bind.items():
                if out_field not in o.out:
                    raise StepError(f"field bind: {step.name} has no output {out_field!r}; "
                                    f"outputs: {', '.join(o.out) or 'none'}")
                names[name] = o.out[out_field]
        gids = (state.gids | {name for f, name in step.bind.items() if f == "gid"}) if request.rfc else state.gids
        new = SystemState(o.state, o.driver_state, MappingProxyType(names), state.guests, frozenset(gids))
        return new, StepResult(o.errno, dict(o.out), tuple(o.steps))
    if isinstance(step, GuestWrite):
        if step.ioas not in state.names:
            raise StepError(f"field ioas: no earlier step bound the name {step.ioas!r}")
        pa = guest_to_system(state.iommufd, state.names[step.ioas], step.gpa)
        if pa is None:
            raise StepError(f"field gpa: guest physical {step.gpa:#x} is not mapped in IOAS {step.ioas!r}")
        return state, StepResult(steps=(Store(((pa, step.value),), f"guest stores {step.value:#x} at GPA "
                                                                    f"{step.gpa:#x}"),))
    if isinstance(step, DeviceDma):
        if step.device not in {d.name for d in scenario.devices}:
            raise StepError(f"field device: no device {step.device!r}; devices: "
                            f"{', '.join(d.name for d in scenario.devices)}")
        return state, StepResult()
    if isinstance(step, GuestCommands):
        return _guest_commands(state, step)
    if isinstance(step, FlushQueueDrain):
        o = iommufd_ioctls.ioctl(scenario.driver_model(), state.driver, state.iommufd, uapi.FlushQueueDrain(),
                                 choices=scenario.iommufd)
        return dataclasses.replace(state, iommufd=o.state, driver=o.driver_state), StepResult(o.errno, {}, tuple(o.steps))
    raise TypeError(f"not a sequence step: {step!r}")
