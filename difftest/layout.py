"""Where a case's structures live in the guest-physical memory both sides share.

The IOMMU's own structures follow :class:`amdvi.models.software.Layout` (the registers both sides
program are :func:`amdvi.models.software.registers` of it); the rest is the harness's: the pool the
generated page tables come from, the data frames leaves point to, and the ``edu`` devices' scratch
words. Every data word a DMA may reach holds :func:`pattern` of its own address, so a value read through
the IOMMU names the system address it came from (48882 leaves the page contents to software).
"""

from __future__ import annotations

from amdvi.models.software import Layout

LAYOUT = Layout(dev_tab=0x0010_0000, dev_tab_pages=1, cmd_ring=0x0011_0000, cmd_len=8,
                event_log=0x0012_0000, event_len=8, semaphore=0x0013_0000)
SEMAPHORE_SLOTS = 256  # COMPLETION_WAIT store words, 8 bytes apart, in the semaphore page
STAGING = 0x0014_0000  # per device, one page: the tokens its DMA writes carry, and where its reads land
TABLE_POOL = 0x0020_0000  # generated page tables, 4 KiB each
TABLE_POOL_PAGES = 64
DATA = 0x0100_0000  # 4 KiB data frames
DATA_FRAMES = 64
LARGE_DATA = 0x0200_0000  # 2 MiB-aligned data (level-2 leaves and Next Level 7 sizes up to 1 GiB use higher ones)
GIANT_DATA = 0x4000_0000  # a 1 GiB-aligned frame (level-3 leaves)
RAM_BYTES = 0x8000_0000  # QEMU's -m: 2 GiB, all below 4 GiB on q35 (touched pages only are allocated)

EDU_SLOTS = (3, 4, 5, 6)  # PCI device numbers of the edu devices on bus 0 (function 0)
EDU_BAR0 = 0xC000_0000  # + index * EDU_BAR_STRIDE: edu's 1 MiB register BAR (no firmware assigns it)
EDU_BAR_STRIDE = 0x10_0000
EDU_BUFFER = 0x4_0000  # edu's DMA buffer as its DMA engine addresses it (4 KiB)
EDU_BUFFER_BYTES = 0x1000
ACCESS_BYTES = 8  # every DMA moves one 64-bit word

PATTERN_TAG = 0xA5 << 56
TOKEN_TAG = 0x7E << 56
EMPTY = 0xEEEE_EEEE_EEEE_EEEE  # a staging word no DMA has filled


def device_id(index: int) -> int:
    """The DeviceID (bus 0, function 0) of ``edu`` device ``index``."""
    return EDU_SLOTS[index] << 3


def pattern(address: int) -> int:
    """The value a data word holds: its own system address, tagged (never 0, never a token)."""
    return PATTERN_TAG | (address & ((1 << 52) - 1))


def pattern_address(value: int) -> int | None:
    """The system address whose :func:`pattern` ``value`` is, else None."""
    return value & ((1 << 52) - 1) if value >> 52 == PATTERN_TAG >> 52 else None


def token(step: int) -> int:
    """The value DMA write ``step`` stores: unique in a case, distinct from every pattern."""
    return TOKEN_TAG | step


def semaphore_slot(index: int) -> int:
    return LAYOUT.semaphore + 8 * (index % SEMAPHORE_SLOTS)


def staging_word(device: int, slot: int) -> int:
    """The edu buffer offset of scratch word ``slot`` (tokens and read results share the buffer)."""
    return EDU_BUFFER + 8 * slot


def in_ram(address: int) -> bool:
    return 0 <= address < RAM_BYTES
