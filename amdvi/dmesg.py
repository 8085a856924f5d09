"""Kernel-log front end: find the AMD-Vi lines Linux printed and rebuild the event records behind them.

:func:`parse_dmesg` takes the text of ``dmesg`` / ``journalctl -k`` / a syslog file (timestamps and
syslog prefixes or not) and returns one :class:`Record` per recognised message; every other line is
skipped. For an event line the 128-bit event-log entry is rebuilt with the event's
:class:`~amdvi.spec.fields.Structure` ``encode()`` from the fields the line printed, and the record
says which fields the line did not carry. Lines that follow an event (``Control Reg :``, ``DTE[i]:``,
``CMD[i]:``, the ``device=`` line after "Device not attached") are attached to it.

The print formats are those of ``iommu_print_event`` and its helpers in Linux
``drivers/iommu/amd/iommu.c`` (and ``amd_iommu.c`` before 5.10) over the years, as listed in
``shared/reference/commands-and-events.md`` §6, plus the AMD HW-vIOMMU branch (with its spellings
``deice=`` and ``vlfags=``). This module does no I/O: text in, data out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Iterable

from amdvi.spec.bitvec import mask
from amdvi.spec.events import EVENTS_BY_CODE, EVENTS_BY_NAME
from amdvi.spec.fields import Structure

# ---- record kinds ------------------------------------------------------------------------------

EVENT = "event"  # an event-log entry Linux decoded by name
UNKNOWN_EVENT = "unknown_event"  # printed as UNKNOWN with a code no source defines
NOT_ATTACHED = "not_attached"  # an IO_PAGE_FAULT Linux reported as "Device not attached to domain properly"
COMPLETION_WAIT_TIMEOUT = "completion_wait_timeout"
COMMAND_BUFFER_TIMEOUT = "command_buffer_timeout"
COMMAND_BUFFER_RESET = "command_buffer_reset"
EVENT_LOG_OVERFLOW = "event_log_overflow"
NO_EVENT_WRITTEN = "no_event_written"
UNRECOGNISED = "unrecognised"  # looks like an AMD-Vi event message but could not be read

# Messages that are not events: substring -> kind.
MESSAGES = {
    "Completion-Wait loop timed out": COMPLETION_WAIT_TIMEOUT,
    "Command buffer timeout": COMMAND_BUFFER_TIMEOUT,
    "Resetting IOMMU command buffer": COMMAND_BUFFER_RESET,
    "IOMMU event log overflow": EVENT_LOG_OVERFLOW,
    "No event written to event log": NO_EVENT_WRITTEN,
}


@dataclass(frozen=True)
class Record:
    """One recognised AMD-Vi message and what it says.

    ``bits`` is the rebuilt 128-bit event entry (None for messages that are not events); only the bits
    in ``known_mask`` came from the log, and ``missing`` names the fields the log did not carry (fully).
    ``printed`` keeps every ``key=value`` the line printed. ``lines`` are 1-based line numbers.
    """

    kind: str
    lines: tuple[int, ...]
    raw: str
    event: str | None = None
    bits: int | None = None
    known_mask: int = 0
    missing: tuple[str, ...] = ()
    device: str | None = None  # the requester as printed: device=..., or the pci_err prefix
    segment: int | None = None  # PCI segment, when printed
    source: str | None = None  # who printed the line, e.g. "iommu ivhd0" or "ahci 0000:28:00.0"
    timestamp: str | None = None
    printed: tuple[tuple[str, int], ...] = ()
    control_reg: int | None = None
    dte_words: tuple[int, ...] = ()  # as printed: 4 qwords (newer) or 8 dwords (older kernels)
    dte: int | None = None  # the 256-bit DTE, when the whole dump followed
    command_dwords: tuple[int, ...] = ()
    command: int | None = None  # the 128-bit command, when all four dwords followed
    note: str = ""

    @property
    def structure(self) -> Structure | None:
        return EVENTS_BY_NAME.get(self.event or "")

    def value(self, key: str) -> int | None:
        """A printed value by its Linux key (``flags``, ``domain``, ``address`` ...)."""
        return dict(self.printed).get(key)

    @property
    def flags(self) -> int | None:
        return self.value("flags")

    def fields(self) -> dict[str, int]:
        """The rebuilt entry decoded by its event structure (empty when there is none)."""
        s = self.structure
        return {} if s is None or self.bits is None else s.decode(self.bits)


# ---- where each printed value lands in the entry ----------------------------------------------
# A placement is a tuple of pieces (value bit, entry bit, width): bits value[vb + width - 1 : vb] go to
# entry[eb + width - 1 : eb]. These describe Linux's printf arguments, not the hardware.

Pieces = tuple[tuple[int, int, int], ...]

_DEVICE: Pieces = ((0, 0, 16),)
_Q1: Pieces = ((0, 64, 64),)
_FLAGS: Pieces = ((0, 48, 12),)
_VFLAGS: Pieces = ((0, 27, 5),)
_PASID20: Pieces = ((0, 32, 16), (16, 16, 4))  # (event[0] & 0xf0000) | (event[1] & 0xffff)
_DOMAIN16: Pieces = ((0, 32, 16),)  # kernels before ~4.19 printed Q0[47:32] alone

_COMMON: dict[str, Pieces] = {
    "device": _DEVICE, "deice": _DEVICE, "address": _Q1, "flags": _FLAGS, "vflags": _VFLAGS, "vlfags": _VFLAGS,
}
_KEYS: dict[str, dict[str, Pieces]] = {
    "ILLEGAL_DEV_TABLE_ENTRY": {"pasid": _PASID20},
    "IO_PAGE_FAULT": {"domain": _PASID20},
    "DEV_TAB_HARDWARE_ERROR": {},
    "PAGE_TAB_HARDWARE_ERROR": {"pasid": _PASID20, "domain": _PASID20},
    "ILLEGAL_COMMAND_ERROR": {},
    "COMMAND_HARDWARE_ERROR": {},
    "IOTLB_INV_TIMEOUT": {},
    "INVALID_DEVICE_REQUEST": {"pasid": _PASID20},
    "INVALID_PPR_REQUEST": {"pasid": ((0, 16, 16), (16, 42, 4)), "tag": ((0, 32, 10),)},
    "EVENT_COUNTER_ZERO": {},
    "GUEST_EVENT_FAULT": {"gid": ((0, 32, 8),)},  # the RFC prints gid through a u8
    "VIOMMU_HW_ERR": {"gid": ((0, 0, 16),), "src": ((0, 16, 2),)},
    "RMP_PAGE_FAULT": {"vmg_tag": ((0, 32, 16),), "gpa": _Q1, "flags_rmp": ((0, 16, 8),)},
    "RMP_HW_ERROR": {"vmg_tag": ((0, 32, 16),), "spa": ((3, 67, 61),)},  # Linux masks Q1[2:0] off
}
# Events Linux prints with pci_err(pdev, ...) and no device=: the prefix names the requester.
_PREFIX_IS_REQUESTER = {"IO_PAGE_FAULT", "RMP_PAGE_FAULT", "RMP_HW_ERROR"}

# ---- line shapes -------------------------------------------------------------------------------

_TAG = re.compile(r"(?:AMD-Vi|AMD IOMMU):[ \t]?")
_EVENT_LOGGED = re.compile(r"^\s*Event logged \[(?P<inner>.*?)\]?\s*$")
_NAME = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)(?=[\s\]]|$)")
_PAIR = re.compile(r"(?P<key>[A-Za-z_]+(?:\[\d\])?)=(?P<value>[^\s,\]]*)")
_DTE = re.compile(r"^\s*DTE\[(?P<i>\d+)\]\s*:\s*(?:0x)?(?P<v>[0-9a-fA-F]+)\s*$")
_CMD = re.compile(r"^\s*CMD\[(?P<i>\d+)\]\s*:\s*(?:0x)?(?P<v>[0-9a-fA-F]+)\s*$")
_CTRL = re.compile(r"^\s*Control Reg\s*:\s*(?:0x)?(?P<v>[0-9a-fA-F]+)\s*$")
_NOT_ATTACHED_DEV = re.compile(r"^\s*device=(?P<dev>\S+)\s+domain=(?P<dom>\S+)\s*$")
_BDF = re.compile(r"^(?:(?P<seg>[0-9a-fA-F]{4}):)?(?P<bus>[0-9a-fA-F]{2}):(?P<dev>[0-9a-fA-F]{2})\.(?P<fn>[0-7])$")
_SOURCE = re.compile(r"(?P<who>[^\s\[\]]+) (?P<name>[^\s\[\]]+):\s*$")
_STAMP = re.compile(r"^\s*\[(?P<t>[^\]]*)\]|^(?P<s>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)")


def parse_bdf(text: str) -> tuple[int | None, int]:
    """``0000:43:00.0`` or ``43:00.0`` -> (segment or None, DeviceID)."""
    m = _BDF.match(text)
    if not m:
        raise ValueError(f"not a PCI device name: {text!r}")
    seg = int(m["seg"], 16) if m["seg"] else None
    bus, dev, fn = int(m["bus"], 16), int(m["dev"], 16), int(m["fn"], 16)
    if dev > 0x1F:
        raise ValueError(f"device number {dev:#x} > 0x1f in {text!r}")
    return seg, bus << 8 | dev << 3 | fn


def _hex(text: str) -> int:
    """A value Linux printed with %x, 0x%x or %#x (and the RFC's #%x)."""
    t = text.strip().lstrip("#")
    if not re.fullmatch(r"(?:0[xX])?[0-9a-fA-F]+", t):
        raise ValueError(f"not a hex value: {text!r}")
    return int(t, 16)


def _place(pieces: Pieces, value: int) -> tuple[int, int]:
    """The entry bits a printed value stands for, and the mask of those bits."""
    bits = known = used = 0
    for vb, eb, width in pieces:
        bits |= ((value >> vb) & mask(width)) << eb
        known |= mask(width) << eb
        used |= mask(width) << vb
    if value & ~used:
        raise ValueError(f"value {value:#x} has bits the format cannot print")
    return bits, known


def _rebuild(s: Structure, printed_bits: int, known: int) -> tuple[int, tuple[str, ...]]:
    """Encode the known named fields with ``s.encode``; keep any printed bits that fall in reserved ranges."""
    values: dict[str, int] = {}
    missing: list[str] = []
    named = 0
    for f in s.named_fields:
        named |= f.mask
        if f.fixed is not None:
            continue
        if known & f.mask:
            values[f.name] = (printed_bits >> f.lo) & mask(f.width)
        if known & f.mask != f.mask:
            missing.append(f.name if not known & f.mask else f"{f.name} (partly)")
    bits = s.encode(values) | (printed_bits & known & ~named)
    return bits, tuple(missing)


# ---- per-line work -----------------------------------------------------------------------------

@dataclass
class _Draft:
    """A record while its continuation lines may still arrive."""

    record: Record
    expects: str = ""  # "dte", "cmd" or "not_attached"
    dte: list[int] = field(default_factory=list)
    cmd: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)

    def finish(self) -> Record:
        r = replace(self.record, lines=tuple(self.lines), raw="\n".join(self.raw))
        if self.dte:
            r = replace(r, dte_words=tuple(self.dte), dte=_join(self.dte))
        if self.cmd:
            command = sum(d << (32 * i) for i, d in enumerate(self.cmd)) if len(self.cmd) == 4 else None
            r = replace(r, command_dwords=tuple(self.cmd), command=command)
        return r


def _join(words: list[int]) -> int | None:
    """A 256-bit DTE from four 64-bit words or (older kernels) eight 32-bit dwords, lowest first."""
    if len(words) == 4:
        return sum(w << (64 * i) for i, w in enumerate(words))
    if len(words) == 8 and all(w >> 32 == 0 for w in words):
        return sum(w << (32 * i) for i, w in enumerate(words))
    return None


def _split(line: str) -> tuple[str, str] | None:
    """(prefix, body) around the AMD-Vi tag, or around "Event logged [" when a kernel printed no tag."""
    m = _TAG.search(line)
    if m:
        return line[: m.start()], line[m.end():]
    i = line.find("Event logged [")
    return (line[:i], line[i:]) if i >= 0 else None


def _about(prefix: str) -> tuple[str | None, str | None, str | None]:
    """(timestamp, source, requester device) from the text before the tag."""
    st = _STAMP.match(prefix)
    stamp = None
    if st:
        stamp = (st["t"] if st["t"] is not None else st["s"]).strip()
    src = _SOURCE.search(prefix)
    source = None
    device = None
    if src and src["name"] != "kernel":
        source = f"{src['who']} {src['name']}"
        if _BDF.match(src["name"]):
            device = src["name"]
    return stamp, source, device


def _event_record(inner: str, prefix_device: str | None, base: Record) -> Record:
    """The record of one ``Event logged [...]`` message (raises ValueError when it cannot be read)."""
    pairs = [(m["key"], m["value"]) for m in _PAIR.finditer(inner)]
    if inner.startswith("UNKNOWN"):
        return _unknown_record(pairs, base)
    m = _NAME.match(inner)
    if not m or m["name"] not in EVENTS_BY_NAME:
        raise ValueError(f"no event named like {inner[:40]!r}")
    name = m["name"]
    s = EVENTS_BY_NAME[name]
    keys = {**_COMMON, **_KEYS[name]}
    printed_bits, known, printed, notes = 0, 0, [], []
    device = segment = None
    address = dict(pairs).get("address", "")
    old_format = bool(re.fullmatch(r"0x0[0-9a-fA-F]{15}", address))  # 0x%016llx: before ~4.19
    for key, text in pairs:
        if key in ("device", "deice"):
            device = text
            segment, value = parse_bdf(text)
        else:
            value = _hex(text)
        printed.append((key, value))
        pieces = keys.get(key)
        if pieces is None:
            notes.append(f"{key}= not placed")
            continue
        if key == "domain" and old_format:
            pieces = _DOMAIN16
        b, k = _place(pieces, value)
        printed_bits |= b
        known |= k
    if device is None and name in _PREFIX_IS_REQUESTER and prefix_device is not None:
        device = prefix_device
        segment, value = parse_bdf(prefix_device)
        b, k = _place(_DEVICE, value)
        printed_bits, known = printed_bits | b, known | k
    if old_format and "domain" in dict(pairs):
        notes.append("old format: domain= is Q0[47:32] alone, PASID[19:16] not printed")
    known |= 0xF << 60
    bits, missing = _rebuild(s, printed_bits, known)
    return replace(base, kind=EVENT, event=name, bits=bits, known_mask=known, missing=missing,
                   device=device, segment=segment, printed=tuple(printed), note="; ".join(notes))


def _unknown_record(pairs: list[tuple[str, str]], base: Record) -> Record:
    """``UNKNOWN event[0]=... event[3]=...`` (the whole entry) or, in old kernels, ``UNKNOWN type=0x..``."""
    values = {k: _hex(v) for k, v in pairs}
    words = [values.get(f"event[{i}]") for i in range(4)]
    if all(w is not None for w in words):
        if any(w >> 32 for w in words):  # type: ignore[operator]
            raise ValueError("event dword wider than 32 bits")
        bits, known = sum(w << (32 * i) for i, w in enumerate(words)), mask(128)  # type: ignore[operator]
    elif "type" in values and values["type"] < 16:
        bits, known = values["type"] << 60, 0xF << 60
    else:
        raise ValueError("UNKNOWN event without its dwords")
    s = EVENTS_BY_CODE.get(bits >> 60 & 0xF)
    missing: tuple[str, ...] = ()
    if s is not None and known != mask(128):
        bits, missing = _rebuild(s, bits, known)
    kind, name = (EVENT, s.name) if s is not None else (UNKNOWN_EVENT, "UNKNOWN")
    return replace(base, kind=kind, event=name, bits=bits, known_mask=known, missing=missing,
                   printed=tuple(values.items()),
                   note="printed as UNKNOWN by this kernel" if s is not None else "")


def _not_attached_record(draft: _Draft, dev_text: str, dom_text: str) -> None:
    """Complete a "Device not attached" record with its ``device=... domain=...`` line."""
    s = EVENTS_BY_NAME["IO_PAGE_FAULT"]
    segment, devid = parse_bdf(dev_text)
    domain = _hex(dom_text)
    b1, k1 = _place(_DEVICE, devid)
    b2, k2 = _place(_PASID20, domain)
    known = k1 | k2 | 0xF << 60
    bits, missing = _rebuild(s, b1 | b2, known)
    draft.record = replace(draft.record, bits=bits, known_mask=known, missing=missing, device=dev_text,
                           segment=segment, printed=(("device", devid), ("domain", domain)))


def parse_dmesg(text: str | Iterable[str]) -> list[Record]:
    """Every AMD-Vi message in a kernel log, in order; other lines are skipped.

    ``text`` is the log as one string or as lines. Event-looking lines that cannot be read become
    records of kind ``unrecognised`` (with the reason in ``note``); nothing here raises on bad input.
    """
    lines = text.splitlines() if isinstance(text, str) else [ln.rstrip("\r\n") for ln in text]
    drafts: list[_Draft] = []
    open_draft: _Draft | None = None

    def add(record: Record, number: int, line: str, expects: str = "") -> _Draft:
        d = _Draft(record, expects=expects, lines=[number], raw=[line])
        drafts.append(d)
        return d

    def unrecognised(number: int, line: str, base: Record, why: str) -> None:
        add(replace(base, kind=UNRECOGNISED, note=why), number, line)

    for number, line in enumerate(lines, start=1):
        parts = _split(line)
        if parts is None:
            continue
        prefix, body = parts
        stamp, source, prefix_device = _about(prefix)
        base = Record(kind=UNRECOGNISED, lines=(number,), raw=line, source=source, timestamp=stamp)

        m = _EVENT_LOGGED.match(body)
        if m:
            inner = m["inner"].strip()
            open_draft = None
            if inner.startswith("Device not attached to domain properly"):
                open_draft = add(replace(base, kind=NOT_ATTACHED, event="IO_PAGE_FAULT"), number, line,
                                 expects="not_attached")
                continue
            try:
                record = _event_record(inner, prefix_device, base)
            except ValueError as e:
                unrecognised(number, line, base, str(e))
                continue
            expects = {"ILLEGAL_DEV_TABLE_ENTRY": "dte", "ILLEGAL_COMMAND_ERROR": "cmd"}.get(record.event or "", "")
            d = add(record, number, line, expects)
            open_draft = d if expects else None
            continue

        kind = next((k for msg, k in MESSAGES.items() if msg in body), None)
        if kind is not None:
            add(replace(base, kind=kind, note=body.strip()), number, line)
            continue

        # continuation lines
        for pattern, wanted in ((_CTRL, "dte"), (_DTE, "dte"), (_CMD, "cmd"), (_NOT_ATTACHED_DEV, "not_attached")):
            c = pattern.match(body)
            if c:
                break
        else:
            continue  # some other AMD-Vi message (boot information): not ours
        d = open_draft
        if d is None or d.expects != wanted:
            unrecognised(number, line, base, "continuation line without the event it belongs to")
            continue
        try:
            if pattern is _CTRL:
                if d.dte or d.record.control_reg is not None:
                    raise ValueError("Control Reg after the DTE dump began")
                d.record = replace(d.record, control_reg=int(c["v"], 16))
            elif pattern is _NOT_ATTACHED_DEV:
                _not_attached_record(d, c["dev"], c["dom"])
                open_draft = None
            else:
                words = d.dte if pattern is _DTE else d.cmd
                value = int(c["v"], 16)
                limit = 4 if pattern is _CMD else 8
                if int(c["i"]) != len(words) or len(words) >= limit or value >> 64:
                    raise ValueError("dump line out of sequence")
                if pattern is _CMD and value >> 32:
                    raise ValueError("command dword wider than 32 bits")
                words.append(value)
        except ValueError as e:
            unrecognised(number, line, base, str(e))
            continue
        d.lines.append(number)
        d.raw.append(line)

    return [d.finish() for d in drafts]
