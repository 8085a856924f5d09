"""A client of QEMU's qtest text protocol (QEMU ``softmmu/qtest.c``) over a pipe, with a watchdog.

Every reply is awaited with a deadline (``select``): a QEMU that stops answering (the guest-triggerable
hangs of QEMU 7.2's amd-iommu hold the main loop) raises :class:`QemuHang` instead of blocking the run.
Commands may be sent in a batch (one write, the replies read in order), which is what makes thousands
of cases a minute possible.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from typing import Sequence


class QemuError(RuntimeError):
    """QEMU refused a command, exited, or stopped answering."""


class QemuHang(QemuError):
    """No reply within the watchdog's deadline: QEMU's main loop is stuck."""


class QemuExited(QemuError):
    """QEMU's standard output closed."""


class Qtest:
    """One QEMU process under qtest (``-qtest stdio``)."""

    def __init__(self, argv: Sequence[str], *, timeout: float = 2.0, stderr_path: str | None = None) -> None:
        self.timeout = timeout
        self._err = open(stderr_path or os.devnull, "wb")
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                                     bufsize=0, preexec_fn=die_with_parent)
        self._out = self.proc.stdout.fileno()
        self._buffer = b""
        self.commands = 0

    # -- the protocol ------------------------------------------------------------------------------

    def batch(self, lines: Sequence[str]) -> list[str]:
        """Send ``lines`` at once; each reply's text after ``OK`` (QemuError on FAIL, hang or exit)."""
        if not lines:
            return []
        self.commands += len(lines)
        try:
            os.write(self.proc.stdin.fileno(), ("\n".join(lines) + "\n").encode())
        except BrokenPipeError:
            raise QemuExited("QEMU exited (its standard input is closed)") from None
        return [self._reply(line) for line in lines]

    def command(self, line: str) -> str:
        return self.batch([line])[0]

    def _reply(self, line: str) -> str:
        deadline = time.monotonic() + self.timeout
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                text = self._buffer[:newline].decode(errors="replace")
                self._buffer = self._buffer[newline + 1:]
                if text.startswith("IRQ"):  # asynchronous, only with irq_intercept
                    continue
                if not text.startswith("OK"):
                    raise QemuError(f"{line!r} -> {text.strip()!r}")
                return text[2:].strip()
            remaining = deadline - time.monotonic()
            ready = select.select([self._out], [], [], max(remaining, 0))[0] if remaining > 0 else []
            if not ready:
                raise QemuHang(f"no reply to {line!r} within {self.timeout:g} s")
            chunk = os.read(self._out, 1 << 16)
            if not chunk:
                raise QemuExited(f"QEMU exited while {line!r} waited for its reply")
            self._buffer += chunk

    # -- the commands used ----------------------------------------------------------------------------

    @staticmethod
    def writeq(address: int, value: int) -> str:
        return f"writeq {address:#x} {value:#x}"

    @staticmethod
    def readq(address: int) -> str:
        return f"readq {address:#x}"

    @staticmethod
    def outl(port: int, value: int) -> str:
        return f"outl {port:#x} {value:#x}"

    @staticmethod
    def outw(port: int, value: int) -> str:
        return f"outw {port:#x} {value:#x}"

    @staticmethod
    def inl(port: int) -> str:
        return f"inl {port:#x}"

    @staticmethod
    def memset(address: int, size: int, byte: int = 0) -> str:
        return f"memset {address:#x} {size} {byte:#x}"

    @staticmethod
    def write(address: int, data: bytes) -> str:
        return f"write {address:#x} {len(data)} 0x{data.hex()}"

    @staticmethod
    def read(address: int, size: int) -> str:
        return f"read {address:#x} {size}"

    @staticmethod
    def bytes_of(reply: str) -> bytes:
        """The data of a ``read`` reply (``0x...``)."""
        return bytes.fromhex(reply[2:] if reply.startswith("0x") else reply)

    # -- the process ----------------------------------------------------------------------------------

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """Stop QEMU (it does not exit when qtest's input closes in this set-up)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._err.close()


def die_with_parent() -> None:
    """SIGKILL this process when the thread that started it dies (Linux PR_SET_PDEATHSIG). Called in the
    QEMU child before exec, since QEMU does not exit when qtest's input closes (a campaign worker killed by
    its pool would otherwise leave its QEMU running), and in each campaign worker (an orphaned worker would
    go on with its chunk, and its QEMU with it)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass  # not Linux: close() still stops it on every normal path
