"""Reading a driver's steps back: the commands it queued (decoded with the spec's command Structures)
and the memory images its stores produce one after another. For tests and checkers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from amdvi.models.timeline import Queue, Store
from amdvi.spec.commands import command_structure, invalidation_range
from amdvi.spec.device_table import DTE


@dataclass(frozen=True)
class Command:
    """One queued command: its name, its fields (spec names), and what the step said it models."""

    name: str
    fields: dict[str, int]
    what: str

    def range(self) -> tuple[int, int]:
        """(start, size) of an INVALIDATE_IOMMU_PAGES / INVALIDATE_IOTLB_PAGES."""
        return invalidation_range(self.fields["Address"] << 12, self.fields["S"])


def commands(steps: Iterable[Any]) -> list[Command]:
    out = []
    for step in steps:
        if isinstance(step, Queue):
            for bits in step.commands:
                structure = command_structure(bits)
                assert structure is not None, f"undefined opcode in {bits:#x}"
                out.append(Command(structure.name, structure.decode(bits), step.what))
    return out


def replay(memory: dict[int, int], steps: Iterable[Any]) -> list[dict[int, int]]:
    """The memory image after each Store, starting from ``memory``."""
    image, images = dict(memory), []
    for step in steps:
        if isinstance(step, Store):
            for address, value in step.writes:
                image[address] = value
            images.append(dict(image))
    return images


def dte_at(memory: dict[int, int], address: int) -> int:
    return sum(memory.get(address + 8 * i, 0) << (64 * i) for i in range(4))


def dte_images(memory: dict[int, int], steps: Iterable[Any], address: int) -> list[dict[str, int]]:
    """The DTE at ``address`` (decoded) after each Store that touched it."""
    image, out = dict(memory), []
    for step in steps:
        if isinstance(step, Store):
            for a, value in step.writes:
                image[a] = value
            if any(address <= a < address + 32 for a, _ in step.writes):
                out.append(DTE.decode(dte_at(image, address)))
    return out
