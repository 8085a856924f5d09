"""Named choices of a model layer: the readings where public sources disagree, and fault switches.

A layer's choices are one frozen dataclass (:class:`Hardware` here; the driver and iommufd layers
declare theirs the same way). Each field is declared with :func:`reading` (two or more readings of
an unconfirmed rule, the best-supported one the default, each naming its sources) or :func:`fault`
(a deliberately broken behaviour, off by default, that some property must refute). The semantics
read the fields as static Python values, so one choice object selects one model for both backends.

Everything else derives from the declaration: validation of values, ``--choice NAME=VALUE`` parsing
(:meth:`Choices.assign`), the listing ``amdvi prove --list`` prints, and the trace field that records
under which choices a counterexample was found. An unknown name or value is a ValueError with one
line naming what is known.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Mapping, TypeVar

READING, FAULT = "reading", "fault"
_TRUE, _FALSE = ("on", "true", "yes", "1"), ("off", "false", "no", "0")


@dataclass(frozen=True)
class Option:
    """How one choice is declared: its kind, its values with their meaning, section and sources."""

    kind: str  # READING or FAULT
    values: Mapping[Any, str]  # value -> what the model does under it (and who reads it so)
    section: str = ""
    doc: str = ""


def reading(default: str, values: Mapping[str, str], *, section: str, doc: str) -> Any:
    """A field holding one of several readings of an unconfirmed rule; ``default`` is the best supported."""
    if default not in values:
        raise ValueError(f"default {default!r} is not one of {', '.join(values)}")
    return field(default=default, metadata={"option": Option(READING, dict(values), section, doc)})


def fault(doc: str, *, section: str = "") -> Any:
    """A fault switch: ``True`` makes the model deliberately wrong in the way ``doc`` says."""
    return field(default=False, metadata={"option": Option(FAULT, {False: "correct", True: doc}, section, doc)})


def cli_name(attribute: str) -> str:
    return attribute.replace("_", "-")


C = TypeVar("C", bound="Choices")


@dataclass(frozen=True)
class Choices:
    """Base of a layer's choices: validation and parsing derived from the field declarations."""

    layer: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for name, option in self.options().items():
            value = getattr(self, name)
            if value not in option.values or isinstance(value, bool) != isinstance(next(iter(option.values)), bool):
                raise ValueError(f"{self.layer} choice {cli_name(name)}: {value!r} is not one of "
                                 f"{', '.join(map(_show, option.values))}")

    @classmethod
    def options(cls) -> dict[str, Option]:
        return {f.name: f.metadata["option"] for f in dataclasses.fields(cls) if "option" in f.metadata}

    @classmethod
    def lookup(cls, name: str) -> str:
        """The attribute a (command-line or Python) choice name stands for, or ValueError."""
        attribute = name.strip().replace("-", "_")
        if attribute not in cls.options():
            raise ValueError(f"unknown {cls.layer} choice {name!r}; known: "
                             f"{', '.join(cli_name(n) for n in cls.options())}")
        return attribute

    def assign(self: C, assignments: Iterable[str]) -> C:
        """A copy with ``NAME=VALUE`` assignments applied (faults take on/off); ValueError on a bad one."""
        changes: dict[str, Any] = {}
        for text in assignments:
            name, sep, raw = text.partition("=")
            if not sep:
                raise ValueError(f"choice {text!r}: write NAME=VALUE")
            attribute = self.lookup(name)
            changes[attribute] = _parse(self.options()[attribute], raw.strip(), name.strip())
        return dataclasses.replace(self, **changes)

    def changed(self) -> dict[str, Any]:
        """The choices that differ from the defaults (command-line names -> values)."""
        default = type(self)()
        return {cli_name(n): getattr(self, n) for n in self.options() if getattr(self, n) != getattr(default, n)}

    def faults(self) -> tuple[str, ...]:
        """The fault switches that are on."""
        return tuple(cli_name(n) for n, o in self.options().items() if o.kind == FAULT and getattr(self, n))

    def as_assignments(self) -> list[str]:
        """``NAME=VALUE`` for every choice that differs from the default (what :meth:`assign` reads)."""
        return [f"{n}={_show(v)}" for n, v in self.changed().items()]

    def label(self) -> str:
        """One line: what differs from the defaults, or 'the specification's defaults'."""
        return ", ".join(self.as_assignments()) or "defaults"


def _show(value: Any) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


def _parse(option: Option, raw: str, name: str) -> Any:
    if option.kind == FAULT:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ValueError(f"choice {name}: {raw!r} is not on or off")
    if raw not in option.values:
        raise ValueError(f"choice {name}: {raw!r} is not one of {', '.join(option.values)}")
    return raw


@dataclass(frozen=True)
class Hardware(Choices):
    """The IOMMU hardware's choices: readings of rules the public sources leave open, and faults."""

    layer: ClassVar[str] = "hardware"

    # -- readings --------------------------------------------------------------------------------
    illegal_command: str = reading("stop", {
        "stop": "ILLEGAL_COMMAND_ERROR is logged, Status.CmdBufRun is cleared and the head stays on the bad "
                "command (VirtualBox; 48882 §2.4 as summarised in shared/reference)",
        "continue": "ILLEGAL_COMMAND_ERROR is logged and processing goes on with the next command (QEMU)",
    }, section="§2.4, §3.4.13", doc="what the command processor does after an illegal command")
    device_iotlb_gn0: str = reading("every-pasid", {
        "every-pasid": "an INVALIDATE_IOTLB_PAGES with GN = 0 clears the device's entries of every PASID "
                       "(the PCIe ATS reading of an invalidation without a PASID prefix)",
        "untagged-only": "GN = 0 clears only the device's entries for requests without a PASID",
    }, section="§2.4.4", doc="the scope of a GN = 0 device-IOTLB invalidation")
    not_present_cache: str = reading("never", {
        "never": "no cache keeps a translation that faulted: only present entries are cached",
        "iotlb": "the IOTLB may keep a v1 page that faulted not present (CAP NpCache = 1): software must "
                 "invalidate after making an entry present (Linux's domain_flush_np_cache)",
    }, section="§3.2.1 (Capability Header NpCache)", doc="whether the IOMMU may cache non-present entries")
    event_overflow: str = reading("always", {
        "always": "a full event log sets Status.EventOverflow (48882's description; QEMU before 2023)",
        "with-interrupt": "a full event log sets EventOverflow only when Control.EventIntEn = 1 (recent QEMU)",
    }, section="§2.5, §3.4.13", doc="when a full event log sets EventOverflow")

    invalid_dte: str = reading("untranslated", {
        "untranslated": "a DTE with V = 0 is not used: the device's requests pass untranslated (QEMU's "
                        "AMDVI_DEV_VALID handling; shared/reference/device-table-entry.md; Linux sets V = 1, TV = 1 "
                        "in every DTE at boot, which only matters under this reading)",
        "blocked": "a request through a DTE with V = 0 is aborted, nothing logged (a reading no source quoted in "
                   "shared/reference states; kept to check whether a finding depends on the pass-through reading)",
    }, section="§2.2.2.1 (DTE.V)", doc="what the IOMMU does with a request whose DTE has V = 0")
    atc_on_ats_disable: str = reading("discarded", {
        "discarded": "a device whose ATS Enable is cleared holds no translation afterwards: the function 'is "
                     "enabled to cache translations' only while Enable is set (PCIe ATS Control register, as "
                     "vendors' register manuals quote it); Linux's detach disables ATS and then flushes the "
                     "domain without a device-IOTLB invalidation, which is safe only under this reading",
        "kept": "the device's ATC keeps what it cached while ATS was disabled and uses it again once ATS is "
                "re-enabled (no source quoted in shared/reference says the ATC is emptied; PCIe leaves the "
                "race to software): stale entries survive a detach / re-attach until the attach's flush",
    }, section="§2.2.2.1 (DTE.I), PCIe ATS Control", doc="what a device's ATC keeps when software clears "
       "its ATS Enable bit")

    viommu_refused_command: str = reading("stop", {
        "stop": "a guest command the vIOMMU does not carry out (an unmapped ID, a command guests may not issue, a "
                "reserved bit) stops the guest's command buffer there (CmdBufEn cleared, the head on it), as the "
                "host's processor does with an illegal command",
        "skip": "the vIOMMU skips the refused command and goes on with the next",
    }, section="§vIOMMU", doc="what the HW-vIOMMU does with a guest command it does not carry out (no public "
       "source says; the event the guest sees: viommu-refused-command-event)")

    viommu_devid_zero: str = reading("unmapped", {
        "unmapped": "a DeviceID map entry naming host DeviceID 0 maps nothing: AMD's drivers clear an entry by "
                    "writing host DeviceID 0 with V still set, which must then stop the guest from naming a device",
        "device-0": "host DeviceID 0 is a device like any other: a cleared guest DeviceID reaches device 00:00.0",
    }, section="§vIOMMU", doc="whether a DeviceID map entry with host DeviceID 0 maps anything")

    viommu_command_buffer: str = reading("guest-physical", {
        "guest-physical": "the vIOMMU fetches a guest's commands at the guest physical base in its GUEST_CMD_CONTROL, "
                          "through the DTE of its translate DeviceID (AMD's later HW-queue design, "
                          "viommu-amdese-facts.md §7.5)",
        "private": "the vIOMMU fetches a guest's commands from its slot of the private address space, GUEST_COMMAND_BUFFER "
                   "+ GuestID x 512 KiB, where the host maps the guest's ring pages (the June-2023 RFC's "
                   "VIOMMU_CMDBUF_UPDATE, viommu.md §3 [RFC-19]; the Base field is not used)",
    }, section="§vIOMMU", doc="where the HW-vIOMMU reads a guest's command buffer (the RFC's guests need private)")

    viommu_refused_command_event: str = reading("guest-log", {
        "guest-log": "a guest command the vIOMMU refuses is reported in the guest's own event log as "
                     "ILLEGAL_COMMAND_ERROR with the command's guest physical address, as the host's processor "
                     "reports an illegal command in its log (§2.4; AMD's later code says an unmapped guest "
                     "DomainID makes the hardware 'generate error in the event log', viommu-amdese-facts.md §6, "
                     "without naming the event or the log)",
        "none": "a refused guest command is reported nowhere (the model before the guest event log)",
    }, section="§vIOMMU, §2.4", doc="whether and how the HW-vIOMMU reports a refused guest command to the guest")

    viommu_insert_guest_event: str = reading("host-log-head", {
        "host-log-head": "INSERT_GUEST_EVENT appends the record at the head of the host's event log (the oldest one "
                         "host software has not consumed) to the guest's event log; with the host's log empty "
                         "nothing is inserted (the command has only a GuestID, FreeBSD's layout, so the record "
                         "must come from a place the IOMMU already knows; no source says which)",
        "none": "INSERT_GUEST_EVENT is accepted and changes nothing (what it copies is not public)",
    }, section="§2.4.9, §vIOMMU", doc="what INSERT_GUEST_EVENT puts into the guest's event log")

    viommu_guest_event_device_id: str = reading("dte-guest-device", {
        "dte-guest-device": "an inserted event that names a device (DeviceID at Q0[15:0]) carries the guest DeviceID "
                            "its host DTE records (GDeviceID, DTE bits 223:208), and is inserted only when that DTE "
                            "has vImuEn = 1 and names the guest (GuestID, bits 239:224): the DTE fields AMD's code "
                            "writes for a vIOMMU device are the only host-to-guest DeviceID map in the sources "
                            "(viommu-amdese-facts.md §9.1)",
        "unchanged": "an inserted event is copied unchanged: the guest sees the host DeviceID",
    }, section="§vIOMMU, §2.2.2.1", doc="which DeviceID an event inserted into a guest's log carries")

    # -- fault switches (deliberately broken behaviour) --------------------------------------------
    guest_table_pointer_untranslated: bool = fault(
        "nested walk: the table address in a guest page-table entry is used as a system address instead "
        "of being translated through the host (v1) table", section="§2.2.6")
    invalidate_pages_ignores_size: bool = fault(
        "INVALIDATE_IOMMU_PAGES ignores the S bit: a range invalidation clears only the one 4 KiB page at "
        "its address", section="§2.4.3")
    devtab_invalidation_ignored: bool = fault(
        "INVALIDATE_DEVTAB_ENTRY does not clear the cached device table entry", section="§2.4.2")
    devtab_invalidation_skips_invalid: bool = fault(
        "INVALIDATE_DEVTAB_ENTRY clears a cached device table entry only when its V = 1: a cached V = 0 "
        "entry survives an attach, and the device keeps DMA-ing untranslated", section="§2.4.2")
    completion_wait_early: bool = fault(
        "COMPLETION_WAIT completes (stores, interrupts) while earlier invalidations are still in flight",
        section="§2.4.1")
    invalidate_pages_keeps_pde_cache: bool = fault(
        "INVALIDATE_IOMMU_PAGES with PDE = 1 leaves cached page-directory (host and guest) and GCR3 "
        "entries in place", section="§2.4.3")
    pde_cache_fills_faulting_skip: bool = fault(
        "a host page-directory entry that skips levels is cached from a walk that faults on it (the "
        "request's skipped-level address bits are not zero), so the cached entry serves requests a walk "
        "faults on", section="§2.2.3")
    guest_pde_hit_ignores_pasid: bool = fault(
        "a cached guest page-directory entry is used for a request of any PASID of its DomainID, so one "
        "process's guest table serves another's", section="§2.2")
    iotlb_hit_ignores_permissions: bool = fault(
        "an IOTLB hit does not check the access against the cached permissions: a write is served from "
        "a read-only translation", section="§2.2")
    viommu_domain_map_shared: bool = fault(
        "HW-vIOMMU: the DomainID map is one table shared by every guest (the GuestID is not part of the index, for "
        "the hypervisor's map writes and the guest commands' look-ups alike), so one guest's invalidations reach the "
        "domains another guest's IDs map to",
        section="§vIOMMU")
    viommu_device_id_untranslated: bool = fault(
        "HW-vIOMMU: a guest command's DeviceID is used as a host DeviceID instead of being looked up in the "
        "guest's DeviceID map", section="§vIOMMU")

    viommu_guest_event_log_untranslated: bool = fault(
        "HW-vIOMMU: a guest's event log base (GUEST_EVT_CONTROL.Base, a guest physical address) is used as a system "
        "address instead of being translated through the guest's stage 2, so a guest aims its events anywhere",
        section="§vIOMMU")

SPEC = Hardware()  # the specification: every reading at its default, no fault


def hardware(value: Any) -> Hardware:
    """``value`` itself when it is a :class:`Hardware`; a TypeError otherwise (a stray set of names
    must never silently run the correct model)."""
    if not isinstance(value, Hardware):
        raise TypeError(f"expected amdvi.spec.choices.Hardware, got {type(value).__name__}")
    return value
