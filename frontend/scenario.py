"""Scenario files: a memory image written as DTE and page-table FIELDS (JSON), for `amdvi walk` / `amdvi graph`.

```
{"description": "...",
 "device_table": {"base": "0x100000", "size": 0},
 "devices": {"0x10": {"V": 1, "TV": 1, "Mode": 4, "Host Page Table Root Pointer": "0x200000",
                      "IR": 1, "IW": 1, "DomainID": 1}},
 "tables": {"0x200000": {"kind": "host", "level": 4,
                         "entries": {"0": {"PR": 1, "Next Level": 3, "Next Table Address": "0x201000",
                                           "IR": 1, "IW": 1}}}},
 "words": {"0x300000": "0x1234"}}
```

Every value is encoded through the field tables (DTE, PDE/PTE, GPTE, GCR3 entry, DEV_TAB_BAR);
nothing here packs bits by hand. Fields are named as 48882 spells them (any case, or the
python name); an address field (one with a unit shift) and a composite such as the GCR3 Table
Root Pointer take the full address. A device may also be a list of four raw 64-bit words and a
table entry a raw word, to write what the fields cannot (reserved bits). Numbers are JSON
integers or strings (``"0x1f"``, ``"31"``); DeviceIDs may be written ``"00:02.0"``.
Every object may carry a ``"comment"``. Errors are :class:`InputError` naming the JSON path.
An optional ``"viommu"`` section sets up HW-vIOMMU guests over this memory (``scenario_viommu``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from amdvi.frontend.errors import InputError
from amdvi.spec.bitvec import mask
from amdvi.spec.device_table import DTE, ENTRY_BYTES, MAX_DEVICE_ID
from amdvi.spec.fields import Field, Structure
from amdvi.spec.guest_page_table import GCR3_ENTRY, GPTE
from amdvi.spec.host_page_table import PDE, PTE
from amdvi.spec.mmio import DEV_TAB_BAR

if TYPE_CHECKING:
    from amdvi.models.viommu import ViommuConfig

PAGE = 4096
ENTRIES = 512
KINDS = {"host": (1, 6), "guest": (1, 5), "gcr3": (0, 2)}  # kind -> legal levels (GCR3: GLX down to 0)
TOP_KEYS = ("description", "comment", "device_table", "devices", "tables", "words", "viommu")
COMMENT = "comment"


@dataclass(frozen=True)
class Scenario:
    """A memory image ({8-byte address: 64-bit word}) with its device table register and devices (those
    declared, and those whose DTE a ``"viommu"`` set-up wrote)."""

    memory: dict[int, int]
    dev_tab_bar: int
    devices: tuple[int, ...]
    source: str
    tables: dict[int, tuple[str, int | None]] = field(default_factory=dict)  # address -> (kind, level)
    description: str = ""
    viommu: ViommuConfig | None = None  # set when HW-vIOMMU guests were set up: where the IOMMU keeps them


# ---- numbers and names ---------------------------------------------------------------------------

def _num(value: Any, where: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        try:
            n = int(value.strip(), 0)
        except ValueError:
            raise InputError(f"{where}: {value!r} is not a number (write 0x1f or 31)") from None
    else:
        raise InputError(f"{where}: expected a number, got {type(value).__name__} {json.dumps(value)}")
    if n < 0:
        raise InputError(f"{where}: {n} is negative")
    return n


_BDF = re.compile(r"^([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$")


def parse_device_id(text: Any, where: str = "DeviceID") -> int:
    """``0x10``, ``16`` or ``00:02.0`` (bus:device.function) -> a 16-bit DeviceID."""
    if isinstance(text, str):
        m = _BDF.match(text.strip())
        if m:
            bus, dev, fn = int(m[1], 16), int(m[2], 16), int(m[3])
            if dev > 0x1F:
                raise InputError(f"{where}: device number {dev:#x} in {text!r} is over 0x1f")
            return bus << 8 | dev << 3 | fn
    n = _num(text, where)
    if n > MAX_DEVICE_ID:
        raise InputError(f"{where}: DeviceID {n:#x} does not fit in 16 bits")
    return n


def _address(value: Any, where: str, *, align: int = 1, bits: int = 52, what: str = "address") -> int:
    n = _num(value, where)
    if n >> bits:
        raise InputError(f"{where}: {what} {n:#x} is wider than {bits} bits")
    if n % align:
        raise InputError(f"{where}: {what} {n:#x} is not aligned to {_size_name(align)}")
    return n


def _size_name(n: int) -> str:
    return f"{n // 1024} KiB" if n >= 1024 and n % 1024 == 0 else f"{n} bytes"


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected an object {{...}}, got {type(value).__name__}")
    return value


def _unknown(name: str, candidates: list[str], where: str, what: str) -> InputError:
    by_lower = {c.lower(): c for c in candidates}
    near = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(by_lower[n]) for n in near)}?" if near else ""
    return InputError(f"{where}: unknown {what} {name!r}{hint}")


def _check_keys(obj: Mapping[str, Any], allowed: tuple[str, ...], where: str, what: str) -> None:
    for k in obj:
        if k not in allowed:
            raise _unknown(k, list(allowed), where, what)


# ---- encoding through the field tables -------------------------------------------------------

def field_value(f: Field, value: Any, where: str, structure: Structure) -> int:
    """The raw value of field ``f``: an address field takes the full address (stored >> unit shift)."""
    if f.unit_shift:
        n = _address(value, where, align=1 << f.unit_shift, bits=f.hi - f.lo + 1 + f.unit_shift,
                     what=f"{structure.name} {f.name}")
        return n >> f.unit_shift
    n = _num(value, where)
    if n >> f.width:
        raise InputError(f"{where}: {n:#x} does not fit in {structure.name} {f.name} "
                         f"({f.width} bit{'s' if f.width > 1 else ''}, bits {f.bits})")
    return n


def encode_fields(structure: Structure, obj: Mapping[str, Any], where: str) -> int:
    """Encode ``{field or composite name: value}`` through ``structure``'s field table."""
    values: dict[str, int] = {}
    given_as: dict[str, str] = {}

    def put(fname: str, raw: int, key: str) -> None:
        if fname in values:
            raise InputError(f"{where}: {structure.name} {fname} given twice ({given_as[fname]!r} and {key!r})")
        values[fname], given_as[fname] = raw, key

    for key, value in obj.items():
        path = f"{where}.{key}"
        if key == COMMENT:
            continue
        f = structure.field(key)
        if f is not None:
            put(f.name, field_value(f, value, path, structure), key)
            continue
        c = structure.composite(key)
        if c is None:
            names = [x.name for x in structure.named_fields] + [x.name for x in structure.composites]
            raise _unknown(key, names, where, f"{structure.name} field")
        parts = [(structure.field(n), at) for n, at in c.parts]
        low = min(at for _, at in parts)
        top = max(f.width + at for f, at in parts)
        n = _address(value, path, align=1 << low, bits=top, what=f"{structure.name} {c.name}")
        for fname, raw in structure.split(c.name, n).items():
            put(fname, raw, key)
    try:
        return structure.encode(values)
    except ValueError as e:  # the field table's own checks (should not trigger after the above)
        raise InputError(f"{where}: {e}") from None


def _raw_word(value: Any, where: str) -> int:
    n = _num(value, where)
    if n >> 64:
        raise InputError(f"{where}: {n:#x} does not fit in a 64-bit word")
    return n


def _host_structure(entry: Mapping[str, Any], where: str) -> Structure:
    """PDE or PTE, chosen by the entry's Next Level (0 or 7, or absent: a PTE)."""
    nl = 0
    for key, value in entry.items():
        f = PDE.field(key) if key != COMMENT else None
        if f is not None and f.name == "Next Level":
            nl = field_value(f, value, f"{where}.{key}", PDE)
    return PTE if nl in (0, 7) else PDE


def encode_entry(kind: str, entry: Any, where: str) -> int:
    """One table entry: a raw word, or fields of the kind's structure."""
    if not isinstance(entry, dict):
        return _raw_word(entry, where)
    if kind == "host":
        s = _host_structure(entry, where)
        other = PDE if s is PTE else PTE
        for key in entry:
            if key != COMMENT and s.field(key) is None and other.field(key) is not None:
                raise InputError(f"{where}: {other.field(key).name!r} is a {other.name} field, but this "
                                 f"entry's Next Level makes it a {s.name} (Next Level 0 or 7 = PTE, 1..6 = PDE)")
        return encode_fields(s, entry, where)
    return encode_fields(GPTE if kind == "guest" else GCR3_ENTRY, entry, where)


# ---- the loader -----------------------------------------------------------------------------

class _Memory:
    """Words with their JSON origin, so two writers of one word are reported."""

    def __init__(self) -> None:
        self.words: dict[int, int] = {}
        self.origin: dict[int, str] = {}

    def write(self, address: int, word: int, where: str) -> None:
        if address in self.origin:
            raise InputError(f"{where}: writes the word at {address:#x}, already written by {self.origin[address]}")
        self.words[address], self.origin[address] = word, where


def _pairs_no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise InputError(f"key {k!r} appears twice in one object")
        out[k] = v
    return out


def parse(text: str, source: str = "<scenario>") -> Scenario:
    """A scenario from JSON text."""
    try:
        obj = json.loads(text, object_pairs_hook=_pairs_no_duplicates)
    except json.JSONDecodeError as e:
        raise InputError(f"{source}: malformed JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except InputError as e:
        raise InputError(f"{source}: {e}") from None
    try:
        return from_dict(obj, source)
    except InputError as e:
        raise InputError(f"{source}: {e}") from None


def load(path: str | Path) -> Scenario:
    """A scenario from a JSON file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    return parse(text, str(path))


def from_dict(obj: Any, source: str = "<scenario>") -> Scenario:
    """A scenario from the parsed JSON (errors name the JSON path, not the source)."""
    top = _obj(obj, "scenario")
    _check_keys(top, TOP_KEYS, "scenario", "key")
    mem = _Memory()

    # -- devices ------------------------------------------------------------------------------
    devices: dict[int, Any] = {}
    device_keys: dict[int, str] = {}
    for key, dte in _obj(top.get("devices", {}), "devices").items():
        did = parse_device_id(key, f"devices.{key}")
        if did in devices:
            raise InputError(f"devices.{key}: DeviceID {did:#x} given twice ({device_keys[did]!r} and {key!r})")
        devices[did], device_keys[did] = dte, key
    viommu = None
    if "viommu" in top:
        from amdvi.frontend import scenario_viommu

        viommu = scenario_viommu.parse_section(top["viommu"])
    set_up_ids = viommu.set_up_device_ids() if viommu else {}

    # -- device table -----------------------------------------------------------------------------
    if "device_table" not in top:
        raise InputError("scenario: missing \"device_table\": {\"base\": ADDRESS, \"size\": N}")
    dt = _obj(top["device_table"], "device_table")
    _check_keys(dt, ("base", "size", COMMENT), "device_table", "key")
    if "base" not in dt:
        raise InputError("device_table: missing \"base\" (the device table's system address)")
    base = _address(dt["base"], "device_table.base", align=PAGE, what="device table base")
    size_field = DEV_TAB_BAR.field("Size")
    if "size" in dt:
        size = field_value(size_field, dt["size"], "device_table.size", DEV_TAB_BAR)
    else:
        size = max([*devices, *set_up_ids], default=0) * ENTRY_BYTES // PAGE
    dev_tab_bar = DEV_TAB_BAR.encode({"DevTabBase": base >> 12, "Size": size})
    length = (size + 1) * PAGE
    if (base + length) >> 52:
        raise InputError("device_table: the table ends beyond the 52-bit system address space")
    if viommu:
        scenario_viommu.check_device_ids(viommu, device_keys, length // ENTRY_BYTES)

    for did, dte in devices.items():
        where = f"devices.{device_keys[did]}"
        if did * ENTRY_BYTES >= length:
            raise InputError(f"{where}: the DTE of DeviceID {did:#x} lies outside the device table "
                             f"(Size {size}: {length // PAGE} page(s), DeviceIDs 0..{length // ENTRY_BYTES - 1:#x})")
        if isinstance(dte, list):
            if len(dte) != 4:
                raise InputError(f"{where}: a raw DTE is four 64-bit words (lowest first), got {len(dte)}")
            words = [_raw_word(w, f"{where}[{k}]") for k, w in enumerate(dte)]
        else:
            bits = encode_fields(DTE, _obj(dte, where), where)
            words = [(bits >> (64 * k)) & mask(64) for k in range(4)]
        for k, w in enumerate(words):
            mem.write(base + did * ENTRY_BYTES + 8 * k, w, f"{where} (DTE word {k})")

    # -- tables ---------------------------------------------------------------------------------
    tables: dict[int, tuple[str, int | None]] = {}
    table_keys: dict[int, str] = {}
    for key, t in _obj(top.get("tables", {}), "tables").items():
        where = f"tables.{key}"
        addr = _address(key, where, align=PAGE, what="table address")
        if addr in tables:
            raise InputError(f"{where}: overlaps table {table_keys[addr]!r} (both at {addr:#x})")
        if base <= addr < base + length:
            raise InputError(f"{where}: table at {addr:#x} overlaps the device table "
                             f"({base:#x}..{base + length - 1:#x})")
        t = _obj(t, where)
        _check_keys(t, ("kind", "level", "entries", COMMENT), where, "key")
        kind = t.get("kind")
        if kind not in KINDS:
            raise InputError(f"{where}.kind: expected one of {', '.join(KINDS)}, got {json.dumps(kind)}")
        level = None
        if "level" in t:
            level = _num(t["level"], f"{where}.level")
            lo, hi = KINDS[kind]
            if not lo <= level <= hi:
                raise InputError(f"{where}.level: a {kind} table's level is {lo}..{hi}, got {level}")
        tables[addr], table_keys[addr] = (kind, level), key
        for ikey, entry in _obj(t.get("entries", {}), f"{where}.entries").items():
            epath = f"{where}.entries.{ikey}"
            index = _num(ikey, epath)
            if index >= ENTRIES:
                raise InputError(f"{epath}: entry index {index} is over 511 (a table has 512 entries)")
            mem.write(addr + 8 * index, encode_entry(kind, entry, epath), epath)

    # -- raw words ------------------------------------------------------------------------------
    for key, value in _obj(top.get("words", {}), "words").items():
        where = f"words.{key}"
        addr = _address(key, where, align=8, bits=64, what="word address")
        mem.write(addr, _raw_word(value, where), where)

    description = top.get("description", "")
    scenario = Scenario(mem.words, dev_tab_bar, tuple(sorted(devices)), source, tables,
                        description if isinstance(description, str) else "")
    _check_structure(scenario, device_keys, table_keys)
    if viommu:
        memory = scenario_viommu.apply(viommu, mem.words, mem.origin, base, size + 1)
        scenario = dataclasses.replace(scenario, memory=memory, devices=tuple(sorted({*devices, *set_up_ids})),
                                       viommu=viommu.host_setup(base, size + 1).config)
    return scenario


def _check_structure(s: Scenario, device_keys: Mapping[int, str], table_keys: Mapping[int, str]) -> None:
    """Cycles, and tables reached as another kind or level than declared (by traversal from each device)."""
    from amdvi.properties.reachability import build_graph, table_cycles, tables_reached

    graph = build_graph(s.memory, s.dev_tab_bar, s.devices)
    for cycle in table_cycles(graph):
        who = [device_keys[d] for d in s.devices
               if any(n[3] in cycle for n in tables_reached(graph, d))]
        path = " -> ".join(table_keys.get(a, f"{a:#x}") for a in cycle)
        raise InputError(f"tables: cycle {path}: a table is reachable from itself"
                         + (f" (from devices.{who[0]})" if who else ""))
    for d in s.devices:
        for n in sorted(tables_reached(graph, d), key=lambda n: (n[3], n[1], n[2])):
            _, kind, level, addr, _ = n
            if addr not in s.tables:
                continue
            dkind, dlevel = s.tables[addr]
            if dkind != kind:
                raise InputError(f"tables.{table_keys[addr]}: declared kind {dkind!r} but devices."
                                 f"{device_keys[d]} reaches it as a {kind} table")
            if dlevel is not None and dlevel != level:
                raise InputError(f"tables.{table_keys[addr]}: declared level {dlevel} but devices."
                                 f"{device_keys[d]} reaches it at level {level}")


# ---- walking one request (amdvi walk) -------------------------------------------------------

STEP_STRUCTURES: dict[str, Structure] = {"DTE": DTE, "GCR3": GCR3_ENTRY, "GPTE": GPTE}


def step_structure(table: str, entry: int) -> Structure:
    """The field table that decodes a walk step's entry (a host entry by its Next Level)."""
    if table in STEP_STRUCTURES:
        return STEP_STRUCTURES[table]
    return PTE if PDE.view(entry)["Next Level"] in (0, 7) else PDE


def entry_summary(structure: Structure, entry: int, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """The non-zero fields of an entry (addresses shown as addresses) and the rules it breaks
    (with ``context``, also the rules that depend on register values)."""
    from amdvi.frontend import render

    rep = render.decode_report(structure, entry, context)
    parts = {n for c in rep["composites"] if c["value"] for n, _ in structure.composite(c["name"]).parts}
    fields: dict[str, Any] = {}
    for r in rep["fields"]:
        if r.get("kind") is None and r["value"] and r["name"] not in parts:
            fields[r["name"]] = r.get("address", r["hex"] if r["value"] > 9 else r["value"])
        elif r.get("kind") is not None:
            fields[f"{r['kind']}[{r['bits']}]"] = r["hex"]
    for c in rep["composites"]:
        if c["value"]:
            fields[c["name"]] = c["hex"]
    return {"structure": structure.name, "hex": rep["hex"], "fields": fields,
            "violations": [v["rule"] for v in rep["violations"]]}


def walk_report(s: Scenario, device_id: int, address: int, write: bool, *, pasid: int | None = None,
                ats: bool = False, user: bool = False, execute: bool = False,
                context: dict[str, Any] | None = None) -> dict[str, Any]:
    """Translate one request through the spec and describe every active step and the result."""
    from amdvi.frontend import render
    from amdvi.spec.bitvec import INT
    from amdvi.spec.events import event_structure
    from amdvi.spec.translation import DIMENSION_NAMES, Request, translate

    req = Request(device_id=device_id, address=address, write=write, pasid=pasid or 0,
                  has_pasid=pasid is not None, user=user, execute=execute, ats=ats)
    out = translate(INT, s.memory, s.dev_tab_bar, req, context=context)
    steps = []
    for st in out.steps:
        if not st.active:
            continue
        structure = step_structure(st.table, st.entry)
        steps.append({"table": st.table, "dimension": DIMENSION_NAMES.get(st.dimension, str(st.dimension)),
                      "level": st.level, "entry_address": hex(st.entry_address), "entry": hex(st.entry),
                      "readable": bool(st.readable), "writable": bool(st.writable),
                      "decoded": entry_summary(structure, st.entry, context)})
    result: dict[str, Any] = {"ok": bool(out.ok), "dimension": DIMENSION_NAMES.get(out.dimension, str(out.dimension)),
                              "domain_id": out.domain_id, "logged": bool(out.logged)}
    if out.ok:
        result.update(spa=hex(out.spa), page_shift=out.page_shift,
                      page_size=("untranslated" if out.page_shift >= 64 else hex(1 << out.page_shift)),
                      readable=bool(out.readable), writable=bool(out.writable))
    if out.event:
        es = event_structure(out.event)
        result["event"] = render.decode_report(es, out.event) if es is not None else {"hex": hex(out.event)}
    note = None
    entries = (DEV_TAB_BAR.view(s.dev_tab_bar)["Size"] + 1) * PAGE // ENTRY_BYTES
    if device_id >= entries:
        note = f"DeviceID {device_id:#x} lies beyond the device table (DeviceIDs 0..{entries - 1:#x})"
    elif device_id not in s.devices:
        note = f"the scenario gives DeviceID {device_id:#x} no DTE: its entry reads as zeros"
    return {"access": "write" if write else "read", "device_id": device_id, "device": f"{device_id:#06x}",
            "address": hex(address),
            "pasid": pasid, "ats": ats, "user": user, "execute": execute, "note": note, "steps": steps,
            "result": result}


def print_walk(console: Any, s: Scenario, rep: Mapping[str, Any]) -> None:
    """One walk as text: a line per active step with its decoded fields, then the result."""
    from rich.markup import escape

    from amdvi.frontend import render
    from amdvi.properties.reachability import perm_str, size_str

    d = rep["device_id"]
    extras = [f"PASID {rep['pasid']:#x}" if rep["pasid"] is not None else "",
              "ATS" if rep["ats"] else "", "user" if rep["user"] else "", "execute" if rep["execute"] else ""]
    extra = ", ".join(x for x in extras if x)
    console.print(f"[bold]{rep['access']}[/bold] of {rep['address']} by device {d:#06x} "
                  f"({d >> 8:02x}:{(d >> 3) & 0x1F:02x}.{d & 7:x})" + (f", {extra}" if extra else ""))
    if rep.get("note"):
        console.print(f"  note: {rep['note']}", soft_wrap=True)
    for k, st in enumerate(rep["steps"], 1):
        dec = st["decoded"]
        level = "" if st["table"] == "DTE" else f" level {st['level']}"
        value = " ".join(render.words_of(int(st["entry"], 16), 256)) if st["table"] == "DTE" else st["entry"]
        console.print(f"  {k:>2}. {dec['structure']} ({st['dimension']}){level} at {st['entry_address']}: "
                      f"{value}  -> {perm_str(st['readable'], st['writable'])}", soft_wrap=True)
        fields = " ".join(f"{n}={v}" for n, v in dec["fields"].items()) or "(zero: not present)"
        console.print(f"      {escape(fields)}", soft_wrap=True)
        if dec["violations"]:
            console.print(f"      [red]breaks[/red]: {escape(', '.join(dec['violations']))}")
    res = rep["result"]
    if res["ok"]:
        size = "untranslated" if res["page_shift"] >= 64 else size_str(1 << res["page_shift"]) + " page"
        console.print(f"  [green]allowed[/green]: SPA {res['spa']} ({size}, permissions "
                      f"{perm_str(res['readable'], res['writable'])}, DomainID {res['domain_id']:#x})")
        return
    logged = "logged" if res["logged"] else "not logged (IO_PAGE_FAULT suppressed by DTE.SA/SE); the record would be"
    console.print(f"  [red]fault[/red] in the {res['dimension']} dimension, {logged}:", soft_wrap=True)
    if "event" in res and "fields" in res["event"]:
        render.print_decode(console, res["event"], show_zero=False)
