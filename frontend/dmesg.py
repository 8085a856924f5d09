"""Kernel-log front end: find the AMD-Vi lines Linux printed and rebuild the event records behind them.

:func:`parse_dmesg` takes the text of ``dmesg`` / ``journalctl -k`` / a syslog file (timestamps and
syslog prefixes or not) and returns one :class:`Record` per recognised message; every other line is
skipped. For an event line the 128-bit event-log entry is rebuilt with the event's
:class:`~amdvi.spec.fields.Structure` ``encode()`` from the fields the line printed, and the record
says which fields the line did not carry. Lines that follow an event (``Control Reg :``, ``DTE[i]:``,
``CMD[i]:``, the ``device=`` line after "Device not attached") are attached to it.

The print formats are those of ``iommu_print_event`` and its helpers in Linux ``amd_iommu.c`` (before
5.10) and ``drivers/iommu/amd/iommu.c`` over the years, plus the AMD HW-vIOMMU branch (with its spellings
``deice=`` and ``vlfags=``); ``tests/cli/test_dmesg.py`` pins each with its source. Two of them put one
event on two lines, and both are read as one event:

* ``printk(KERN_ERR "AMD-Vi: Event logged [")`` followed by ``printk("IO_PAGE_FAULT ...]")``: one line
  while the kernel joined continuations, two lines from 4.9 on (a continuation without ``KERN_CONT``
  starts a new line) and whenever another message came in between;
* ``dev_err(dev, "AMD-Vi: Event logged [")`` followed by ``dev_err(dev, "ILLEGAL_DEV_TABLE_ENTRY ...]")``,
  each line with its ``iommu ivhd0:`` prefix, until upstream commit 1a21ee1aabf7 printed one line.

The event line is looked for on the next few lines (:data:`CONTINUATION_WINDOW`) until another AMD-Vi
message; an event line whose opening line was cut off is still decoded. A line that ends before its
closing ``]`` may have been cut inside its last value, which is then not used. This module does no I/O:
text in, data out.
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

# How many lines after a bare "Event logged [" its event line may come (other CPUs' messages between).
CONTINUATION_WINDOW = 8

DTE_WIDTH = 256
COMMAND_WIDTH = 128


@dataclass(frozen=True)
class Record:
    """One recognised AMD-Vi message and what it says.

    ``bits`` is the rebuilt 128-bit event entry (None for messages that are not events); only the bits
    in ``known_mask`` came from the log, and ``missing`` names the fields the log did not carry (fully).
    ``printed`` keeps every ``key=value`` the line printed. ``lines`` are 1-based line numbers.

    A DTE or command dump that was cut short keeps what arrived: ``dte_bits`` / ``command_bits`` hold
    the words that were printed (missing ones read 0) and ``dte_known_mask`` / ``command_known_mask``
    say which bits those are; ``dte`` / ``command`` are set only when the dump is complete.
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
    dte_words: tuple[int, ...] = ()  # as printed: qwords (newer) or dwords (older kernels), lowest first
    dte_word_bits: int = 0  # 64 or 32: how wide the dump's words were printed
    dte_bits: int | None = None
    dte_known_mask: int = 0
    dte: int | None = None  # the 256-bit DTE, when the whole dump followed
    command_dwords: tuple[int, ...] = ()
    command_bits: int | None = None
    command_known_mask: int = 0
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
        """The rebuilt entry decoded by its event structure (empty when there is none); fields the log
        did not carry read 0 here (see ``missing``)."""
        s = self.structure
        if s is None or self.bits is None:
            return {}
        view = s.view(self.bits)
        return {**s.decode(self.bits), **{c.name: view[c.name] for c in s.composites}}


# ---- where each printed value lands in the entry ----------------------------------------------
# A placement is a tuple of pieces (value bit, entry bit, width): bits value[vb + width - 1 : vb] go to
# entry[eb + width - 1 : eb]. These describe Linux's printf arguments, not the hardware.

Pieces = tuple[tuple[int, int, int], ...]

_DEVICE: Pieces = ((0, 0, 16),)
_Q1: Pieces = ((0, 64, 64),)
_FLAGS: Pieces = ((0, 48, 12),)
_VFLAGS: Pieces = ((0, 27, 5),)
_PASID20: Pieces = ((0, 32, 16), (16, 16, 4))  # (event[0] & 0xf0000) | (event[1] & 0xffff)
# Q0[47:32] alone. IO_PAGE_FAULT's domain= always is: amd_iommu_report_page_fault() takes it as a u16
# (and the older printk form masked it to 16 bits), so PASID[19:16] never reaches the log.
_DOMAIN16: Pieces = ((0, 32, 16),)

_COMMON: dict[str, Pieces] = {
    "device": _DEVICE, "deice": _DEVICE, "address": _Q1, "flags": _FLAGS, "vflags": _VFLAGS, "vlfags": _VFLAGS,
}
_KEYS: dict[str, dict[str, Pieces]] = {
    "ILLEGAL_DEV_TABLE_ENTRY": {"pasid": _PASID20},
    "IO_PAGE_FAULT": {"domain": _DOMAIN16},
    "DEV_TAB_HARDWARE_ERROR": {},
    "PAGE_TAB_HARDWARE_ERROR": {"pasid": _PASID20, "domain": _DOMAIN16},  # domain= wider than 16 bits: see below
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

# Values printed zero-padded to a width their value never exceeds: with that many digits a value is whole
# even when the line's closing "]" is missing. Any other last value of an unclosed line may be cut.
_WHOLE_AT_DIGITS = {"flags": 4, "domain": 4, "tag": 3, "flags_rmp": 4, "type": 2}
_DWORD_KEY = re.compile(r"event\[\d\]")  # UNKNOWN's event[i]=0x%08x

# ---- line shapes -------------------------------------------------------------------------------

_TAG = re.compile(r"(?:AMD-Vi|AMD IOMMU):[ \t]?")
_EVENT_LOGGED = re.compile(r"^\s*Event logged \[(?P<inner>.*?)\s*$")
_NAME = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)(?=[\s\]]|$)")
_PAIR = re.compile(r"(?P<key>[A-Za-z_]+(?:\[\d\])?)=(?P<value>[^\s,\]]*)")
_DTE = re.compile(r"^\s*DTE\[(?P<i>\d+)\]\s*:\s*(?:0x)?(?P<v>[0-9a-fA-F]+)\s*$")
_CMD = re.compile(r"^\s*CMD\[(?P<i>\d+)\]\s*:\s*(?:0x)?(?P<v>[0-9a-fA-F]+)\s*$")
_CTRL = re.compile(r"^\s*Control Reg\s*:\s*(?:0x)?(?P<v>[0-9a-fA-F]+)\s*$")
_NOT_ATTACHED_DEV = re.compile(r"^\s*device=(?P<dev>\S+)\s+domain=(?P<dom>\S+)\s*$")
_BDF = re.compile(r"^(?:(?P<seg>[0-9a-fA-F]{4}):)?(?P<bus>[0-9a-fA-F]{2}):(?P<dev>[0-9a-fA-F]{2})\.(?P<fn>[0-7])$")
_SOURCE = re.compile(r"(?P<who>[^\s\[\]]+) (?P<name>[^\s\[\]]+):\s*$")
_STAMP = re.compile(r"^\s*(?:kernel:\s*)?\[(?P<t>[^\]]*)\]|^(?P<s>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)")
# An event printed on its own line: its name starts the message, after the line's prefix (timestamp,
# syslog header, "iommu ivhd0:", the tag). The 4.14-era default branch passed KERN_ERR inside dev_err's
# format, which lands in the text as \x01 and a digit (dmesg shows it escaped).
_EVENT_NAMES = "|".join(sorted([*EVENTS_BY_NAME, "UNKNOWN"], key=len, reverse=True))
_EVENT_BODY = re.compile(rf"(?:^|(?<=[\s\]:]))(?:\\x0?1[0-7]|\x01[0-7])?(?P<inner>(?:{_EVENT_NAMES})(?=[\s\]]|$).*)$")


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


def _digits(text: str) -> int:
    t = text.strip().lstrip("#")
    return len(t) - 2 if t[:2] in ("0x", "0X") else len(t)


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
    # a value the log prints whole (Linux's vflags=) is missing as one: by its composite's name
    part_of = {n: c for c in s.composites for n, _ in c.parts}
    for f in s.named_fields:
        named |= f.mask
        if f.fixed is not None:
            continue
        if known & f.mask:
            values[f.name] = (printed_bits >> f.lo) & mask(f.width)
        if known & f.mask != f.mask:
            c = part_of.get(f.name)
            if c is not None and not any(known & s.field(n).mask for n, _ in c.parts):
                if c.name not in missing:
                    missing.append(c.name)
                continue
            missing.append(f.name if not known & f.mask else f"{f.name} (partly)")
    bits = s.encode(values) | (printed_bits & known & ~named)
    return bits, tuple(missing)


def _whole_value(key: str, text: str) -> bool:
    """Whether the last value of a line that lost its ']' is surely complete (see _WHOLE_AT_DIGITS)."""
    want = 8 if _DWORD_KEY.fullmatch(key) else _WHOLE_AT_DIGITS.get(key)
    return want is not None and _digits(text) == want


# ---- per-line work -----------------------------------------------------------------------------

@dataclass
class _Draft:
    """A record while its continuation lines may still arrive."""

    record: Record
    expects: str = ""  # "dte", "cmd" or "not_attached"
    dte: list[tuple[int, int]] = field(default_factory=list)  # (index, value) as printed
    dte_word_bits: int = 0
    cmd: list[tuple[int, int]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)

    def finish(self) -> Record:
        r = replace(self.record, lines=tuple(self.lines), raw="\n".join(self.raw))
        if self.dte:
            bits, known = _join(self.dte, self.dte_word_bits)
            r = replace(r, dte_words=tuple(v for _, v in self.dte), dte_word_bits=self.dte_word_bits,
                        dte_bits=bits, dte_known_mask=known, dte=bits if known == mask(DTE_WIDTH) else None)
        if self.cmd:
            bits, known = _join(self.cmd, 32)
            r = replace(r, command_dwords=tuple(v for _, v in self.cmd), command_bits=bits,
                        command_known_mask=known, command=bits if known == mask(COMMAND_WIDTH) else None)
        return r


def _join(words: list[tuple[int, int]], word_bits: int) -> tuple[int, int]:
    """(value, known mask) of indexed words, lowest word at bit 0."""
    bits = known = 0
    for i, w in words:
        bits |= w << (word_bits * i)
        known |= mask(word_bits) << (word_bits * i)
    return bits, known


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


def _event_body(line: str) -> tuple[str, str] | None:
    """(prefix, event text) when a line is an event printed on its own line (see _EVENT_BODY)."""
    m = _EVENT_BODY.search(line)
    if not m:
        return None
    prefix = line[: m.start()]
    if "=" in prefix or "Event logged" in prefix:
        return None
    return prefix, m["inner"]


def _event_record(text: str, prefix_device: str | None, base: Record) -> Record:
    """The record of one event's text, ``NAME key=value ...]`` (raises ValueError when it cannot be read)."""
    inner = text.strip()
    closed = inner.endswith("]")
    inner = inner[:-1].rstrip() if closed else inner
    pairs = [(m["key"], m["value"]) for m in _PAIR.finditer(inner)]
    notes: list[str] = []
    if not closed and pairs and not _whole_value(*pairs[-1]):
        notes.append(f"the line ends before its ']': {pairs[-1][0]}= may be cut and is not used")
        pairs.pop()
    if inner.startswith("UNKNOWN"):
        return _unknown_record(pairs, base, notes)
    m = _NAME.match(inner)
    if not m or m["name"] not in EVENTS_BY_NAME:
        raise ValueError(f"no event named like {inner[:40]!r}")
    name = m["name"]
    s = EVENTS_BY_NAME[name]
    keys = {**_COMMON, **_KEYS[name]}
    printed_bits, known, printed = 0, 0, []
    device = segment = None
    for key, value_text in pairs:
        if key in ("device", "deice"):
            device = value_text
            segment, value = parse_bdf(value_text)
        else:
            value = _hex(value_text)
        printed.append((key, value))
        pieces = keys.get(key)
        if pieces is None:
            notes.append(f"{key}= not placed")
            continue
        if name == "PAGE_TAB_HARDWARE_ERROR" and key == "domain" and value >> 16:
            pieces = _PASID20  # 4.19-era kernels printed the 20-bit PASID under this name
        b, k = _place(pieces, value)
        printed_bits |= b
        known |= k
    if device is None and name in _PREFIX_IS_REQUESTER and prefix_device is not None:
        device = prefix_device
        segment, value = parse_bdf(prefix_device)
        b, k = _place(_DEVICE, value)
        printed_bits, known = printed_bits | b, known | k
    known |= 0xF << 60
    bits, missing = _rebuild(s, printed_bits, known)
    return replace(base, kind=EVENT, event=name, bits=bits, known_mask=known, missing=missing,
                   device=device, segment=segment, printed=tuple(printed), note="; ".join(notes))


def _unknown_record(pairs: list[tuple[str, str]], base: Record, notes: list[str]) -> Record:
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
    if s is not None:
        notes.insert(0, "printed as UNKNOWN by this kernel")
    return replace(base, kind=kind, event=name, bits=bits, known_mask=known, missing=missing,
                   printed=tuple(values.items()), note="; ".join(notes))


def _not_attached_record(draft: _Draft, dev_text: str, dom_text: str) -> None:
    """Complete a "Device not attached" record with its ``device=... domain=...`` line."""
    s = EVENTS_BY_NAME["IO_PAGE_FAULT"]
    segment, devid = parse_bdf(dev_text)
    bits, known = _place(_DEVICE, devid)
    printed = [("device", devid)]
    note = draft.record.note
    if _digits(dom_text) >= 4:  # printed 0x%04x: fewer digits means the line was cut
        domain = _hex(dom_text)
        b, k = _place(_DOMAIN16, domain)
        bits, known = bits | b, known | k
        printed.append(("domain", domain))
    else:
        note = "the line ends inside domain=, which is not used"
    known |= 0xF << 60
    bits, missing = _rebuild(s, bits, known)
    draft.record = replace(draft.record, bits=bits, known_mask=known, missing=missing, device=dev_text,
                           segment=segment, printed=tuple(printed), note=note)


def _dump_word(draft: _Draft, is_dte: bool, index: int, digits: str) -> None:
    """Add one ``DTE[i]:`` / ``CMD[i]:`` line to its dump (ValueError when it does not fit the dump)."""
    words = draft.dte if is_dte else draft.cmd
    if is_dte:
        # dump_dte_entry printed %08x dwords (older kernels) or %016llx qwords: the width tells them apart,
        # and any other width is a value cut short.
        word_bits = {8: 32, 16: 64}.get(len(digits))
        if word_bits is None:
            raise ValueError(f"DTE word with {len(digits)} digits, not 8 or 16: cut short?")
        if draft.dte_word_bits and word_bits != draft.dte_word_bits:
            raise ValueError("DTE dump mixes 32- and 64-bit words")
        count = DTE_WIDTH // word_bits
    else:
        if len(digits) != 8:
            raise ValueError(f"command dword with {len(digits)} digits, not 8: cut short?")
        word_bits, count = 32, COMMAND_WIDTH // 32
    if index >= count or (words and index <= words[-1][0]):
        raise ValueError("dump line out of sequence")
    words.append((index, int(digits, 16)))
    if is_dte:
        draft.dte_word_bits = word_bits


def parse_dmesg(text: str | Iterable[str]) -> list[Record]:
    """Every AMD-Vi message in a kernel log, in order; other lines are skipped.

    ``text`` is the log as one string or as lines. Event-looking lines that cannot be read become
    records of kind ``unrecognised`` (with the reason in ``note``); nothing here raises on bad input.
    """
    lines = text.splitlines() if isinstance(text, str) else [ln.rstrip("\r\n") for ln in text]
    drafts: list[_Draft] = []
    open_draft: _Draft | None = None
    opener: tuple[int, str, Record, str | None] | None = None  # a bare "Event logged [" awaiting its event

    def add(record: Record, numbers: list[int], raw: list[str], expects: str = "") -> _Draft:
        d = _Draft(record, expects=expects, lines=numbers, raw=raw)
        drafts.append(d)
        return d

    def unrecognised(number: int, line: str, base: Record, why: str) -> None:
        add(replace(base, kind=UNRECOGNISED, note=why), [number], [line])

    def close_opener() -> None:
        nonlocal opener
        if opener is not None:
            number, line, base, _ = opener
            unrecognised(number, line, base, "'Event logged [' whose event line is not in the log")
            opener = None

    def event(event_text: str, numbers: list[int], raw: list[str], base: Record, prefix_device: str | None,
              note: str = "") -> None:
        nonlocal open_draft
        try:
            record = _event_record(event_text, prefix_device, base)
        except ValueError as e:
            add(replace(base, kind=UNRECOGNISED, note=str(e)), numbers, raw)
            open_draft = None
            return
        if note:
            record = replace(record, note="; ".join(x for x in (note, record.note) if x))
        expects = {"ILLEGAL_DEV_TABLE_ENTRY": "dte", "ILLEGAL_COMMAND_ERROR": "cmd"}.get(record.event or "", "")
        d = add(record, numbers, raw, expects)
        open_draft = d if expects else None

    for number, line in enumerate(lines, start=1):
        if opener is not None and number - opener[0] > CONTINUATION_WINDOW:
            close_opener()
        body = _event_body(line)
        if body is not None and (opener is not None or _split(line) is None):
            # An event on its own line: the second half of a split "Event logged [", or one whose first
            # half was cut off the paste.
            prefix, inner = body
            stamp, source, prefix_device = _about(prefix)
            if opener is not None:
                o_number, o_line, o_base, o_device = opener
                opener = None
                base = replace(o_base, source=o_base.source or source)
                event(inner, [o_number, number], [o_line, line], base, o_device or prefix_device)
            else:
                base = Record(kind=UNRECOGNISED, lines=(number,), raw=line, source=source, timestamp=stamp)
                event(inner, [number], [line], base, prefix_device,
                      note="its 'Event logged [' line is not in the log")
            continue

        parts = _split(line)
        if parts is None:
            continue
        close_opener()
        prefix, rest = parts
        stamp, source, prefix_device = _about(prefix)
        base = Record(kind=UNRECOGNISED, lines=(number,), raw=line, source=source, timestamp=stamp)

        m = _EVENT_LOGGED.match(rest)
        if m:
            inner = m["inner"].strip()
            open_draft = None
            if not inner:
                opener = (number, line, base, prefix_device)
                continue
            if inner.startswith("Device not attached to domain properly"):
                open_draft = add(replace(base, kind=NOT_ATTACHED, event="IO_PAGE_FAULT"), [number], [line],
                                 expects="not_attached")
                continue
            event(inner, [number], [line], base, prefix_device)
            continue

        kind = next((k for msg, k in MESSAGES.items() if msg in rest), None)
        if kind is not None:
            add(replace(base, kind=kind, note=rest.strip()), [number], [line])
            continue

        # continuation lines
        for pattern, wanted in ((_CTRL, "dte"), (_DTE, "dte"), (_CMD, "cmd"), (_NOT_ATTACHED_DEV, "not_attached")):
            c = pattern.match(rest)
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
                _dump_word(d, pattern is _DTE, int(c["i"]), c["v"])
        except ValueError as e:
            unrecognised(number, line, base, str(e))
            continue
        d.lines.append(number)
        d.raw.append(line)

    close_opener()
    return [d.finish() for d in drafts]
