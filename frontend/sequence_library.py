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
from amdvi.models.amd_driver.choices import Driver
from amdvi.models.iommufd import uapi as U
from amdvi.models.iommufd.choices import Iommufd
from amdvi.models.iommufd.driver_api import PciDevice
from amdvi.models.system import Call, DeviceDma, FlushQueueDrain, Scenario

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

    def loaded(self) -> sequence_format.LoadedSequence:
        return sequence_format.LoadedSequence(self.title, self.scenario, self.steps, (), self.notes, self.claims)


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
