"""The "firmware" QEMU boots: 64 KiB whose reset vector halts the CPU for good.

No guest code runs: the vCPU executes ``hlt; jmp $-1`` at the reset vector (0xFFFF0, the image's last
16 bytes) and stays halted, so with ``-icount shift=0,sleep=off`` the virtual clock jumps to the next
timer deadline and ``edu``'s DMA timer fires at once (shared/reference/qemu-amd-iommu.md §1).
"""

from __future__ import annotations

import os
import tempfile

IMAGE_BYTES = 64 * 1024
HLT = 0xF4
RESET_VECTOR = IMAGE_BYTES - 16
HALT_LOOP = bytes((HLT, 0xEB, 0xFD))  # hlt; jmp short back to the hlt (rel8 = -3)


def image() -> bytes:
    """The firmware image: hlt everywhere, the halt loop at the reset vector."""
    out = bytearray([HLT]) * IMAGE_BYTES
    out[RESET_VECTOR:RESET_VECTOR + len(HALT_LOOP)] = HALT_LOOP
    return bytes(out)


def write_image(directory: str | None = None) -> str:
    """The image in a new file (in ``directory`` or a temporary one); its path."""
    fd, path = tempfile.mkstemp(prefix="amdvi-hlt-", suffix=".bin", dir=directory)
    with os.fdopen(fd, "wb") as f:
        f.write(image())
    return path
