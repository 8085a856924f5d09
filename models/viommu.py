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
  doorbell);
* :func:`process_guest_command`: the IOMMU takes the command at the guest's head. A command the
  vIOMMU carries out for a guest (:data:`GUEST_COMMANDS`) has its DeviceID and DomainID replaced by
  the host IDs its maps give, and then takes effect exactly as the host's own command would (an
  invalidation joins the IOMMU's in-flight queue, ``models.iommu``; a COMPLETION_WAIT waits for it and
  stores into guest memory). A command with an unmapped ID, one a guest may not issue, or one with a
  reserved bit set is refused (``Hardware.viommu_refused_command``);
* :func:`reset_vmmio`: the host's RESET_VMMIO clears the guest's MMIO block.

Not modelled yet (stated where results are reported): the guest event log and PPR log (a refused
command is not reported to the guest; GUEST_EVENT_FAULT is not raised), INSERT_GUEST_EVENT, the
command-buffer dirty bitmap, caching of private-space translations or of map entries, interrupts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from amdvi.spec import viommu as V
from amdvi.spec.bitvec import WORD_WIDTH
from amdvi.spec.choices import SPEC, Hardware
from amdvi.spec.commands import (
    COMPLETE_PPR_REQUEST, COMPLETION_WAIT, INVALIDATE_DEVTAB_ENTRY, INVALIDATE_INTERRUPT_TABLE,
    INVALIDATE_IOMMU_PAGES, INVALIDATE_IOTLB_PAGES, OPCODE_HI, OPCODE_LO, RESET_VMMIO,
)
from amdvi.spec.fields import Structure
from amdvi.spec.mmio import RING_WIDTH, ring_bytes
from amdvi.spec.translation import Request, translate

from .command_buffer import COMMAND_WIDTH, OPCODE_WIDTH, check_command
from .iommu import IommuState, any_in_flight, enqueue, is_invalidation, queue_full
from .registers import advance, field_address

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

HEAD_OFFSET, TAIL_OFFSET = 0x00, 0x08  # in the guest MMIO block (the model's own layout: spec.viommu.GUEST_MMIO)
VF_TO_BLOCK = {0x00: HEAD_OFFSET, 0x08: TAIL_OFFSET}


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
    """A write of the guest's command-buffer head (0x0) or tail (0x8) in its VF page."""
    if offset not in VF_TO_BLOCK:
        raise ValueError(f"VF offset {offset:#x} names no register (0x0 head, 0x8 tail)")
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
                        choices: Hardware = SPEC) -> IommuState:
    """The HW-vIOMMU's part of a command the host's processor took (``models.command_buffer.Effect``):
    a RESET_VMMIO clears its guest's MMIO block (:func:`reset_vmmio`)."""
    is_reset = effect.is_command(b, RESET_VMMIO)
    if b.known_false(is_reset):
        return state
    return reset_vmmio(b, state, RESET_VMMIO.view(effect.command, b).GuestID, is_reset, space=space, choices=choices)


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

    return out, GuestEffect(processed=processed, refused=refused, blocked=blocked, fetched=fetched, guest_command=bits,
                            host_command=host, opcode=opcode, accepted=accepted, names_device=names_device,
                            device=host_device, names_domain=names_domain, domain=dom.host_id, store=store,
                            store_address=store_spa, unmapped=b.all_of(fetched, unmapped),
                            not_allowed=b.all_of(fetched, not_allowed))


if any(s.field("DeviceID") is not None and (s.field("DeviceID").hi, s.field("DeviceID").lo) != (15, 0)
       for s in GUEST_COMMANDS):
    raise ImportError("a guest command's DeviceID is not at bits 15:0: process_guest_command reads it there")
if any(s.field("DomainID") is not None and s is not INVALIDATE_IOMMU_PAGES for s in GUEST_COMMANDS):
    raise ImportError("a guest command other than INVALIDATE_IOMMU_PAGES names a DomainID: read it where it is")
