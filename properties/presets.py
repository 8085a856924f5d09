"""The deliberately broken models, as named presets of choices, with what must catch each.

A property is believed only when it fails on a broken model and holds on the correct one. Each
preset here is one fault switch of :class:`amdvi.spec.choices.Hardware` turned on (or, for the few
``amdvi prove`` properties with a driver half, of the driver model's
:class:`amdvi.models.amd_driver.choices.Driver`), registered once with the ``amdvi prove`` properties
that must refute it and the state machines that must catch it; the tests, the benchmarks and
``amdvi prove --list`` all read this one table. (The driver's other faults are refuted by ``amdvi
check`` on the library's bug sequences.)
"""

from __future__ import annotations

from dataclasses import dataclass

from amdvi.models.amd_driver.choices import Driver
from amdvi.spec.choices import FAULT, Hardware, cli_name

_EVERY_CHANGE = ("v1-entry-invalidation", "v2-entry-invalidation", "gcr3-entry-invalidation", "dte-invalidation")
IOMMU_MACHINE, ATTACH_DETACH_MACHINE = "IommuMachine", "AttachDetachMachine"  # properties.stateful
VIOMMU_MACHINE = "ViommuMachine"  # frontend.viommu_machine: a HW-vIOMMU guest and its VMM
_ONE_GUEST = "the vIOMMU machine has one guest: a command reaching another guest's domains or devices shows nowhere"


@dataclass(frozen=True)
class Preset:
    """A named broken model: its choices, and who must refute it."""

    name: str
    choices: Hardware
    refuted_by: tuple[str, ...]  # ``amdvi prove`` properties (properties.catalog.PROPERTIES)
    caught_by: tuple[str, ...] = ()  # state machines (the names above) that catch it in their default budget
    note: str = ""  # why a checker one might expect is not listed
    driver: Driver = Driver()  # the driver model's choices (a driver fault's preset)

    @property
    def description(self) -> str:
        return "; ".join([*(Hardware.options()[n.replace("-", "_")].doc for n in self.choices.faults()),
                          *(Driver.options()[n.replace("-", "_")].doc for n in self.driver.faults())])


def _preset(fault: str, refuted_by: tuple[str, ...], caught_by: tuple[str, ...] = (), note: str = "") -> Preset:
    attribute = Hardware.lookup(fault)
    assert Hardware.options()[attribute].kind == FAULT, fault
    return Preset(cli_name(attribute), Hardware(**{attribute: True}), refuted_by, caught_by, note)


def _driver_preset(fault: str, refuted_by: tuple[str, ...]) -> Preset:
    attribute = Driver.lookup(fault)
    assert Driver.options()[attribute].kind == FAULT, fault
    return Preset(cli_name(attribute), Hardware(), refuted_by, driver=Driver(**{attribute: True}))


PRESETS: dict[str, Preset] = {p.name: p for p in (
    _preset("guest-table-pointer-untranslated", ("nested-isolation",)),
    _preset("invalidate-pages-ignores-size", (*_EVERY_CHANGE, "viommu-stage2-reaches-every-guest"), (IOMMU_MACHINE,)),
    _preset("devtab-invalidation-ignored", ("dte-invalidation",), (IOMMU_MACHINE, ATTACH_DETACH_MACHINE)),
    _preset("devtab-invalidation-skips-invalid", ("dte-invalidation",), (),
            "the attach-detach machine shows it on a fixed detach, fill, attach sequence "
            "(tests/properties/test_stateful.py) but not reliably by its random exploration"),
    _preset("completion-wait-early", ("completion-wait-ordering", "viommu-guest-wait-ordering"), (IOMMU_MACHINE,)),
    _preset("invalidate-pages-keeps-pde-cache", (*_EVERY_CHANGE, "viommu-stage2-reaches-every-guest"), (IOMMU_MACHINE,)),
    _preset("iotlb-hit-ignores-permissions", ("fresh-slots-serve-fresh",), (),
            "the machine would need a read-only remap, a read filling the IOTLB and then a write, in order"),
    _preset("pde-cache-fills-faulting-skip", ("every-host-depth",), (),
            "the machine's tables are two levels deep, where no level can be skipped"),
    _preset("guest-pde-hit-ignores-pasid", ("fresh-slots-serve-fresh",), (IOMMU_MACHINE,)),
    _preset("viommu-domain-map-shared", ("viommu-command-isolation", "viommu-invalidation-scope",
                                         "viommu-map-write-isolation"), (), _ONE_GUEST),
    _preset("viommu-device-id-untranslated", ("viommu-command-isolation", "viommu-invalidation-scope"), (),
            _ONE_GUEST + "; its commands naming its DeviceID miss only its DTE, which the VMM rewrites and flushes"),
    _preset("viommu-guest-event-log-untranslated", ("viommu-guest-event-isolation",), (VIOMMU_MACHINE,)),
    _driver_preset("parent-flush-misses-hdomids", ("viommu-stage2-reaches-every-guest",)),
    _driver_preset("nested-shares-parent-domain-id", ("viommu-stage2-reaches-every-guest",)),
)}


def preset(name: str) -> Preset:
    """The preset called ``name``, or ValueError naming the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


def caught_by(machine: str) -> tuple[str, ...]:
    """The presets ``machine`` must catch."""
    return tuple(p.name for p in PRESETS.values() if machine in p.caught_by)
