"""The HW-vIOMMU hardware: per-guest command buffers carried out by the IOMMU itself, each guest ID
translated through the guest's DeviceID and DomainID maps (``spec.viommu``).

State: everything the HW-vIOMMU keeps lives in memory, in the IOMMU's **private address space**
(``spec.viommu.REGIONS``), which the IOMMU reaches as a device does: through its own DTE (its own
DeviceID, :attr:`ViommuConfig.iommu_device_id`) and a v1 table the host builds for it
(:class:`TranslatedPrivateSpace`). A guest's command buffer, and the store of its COMPLETION_WAIT, are
at guest physical addresses, which the IOMMU translates through the DTE of the guest's translate
DeviceID (GUEST_MISC_CONTROL): the guest's stage 2 (:class:`GuestSpace`); under the hardware reading
``viommu-command-buffer=private`` (the June-2023 RFC) the command buffer is the guest's slot of the
private space instead.

Moves (each a pure function, written once over the backend):

* :func:`vfctrl_write`: the hypervisor writes a guest's VFCtrl register: a map control installs a
  DeviceID or DomainID map entry, the others are kept in the guest's MMIO block;
* :func:`vf_write`: a write to the guest's VF page (its command-buffer head or tail: the guest's
  doorbell; its event-log head; its Status, whose event bits a 1 clears);
* :func:`process_guest_command`: the IOMMU takes the command at the guest's head. A command the
  vIOMMU carries out for a guest (:data:`GUEST_COMMANDS`) has its DeviceID and DomainID replaced by
  the host IDs its maps give, and then takes effect exactly as the host's own command would (an
  invalidation joins the IOMMU's in-flight queue, ``models.iommu``; a COMPLETION_WAIT waits for it and
  stores into guest memory). A command with an unmapped ID, one a guest may not issue, or one with a
  reserved bit set is refused (``Hardware.viommu_refused_command``);
* :func:`reset_vmmio`: the host's RESET_VMMIO clears the guest's MMIO block (its event-log registers too);
* the **guest event log** (:func:`log_guest_event`): a ring at the guest physical base of GUEST_EVT_CONTROL
  (VFCtrl 0x28: EventLen, EventLogEn; what the HW queue of type EVT writes, viommu.md §9), whose head the
  guest writes in its VF page (0x10) and whose tail and Status bits the IOMMU keeps (``GUEST_EVT_STATE``, the
  model's own place). ``models.event_log`` decides on it as on the host's log (disabled, overflowed, full:
  EventOverflow, which the guest clears through its VF Status at 0x20); the 16-byte entry is written through
  the guest's stage 2; an entry stage 2 does not map is not written and GUEST_EVENT_FAULT (its GuestID) goes
  to the host's log. Two things write it: a refused guest command, as ILLEGAL_COMMAND_ERROR with the command's
  guest physical address (``Hardware.viommu_refused_command_event``), and the host's INSERT_GUEST_EVENT
  (:func:`insert_guest_event`: the host log's entry at its head, ``Hardware.viommu_insert_guest_event``,
  with the guest DeviceID its DTE records, ``Hardware.viommu_guest_event_device_id``). Each is a reading:
  no public source says what the hardware reports to a guest, or what INSERT_GUEST_EVENT copies.

Not modelled (stated where results are reported): events the hardware itself routes to a guest's log (a
stage-1 IO_PAGE_FAULT of a vImuEn device, for one: the sources show the DTE fields, not the rule), the
event log's B ring (DualEvtLogEn; AMD's later code refuses it), the guest event interrupt (AMD's code
delivers it through an extended interrupt-remapping entry of the IOMMU's own DTE), VIOMMU_HW_ERR; the
guest **PPR log**: GUEST_PPR_CONTROL is declared, but a PPR entry comes from a device's page request,
which no model here makes (the host's PPR log is not modelled either: spec/mmio has no PPR head or tail),
so there is nothing to route into it yet; the command-buffer dirty bitmap, caching of private-space
translations or of map entries, interrupts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from amdvi.spec import viommu as V
from amdvi.spec.bitvec import WORD_WIDTH
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.commands import (
    COMPLETE_PPR_REQUEST, COMPLETION_WAIT, INSERT_GUEST_EVENT, INVALIDATE_DEVTAB_ENTRY, INVALIDATE_INTERRUPT_TABLE,
    INVALIDATE_IOMMU_PAGES, INVALIDATE_IOTLB_PAGES, OPCODE_HI, OPCODE_LO, RESET_VMMIO,
)
from amdvi.spec.device_table import DTE
from amdvi.spec.events import EVENT_CODE_HI, EVENT_CODE_LO, EVENTS, GUEST_EVENT_FAULT, ILLEGAL_COMMAND_ERROR, event_code
from amdvi.spec.fields import Structure
from amdvi.spec.mmio import RING_WIDTH, ring_bytes
from amdvi.spec.translation import Request, read_dte, translate

from . import event_log, rings
from .command_buffer import COMMAND_WIDTH, OPCODE_WIDTH, check_command
from .iommu import IommuState, any_in_flight, enqueue, is_invalidation, queue_full
from .registers import REGISTER_WIDTH, advance, field_address
from .rings import EVENT_BYTES, EVENT_LOG, Ring

IOMMU_DEVICE_ID = 0x0002  # 00:00.2, where AMD systems put the IOMMU's own PCI function (viommu.md §3)

# what a guest may put in its command buffer and the vIOMMU carries out; the IDs each names are
# translated (read off the structures: a DeviceID field, a DomainID field)
GUEST_COMMANDS: tuple[Structure, ...] = (COMPLETION_WAIT, INVALIDATE_DEVTAB_ENTRY, INVALIDATE_IOMMU_PAGES,
                                         INVALIDATE_IOTLB_PAGES, INVALIDATE_INTERRUPT_TABLE, COMPLETE_PPR_REQUEST)
GUEST_COMMANDS_NOTE = (
    "which guest commands the hardware carries out is not in the public sources (viommu.md §6.3): the model "
    "carries out COMPLETION_WAIT and the invalidations that name a device or a domain, with their IDs "
    "translated, and refuses INVALIDATE_IOMMU_ALL (it would reach every guest's and the host's caches), "
    "PREFETCH_IOMMU_PAGES, INSERT_GUEST_EVENT and RESET_VMMIO (the host's)")


@dataclass(frozen=True)
class ViommuConfig:
    """The IOMMU's own DeviceID (its DTE maps its private address space)."""

    iommu_device_id: int = IOMMU_DEVICE_ID


# -- the two address spaces the vIOMMU reads and writes -------------------------------------------


@dataclass(frozen=True)
class TranslatedPrivateSpace:
    """The private address space as the hardware reaches it: a v1 walk through the IOMMU's own DTE."""

    config: ViommuConfig = ViommuConfig()

    def address(self, b: Any, state: IommuState, ipa: Any, write: bool, choices: Hardware) -> tuple[Any, Any]:
        request = Request(device_id=self.config.iommu_device_id, address=ipa, write=write)
        walk = translate(b, state.memory, state.regs.dev_tab_bar, request, choices=choices)
        return walk.ok, walk.spa

    def read(self, b: Any, state: IommuState, ipa: Any, choices: Hardware) -> tuple[Any, Any]:
        ok, spa = self.address(b, state, ipa, False, choices)
        return ok, b.ite(ok, b.read64(state.memory, spa), b.const(0, WORD_WIDTH), width=WORD_WIDTH)

    def write(self, b: Any, state: IommuState, ipa: Any, value: Any, when: Any, choices: Hardware) -> IommuState:
        ok, spa = self.address(b, state, ipa, True, choices)
        store = b.all_of(when, ok)
        if b.known_false(store):
            return state
        return state.replace(memory=b.ite(store, b.write64(state.memory, spa, value), state.memory))


@dataclass(frozen=True)
class GuestSpace:
    """A guest's physical memory as the vIOMMU reaches it: through the DTE of the guest's translate
    DeviceID (its stage 2)."""

    def address(self, b: Any, state: IommuState, device_id: Any, gpa: Any, write: bool,
                choices: Hardware) -> tuple[Any, Any]:
        request = Request(device_id=device_id, address=gpa, write=write)
        walk = translate(b, state.memory, state.regs.dev_tab_bar, request, choices=choices)
        return walk.ok, walk.spa


# -- the guest's registers, kept in its MMIO block -------------------------------------------------

# in the guest MMIO block (the model's own layout: spec.viommu.GUEST_MMIO): the command-buffer head and tail
# where the write-only map controls are, the event-log head and its tail-and-Status word (GUEST_EVT_STATE) in
# the two words no VFCtrl register uses
HEAD_OFFSET, TAIL_OFFSET, EVT_HEAD_OFFSET, EVT_STATE_OFFSET = 0x00, 0x08, 0x18, 0x38
VF_TO_BLOCK = {0x00: HEAD_OFFSET, 0x08: TAIL_OFFSET, 0x10: EVT_HEAD_OFFSET}
VF_STATUS_OFFSET = 0x20  # RW1C into the Status bits of GUEST_EVT_STATE


@dataclass(frozen=True)
class GuestRegisters:
    """What the vIOMMU reads of one guest at one moment (backend values)."""

    FIELD_WIDTHS: ClassVar[Mapping[str, int]] = {"cmd_control": 64, "misc_control": 64, "head": 64, "tail": 64}

    readable: Any  # the guest's MMIO block is reachable through the private table
    cmd_control: Any
    misc_control: Any
    head: Any
    tail: Any

    def field(self, b: Any, register: str, structure: Structure, name: str) -> Any:
        return structure.view(getattr(self, register), b)[name]


def block_address(b: Any, guest_id: Any, offset: int) -> Any:
    """The private address of ``offset`` in guest ``guest_id``'s MMIO block (64 bytes each)."""
    return b.add(b.const(V.GUEST_MMIO.base + offset, 64), b.shl(b.zext(guest_id, 64), 6, 64), 64)


def guest_registers(b: Any, state: IommuState, guest_id: Any, space: Any, choices: Hardware) -> GuestRegisters:
    reads = {name: space.read(b, state, block_address(b, guest_id, offset), choices)
             for name, offset in (("cmd_control", 0x20), ("misc_control", 0x10), ("head", HEAD_OFFSET),
                                  ("tail", TAIL_OFFSET))}
    return GuestRegisters(readable=b.all_of(*[ok for ok, _ in reads.values()]),
                          **{name: value for name, (_, value) in reads.items()})


# -- maps ---------------------------------------------------------------------------------------------


def _entry_address(b: Any, region: V.Region, guest_id: Any, index: Any, shared: bool) -> Any:
    """The private address of entry ``index`` of guest ``guest_id``'s map (``shared``: a broken model that
    leaves the GuestID out of the index)."""
    per_guest = b.shl(b.zext(guest_id, 64), region.per_guest.bit_length() - 1, 64)
    base = b.const(region.base, 64) if shared else b.add(b.const(region.base, 64), per_guest, 64)
    return b.add(base, b.shl(b.zext(index, 64), region.entry.bit_length() - 1, 64), 64)


def devid_entry_address(b: Any, guest_id: Any, guest_device_id: Any) -> Any:
    return _entry_address(b, V.DEVID_MAP, guest_id, guest_device_id, False)


def domid_entry_address(b: Any, guest_id: Any, guest_domain_id: Any, *, shared: bool = False) -> Any:
    return _entry_address(b, V.DOMID_MAP, guest_id, guest_domain_id, shared)


@dataclass(frozen=True)
class Lookup:
    """A map entry as the vIOMMU read it: ``mapped`` (readable and V = 1) and the host ID."""

    mapped: Any
    host_id: Any
    address: Any  # its private address


def lookup_device(b: Any, state: IommuState, guest_id: Any, guest_device_id: Any, space: Any,
                  choices: Hardware) -> Lookup:
    """The host DeviceID of guest DeviceID ``guest_device_id`` of guest ``guest_id`` (DEVID_MAP_ENTRY)."""
    address = devid_entry_address(b, guest_id, guest_device_id)
    ok, q0 = space.read(b, state, address, choices)
    entry = V.DEVID_MAP_ENTRY.view(b.zext(q0, 128), b)
    mapped = b.all_of(ok, b.eq(entry.V, 1))
    if choices.viommu_devid_zero == "unmapped":  # how AMD's drivers clear an entry
        mapped = b.all_of(mapped, b.ne(entry.HostDeviceID, 0))
    return Lookup(mapped, entry.HostDeviceID, address)


def lookup_domain(b: Any, state: IommuState, guest_id: Any, guest_domain_id: Any, space: Any,
                  choices: Hardware) -> Lookup:
    """The host DomainID of guest DomainID ``guest_domain_id`` of guest ``guest_id`` (DOMID_MAP_ENTRY)."""
    address = domid_entry_address(b, guest_id, guest_domain_id, shared=choices.viommu_domain_map_shared)
    ok, word = space.read(b, state, address, choices)
    entry = V.DOMID_MAP_ENTRY.view(word, b)
    return Lookup(b.all_of(ok, b.eq(entry.V, 1)), entry.HostDomainID, address)


# -- the hypervisor's register writes -------------------------------------------------------------


def vfctrl_write(b: Any, state: IommuState, guest_id: Any, offset: int, value: Any, *,
                 space: Any = TranslatedPrivateSpace(), choices: Hardware = SPEC) -> IommuState:
    """The hypervisor writes ``value`` to VFCtrl register ``offset`` of guest ``guest_id``."""
    structure = V.VFCTRL_OFFSETS.get(offset)
    if structure is None:
        raise ValueError(f"VFCtrl offset {offset:#x} names no register ({', '.join(map(hex, V.VFCTRL_OFFSETS))})")
    view = structure.view(value, b)
    if structure is V.DID_MAP_CONTROL:
        entry = V.DEVID_MAP_ENTRY.encode({"V": view.V, "HostDeviceID": view.HostDeviceID}, backend=b)
        return space.write(b, state, devid_entry_address(b, guest_id, view.GuestDeviceID),
                           b.extract(entry, 63, 0), b.eq(view.Write, 1), choices)
    if structure is V.DOMID_MAP_CONTROL:
        entry = V.DOMID_MAP_ENTRY.encode({"V": view.V, "HostDomainID": view.HostDomainID}, backend=b)
        address = domid_entry_address(b, guest_id, view.GuestDomainID, shared=choices.viommu_domain_map_shared)
        return space.write(b, state, address, entry,
                           b.eq(view.Write, 1), choices)
    return space.write(b, state, block_address(b, guest_id, offset), value, True, choices)


def vf_write(b: Any, state: IommuState, guest_id: Any, offset: int, value: Any, *,
             space: Any = TranslatedPrivateSpace(), choices: Hardware = SPEC) -> IommuState:
    """A write of the guest's command-buffer head (0x0) or tail (0x8), its event-log head (0x10) or its
    Status (0x20: a 1 clears EventOverflow or EventLogInt) in its VF page."""
    if offset == VF_STATUS_OFFSET:
        at = block_address(b, guest_id, EVT_STATE_OFFSET)
        _, word = space.read(b, state, at, choices)
        written = V.VF_STATUS.view(value, b)
        for name in ("EventOverflow", "EventLogInt"):
            f = V.GUEST_EVT_STATE.field(name)
            kept = b.ite(b.eq(written[name], 1), b.const(0, 1), V.GUEST_EVT_STATE.view(word, b)[name], 1)
            word = b.deposit(word, f.hi, f.lo, kept, REGISTER_WIDTH)
        return space.write(b, state, at, word, True, choices)
    if offset not in VF_TO_BLOCK:
        raise ValueError(f"VF offset {offset:#x} names no register (0x0, 0x8 command head and tail, 0x10 event "
                         "head, 0x20 status)")
    pointer = V.VF_OFFSETS[offset]
    kept = pointer.encode({"Pointer": pointer.view(value, b).Pointer}, backend=b)  # reserved bits are not kept
    return space.write(b, state, block_address(b, guest_id, VF_TO_BLOCK[offset]), kept, True, choices)


def reset_vmmio(b: Any, state: IommuState, guest_id: Any, when: Any = True, *,
                space: Any = TranslatedPrivateSpace(), choices: Hardware = SPEC) -> IommuState:
    """RESET_VMMIO: the guest's MMIO block is cleared (its command buffer disabled, head = tail = 0)."""
    for offset in range(0, V.VFCTRL_BLOCK_BYTES, 8):
        state = space.write(b, state, block_address(b, guest_id, offset), b.const(0, 64), when, choices)
    return state


def host_command_effect(b: Any, state: IommuState, effect: Any, *, space: Any = TranslatedPrivateSpace(),
                        guest: Any = None, choices: Hardware = SPEC) -> IommuState:
    """The HW-vIOMMU's part of a command the host's processor took (``models.command_buffer.Effect``):
    a RESET_VMMIO clears its guest's MMIO block (:func:`reset_vmmio`); an INSERT_GUEST_EVENT puts an
    event into its guest's log (:func:`insert_guest_event`)."""
    is_insert = effect.is_command(b, INSERT_GUEST_EVENT)
    if not b.known_false(is_insert):
        state, _ = insert_guest_event(b, state, INSERT_GUEST_EVENT.view(effect.command, b).GuestID, is_insert,
                                      private=space, guest=guest or GuestSpace(), choices=choices)
    is_reset = effect.is_command(b, RESET_VMMIO)
    if b.known_false(is_reset):
        return state
    return reset_vmmio(b, state, RESET_VMMIO.view(effect.command, b).GuestID, is_reset, space=space, choices=choices)


# -- the guest's event log ------------------------------------------------------------------------

# the guest's event log as a ring over its VFCtrl event control, its VF head and the model's tail-and-Status word:
# models.event_log decides on it exactly as on the host's log (full, overflowed, disabled)
GUEST_EVENT_LOG = Ring("guest event log", "control", "Base", "EventLen", "head", "Pointer", "status", "Pointer",
                       EVENT_BYTES, base_structure=V.EVT_CONTROL, head_structure=V.VF_EVT_HEAD,
                       tail_structure=V.GUEST_EVT_STATE)


@dataclass(frozen=True)
class GuestEventRegisters:
    """A guest's event-log registers as one register file (backend values), under the names
    ``models.event_log`` reads: ``control`` (GUEST_EVT_CONTROL), ``status`` (GUEST_EVT_STATE) and ``head``."""

    STRUCTURES: ClassVar[Mapping[str, Structure]] = {"control": V.EVT_CONTROL, "status": V.GUEST_EVT_STATE,
                                                     "head": V.VF_EVT_HEAD}

    readable: Any
    control: Any
    status: Any
    head: Any
    translate_id: Any  # GUEST_MISC_CONTROL.TranslateDeviceID: whose DTE is the guest's stage 2

    def replace(self, **values: Any) -> "GuestEventRegisters":
        return dataclasses.replace(self, **values)

    def flag(self, b: Any, name: str, field: str) -> Any:
        return b.eq(self.STRUCTURES[name].view(getattr(self, name), b)[field], 1)

    def set_flag_when(self, b: Any, name: str, field: str, cond: Any) -> "GuestEventRegisters":
        f = self.STRUCTURES[name].field(field)
        old = self.STRUCTURES[name].view(getattr(self, name), b)[field]
        word = b.deposit(getattr(self, name), f.hi, f.lo, b.ite(cond, b.const(1, 1), old, 1), REGISTER_WIDTH)
        return self.replace(**{name: word})


def guest_event_registers(b: Any, state: IommuState, guest_id: Any, space: Any,
                          choices: Hardware) -> GuestEventRegisters:
    reads = {name: space.read(b, state, block_address(b, guest_id, offset), choices)
             for name, offset in (("control", 0x28), ("status", EVT_STATE_OFFSET), ("head", EVT_HEAD_OFFSET),
                                  ("misc", 0x10))}
    return GuestEventRegisters(readable=b.all_of(*[ok for ok, _ in reads.values()]), control=reads["control"][1],
                               status=reads["status"][1], head=reads["head"][1],
                               translate_id=V.MISC_CONTROL.view(reads["misc"][1], b).TranslateDeviceID)


@dataclass(frozen=True)
class GuestEvent:
    """What logging one record into a guest's event log did (backend values).

    ``attempted``: the guest's log took the record (enabled, not overflowed, not full); ``written``: the
    record is in the guest's log at ``system_address`` (its entry's guest physical
    ``address`` through the guest's stage 2); ``dropped``: the log was full (the guest's EventOverflow set);
    ``faulted``: stage 2 does not map the entry, so nothing reached guest memory and GUEST_EVENT_FAULT went to
    the host's log (``host_logged``: the host's log took it)."""

    attempted: Any
    written: Any
    dropped: Any
    faulted: Any
    host_logged: Any
    address: Any
    system_address: Any
    record: Any
    translate_id: Any


def log_guest_event(b: Any, state: IommuState, guest_id: Any, record: Any, when: Any, *,
                    private: Any = TranslatedPrivateSpace(), guest: Any = GuestSpace(),
                    choices: Hardware = SPEC) -> tuple[IommuState, GuestEvent]:
    """The IOMMU logs the 128-bit ``record`` into guest ``guest_id``'s event log (where ``when`` holds): at
    the guest physical address base + tail, through the guest's stage 2, as the host's writer would into its
    own log (``models.event_log``: nothing while disabled or overflowed, a full log sets EventOverflow). An entry
    stage 2 does not map is not written; the IOMMU logs GUEST_EVENT_FAULT (the GuestID) in the host's log
    instead, and the guest's tail stays."""
    if b.known_false(when):  # nothing to log (no reads, no walk: what the steps below give)
        no = b.false()
        return state, GuestEvent(no, no, no, no, no, b.const(0, 64), b.const(0, 64), record, b.const(0, 16))
    regs = guest_event_registers(b, state, guest_id, private, choices)
    a = event_log.attempt(b, regs, b.all_of(when, regs.readable), choices, GUEST_EVENT_LOG)
    if choices.viommu_guest_event_log_untranslated:
        ok, spa = b.true(), a.address
    else:
        ok, spa = guest.address(b, state, regs.translate_id, a.address, True, choices)
    written, faulted = b.all_of(a.write, ok), b.all_of(a.write, b.lnot(ok))
    memory = state.memory
    if not b.known_false(written):
        memory = b.ite(written, event_log.write_record(b, memory, spa, record), memory)
    fault_record = GUEST_EVENT_FAULT.encode({"GuestID": guest_id}, backend=b)
    host_before = event_log.attempt(b, state.regs, faulted, choices)
    memory, host_regs = event_log.log_event(b, memory, state.regs, fault_record, faulted, choices)
    out = state.replace(memory=memory, regs=host_regs)
    settled = event_log.settle(b, regs, a, written, GUEST_EVENT_LOG)
    out = private.write(b, out, block_address(b, guest_id, EVT_STATE_OFFSET), settled.status,
                        b.any_of(written, a.drop), choices)
    return out, GuestEvent(attempted=a.write, written=written, dropped=a.drop, faulted=faulted,
                           host_logged=host_before.write, address=a.address, system_address=spa, record=record,
                           translate_id=regs.translate_id)


# the events that name a device, at Q0[15:0] (an inserted one is the guest's only if its device is)
DEVICE_EVENTS: tuple[Structure, ...] = tuple(e for e in EVENTS if e.field("DeviceID") is not None)


def insert_guest_event(b: Any, state: IommuState, guest_id: Any, when: Any, *,
                       private: Any = TranslatedPrivateSpace(), guest: Any = GuestSpace(),
                       choices: Hardware = SPEC) -> tuple[IommuState, GuestEvent]:
    """INSERT_GUEST_EVENT for guest ``guest_id`` (where ``when`` holds), under ``Hardware.viommu_insert_guest_event``:
    the record at the head of the host's event log is logged into the guest's log (the host's head stays: host
    software consumes its log); under ``viommu-guest-event-device-id=dte-guest-device`` an event that names a
    device goes in only when the device's DTE gives it to this guest, with the guest DeviceID the DTE records."""
    regs = state.regs
    if choices.viommu_insert_guest_event == "none":
        when = b.false()
    at = rings.entry_address(b, regs, EVENT_LOG, rings.head(b, regs, EVENT_LOG))
    q0 = b.read64(state.memory, at)
    q1 = b.read64(state.memory, b.add(at, b.const(8, 64), 64))
    record = b.concat((q1, 64), (q0, 64))
    pending = b.all_of(when, b.lnot(rings.is_empty(b, regs, EVENT_LOG)))
    if choices.viommu_guest_event_device_id == "dte-guest-device":
        code = b.extract(record, EVENT_CODE_HI, EVENT_CODE_LO)
        names_device = b.any_of(*[b.eq(code, event_code(e)) for e in DEVICE_EVENTS])
        dte_bits, _, _ = read_dte(b, state.memory, regs.dev_tab_bar, b.extract(record, 15, 0))
        dte = DTE.view(dte_bits, b)
        theirs = b.all_of(b.eq(dte.vImuEn, 1), b.eq(dte.GuestID, guest_id))
        pending = b.all_of(pending, b.any_of(b.lnot(names_device), theirs))
        record = b.ite(names_device, b.deposit(record, 15, 0, dte.GDeviceID, 128), record, width=128)
    return log_guest_event(b, state, guest_id, record, pending, private=private, guest=guest, choices=choices)


if any((e.field("DeviceID").hi, e.field("DeviceID").lo) != (15, 0) for e in DEVICE_EVENTS):
    raise ImportError("an event's DeviceID is not at Q0[15:0]: insert_guest_event reads it there")


# -- a guest command ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuestEffect:
    """What one step of a guest's command buffer did (backend values).

    ``processed``: a command was carried out (the head moved on); ``refused``: the command was not carried
    out (an unmapped ID, a command guests may not issue, a reserved bit: ``why``); ``blocked``: it must
    wait (a COMPLETION_WAIT behind in-flight invalidations, or the in-flight queue full). ``host_command``
    is the command as it took effect, with host IDs (``accepted``: an invalidation joined the in-flight
    queue). ``device``/``domain``: the host IDs it names, when ``names_device``/``names_domain``.
    """

    processed: Any
    refused: Any
    blocked: Any
    fetched: Any  # the command at the head could be read
    guest_command: Any
    host_command: Any
    opcode: Any
    accepted: Any
    names_device: Any
    device: Any
    names_domain: Any
    domain: Any
    store: Any
    store_address: Any  # system address of the COMPLETION_WAIT store
    unmapped: Any  # refused because an ID is not mapped for this guest
    not_allowed: Any  # refused because guests may not issue this command (or it is illegal)
    event: GuestEvent  # the ILLEGAL_COMMAND_ERROR a refused command logs in the guest's event log


def _is(b: Any, opcode: Any, structure: Structure) -> Any:
    return b.eq(opcode, b.const(structure.field("Opcode").fixed, OPCODE_WIDTH))


def _with_field(b: Any, bits: Any, structure: Structure, name: str, value: Any) -> Any:
    f = structure.field(name)
    return b.deposit(bits, f.hi, f.lo, value, COMMAND_WIDTH)


def command_buffer_address(b: Any, guest_id: Any, offset: Any) -> Any:
    """The private address of byte ``offset`` of guest ``guest_id``'s slot of GUEST_COMMAND_BUFFER."""
    region = V.GUEST_COMMAND_BUFFER
    per_guest = b.shl(b.zext(guest_id, 64), region.per_guest.bit_length() - 1, 64)
    return b.add(b.add(b.const(region.base, 64), per_guest, 64), offset, 64)


def _entry_at_head(b: Any, state: IommuState, guest_id: Any, cmd: Any, head_bytes: Any, translate_id: Any,
                   private: Any, guest: Any, choices: Hardware) -> tuple[Any, Any]:
    """(readable, system address) of the command at the head: a guest physical address through the
    translate DeviceID's DTE, or under ``viommu-command-buffer=private`` the guest's slot of the private
    space (where the RFC's CMDBUF_UPDATE maps the ring's pages)."""
    if choices.viommu_command_buffer == "private":
        return private.address(b, state, command_buffer_address(b, guest_id, head_bytes), False, choices)
    gpa = b.add(field_address(b, V.CMD_CONTROL, cmd, "Base"), head_bytes, 64)
    return guest.address(b, state, translate_id, gpa, False, choices)


def process_guest_command(b: Any, state: IommuState, guest_id: Any, *, context: Any = None,
                          private: Any = TranslatedPrivateSpace(), guest: Any = GuestSpace(),
                          choices: Hardware = SPEC) -> tuple[IommuState, GuestEffect]:
    """The IOMMU takes the command at guest ``guest_id``'s head (see the module docstring)."""
    regs = guest_registers(b, state, guest_id, private, choices)
    cmd = V.CMD_CONTROL.view(regs.cmd_control, b)
    head = V.VF_CMD_HEAD.view(regs.head, b).Pointer
    tail = V.VF_CMD_TAIL.view(regs.tail, b).Pointer
    pending = b.all_of(regs.readable, b.eq(cmd.CmdBufEn, 1), b.ne(head, tail))

    translate_id = V.MISC_CONTROL.view(regs.misc_control, b).TranslateDeviceID
    head_bytes = b.shl(b.zext(head, 64), 4, 64)
    ok_q0, spa = _entry_at_head(b, state, guest_id, cmd, head_bytes, translate_id, private, guest, choices)
    fetched = b.all_of(pending, ok_q0)
    q0 = b.read64(state.memory, spa)
    q1 = b.read64(state.memory, b.add(spa, b.const(8, 64), 64))
    bits = b.concat((q1, WORD_WIDTH), (q0, WORD_WIDTH))
    opcode = b.extract(bits, OPCODE_HI, OPCODE_LO)

    # which commands a guest may issue, and the IDs each names
    allowed = b.any_of(*[_is(b, opcode, s) for s in GUEST_COMMANDS])
    names_device = b.any_of(*[_is(b, opcode, s) for s in GUEST_COMMANDS if s.field("DeviceID") is not None])
    names_domain = b.any_of(*[_is(b, opcode, s) for s in GUEST_COMMANDS if s.field("DomainID") is not None])
    guest_device = b.extract(bits, 15, 0)  # every DeviceID field of GUEST_COMMANDS is at 15:0 (checked below)
    guest_domain = INVALIDATE_IOMMU_PAGES.field("DomainID").read(bits, b)
    dev = lookup_device(b, state, guest_id, guest_device, private, choices)
    dom = lookup_domain(b, state, guest_id, guest_domain, private, choices)
    host_device = guest_device if choices.viommu_device_id_untranslated else dev.host_id
    device_ok = b.true() if choices.viommu_device_id_untranslated else dev.mapped
    unmapped = b.any_of(b.all_of(names_device, b.lnot(device_ok)), b.all_of(names_domain, b.lnot(dom.mapped)))
    not_allowed = b.any_of(b.lnot(allowed), check_command(b, bits, context))
    refused = b.all_of(fetched, b.any_of(unmapped, not_allowed))

    host = bits
    for s in GUEST_COMMANDS:
        if s.field("DeviceID") is not None:
            host = b.ite(_is(b, opcode, s), _with_field(b, host, s, "DeviceID", host_device), host, width=COMMAND_WIDTH)
        if s.field("DomainID") is not None:
            host = b.ite(_is(b, opcode, s), _with_field(b, host, s, "DomainID", dom.host_id), host, width=COMMAND_WIDTH)

    # it takes effect as the host's own command would (models.iommu.process_command)
    carried = b.all_of(fetched, b.lnot(refused))
    is_wait = _is(b, opcode, COMPLETION_WAIT)
    is_inval = is_invalidation(b, opcode)
    wait_blocked = b.false() if choices.completion_wait_early else b.all_of(is_wait, any_in_flight(b, state))
    blocked = b.all_of(carried, b.any_of(wait_blocked, b.all_of(is_inval, queue_full(b, state))))
    processed = b.all_of(carried, b.lnot(blocked))
    accepted = b.all_of(processed, is_inval)
    in_flight = enqueue(b, state.in_flight, host, accepted)

    cw = COMPLETION_WAIT.view(bits, b)
    store_gpa = field_address(b, COMPLETION_WAIT, cw, "Store Address")
    ok_store, store_spa = guest.address(b, state, translate_id, store_gpa, True, choices)
    store = b.all_of(processed, is_wait, b.eq(cw.S, 1), ok_store)
    memory = b.ite(store, b.write64(state.memory, store_spa, cw["Store Data"]), state.memory)
    out = state.replace(memory=memory, in_flight=in_flight)

    # the head moves on past a carried-out command (and past a refused one when processing skips it)
    next_bytes = advance(b, b.extract(head_bytes, RING_WIDTH - 1, 0), ring_bytes(cmd.ComLen, b), 16)
    moves_on = b.any_of(processed, b.all_of(refused, choices.viommu_refused_command == "skip"))
    new_head = V.VF_CMD_HEAD.encode({"Pointer": b.extract(next_bytes, 18, 4)}, backend=b)
    out = private.write(b, out, block_address(b, guest_id, HEAD_OFFSET), new_head, moves_on, choices)
    if choices.viommu_refused_command == "stop":  # like the host's processor: the guest's buffer stops
        stopped = V.CMD_CONTROL.encode({**{f.name: cmd[f.name] for f in V.CMD_CONTROL.named_fields}, "CmdBufEn": 0},
                                       backend=b)
        out = private.write(b, out, block_address(b, guest_id, 0x20), stopped, refused, choices)

    # a refused command is reported to the guest, at the guest physical address it sits at
    report = refused if choices.viommu_refused_command_event == "guest-log" else b.false()
    command_gpa = b.add(field_address(b, V.CMD_CONTROL, cmd, "Base"), head_bytes, 64)
    record = ILLEGAL_COMMAND_ERROR.encode({"Address": command_gpa}, backend=b)
    out, event = log_guest_event(b, out, guest_id, record, report, private=private, guest=guest, choices=choices)

    return out, GuestEffect(processed=processed, refused=refused, blocked=blocked, fetched=fetched, guest_command=bits,
                            host_command=host, opcode=opcode, accepted=accepted, names_device=names_device,
                            device=host_device, names_domain=names_domain, domain=dom.host_id, store=store,
                            store_address=store_spa, unmapped=b.all_of(fetched, unmapped),
                            not_allowed=b.all_of(fetched, not_allowed), event=event)


if any(s.field("DeviceID") is not None and (s.field("DeviceID").hi, s.field("DeviceID").lo) != (15, 0)
       for s in GUEST_COMMANDS):
    raise ImportError("a guest command's DeviceID is not at bits 15:0: process_guest_command reads it there")
if any(s.field("DomainID") is not None and s is not INVALIDATE_IOMMU_PAGES for s in GUEST_COMMANDS):
    raise ImportError("a guest command other than INVALIDATE_IOMMU_PAGES names a DomainID: read it where it is")
