"""Reading structure values as people paste them from kernel logs.

Accepted: one hex number (``0x`` optional, ``_`` allowed between digits), or the structure's
64-bit words, or its 32-bit dwords, separated by spaces, commas or colons, lowest word first,
optionally labelled as Linux labels them (``DTE[0]:``, ``CMD[1]:``, ``event[2]=``).
"""

from __future__ import annotations

import re

from .errors import InputError

_LABEL = re.compile(r"\b[A-Za-z_]+\[\d+\]\s*[:=]")
_SEPARATORS = re.compile(r"[\s,:;]+")
_HEX = re.compile(r"(?:0[xX])?[0-9a-fA-F](?:_?[0-9a-fA-F])*")


def parse_hex_value(token: str) -> int:
    """One hex number, or ``InputError``."""
    t = token.strip()
    if not _HEX.fullmatch(t):
        raise InputError(f"not a hexadecimal number: {t!r}")
    return int(t.replace("_", ""), 16)


def parse_structure_hex(text: str | list[str], width: int, what: str = "value") -> int:
    """The ``width``-bit value written in ``text`` (see the module docstring)."""
    joined = " ".join(text) if isinstance(text, list) else text
    tokens = [t for t in _SEPARATORS.split(_LABEL.sub(" ", joined)) if t]
    if not tokens:
        raise InputError(f"no hexadecimal value given for the {what}")
    values = [parse_hex_value(t) for t in tokens]
    if len(values) == 1:
        (value,) = values
        if value >> width:
            raise InputError(f"{tokens[0]} has {value.bit_length()} bits; a {what} has {width}")
        return value
    for word_bits in (64, 32):
        if len(values) * word_bits == width:
            out = 0
            for i, (tok, v) in enumerate(zip(tokens, values)):
                if v >> word_bits:
                    raise InputError(f"word {i} ({tok}) does not fit in {word_bits} bits")
                out |= v << (word_bits * i)
            return out
    counts = sorted({1, max(width // 64, 1), width // 32})
    raise InputError(
        f"a {what} is {width} bits: give 1 number or {' or '.join(map(str, counts[1:]))} words "
        f"(lowest first), not {len(values)}"
    )
