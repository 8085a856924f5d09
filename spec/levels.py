"""Table geometry shared by the host (v1) tables, the guest (v2) tables and the GCR3 table.

Each level is one 4 KiB table of 512 8-byte entries, so a level-1 entry maps a 4 KiB page and each
level up maps 512 times more. Every walk, cache and table builder derives its shifts and index bits
from these functions, so the formula is written only here (48882 §2.2.3, §2.2.6).
"""

from __future__ import annotations

from typing import Any

from .bitvec import ADDRESS_WIDTH
from .walk_types import by_level

PAGE_SHIFT = 12  # log2 of a 4 KiB page, and of one table
ENTRY_SHIFT = 3  # log2 of an 8-byte entry
INDEX_BITS = PAGE_SHIFT - ENTRY_SHIFT  # 9: log2 of the 512 entries of a table
PASID_WIDTH = 20  # the GCR3 table is indexed by the PASID's bits, 9 a level


def level_shift(level: int) -> int:
    """log2 of the address range one entry of a level-``level`` table maps (12 at level 1: 4 KiB;
    21: 2 MiB; 30: 1 GiB; ...). ``level_shift(level + 1)`` is the range the whole table covers."""
    return PAGE_SHIFT + INDEX_BITS * (level - 1)


def index_bits(level: int) -> tuple[int, int]:
    """The (hi, lo) address bits that index a level-``level`` table (level 6 has only bits 63:57)."""
    lo = level_shift(level)
    return min(lo + INDEX_BITS - 1, ADDRESS_WIDTH - 1), lo


def gcr3_index_bits(level: int) -> tuple[int, int]:
    """The (hi, lo) PASID bits that index a level-``level`` GCR3 table (levels count down to 0, which
    PASID[8:0] indexes; level 2 has only PASID[19:18])."""
    lo = INDEX_BITS * level
    return min(lo + INDEX_BITS - 1, PASID_WIDTH - 1), lo


def entry_address(b: Any, table: Any, address: Any, level: Any, levels: range) -> Any:
    """The 64-bit address of the entry a level-``level`` table at ``table`` holds for ``address`` (the
    level may be symbolic: one of ``levels``); what every walk and table builder reads or writes."""
    index = by_level(b, level, levels, lambda n: b.zext(b.extract(address, *index_bits(n)), 64), 64)
    return b.add(table, b.shl(index, ENTRY_SHIFT, 64), 64)
