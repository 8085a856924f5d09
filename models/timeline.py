"""What system software does to the IOMMU, as the steps hardware and devices can come between.

A driver operation (an attach, a map, an unmap) is a sequence of these steps; the checkers put DMA,
cache fills and evictions, and the command processor's progress at every boundary between two of
them (``amdvi.properties.sequence``). Each step is atomic for the hardware:

* :class:`Store`: one CPU store instruction, of one 64-bit word or of the two words of a 128-bit
  ``cmpxchg16b`` (how Linux writes each half of a 256-bit DTE, 48882 §2.2.2: the IOMMU may read the
  DTE between the two halves);
* :class:`Queue`: commands written to the command ring and the tail register write that hands them to
  the IOMMU (48882 §2.4, §3.4.3); the command processor may take them at any later boundary;
* :class:`AtsControl`: software sets or clears the Enable bit of devices' PCIe ATS capability (a
  configuration write, not an IOMMU access): a device caches translations and sends translated
  requests only while it is set;
* :class:`VfctrlWrite`: software writes HW-vIOMMU VFCtrl registers (MMIO); the IOMMU stores a map
  entry into its private address space, or keeps the guest's register (``models.viommu``);
* :class:`Wait`: software polls the COMPLETION_WAIT store of ``sequence`` (48882 §2.4.1) and goes on
  only once it has landed, so every command queued before it has completed.

Pure data; the steps carry concrete (Python int) values.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Store:
    """Software stores ``writes`` (address, 64-bit value) in one atomic instruction."""

    writes: tuple[tuple[int, int], ...]
    what: str = ""


@dataclass(frozen=True)
class Queue:
    """Software appends ``commands`` (128-bit each) to the command ring and writes the tail."""

    commands: tuple[int, ...]
    what: str = ""


@dataclass(frozen=True)
class Wait:
    """Software waits until the COMPLETION_WAIT carrying ``sequence`` has stored it at ``address``."""

    sequence: int
    address: int
    what: str = ""


@dataclass(frozen=True)
class AtsControl:
    """Software sets (``enable``) or clears ATS Enable in the function of each of ``device_ids``."""

    device_ids: tuple[int, ...]
    enable: bool
    what: str = ""


@dataclass(frozen=True)
class VfctrlWrite:
    """Software writes each ``(GuestID, VFCtrl offset, value)`` of ``writes`` in order, with nothing a
    checker looks at in between (a loop over a map's entries is one step)."""

    writes: tuple[tuple[int, int, int], ...]
    what: str = ""


@dataclass(frozen=True)
class VfWrite:
    """A HW-vIOMMU guest writes ``value`` to register ``offset`` of its VF page (its command-buffer tail:
    the doorbell; the page is mapped into the guest, so this is the guest's own store)."""

    guest_id: int
    offset: int
    value: int
    what: str = ""


@dataclass(frozen=True)
class GuestWait:
    """A HW-vIOMMU guest polls its COMPLETION_WAIT store of ``sequence`` at system ``address`` (a word of
    its memory): the vIOMMU carries out its commands meanwhile."""

    guest_id: int
    address: int
    sequence: int
    what: str = ""


STEP_KINDS = (Store, Queue, Wait, AtsControl, VfctrlWrite, VfWrite, GuestWait)
