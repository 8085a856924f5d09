"""Reading the files a user names and writing the files the tool makes.

A path that cannot be read is the user's mistake (:class:`InputError`, exit 2), not a traceback; every
file the tool writes goes through :func:`write_atomically`, so a reader never sees half of one.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from amdvi.frontend.errors import InputError


def read_text(source: str) -> str:
    """The text of file ``source``, or of standard input for ``-``; bytes that are not UTF-8 are replaced."""
    if source == "-":
        return sys.stdin.buffer.read().decode("utf-8", errors="replace")
    try:
        return Path(source).read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise InputError(f"cannot read {source}: {e.strerror or e}") from None


def _mode_for(path: Path) -> int:
    """The mode the file keeps if it exists, else what a plain ``open`` would give under the umask."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_atomically(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` so a reader sees the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, _mode_for(path))  # mkstemp's file is private; the result gets a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
