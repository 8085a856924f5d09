"""The built-in sequence library ``amdvi check`` runs with no file.

Each entry is written here once, in Python, as the steps a VMM, a guest and devices take; the files
under ``examples/sequences/`` are generated from it (``python -m amdvi.frontend.sequence_library
DIR``; a test keeps them current) and installed as package data of ``amdvi.examples``, so people can
read, copy and edit them. Correct sequences claim nothing; each bug example re-creates a class of real
driver bug with a typed fault switch (``models.amd_driver.choices``, ``models.iommufd.choices``) and
claims the property that must refute it.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import sys
from importlib import resources
from typing import Any

from amdvi.frontend import sequence_format
from amdvi.frontend.files import write_atomically
from amdvi.spec import mmio
from amdvi.spec.choices import Hardware
from amdvi.models import software
from amdvi.models.amd_driver.choices import Driver
from amdvi.models.iommufd import uapi as U
from amdvi.models.iommufd.choices import Iommufd
from amdvi.models.iommufd.driver_api import PciDevice
from amdvi.models.system import Call, DeviceDma, FlushQueueDrain, GuestCommands, GuestWrite, Scenario
from amdvi.spec.device_table import DTE

FOLDER = "sequences"
RAM = 0x1000_0000  # the VMM's memory (identity-mapped frames)
IOVA = 0x10_0000
RW = U.MAP_FIXED_IOVA | U.MAP_READABLE | U.MAP_WRITEABLE
NIC = PciDevice("nic", 0x10)
DISK = PciDevice("disk", 0x18)
ATS_NIC = PciDevice("nic", 0x10, ats=True)
BRIDGED = PciDevice("nic", 0x20, aliases=(0x21,))


def _call(name: str, bind: dict[str, str] | None = None, expect: int | None = None, **args: Any) -> Call:
    return Call(name, args, bind or {}, expect)


def bind(device: str) -> Call:
    return _call(U.DeviceBind.name, {"out_devid": device + "_dev"}, device=device)


def ioas(name: str = "ioas") -> Call:
    return _call(U.IoasAlloc.name, {"out_ioas_id": name})


def map_fixed(iova: int, user_va: int, length: int, *, ioas_name: str = "ioas", flags: int = RW,
              expect: int | None = None) -> Call:
    return _call(U.IoasMap.name, expect=expect, ioas_id=ioas_name, flags=flags, user_va=user_va, length=length,
                 iova=iova)


def unmap(iova: int, length: int, *, ioas_name: str = "ioas", expect: int | None = None) -> Call:
    return _call(U.IoasUnmap.name, expect=expect, ioas_id=ioas_name, iova=iova, length=length)


def attach(device: str, pt: str) -> Call:
    return _call(U.DeviceAttach.name, device=device, pt_id=pt)


def detach(device: str) -> Call:
    return _call(U.DeviceDetach.name, device=device)


def hwpt(device: str, pt: str, name: str, *, flags: int = 0, data: tuple[int, ...] = (),
         data_type: int = U.HWPT_DATA_NONE, expect: int | None = None) -> Call:
    return _call(U.HwptAlloc.name, {"out_hwpt_id": name}, expect, dev_id=device + "_dev", pt_id=pt, flags=flags,
                 data_type=data_type, data_len=8 * len(data), data=data)


def destroy(name: str, expect: int | None = None) -> Call:
    return _call(U.Destroy.name, expect=expect, id=name)


def dma(device: str, address: int, write: bool = False) -> DeviceDma:
    return DeviceDma(device, address, write)


@dataclasses.dataclass(frozen=True)
class Entry:
    """A library sequence: its file name, title, scenario, steps, the property a bug example must be
    refuted on (None: every property must hold), and notes."""

    file: str
    title: str
    scenario: Scenario
    steps: tuple[Any, ...]
    claims: str | None = None
    notes: tuple[str, ...] = ()
    probes: tuple[int, ...] = ()  # addresses checked beyond the mapped pages (a guest's GVAs)

    def loaded(self) -> sequence_format.LoadedSequence:
        return sequence_format.LoadedSequence(self.title, self.scenario, self.steps, self.probes, self.notes,
                                              self.claims)


def _plain(device: PciDevice = NIC, pages: int = 2) -> tuple[Any, ...]:
    """A VMM gives one device an IOAS with ``pages`` pages, the device DMAs, the VMM unmaps them."""
    n = device.name
    length = pages * 0x1000
    return (bind(n), ioas(), map_fixed(IOVA, RAM, length), attach(n, "ioas"), dma(n, IOVA),
            dma(n, IOVA + length - 0x1000, write=True), unmap(IOVA, length), dma(n, IOVA), detach(n))


def _detach_while_mapped(device: PciDevice) -> tuple[Any, ...]:
    """The VMM detaches a device from its HWPT while the HWPT still maps the device's pages."""
    n = device.name
    return (bind(n), ioas(), map_fixed(IOVA, RAM, 0x1000), hwpt(n, "ioas", "hwpt"), attach(n, "hwpt"),
            dma(n, IOVA), detach(n), dma(n, IOVA))


def _reuse_domain_id() -> tuple[Any, ...]:
    """Two devices, one after the other, each with its own HWPT: the second HWPT gets the first's
    DomainID once the first is destroyed."""
    return (bind("nic"), bind("disk"), ioas("a"), ioas("b"), map_fixed(IOVA, RAM, 0x1000, ioas_name="a"),
            map_fixed(IOVA, RAM + 0x10_0000, 0x1000, ioas_name="b"),
            hwpt("nic", "a", "hwpt_a"), attach("nic", "hwpt_a"), dma("nic", IOVA), detach("nic"),
            destroy("hwpt_a"), hwpt("disk", "b", "hwpt_b"), attach("disk", "hwpt_b"), dma("disk", IOVA))


def _lazy_reuse(*, wait_for_drain: bool) -> tuple[Any, ...]:
    """Lazy mode: unmap an IOVA and map it again to another page. Correct: the IOVA stays reserved
    (EINVAL) until the flush queue drains; the bug example maps it again at once."""
    start = (bind("nic"), ioas(), map_fixed(IOVA, RAM, 0x1000), attach("nic", "ioas"), dma("nic", IOVA),
             unmap(IOVA, 0x1000))
    again = (map_fixed(IOVA, RAM + 0x5000, 0x1000, expect=0), dma("nic", IOVA))
    if wait_for_drain:
        return start + (map_fixed(IOVA, RAM + 0x5000, 0x1000, expect=errno.EINVAL), FlushQueueDrain()) + again
    return start + again + (FlushQueueDrain(),)


def _destroy_while_busy() -> tuple[Any, ...]:
    return (bind("nic"), ioas(), map_fixed(IOVA, RAM, 0x1000), hwpt("nic", "ioas", "hwpt"), attach("nic", "hwpt"),
            destroy("hwpt", expect=errno.EBUSY), destroy("ioas", expect=errno.EBUSY), detach("nic"),
            destroy("hwpt", expect=0), unmap(0, 2 ** 64 - 1, expect=0), destroy("ioas", expect=0))


def _replace() -> tuple[Any, ...]:
    return (bind("nic"), ioas("a"), ioas("b"), map_fixed(IOVA, RAM, 0x1000, ioas_name="a"),
            map_fixed(IOVA, RAM + 0x10_0000, 0x1000, ioas_name="b"), attach("nic", "a"), dma("nic", IOVA),
            attach("nic", "b"), dma("nic", IOVA), unmap(IOVA, 0x1000, ioas_name="a"), dma("nic", IOVA))


# -- nested translation: a guest's v2 table over the VMM's v1 stage 2 --------------------------------------
# The guest's memory is an IOAS mapped at IOVA = GPA (amd-nested-upstream.md §c.4): its tables in
# [0, TABLES_END), then a data page and a spare page, each an area of its own so that one IOAS_UNMAP
# takes it without splitting an area. Guest physical addresses:
PAGE = 0x1000
TABLES_END = 0xC000
GCR3_TABLE = 0x1000  # the guest's one-level GCR3 table (GLX = 0); PASID 0 is the entry GIoV uses
GUEST_ROOT = 0x2000  # its 4-level table: 0x2000..0x5000
GUEST_ROOT_5 = 0x6000  # a 5-level table: 0x6000..0xa000
GCR3_TABLE_5 = 0xB000  # the GCR3 table of the 5-level table (the level switch)
EVIL_ROOT = 0x6000  # a v1 table the guest builds for itself (the unvalidated guest DTE): 0x6000..0x8000
DATA = 0xC000  # the page the guest maps at its GVA
SPARE = 0xD000  # a page of guest memory no guest table uses
GVA = 0x4000_0000  # the guest virtual address the device uses (no GPA is there)
GDOM_ID = 1  # the guest's DomainID in its DTE
NESTING = Iommufd(nested_alloc="amd-tree")  # HWPT_ALLOC through a vIOMMU (EOPNOTSUPP in mainline)
WORD = (1 << 64) - 1


def _guest_writes(words: dict[int, int], *, base: int = 0, memory: str = "ioas") -> tuple[GuestWrite, ...]:
    """The guest whose memory is the IOAS ``memory`` stores each 64-bit word (``words``: address -> value,
    its GPA being address - ``base``)."""
    return tuple(GuestWrite(memory, address - base, value) for address, value in sorted(words.items()))


def _guest_table(root: int, gcr3_table: int, *, levels: int, gva: int, memory: str = "ioas") -> tuple[GuestWrite, ...]:
    """The guest builds an x86-64 table of ``levels`` levels at ``root`` mapping ``gva`` to DATA, and a
    GCR3 table whose PASID 0 entry points at it (models.software's encoders)."""
    table = software.v2_map({}, root, gva, DATA, root + PAGE, levels=levels).memory
    gcr3 = {software.gcr3_entry_address(gcr3_table, 0): software.gcr3_entry(root)}
    return _guest_writes({**table, **gcr3}, memory=memory)


def _guest_stage2() -> tuple[GuestWrite, ...]:
    """A guest that knows where its memory lies (RAM + GPA) builds a 3-level v1 table of its own: its
    GCR3 and guest tables where the VMM put them, but DATA on the host's device table page."""
    memory: dict[int, int] = {}
    free = RAM + EVIL_ROOT + PAGE
    for gpa in (GCR3_TABLE, *range(GUEST_ROOT, GUEST_ROOT + 4 * PAGE, PAGE)):
        m = software.v1_map(memory, RAM + EVIL_ROOT, 3, gpa, RAM + gpa, free)
        memory, free = m.memory, m.next_free
    memory = software.v1_map(memory, RAM + EVIL_ROOT, 3, DATA, software.Layout().dev_tab, free).memory
    return _guest_writes(memory, base=RAM)


def guest_dte(gcr3_table: int = GCR3_TABLE, *, levels: int = 4, **fields: int) -> tuple[int, ...]:
    """The guest's DTE for its device (struct iommu_hwpt_amd_guest, four words): V, TV, GV, GIoV (requests
    without a PASID use PASID 0), GLX 0, the GCR3 table (a GPA), the guest paging mode, its DomainID."""
    dte = DTE.encode({"V": 1, "TV": 1, "GV": 1, "GIoV": 1, "GLX": 0, "GCR3 Table Root Pointer": gcr3_table,
                      "GPM": 0 if levels == 4 else 1, "DomainID": GDOM_ID, **fields})
    return tuple((dte >> (64 * i)) & WORD for i in range(4))


def viommu(device: str, parent: str, name: str = "viommu") -> Call:
    return _call(U.ViommuAlloc.name, {"out_viommu_id": name}, type=U.VIOMMU_TYPE_AMD, dev_id=device + "_dev",
                 hwpt_id=parent)


def nested_hwpt(device: str, name: str, data: tuple[int, ...], expect: int | None = None, *,
                on: str = "viommu") -> Call:
    return hwpt(device, on, name, data_type=U.HWPT_DATA_AMD_GUEST, data=data, expect=expect)


def _nested(*, levels: int = 4, gva: int = GVA, evil: bool = False, second: bool = False) -> tuple[Any, ...]:
    """The VMM's sequence for a nested device (amd-nested-upstream.md §c): guest memory in an IOAS at
    IOVA = GPA, a NEST_PARENT HWPT on it (the stage 2) the device boots on, a vIOMMU on it; the guest
    builds its GCR3 table and page table; on its DTE write the VMM allocates the nested HWPT from the
    guest's DTE and attaches the device to it; the device DMAs at the GVA (read, then write). ``second``:
    a second device stays on the stage 2 (its guest DTE has GV = 0: §b.3) and DMAs at DATA's GPA."""
    root, gcr3 = (GUEST_ROOT, GCR3_TABLE) if levels == 4 else (GUEST_ROOT_5, GCR3_TABLE_5)
    stage2 = {"Mode": 3, "Host Page Table Root Pointer": (RAM + EVIL_ROOT) >> 12} if evil else {}
    disk = (bind("disk"), attach("disk", "s2")) if second else ()
    return (bind("nic"), ioas(), map_fixed(0, RAM, TABLES_END), map_fixed(DATA, RAM + DATA, PAGE),
            map_fixed(SPARE, RAM + SPARE, PAGE), hwpt("nic", "ioas", "s2", flags=U.HWPT_ALLOC_NEST_PARENT),
            attach("nic", "s2"), *disk, viommu("nic", "s2"),
            *_guest_table(root, gcr3, levels=levels, gva=gva), *(_guest_stage2() if evil else ()),
            nested_hwpt("nic", "nested", guest_dte(gcr3, levels=levels, **stage2)), attach("nic", "nested"),
            dma("nic", gva), dma("nic", gva, write=True), *((dma("disk", DATA),) if second else ()))


def _nested_unmap(page: int) -> tuple[Any, ...]:
    """A nested device, then the VMM unmaps one page of the stage 2 and the device DMAs at the GVA again."""
    return _nested() + (unmap(page, PAGE), dma("nic", GVA))


def _guest_level_switch() -> tuple[Any, ...]:
    """A nested device whose guest moves from its 4-level table to a 5-level one mapping the same GVA: it
    builds the new table and GCR3 table and rewrites its DTE (GPM 5-level); the VMM allocates a nested HWPT
    from the new DTE, replaces the device's HWPT with it and destroys the old one (§c.10)."""
    new_dte = guest_dte(GCR3_TABLE_5, levels=5, DomainID=GDOM_ID + 1)
    return _nested() + (*_guest_table(GUEST_ROOT_5, GCR3_TABLE_5, levels=5, gva=GVA),
                        nested_hwpt("nic", "nested5", new_dte), attach("nic", "nested5"), destroy("nested", expect=0),
                        dma("nic", GVA))


NESTED_SOURCES = ("nested.c: torvalds/linux@103f4e7c drivers/iommu/amd/nested.c (validate_gdte_nested, "
                  "set_dte_nested, the gDomID -> hDomID map); amd-nested-upstream.md (b), (c), (d); "
                  "linux-driver-sequences.md §1.2, §4")


def _back_to_parent() -> tuple[Any, ...]:
    """The guest clears GV in its DTE: the VMM replaces the nested HWPT by the stage 2 and destroys the
    nested HWPT (amd-nested-upstream.md (b.3), (c.10-11)); then a second device gets a paging HWPT of its
    own and DMAs."""
    return _nested() + (attach("nic", "s2"), destroy("nested"), bind("disk"), ioas("b"),
                        map_fixed(IOVA, RAM + 0x80_0000, PAGE, ioas_name="b"), hwpt("disk", "b", "hwpt_b"),
                        attach("disk", "hwpt_b"), dma("disk", IOVA), dma("nic", GVA))


def _back_to_parent_unmap() -> tuple[Any, ...]:
    """Back on the stage 2 as in :func:`_back_to_parent`, the device DMAs at the GVA; then the VMM unmaps the
    page the guest table maps and the device DMAs there again."""
    return _nested() + (attach("nic", "s2"), destroy("nested"), dma("nic", GVA), unmap(DATA, PAGE), dma("nic", GVA))


def _nested_direct_unmap() -> tuple[Any, ...]:
    """A nested device the VMM attaches to the nested HWPT directly (never to the stage 2 itself), then a
    stage-2 unmap of the page the guest maps and a DMA at the GVA."""
    direct = tuple(s for s in _nested() if not (isinstance(s, Call) and s.name == "VFIO_DEVICE_ATTACH_IOMMUFD_PT"
                                                and s.args.get("pt_id") == "s2"))
    return direct + (unmap(DATA, PAGE), dma("nic", GVA))


def _nested_domain_replaced() -> tuple[Any, ...]:
    """The guest gives its device a new DomainID: the VMM allocates a nested HWPT from the new DTE, attaches
    it and destroys the old one (amd-nested-upstream.md (c.10-11)); then a second device gets a paging HWPT
    of its own and DMAs."""
    return _nested() + (nested_hwpt("nic", "nested2", guest_dte(DomainID=2)), attach("nic", "nested2"),
                        destroy("nested", expect=0), bind("disk"), ioas("b"),
                        map_fixed(GVA, RAM + 0x80_0000, PAGE, ioas_name="b"), hwpt("disk", "b", "hwpt_b"),
                        attach("disk", "hwpt_b"), dma("disk", GVA))


CMDBUF, SEMAPHORE = 0xE000, 0xF000  # the guest's command buffer and COMPLETION_WAIT page (GPAs)
VIRT_ID = 8  # the nic's DeviceID in the guest
HW_VIOMMU = dict(iommufd=Iommufd(nested_alloc="amd-tree", hw_queue="amd-tree"), driver=Driver(hw_viommu="amd-wip"))


def vdevice(device: str, virt_id: int, *, on: str = "viommu") -> Call:
    return _call(U.VdeviceAlloc.name, {"out_vdevice_id": f"{device}_vdev"}, viommu_id=on,
                 dev_id=device + "_dev", virt_id=virt_id)


def hw_queue(iova: int, length: int, *, on: str = "viommu", name: str = "cmdq",
             queue_type: int = U.HW_QUEUE_TYPE_AMD_CMD) -> Call:
    return _call(U.HwQueueAlloc.name, {"out_hw_queue_id": name}, viommu_id=on,
                 type=queue_type, nesting_parent_iova=iova, length=length)


def hw_viommu_guest(device: str, *, ram: int = RAM, suffix: str = "") -> tuple[Any, ...]:
    """The VMM gives ``device`` to a HW-vIOMMU guest whose memory (GPA 0 up, as ``_nested``'s) lies at
    ``ram``: its IOAS ``ioas<suffix>``, a NEST_PARENT HWPT ``s2<suffix>`` the device boots on, a vIOMMU
    ``viommu<suffix>`` with a vDEVICE for the device (guest DeviceID VIRT_ID) and the guest's command buffer
    as a HW queue ``cmdq<suffix>``; the guest builds its tables; the nested HWPT ``nested<suffix>`` from its
    DTE, the device attached to it, a DMA at the GVA. Several with distinct ``suffix`` and ``ram`` are guests
    side by side."""
    memory, parent, on = "ioas" + suffix, "s2" + suffix, "viommu" + suffix
    return (bind(device), ioas(memory), map_fixed(0, ram, TABLES_END, ioas_name=memory),
            map_fixed(DATA, ram + DATA, PAGE, ioas_name=memory),
            map_fixed(CMDBUF, ram + CMDBUF, 2 * PAGE, ioas_name=memory),
            hwpt(device, memory, parent, flags=U.HWPT_ALLOC_NEST_PARENT), attach(device, parent),
            viommu(device, parent, on), vdevice(device, VIRT_ID, on=on),
            hw_queue(CMDBUF, PAGE, on=on, name="cmdq" + suffix),
            *_guest_table(GUEST_ROOT, GCR3_TABLE, levels=4, gva=GVA, memory=memory),
            nested_hwpt(device, "nested" + suffix, guest_dte(), on=on), attach(device, "nested" + suffix),
            dma(device, GVA))


def _hw_viommu(*, teardown: bool = True) -> tuple[Any, ...]:
    """A HW-vIOMMU guest (AMD's work-in-progress flow, viommu-amdese-facts.md §7, §11): the nested device
    of nested-device.json, and on the vIOMMU a vDEVICE for it (its guest DeviceID) and the guest's command
    buffer as a HW queue; the device DMAs at the GVA; then the VMM takes it all down: the device back on
    the stage 2, the nested HWPT, the vDEVICE, the queue and the vIOMMU destroyed."""
    setup = hw_viommu_guest("nic")
    down = (attach("nic", "s2"), destroy("nested", expect=0), destroy("nic_vdev", expect=0), destroy("cmdq", expect=0),
            destroy("viommu", expect=0), dma("nic", GVA))
    return setup + (down if teardown else ())


def _guest_unmap(*, guest_domain: int = GDOM_ID) -> tuple[Any, ...]:
    """The HW-vIOMMU guest of hw-viommu-guest.json unmaps its GVA: its driver clears the PTE in its own
    table, invalidates through its own command buffer with the DomainID of its DTE (PASID 0, GN = 1: a
    guest translation; ``guest_domain``: a guest driver that names another one), waits on its own
    semaphore; the device then DMAs at the GVA again."""
    leaf = software.v2_map({}, GUEST_ROOT, GVA, DATA, GUEST_ROOT + PAGE, levels=4).leaf_address
    command = software.inv_pages(guest_domain, GVA, PAGE, pasid=0)
    return _hw_viommu(teardown=False) + (GuestWrite("ioas", leaf, 0), GuestCommands("viommu", (command,), SEMAPHORE),
                                         dma("nic", GVA))


EVENT_LOG = 0x1_0000  # the guest's event log (GPA), a page of its own
UNMAPPED_VIRT_ID = 9  # a guest DeviceID the guest has no vDEVICE for


def _guest_event_log() -> tuple[Any, ...]:
    """The HW-vIOMMU guest of hw-viommu-guest.json enables its event log (the VMM gives the page it names as a
    HW queue of type EVT) and invalidates the DTE of a guest DeviceID it has no vDEVICE for: the vIOMMU refuses
    the command and logs ILLEGAL_COMMAND_ERROR in the guest's log through its stage 2; the device then DMAs."""
    return hw_viommu_guest("nic") + (
        map_fixed(EVENT_LOG, RAM + EVENT_LOG, PAGE),
        hw_queue(EVENT_LOG, PAGE, name="evtq", queue_type=U.HW_QUEUE_TYPE_AMD_EVT),
        GuestCommands("viommu", (software.inv_devtab(UNMAPPED_VIRT_ID),), SEMAPHORE), dma("nic", GVA))


# -- the June-2023 RFC's own interface (iommufd viommu-interface=rfc, viommu.md §7) ---------------------------
IOMMU_ID = 0x0002  # the IOMMU's own DeviceID: the RFC's iommu_id
RFC = dict(iommufd=Iommufd(viommu_interface="rfc"), hardware=Hardware(viommu_command_buffer="private"))


def rfc_call(call: type[U.RfcCall], bind: dict[str, str] | None = None, expect: int | None = None, **args: Any) -> Call:
    return _call(call.name, bind, expect, iommu_id=IOMMU_ID, **args)


def guest_mmio_write(offset: int, value: int) -> Call:
    """The VMM re-issues a guest IOMMU register write it trapped."""
    return rfc_call(U.RfcMmioAccess, gid="guest", offset=offset, value=value, is_write=1)


def _rfc_guest(*, teardown: bool = True) -> tuple[Any, ...]:
    """A HW-vIOMMU guest through the RFC's ioctls (viommu.md §7.3, [RFC-15..19]): the device on its stage 2
    (a paging HWPT over the guest's memory); INIT gives a GuestID; the device is attached as guest DeviceID 8
    and guest DomainID 1 maps to the device's host domain; the guest's command-buffer base and Control writes
    (trapped) set ComLen and CmdBufEn; CMDBUF_UPDATE maps the buffer into the guest's private slot. The guest
    then invalidates its device's DTE and a page of its domain through its own buffer and waits; the device
    DMAs; then the VMM takes it down in the reverse order."""
    setup = (bind("nic"), ioas(), map_fixed(0, RAM, TABLES_END), map_fixed(DATA, RAM + DATA, PAGE),
             map_fixed(CMDBUF, RAM + CMDBUF, 2 * PAGE), hwpt("nic", "ioas", "s2"), attach("nic", "s2"),
             rfc_call(U.RfcIommuInit, {"gid": "guest"}),
             rfc_call(U.RfcDeviceAttach, gid="guest", hdev_id=NIC.device_id, gdev_id=VIRT_ID),
             rfc_call(U.RfcDomainAttach, gid="guest", gdev_id=VIRT_ID, gdom_id=GDOM_ID),
             guest_mmio_write(mmio.OFFSETS["CMD_BUF_BAR"], mmio.CMD_BUF_BAR.encode(ComBase=CMDBUF >> 12, ComLen=8)),
             rfc_call(U.RfcCmdbufUpdate, gid="guest", cmdbuf_size=PAGE, hva=RAM + CMDBUF),
             guest_mmio_write(mmio.OFFSETS["CONTROL"], mmio.CONTROL.encode(CmdBufEn=1)),
             GuestCommands("guest", (software.inv_devtab(VIRT_ID), software.inv_pages(GDOM_ID, DATA, PAGE)),
                           SEMAPHORE),
             dma("nic", DATA))
    down = (rfc_call(U.RfcDomainDetach, expect=0, gid="guest", gdev_id=VIRT_ID, gdom_id=GDOM_ID),
            rfc_call(U.RfcDeviceDetach, expect=0, gid="guest", hdev_id=NIC.device_id, gdev_id=VIRT_ID),
            rfc_call(U.RfcIommuDestroy, expect=0, gid="guest"), detach("nic"))
    return setup + (down if teardown else ())


def _rfc_errors() -> tuple[Any, ...]:
    """RFC calls that fail as §7.3 says: a DOMAIN_ATTACH and a DESTROY naming a GuestID no INIT gave
    (EINVAL), and an INIT naming an IOMMU that is not there (ENODEV)."""
    return (rfc_call(U.RfcDomainAttach, expect=errno.EINVAL, gid=7, gdev_id=VIRT_ID, gdom_id=GDOM_ID),
            rfc_call(U.RfcIommuDestroy, expect=errno.EINVAL, gid=7),
            _call(U.RfcIommuInit.name, expect=errno.ENODEV, iommu_id=0x99))


def _ats_reattach() -> tuple[Any, ...]:
    """An ATS device caches a translation, is detached, its page is unmapped, and it is attached again."""
    return (bind("nic"), ioas(), map_fixed(IOVA, RAM, 0x1000), attach("nic", "ioas"), dma("nic", IOVA),
            detach("nic"), unmap(IOVA, 0x1000), attach("nic", "ioas"), dma("nic", IOVA))


def _scenario(*devices: PciDevice, **kw: Any) -> Scenario:
    return Scenario(devices=devices, **kw)


ENTRIES: tuple[Entry, ...] = (
    Entry("plain-device.json", "a plain device: map, DMA, unmap", _scenario(NIC), _plain()),
    Entry("replace.json", "replace: a device moves from one IOAS to another", _scenario(NIC), _replace()),
    Entry("destroy-while-busy.json", "destroy while busy: EBUSY until the device has left", _scenario(NIC),
          _destroy_while_busy()),
    Entry("ats-device.json", "an ATS device: its own IOTLB is flushed on unmap", _scenario(ATS_NIC), _plain(ATS_NIC)),
    Entry("alias-device.json", "a device behind a bridge: its alias gets the DTE and the flushes",
          _scenario(BRIDGED), _detach_while_mapped(BRIDGED)),
    Entry("domain-id-reuse.json", "a DomainID is reused by the next HWPT after a flush", _scenario(NIC, DISK),
          _reuse_domain_id()),
    Entry("lazy-reuse.json", "lazy mode: an IOVA is reused only after the flush queue drains",
          _scenario(NIC, mode="lazy"), _lazy_reuse(wait_for_drain=True)),
    Entry("nested-device.json", "a nested device: the guest's table over the VMM's stage 2",
          _scenario(NIC, iommufd=NESTING), _nested_unmap(SPARE), probes=(GVA,), notes=(
              "The VMM's sequence of amd-nested-upstream.md (c) 4, 5, 6, 10: guest memory in an IOAS at IOVA = GPA, "
              "a NEST_PARENT HWPT on it (the stage 2), a vIOMMU on that, then a nested HWPT from the guest's DTE "
              "(struct iommu_hwpt_amd_guest) and a replace.",
              "Runs under the iommufd reading nested-alloc=amd-tree: mainline's AMD vIOMMU has no "
              "alloc_domain_nested, so HWPT_ALLOC through it is EOPNOTSUPP (amd-nested-upstream.md (b.6)).",
              "The guest builds its GCR3 table (GPA 0x1000) and a 4-level table (GPA 0x2000..0x5000) mapping GVA "
              "0x40000000 to DATA (GPA 0xc000), one GuestWrite per word. Its DTE has GIoV = 1, so a request without "
              "a PASID uses PASID 0's table: after the nested attach the device reaches DATA's frame only through "
              "the guest table, and a DMA at DATA's GPA faults (tests/cli/test_check_nested.py).",
              "set_dte_nested: the host part from the parent, DomainID = the gDomID's hDomID, GV forced to 1, the "
              "guest's GCR3 root (a GPA, GCR3TRPMode) and paging mode copied. Sources: " + NESTED_SOURCES + ".",
              "The VMM then unmaps a page the guest table does not use; the parent's flush also covers its "
              "vIOMMU's hDomIDs (iommu_flush_pages_v1_hdom_ids, amd-nested-upstream.md (d.1)).")),
    Entry("nested-stage2-unmap.json", "a stage-2 unmap of the page a guest maps reaches the guest's hDomID",
          _scenario(NIC, iommufd=NESTING), _nested_unmap(DATA), probes=(GVA,), notes=(
              "The correct twin of bug-parent-flush-misses-hdomids.json: the VMM unmaps DATA, the page the guest "
              "table maps GVA to, while the device may hold GVA -> DATA's frame in its IOTLB under the hDomID of "
              "its gDomID. The parent's flush invalidates that hDomID too (iommu_flush_pages_v1_hdom_ids, v5 11/14, "
              "amd-nested-upstream.md (d.1)), so once IOAS_UNMAP returns the device's DMA at GVA faults.",
              "Stage-2 change reaches every guest, along this run: `amdvi check --prove` proves isolation by "
              "induction with Z3 at every boundary of it, and refutes the broken twin.")),
    Entry("nested-guest-level-switch.json",
          "finding: a guest's switch to a 5-level table clears V for a moment (DMA untranslated)",
          _scenario(NIC, iommufd=NESTING), _guest_level_switch(), "isolation", probes=(GVA,), notes=(
              "A correct-driver sequence that the model refutes: a nested device whose guest moves from a 4-level "
              "to a 5-level table (a new GCR3 table, a new DomainID, GPM 5-level); the VMM allocates a nested HWPT "
              "from the new DTE and replaces the old one (amd-nested-upstream.md (c.10)).",
              "Finding: for a DTE whose guest paging level changes (GV = 1 before and after), update_dte256 first "
              "writes the lower half of a zero-initialised entry, V included (AMDESE/linux-iommu@00406666 and "
              "torvalds/linux drivers/iommu/amd/iommu.c; the lower-half store writes its first 128 bits as "
              "given), flushes the DTE and waits, then writes the upper and lower halves. Between the first "
              "store and the last the DTE has V = 0.",
              "With V = 0 the IOMMU does not translate (device-table-entry.md: the rest of the DTE is ignored; "
              "QEMU passes such DMA untranslated; Linux sets V = 1 and TV = 1 in every DTE at boot, "
              "init_device_table_dma, so that no device is left in that state): a DMA in the window reaches "
              "the system address it names (isolation), and no-torn-dte is refuted too.",
              "Doubt: the V = 0 reading is not from 48882's own text; the spec model follows it "
              "(spec/translation.py step 2; the hardware reading invalid-dte). Under "
              "--choice hardware.invalid-dte=blocked the window only faults and the sequence holds. Linux "
              "means the step to disable the DTE; V = 1 with TV = 0 would block without passing DMA.",
              "The new DTE uses a new guest DomainID: with the same gDomID the hDomID is shared and the GCR3 "
              "entry cached from the old GCR3 table may serve the new DTE (flush-completeness), which the guest "
              "would have to invalidate itself (no uAPI path without the HW-vIOMMU, amd-nested-upstream.md (d.2)).")),
    Entry("nested-back-to-parent.json",
          "finding: back on the stage 2, a device keeps its nested DTE, whose freed host DomainID then tags "
          "another domain",
          _scenario(NIC, DISK, iommufd=NESTING), _back_to_parent(), "domain-id-uniqueness", probes=(GVA,), notes=(
              "A correct-driver sequence the model refutes, under the driver reading nested-attach-previous=kept "
              "(the default: what nested_attach_device in torvalds/linux nested.c @103f4e7c shows: it rewrites the "
              "DTE without detaching the paging domain the device was on, so dev_data->domain still names the "
              "stage 2).",
              "The VMM replaces the nested HWPT by the stage 2 (the guest cleared GV, amd-nested-upstream.md (b.3)): "
              "attach_device sees the device already on that domain and returns at once (linux-driver-sequences.md "
              "§1 step 1), so the DTE stays nested, tagged with the hDomID. iommufd then lets the VMM destroy the "
              "nested HWPT (the device is no longer attached to it there); nested_domain_free returns the hDomID "
              "to the allocator; the next paging domain gets it, and one DomainID now tags two translation "
              "contexts (the nested DTE and the new domain's).",
              "Under --choice driver.nested-attach-previous=detached (nested attach first detaches, as "
              "attach_device does) the sequence holds. Whether upstream detaches elsewhere was not seen in the "
              "sources read (linux-driver-sequences.md §4.3, 'to check').")),
    Entry("nested-back-to-parent-unmap.json",
          "finding: back on the stage 2 with its nested DTE, a device keeps translating under the freed host "
          "DomainID, which no stage-2 flush names: after an unmap it still reaches the page",
          _scenario(NIC, iommufd=NESTING), _back_to_parent_unmap(), "isolation", probes=(GVA,), notes=(
              "A correct-driver sequence the model refutes, under the driver reading nested-attach-previous=kept "
              "(the default; see nested-back-to-parent.json for why the DTE stays nested after the attach to the "
              "stage 2 and why the nested HWPT's destroy frees its hDomID).",
              "The device DMAs at the GVA: the IOMMU caches the nested translation tagged with the freed hDomID. "
              "The VMM unmaps DATA from the stage 2: the parent's flush names the parent's DomainID (the device is "
              "on its list) and the hDomIDs its vIOMMU still maps, not the freed one, so the cached translation "
              "survives and the next DMA reads the unmapped frame (isolation; flush-completeness too).",
              "Found by the driver half of amdvi prove --property viommu-stage2-reaches-every-guest, whose "
              "search under kept reports it. Under --choice driver.nested-attach-previous=detached the sequence "
              "holds.")),
    Entry("nested-direct-attach-unwaited-flush.json",
          "finding: a device attached straight to a nested HWPT: a stage-2 unmap queues the hDomID invalidation "
          "and returns without waiting for it",
          _scenario(NIC, iommufd=NESTING), _nested_direct_unmap(), "isolation", probes=(GVA,), notes=(
              "A correct-driver sequence the model refutes. The VMM allocates the NEST_PARENT HWPT, the vIOMMU and "
              "the nested HWPT, and attaches the device to the nested HWPT straight away (iommufd allows it; the "
              "library's nested-device.json boots the device on the stage 2 first). Then it unmaps a stage-2 page "
              "the guest's table uses.",
              "amd_iommu_domain_flush_pages flushes the parent's DomainID on the IOMMUs of its iommu_array (none: "
              "no device is attached to the parent itself, and nested_attach_device does not pdom_attach_iommu "
              "the parent), queues INVALIDATE_IOMMU_PAGES for every hDomID of every vIOMMU on it "
              "(iommu_flush_pages_v1_hdom_ids) and then waits, in domain_flush_complete, only on the iommu_array's "
              "IOMMUs: no COMPLETION_WAIT follows (torvalds/linux drivers/iommu/amd/iommu.c and nested.c; "
              "amd-nested-upstream.md (d.1)). IOAS_UNMAP returns, iommufd unpins the page, and until the IOMMU "
              "gets to the queued invalidation the device's IOTLB entry still reaches it (isolation, "
              "flush-completeness). Jason Gunthorpe asked in review of the v4 series why nested attach does not "
              "attach the parent's IOMMU (pdom_attach_iommu); the merged code does not.",
              "Under --choice driver.hdomid-flush-wait=viommu-iommus (the flush also waits on each vIOMMU's "
              "IOMMU) the sequence holds; booting the device on the stage 2 first, as QEMU does, also avoids it "
              "(under the reading nested-attach-previous=kept the parent keeps the device's IOMMU).")),
    Entry("nested-hdomid-freed-unflushed.json",
          "finding: a freed nested domain's host DomainID goes back to the allocator unflushed, and the next "
          "domain inherits its cached translations' tag",
          _scenario(NIC, DISK, iommufd=NESTING), _nested_domain_replaced(), "domain-id-uniqueness", probes=(GVA,),
          notes=(
              "A correct-driver sequence the model refutes. The guest switches its device to a new DomainID; the "
              "VMM allocates a nested HWPT from the new DTE, replaces the old one and destroys it, as a VMM "
              "following a guest's DTE invalidation does (amd-nested-upstream.md (c.10-11)).",
              "nested_attach_device writes the new DTE (set_dte_nested, then amd_iommu_update_dte) without the "
              "flush of the DomainID it replaces that set_dte_entry does for a paging domain (old_domid); "
              "nested_domain_free then returns the hDomID to the global DomainID allocator (amd_iommu_pdom_id_free) "
              "with no flush either (torvalds/linux drivers/iommu/amd/nested.c; amd-nested-upstream.md). The "
              "entries the nic's DMA cached under the old hDomID (its GCR3-table entry, its guest translations) "
              "survive; the disk's new paging domain gets the same DomainID, which now tags two translation "
              "contexts in the IOMMU's caches.",
              "Isolation still holds in this sequence: the stale entries are guest (GN = 1) ones and the disk's "
              "look-ups are host ones; a later nested domain given the same hDomID could be served by them (a sequence not built here). Under --choice driver.nested-free-flush=flush (the hDomID flushed "
              "before it is freed) the sequence holds.")),
    Entry("ats-reattach-kept-atc.json",
          "finding: if a device's ATC outlives ATS disable, a re-attached device reaches an unmapped page",
          _scenario(ATS_NIC, hardware=Hardware(atc_on_ats_disable="kept")), _ats_reattach(), "isolation", notes=(
              "Found by bounded model checking (amdvi check --depth 5 on the default scenario) under the reading "
              "hardware.atc-on-ats-disable=kept. detach_device disables ATS (pdev_disable_caps) before it clears "
              "the DTE and flushes the domain; with ATS off the domain flush sends no INVALIDATE_IOTLB_PAGES to "
              "the device (linux-driver-sequences.md). If the device's ATC keeps what it cached, the entry for "
              "the page unmapped meanwhile is still there when attach_device enables ATS again and writes the "
              "DTE (I = 1): the device may use it until the INVALIDATE_IOTLB_PAGES of device_flush_dte completes.",
              "Under the default reading (discarded: a function caches translations only while ATS Enable is "
              "set) the sequence holds; which one devices implement is for the PCIe specification, not quoted "
              "in shared/reference.")),
    Entry("hw-viommu-guest.json", "a HW-vIOMMU guest: vIOMMU, vDEVICE, command-buffer queue, nested device, "
          "then all taken down", _scenario(NIC, **HW_VIOMMU), _hw_viommu(), probes=(GVA,), notes=(
              "AMD's work-in-progress HW-vIOMMU (driver reading hw-viommu=amd-wip): the vIOMMU gets a GuestID and "
              "a translate DeviceID (its DTE: the stage 2), RESET_VMMIO, its DeviceID and DomainID maps in the "
              "IOMMU's private address space (pre-filled: every guest DomainID to the parent's), the vDEVICE "
              "maps guest DeviceID 8 to the nic, the queue programs the guest's command buffer (a GPA), and the "
              "nested attach maps the guest DomainID to the nested domain's host DomainID.",
              "mapping-table-integrity holds: when the nested domain goes, its map entry goes back to the "
              "parent's DomainID; the vDEVICE's entry is cleared (readings domid-map-on-free=reset, "
              "devid-map-on-destroy=cleared).")),
    Entry("hw-viommu-guest-unmap.json", "a HW-vIOMMU guest unmaps a page and invalidates through its own command "
          "buffer", _scenario(NIC, **HW_VIOMMU), _guest_unmap(), probes=(GVA,), notes=(
              "The guest kernel's IOMMU driver (v2 mode) clears its PTE, writes INVALIDATE_IOMMU_PAGES (its DomainID "
              "1, PASID 0, GN = 1) and a COMPLETION_WAIT on its own page into its command buffer, writes its tail in "
              "the VF page and polls: the vIOMMU fetches the commands through the translate DeviceID's stage 2, "
              "replaces DomainID 1 by the host DomainID its map gives, and the host's invalidation rules do the "
              "rest; flush-completeness is checked once the guest's wait returns.",)),
    Entry("hw-viommu-guest-event-log.json", "a HW-vIOMMU guest enables its event log and issues a command the "
          "vIOMMU refuses: ILLEGAL_COMMAND_ERROR in the guest's own log", _scenario(NIC, **HW_VIOMMU),
          _guest_event_log(), probes=(GVA,), notes=(
              "The guest's write of its event-log base and control traps; the VMM gives the page as a HW queue of type "
              "EVT (viommu.md §9), which programs GUEST_EVT_CONTROL (base GPA 0x10000, 256 entries, EventLogEn).",
              "The guest invalidates the DTE of guest DeviceID 9, for which it has no vDEVICE: the DeviceID map has no "
              "entry, so the vIOMMU refuses the command (readings viommu-refused-command=stop: its buffer stops, its "
              "COMPLETION_WAIT never stores; viommu-refused-command-event=guest-log) and writes ILLEGAL_COMMAND_ERROR "
              "with the command's GPA at the log's tail, through the translate DeviceID's stage 2: into the guest's "
              "own page. A guest's stuck wait is its own problem, not a host property.",
              "Under --choice hardware.viommu-guest-event-log-untranslated=true the record goes to system address "
              "0x10000 instead (the base used untranslated); the HW-vIOMMU machine's check of every word a guest step "
              "writes (properties.viommu_events.stray_words) catches it.")),
    Entry("hw-viommu-rfc-guest.json", "a HW-vIOMMU guest through the June-2023 RFC's own ioctls: init, device and "
          "domain attach, trapped register writes, command buffer, guest invalidations, then all taken down",
          _scenario(NIC, **RFC), _rfc_guest(), notes=(
              "iommufd reading viommu-interface=rfc: the RFC's VIOMMU_* ioctls (0x60-0x67) reach AMD's handlers "
              "(viommu.md §7; models/iommufd/rfc.py, models/amd_driver/viommu_rfc.py). The guest is a GuestID, "
              "not an iommufd object: its maps are cleared to host ID 0; the device attach writes vImuEn, "
              "GuestID, GDeviceID and GV into the nic's own DTE and makes the nic the translate DeviceID; the "
              "domain attach maps guest DomainID 1 to the DomainID of the nic's DTE (the stage 2's).",
              "Hardware reading viommu-command-buffer=private: the vIOMMU reads the guest's ring from its slot of "
              "the private space, where CMDBUF_UPDATE mapped the buffer's pages; under the default "
              "(guest-physical, the later design) the RFC never gives it a base and the guest's wait never "
              "returns.",
              "The RFC's HWPT_ALLOC of a guest CR3 (patch 20) is not modelled: the nic has no stage 1, and "
              "the guest's invalidations reach the stage 2's host DomainID.")),
    Entry("hw-viommu-rfc-masked-errno.json",
          "finding: the RFC's iommufd hook hands every AMD error to the VFIO-compat handler, which answers 0 "
          "for VIOMMU_DOMAIN_ATTACH", _scenario(NIC, iommufd=Iommufd(viommu_interface="rfc", rfc_dispatch="as-coded")),
          _rfc_errors(), "errno-conformance", notes=(
              "iommufd_fops_ioctl as the RFC changes it ([RFC-21]) returns only a 0 from AMD's dispatcher and "
              "otherwise returns what the VFIO-compat handler makes of the same number (viommu.md §10.1). VFIO "
              "shares iommufd's ioctl type with base 100, so 0x64 (VIOMMU_DOMAIN_ATTACH) is VFIO_GET_API_VERSION: "
              "a failed domain attach returns 0; 0x61 (DESTROY) is no VFIO ioctl: ENOTTY.",
              "Under --choice iommufd.rfc-dispatch=intended the sequence holds.")),
    Entry("hw-viommu-rfc-domain-detach.json",
          "finding: the RFC's domain detach writes another guest's DomainID map and leaves the caller's entry",
          _scenario(NIC, **RFC, driver=Driver(rfc_domain_detach="as-coded")), _rfc_guest(),
          "mapping-table-integrity", notes=(
              "amd_viommu_domain_update passes (GuestID, host DomainID) to the clear helper in swapped order "
              "([RFC-17], viommu.md §10.4; driver reading rfc-domain-detach=as-coded): the guest's entry for "
              "DomainID 1 still names the stage 2's host DomainID after its device is detached, so the guest "
              "can still invalidate a domain that is no longer its own.",
              "Here the host DomainID and the GuestID are both 1, so the misdirected write lands on the guest's "
              "own entry and writes host DomainID 1 again instead of clearing it; with other values it would "
              "rewrite another guest's map.",
              "Under --choice driver.rfc-domain-detach=intended the sequence holds.")),
    Entry("hw-viommu-stale-domain-map.json",
          "finding: AMD's work-in-progress driver frees a nested domain's host DomainID still mapped for the guest",
          _scenario(NIC, iommufd=HW_VIOMMU["iommufd"], driver=Driver(hw_viommu="amd-wip", domid_map_on_free="kept")),
          _hw_viommu(), "mapping-table-integrity", probes=(GVA,), notes=(
              "nested_domain_free drops the last reference, erases the gDomID and frees the hDomID, and writes no "
              "DomainID map entry (AMDESE/linux-iommu nested.c as read: viommu-amdese-facts.md §4, §7.4): the "
              "guest's DomainID 1 still names the freed host DomainID, which the next domain allocated gets; the "
              "guest's invalidations then reach that domain's cached translations (a cross-guest effect).",
              "Under --choice driver.domid-map-on-free=reset the sequence holds.")),
    # -- bug examples ------------------------------------------------------------------------------------
    Entry("bug-unmap-without-flush.json", "bug: unmap returns without flushing the IOTLB",
          _scenario(NIC, driver=Driver(unmap_skips_flush=True)), _plain(), "isolation"),
    Entry("bug-flush-too-small.json", "bug: the flush after a two-page unmap covers one page",
          _scenario(NIC, driver=Driver(flush_range_too_small=True)), _plain(), "isolation"),
    Entry("bug-ats-iotlb-not-flushed.json", "bug: an ATS device's IOTLB is not flushed on unmap",
          _scenario(ATS_NIC, driver=Driver(skip_device_iotlb_flush=True)), _plain(ATS_NIC), "isolation"),
    Entry("bug-alias-not-flushed.json", "bug: a bridge alias gets the DTE but not its flush",
          _scenario(BRIDGED, driver=Driver(skip_alias_flush=True)), _detach_while_mapped(BRIDGED), "isolation"),
    Entry("bug-domain-id-reused-before-flush.json", "bug: a DomainID is freed and reused before its flush",
          _scenario(NIC, DISK, driver=Driver(domain_id_freed_before_flush=True)), _reuse_domain_id(),
          "domain-id-uniqueness"),
    Entry("bug-flush-queue-early-reuse.json", "bug: lazy mode reuses an IOVA before the flush queue drains",
          _scenario(NIC, mode="lazy", driver=Driver(flush_queue_releases_early=True)), _lazy_reuse(wait_for_drain=False),
          "isolation"),
    Entry("bug-destroy-ignores-users.json", "bug: iommufd destroys a HWPT a device still uses",
          _scenario(NIC, iommufd=Iommufd(destroy_ignores_users=True)), _destroy_while_busy(), "errno-conformance"),
    Entry("bug-gdte-not-validated.json", "bug: the host takes the guest DTE's stage 2 (Mode, host root)",
          _scenario(NIC, iommufd=NESTING, driver=Driver(gdte_not_validated=True)), _nested(evil=True), "isolation",
          probes=(GVA,), notes=(
              "validate_gdte_nested refuses a guest DTE with Mode or a host page-table root (EINVAL, nested.c "
              "29-32: the guest may not supply a stage 2); the fault skips it and set_dte_nested takes them.",
              "The guest, knowing where its memory lies, builds a 3-level v1 table of its own mapping its tables "
              "where the VMM put them and DATA onto the host's device table page (0x100000), and names it in its "
              "DTE: the device then reads and writes the device table, a frame outside the IOAS.",
              "Class: a host trusting a guest-supplied field that selects translation (a guest escape).",
              NESTED_SOURCES)),
    Entry("bug-parent-flush-misses-hdomids.json",
          "bug: a stage-2 unmap flushes the parent's DomainID, not the hDomIDs",
          _scenario(NIC, iommufd=NESTING, driver=Driver(parent_flush_misses_hdomids=True)), _nested_unmap(DATA),
          "isolation", probes=(GVA,), notes=(
              "Nested DTEs carry the gDomID's hDomID, so a nested IOTLB entry (GVA -> DATA's frame) is tagged with "
              "it; a parent flush must also invalidate every hDomID of the parent's vIOMMUs "
              "(iommu_flush_pages_v1_hdom_ids, v5 11/14, commit 757d2b1fdf5b7; amd-nested-upstream.md (d.1)).",
              "The VMM unmaps DATA, which the guest table maps; with the fault the flush misses the hDomID and the "
              "device still reaches DATA's frame through the stale entry after IOAS_UNMAP returned.",
              "Class: an invalidation that misses a tag the hardware uses (the pre-v5 nested series).")),
    Entry("bug-guest-event-log-untranslated.json",
          "bug: the vIOMMU writes a guest's event record at the log base as a system address",
          _scenario(NIC, **HW_VIOMMU, hardware=Hardware(viommu_guest_event_log_untranslated=True)),
          _guest_event_log(), "guest-event-isolation", probes=(GVA,), notes=(
              "The steps of hw-viommu-guest-event-log.json on a vIOMMU that takes GUEST_EVT_CONTROL's base (a guest "
              "physical address) as a system address: the ILLEGAL_COMMAND_ERROR record for the refused command "
              "lands at system 0x10000, a frame the guest's stage 2 does not give it (viommu.md §9: the guest's "
              "logs are reached through its translate DeviceID).",
              "guest-event-isolation checks every word a guest command step wrote against the rule the Z3 proof "
              "viommu-guest-event-isolation proves (properties.viommu_events).",
              "Class: a guest-programmed address used without translation (a guest write outside its memory).")),
    Entry("bug-nested-shares-parent-domain-id.json", "bug: the nested DTE is tagged with the parent's DomainID",
          _scenario(NIC, DISK, iommufd=NESTING, driver=Driver(nested_shares_parent_domain_id=True)),
          _nested(second=True), "domain-id-uniqueness", probes=(GVA,), notes=(
              "set_dte_nested tags a nested DTE with the gDomID's hDomID, never the parent's DomainID (nested.c "
              "186-229; amd-nested-upstream.md (b.2), (b.5)). The fault uses the parent's.",
              "A second device stays on the stage 2 (its guest DTE has GV = 0, so the VMM attaches it to the "
              "parent, (b.3)): the parent's DomainID then tags two contexts at once, the nic's guest table and "
              "the disk's stage 2 alone: domain-id-uniqueness.",
              "Isolation holds in the model: both contexts lie inside the same IOAS, so a translation one device "
              "gets from the other's context still reaches the guest's own memory. What breaks is the guest's "
              "isolation between its devices (a GVA translation of the nic's table served to the disk) and any "
              "flush by tag; with one device the model shows nothing, as the old context is gone from the DTE.",
              "Class: DomainID aliasing (different tables under one tag).")),
    Entry("bug-guest-invalidation-wrong-domain.json", "bug (guest driver): a HW-vIOMMU guest invalidates with a "
          "DomainID its device's DTE does not carry", _scenario(NIC, **HW_VIOMMU), _guest_unmap(guest_domain=2),
          "flush-completeness", probes=(GVA,), notes=(
              "The guest names DomainID 2; its DTE carries 1. The vIOMMU translates 2 through the guest's DomainID "
              "map, which sends every guest DomainID without a nested domain to the parent's DomainID (the "
              "pre-fill): the invalidation reaches the parent's translations, not the device's guest "
              "translation, whose IOTLB entry survives the guest's COMPLETION_WAIT. A guest kernel bug, not a "
              "model switch: the vIOMMU carries out what it is given, for the guest's own domains only.",)),
    Entry("bug-dte-halves-wrong-order.json", "bug: a nested DTE's lower half (GV = 1) is written before the upper",
          _scenario(NIC, iommufd=NESTING, driver=Driver(dte_halves_wrong_order=True)), _nested(levels=5, gva=0),
          "no-torn-dte", probes=(0,), notes=(
              "update_dte256 writes the half holding V / GV last when setting them (linux-driver-sequences.md "
              "§1.2; 'DTE[V|GV] bit is being written last when setting'). The fault writes the lower half first.",
              "The guest uses a 5-level table (GPA 0x6000..0xa000, the host accepts 5-level guests: "
              "guest_5_level) mapping GVA 0 to DATA. Between the two halves the IOMMU reads GV = 1 and the new "
              "GCR3 root with the old upper half (GuestPagingMode 4-level) and walks the 5-level table as a "
              "4-level one: GVA 0 reaches the table's last page (GPA 0xa000) instead of DATA.",
              "Class: a torn 256-bit DTE written as two 128-bit halves in the wrong order.")),
)


def entries() -> list[tuple[str, sequence_format.LoadedSequence]]:
    """(source, loaded sequence) for every installed library file: correct sequences, then bug examples."""
    folder = resources.files("amdvi.examples") / FOLDER
    out = []
    for item in sorted(folder.iterdir(), key=lambda p: (p.name.startswith("bug-"), p.name)):  # correct ones first
        if item.name.endswith(".json"):
            source = f"{FOLDER}/{item.name}"
            out.append((source, sequence_format.load(json.loads(item.read_text()), source)))
    return out


def render(entry: Entry) -> str:
    from amdvi.frontend.sequence_trace import describe_step

    obj = sequence_format.to_json(entry.loaded(), describe=describe_step)
    if entry.claims:
        obj["violation"] = {"property": entry.claims, "text": "the bug this example re-creates"}
    return sequence_format.dumps(obj)


def write(folder: str) -> list[str]:
    """Write every entry's file into ``folder`` (atomically); the paths written."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for e in ENTRIES:
        path = os.path.join(folder, e.file)
        write_atomically(path, render(e))
        paths.append(path)
    return paths


if __name__ == "__main__":  # pragma: no cover
    for p in write(sys.argv[1] if len(sys.argv) > 1 else os.path.join("examples", FOLDER)):
        print(p)
