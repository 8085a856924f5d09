"""Rendering a counterexample: moves in words, commands written to the ring decoded."""

from amdvi.models import software as sw
from amdvi.models.iommu import CpuWrite, ProcessCommand
from amdvi.properties.counterexample import Trace
from amdvi.frontend import trace_format
from amdvi.frontend.trace import describe, render
from amdvi.models.registers import Registers

RING = 0x200000


def _trace(address):
    command = sw.inv_pages(5, 0x4000, 0x2000, pde=False)
    low, high = command & (1 << 64) - 1, command >> 64
    moves = (CpuWrite(address, low), CpuWrite(address + 8, high), ProcessCommand())
    return Trace("t", {0x1000: 0x1}, moves, ("a note",), regs=Registers(cmd_buf_bar=RING | 8 << 56))


def test_writes_to_the_ring_are_decoded_with_addresses_in_full():
    lines = render(_trace(RING))
    assert "[ring: INVALIDATE_IOMMU_PAGES(DomainID=0x5, S=0x1, Address=0x4000)]" in lines[-2], lines
    assert "note: a note" in lines[1]
    assert "IOMMU processes the command" in lines[-1]


def test_the_same_words_elsewhere_are_not_read_as_commands():
    assert not any("ring:" in line for line in render(_trace(0x100200)))


def test_json_names_each_move_and_its_text():
    doc = trace_format.to_json(_trace(RING), None, describe)
    assert [m["kind"] for m in doc["moves"]] == ["CpuWrite", "CpuWrite", "ProcessCommand"]
    assert doc["moves"][0]["text"].startswith("software writes")
    assert doc["moves"][0]["address"] == hex(RING) and doc["memory"] == {"0x1000": "0x1"}
