"""One QEMU process with the amd-iommu and ``edu`` DMA engines, driven over qtest with no guest OS.

How (shared/reference/qemu-amd-iommu.md §1): TCG with the halting firmware (``firmware``) and
``-icount shift=0,sleep=off``, the PIT and HPET off (else the clock spins), ``amd-iommu`` before the
``edu`` devices (a device takes its DMA address space when it is realised), ``edu`` with an all-ones
``dma_mask`` (else it clamps addresses to 28 bits). No firmware assigns BARs: the harness finds the
devices over configuration cycles (ports 0xCF8/0xCFC), gives each ``edu`` its BAR and turns on memory
decoding and bus mastering. The IOMMU's MMIO is fixed by QEMU at 0xFED80000 (not relocatable).

A machine serves many cases: :meth:`Machine.reset` empties the IOTLB (INVALIDATE_IOMMU_ALL), turns the
IOMMU off, zeroes every word the last case wrote and puts the ring pointers back to 0.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

from amdvi.models.software import inv_all, registers
from amdvi.spec.mmio import OFFSETS

from . import firmware
from .layout import (
    ACCESS_BYTES, EDU_BAR0, EDU_BAR_STRIDE, EDU_BUFFER, EDU_SLOTS, LAYOUT, RAM_BYTES, STAGING, device_id,
)
from .qtest import QemuError, QemuHang, Qtest

BINARY = "qemu-system-x86_64"
IOMMU_MMIO = 0xFED8_0000  # QEMU's AMDVI_BASE_ADDR
AMD_VENDOR, IOMMU_CLASS = 0x1022, 0x0806
EDU_VENDOR, EDU_DEVICE = 0x1234, 0x11E8
EDU_ID_VALUE = 0x010000ED  # edu's identification register (offset 0)
# edu's DMA registers (QEMU hw/misc/edu.c): source, destination, count, command (bit 0 run, bit 1 to RAM)
EDU_SRC, EDU_DST, EDU_CNT, EDU_CMD = 0x80, 0x88, 0x90, 0x98
EDU_RUN, EDU_TO_RAM = 1, 2
QUICK_POLLS = 16  # polls before the harness starts yielding the CPU to QEMU
PCI_COMMAND_MEMORY_BUS_MASTER = 0x0006


def find_binary(given: str | None = None) -> str | None:
    """The QEMU binary: ``given`` (a path or a name on PATH), else ``qemu-system-x86_64`` on PATH."""
    if given:
        return given if os.path.sep in given and os.access(given, os.X_OK) else shutil.which(given)
    return shutil.which(BINARY)


def version(binary: str) -> str:
    """QEMU's version, e.g. ``7.2.22`` (``--version``'s first line)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    found = re.search(r"version (\d+\.\d+(?:\.\d+)?)", out)
    if not found:
        raise QemuError(f"{binary} --version printed no version: {out.strip()[:80]!r}")
    return found.group(1)


def command_line(binary: str, bios: str, devices: int, *, trace: bool = False) -> list[str]:
    argv = [binary, "-machine", "q35,pit=off,hpet=off", "-accel", "tcg", "-icount", "shift=0,sleep=off",
            "-bios", bios, "-qtest", "stdio", "-display", "none", "-nodefaults", "-m", f"{RAM_BYTES >> 20}M",
            "-device", "amd-iommu"]  # before the edu devices: they take their DMA address space at realize
    argv += ["-trace", "amdvi_*"] if trace else ["-qtest-log", "none"]
    for slot in EDU_SLOTS[:devices]:
        argv += ["-device", f"edu,addr={slot:#x},dma_mask={(1 << 64) - 1:#x}"]
    return argv


def config_address(bdf: int, offset: int) -> int:
    return 0x8000_0000 | (bdf << 8) | (offset & 0xFC)


@dataclass
class Machine:
    """A started QEMU with ``devices`` edu devices (see the module docstring)."""

    binary: str
    devices: int = len(EDU_SLOTS)
    timeout: float = 2.0
    trace_path: str | None = None

    def __post_init__(self) -> None:
        self._bios = firmware.write_image()
        try:
            self.qt = Qtest(command_line(self.binary, self._bios, self.devices, trace=self.trace_path is not None),
                            timeout=max(self.timeout, 10.0), stderr_path=self.trace_path)
            self._discover()
        except BaseException:
            self.close()
            raise
        self.qt.timeout = self.timeout
        self._dirty: set[int] = set()  # 8-byte words a case wrote outside the zeroed regions
        self.reset()

    # -- set-up ------------------------------------------------------------------------------------

    def _config_read(self, bdf: int, offset: int) -> int:
        q = self.qt
        return int(q.batch([q.outl(0xCF8, config_address(bdf, offset)), q.inl(0xCFC)])[1], 16)

    def _discover(self) -> None:
        """Find the IOMMU and the edu devices where the command line put them; assign the edu BARs."""
        q = self.qt
        found = {}
        for slot in range(32):
            vendor_device = self._config_read(slot << 3, 0)
            if vendor_device & 0xFFFF != 0xFFFF:
                found[slot << 3] = (vendor_device & 0xFFFF, vendor_device >> 16, self._config_read(slot << 3, 8) >> 16)
        iommu = [bdf for bdf, (v, _, c) in found.items() if (v, c) == (AMD_VENDOR, IOMMU_CLASS)]
        if not iommu:
            raise QemuError("no AMD IOMMU found on bus 0 (does this QEMU have -device amd-iommu?)")
        self.iommu_device_id = iommu[0]
        for index in range(self.devices):
            bdf = device_id(index)
            if found.get(bdf, (0, 0, 0))[:2] != (EDU_VENDOR, EDU_DEVICE):
                raise QemuError(f"edu device {index} is not at {bdf >> 3:02x}.0")
            q.batch([q.outl(0xCF8, config_address(bdf, 0x10)), q.outl(0xCFC, self.bar(index)),
                     q.outl(0xCF8, config_address(bdf, 0x04)), q.outw(0xCFC, PCI_COMMAND_MEMORY_BUS_MASTER)])
            if int(q.command(f"readl {self.bar(index):#x}"), 16) != EDU_ID_VALUE:  # 32-bit register
                raise QemuError(f"edu device {index} does not answer at its BAR")

    @staticmethod
    def bar(index: int) -> int:
        return EDU_BAR0 + index * EDU_BAR_STRIDE

    # -- registers and memory ----------------------------------------------------------------------

    @staticmethod
    def register(name: str) -> int:
        return IOMMU_MMIO + OFFSETS[name]

    def read_registers(self, names: Sequence[str]) -> dict[str, int]:
        q = self.qt
        return {n: int(v, 16) for n, v in zip(names, q.batch([q.readq(self.register(n)) for n in names]))}

    def write_register(self, name: str, value: int) -> None:
        self.qt.command(self.qt.writeq(self.register(name), value))

    def store_words(self, words: Iterable[tuple[int, int]]) -> None:
        """CPU stores of 64-bit words, in order."""
        q = self.qt
        lines = []
        for address, value in words:
            self._dirty.add(address)
            lines.append(q.writeq(address, value))
        q.batch(lines)

    def read_words(self, addresses: Sequence[int]) -> list[int]:
        q = self.qt
        return [int(v, 16) for v in q.batch([q.readq(a) for a in addresses])]

    def read_bytes(self, address: int, size: int) -> bytes:
        return self.qt.bytes_of(self.qt.command(self.qt.read(address, size)))

    # -- the IOMMU -----------------------------------------------------------------------------------

    def enable(self, ring_start: int = 0) -> None:
        """Program the registers as the model's software does (``models.software.registers``) and turn
        the IOMMU on: device table, command buffer and event log (head = tail = ``ring_start``)."""
        regs = registers(LAYOUT).replace(cmd_head=ring_start, cmd_tail=ring_start)
        q = self.qt
        q.batch([q.writeq(self.register("CONTROL"), 0),
                 q.writeq(self.register("DEV_TAB_BAR"), regs.dev_tab_bar),
                 q.writeq(self.register("CMD_BUF_BAR"), regs.cmd_buf_bar),
                 q.writeq(self.register("EVT_LOG_BAR"), regs.evt_log_bar),
                 q.writeq(self.register("CMD_BUF_HEAD"), regs.cmd_head),
                 q.writeq(self.register("CMD_BUF_TAIL"), regs.cmd_tail),
                 q.writeq(self.register("EVT_LOG_HEAD"), regs.evt_head),
                 q.writeq(self.register("EVT_LOG_TAIL"), regs.evt_tail),
                 q.writeq(self.register("CONTROL"), regs.control)])

    def disable(self) -> None:
        self.write_register("CONTROL", 0)

    def reset(self) -> None:
        """Back to a clean machine: IOTLB empty, IOMMU off, the last case's words zeroed."""
        q = self.qt
        self.enable()
        command = inv_all()
        q.batch([q.writeq(LAYOUT.cmd_ring, command & ((1 << 64) - 1)), q.writeq(LAYOUT.cmd_ring + 8, command >> 64),
                 q.writeq(self.register("CMD_BUF_TAIL"), 16)])
        self.disable()
        zeroed = [(LAYOUT.dev_tab, 4096 * LAYOUT.dev_tab_pages), (LAYOUT.cmd_ring, LAYOUT.ring_bytes),
                  (LAYOUT.event_log, 16 << LAYOUT.event_len), (LAYOUT.semaphore, 4096),
                  (STAGING, 4096 * self.devices)]
        lines = [q.memset(a, n) for a, n in zeroed]
        lines += [q.writeq(a, 0) for a in sorted(self._dirty) if not any(b <= a < b + n for b, n in zeroed)]
        q.batch(lines)
        self._dirty.clear()
        regs = registers(LAYOUT)
        q.batch([q.writeq(self.register(n), v) for n, v in (
            ("CMD_BUF_HEAD", regs.cmd_head), ("CMD_BUF_TAIL", regs.cmd_tail),
            ("EVT_LOG_HEAD", regs.evt_head), ("EVT_LOG_TAIL", regs.evt_tail))])

    # -- edu DMA -----------------------------------------------------------------------------------

    def start_dma(self, index: int, source: int, destination: int, count: int, to_ram: bool) -> list[str]:
        """The register writes that start one edu DMA (``to_ram``: buffer -> RAM, else RAM -> buffer)."""
        q, bar = self.qt, self.bar(index)
        return [q.writeq(bar + EDU_SRC, source), q.writeq(bar + EDU_DST, destination), q.writeq(bar + EDU_CNT, count),
                q.writeq(bar + EDU_CMD, EDU_RUN | (EDU_TO_RAM if to_ram else 0))]

    def dma(self, index: int, source: int, destination: int, count: int, to_ram: bool) -> None:
        """One edu DMA, waited for (QemuHang when it never completes: the watchdog)."""
        q, cmd = self.qt, self.bar(index) + EDU_CMD
        replies = q.batch(self.start_dma(index, source, destination, count, to_ram) + [q.readq(cmd)])
        status = int(replies[-1], 16)
        deadline = time.monotonic() + self.timeout
        polls = 0
        while status & EDU_RUN:
            if time.monotonic() > deadline:
                raise QemuHang(f"edu device {index}: the DMA did not complete within {self.timeout:g} s")
            polls += 1
            if polls > QUICK_POLLS:  # the virtual clock jumps when QEMU's main loop is idle: let it
                time.sleep(0.0002)
            status = int(q.command(q.readq(cmd)), 16)

    def device_read(self, index: int, iova: int, slot: int) -> None:
        """Device ``index`` reads the word at ``iova`` into its buffer word ``slot``."""
        self.dma(index, iova, EDU_BUFFER + ACCESS_BYTES * slot, ACCESS_BYTES, to_ram=False)

    def device_write(self, index: int, iova: int, slot: int) -> None:
        """Device ``index`` writes its buffer word ``slot`` to ``iova``."""
        self.dma(index, EDU_BUFFER + ACCESS_BYTES * slot, iova, ACCESS_BYTES, to_ram=True)

    def load_buffer(self, index: int, words: Sequence[int]) -> None:
        """Fill device ``index``'s buffer from RAM (call with the IOMMU off: the DMA is untranslated)."""
        staging = STAGING + 4096 * index
        self.qt.command(self.qt.write(staging, b"".join(w.to_bytes(8, "little") for w in words)))
        self.dma(index, staging, EDU_BUFFER, ACCESS_BYTES * len(words), to_ram=False)

    def unload_buffer(self, index: int, count: int) -> list[int]:
        """The first ``count`` words of device ``index``'s buffer (IOMMU off: an untranslated DMA to RAM)."""
        staging = STAGING + 4096 * index
        self.dma(index, EDU_BUFFER, staging, ACCESS_BYTES * count, to_ram=True)
        data = self.read_bytes(staging, ACCESS_BYTES * count)
        return [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)]

    def close(self) -> None:
        qt = getattr(self, "qt", None)
        if qt is not None:
            qt.close()
        try:
            os.unlink(self._bios)
        except OSError:
            pass

