"""Scenario files and the `amdvi walk` / `amdvi graph` commands: loading, errors, walks, DOT output."""

import json
from pathlib import Path

import pytest

from amdvi.frontend import scenario
from amdvi.frontend.main import main
from amdvi.frontend.errors import InputError
from amdvi.spec.device_table import DTE
from amdvi.spec.guest_page_table import GCR3_ENTRY
from amdvi.spec.host_page_table import PDE, PTE
from amdvi.spec.mmio import DEV_TAB_BAR

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GOOD = sorted(p.name for p in EXAMPLES.glob("*.json"))
BROKEN = sorted(p.name for p in (EXAMPLES / "broken").glob("*.json"))

V1 = {"V": 1, "TV": 1, "Mode": 4, "Host Page Table Root Pointer": "0x200000", "IR": 1, "IW": 1, "DomainID": 1}


def base(**over):
    """A small valid scenario; keyword arguments replace top-level keys."""
    s = {"device_table": {"base": "0x100000"}, "devices": {"0x10": dict(V1)},
         "tables": {"0x200000": {"kind": "host", "level": 4, "entries": {
             "0": {"PR": 1, "Next Level": 3, "Next Table Address": "0x201000", "IR": 1, "IW": 1}}},
             "0x201000": {"kind": "host", "level": 3}}}
    s.update(over)
    return s


def load(obj):
    return scenario.parse(json.dumps(obj), "t.json")


def error(obj) -> str:
    with pytest.raises(InputError) as e:
        load(obj)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def walk_json(capsys, name, *argv):
    code, out, err = run(capsys, "walk", EXAMPLES / name, *argv, "--json")
    assert code == 0, err
    return json.loads(out)["walks"]


# ---- the loader: encoding through the field tables ---------------------------------------------

def test_example_scenarios_load():
    for name in GOOD:
        s = scenario.load(EXAMPLES / name)
        assert s.devices and s.memory and s.source.endswith(name)


def test_dte_and_entries_are_encoded_by_the_field_tables():
    s = load(base())
    bar = DEV_TAB_BAR.view(s.dev_tab_bar)
    assert bar["DevTabBase"] << 12 == 0x100000 and bar["Size"] == 0
    dte = sum(s.memory[0x100000 + 0x10 * 32 + 8 * k] << (64 * k) for k in range(4))
    assert dte == DTE.encode({"V": 1, "TV": 1, "Mode": 4, "Host Page Table Root Pointer": 0x200, "IR": 1, "IW": 1,
                              "DomainID": 1})
    assert s.memory[0x200000] == PDE.encode({"PR": 1, "Next Level": 3, "Next Table Address": 0x201, "IR": 1, "IW": 1})
    assert s.tables == {0x200000: ("host", 4), 0x201000: ("host", 3)}


def test_field_names_accept_any_case_and_python_names():
    dev = {"v": 1, "tv": 1, "MODE": 4, "host_page_table_root_pointer": "0x200000", "domainid": "0x2a"}
    s = load(base(devices={"0x10": dev}))
    assert DTE.view(s.memory[0x100200] | s.memory[0x100208] << 64)["DomainID"] == 0x2A


def test_composite_gcr3_root_pointer_is_split_into_its_pieces():
    dev = {"V": 1, "TV": 1, "GV": 1, "GCR3 Table Root Pointer": "0x89abcd000"}
    s = load({"device_table": {"base": "0x100000"}, "devices": {"1": dev}})
    bits = sum(s.memory[0x100020 + 8 * k] << (64 * k) for k in range(4))
    assert DTE.view(bits)["GCR3 Table Root Pointer"] == 0x89ABCD000
    assert DTE.view(bits)["GCR3 Table Root Pointer[14:12]"] == 0x5


def test_next_level_picks_pde_or_pte_and_kinds_pick_guest_structures():
    assert scenario.encode_entry("host", {"PR": 1, "Next Level": 7, "Page Address": "0x40b000"}, "e") == \
        PTE.encode({"PR": 1, "Next Level": 7, "Page Address": 0x40B})
    assert scenario.encode_entry("gcr3", {"V": 1, "GCR3": "0x2000"}, "e") == GCR3_ENTRY.encode({"V": 1, "GCR3": 2})
    assert scenario.encode_entry("host", "0x6010000000400001", "e") == 0x6010000000400001  # raw word


def test_bdf_device_ids_and_default_device_table_size():
    s = load({"device_table": {"base": "0x100000"}, "devices": {"01:00.0": {"V": 1}}})
    assert s.devices == (0x100,)
    assert DEV_TAB_BAR.view(s.dev_tab_bar)["Size"] == 2  # DeviceID 0x100 is in the third 4 KiB page


# ---- the loader's errors: one line naming the JSON path ------------------------------------------

@pytest.mark.parametrize("obj, expected", [
    (base(devices={"0x10": {**V1, "Moed": 4}}), "devices.0x10: unknown DTE field 'Moed'; did you mean 'Mode'?"),
    (base(devices={"0x10": {**V1, "Mode": 9}}), "devices.0x10.Mode: 0x9 does not fit in DTE Mode (3 bits, bits 11:9)"),
    (base(devices={"0x10": {**V1, "Host Page Table Root Pointer": "0x200800"}}),
     "devices.0x10.Host Page Table Root Pointer: DTE Host Page Table Root Pointer 0x200800 is not aligned to 4 KiB"),
    (base(devices={"0x10": {**V1, "Host Page Table Root Pointer": "0x10000000000000"}}),
     "Host Page Table Root Pointer 0x10000000000000 is wider than 52 bits"),
    (base(devices={"0x10000": {"V": 1}}), "devices.0x10000: DeviceID 0x10000 does not fit in 16 bits"),
    (base(devices={"0x10": {"V": 1}, "16": {"V": 1}}), "DeviceID 0x10 given twice"),
    (base(devices={"0x80": {"V": 1}}, device_table={"base": "0x100000", "size": 0}),
     "devices.0x80: the DTE of DeviceID 0x80 lies outside the device table (Size 0"),
    (base(tables={"0x200000": {"kind": "host", "entries": {"512": {"PR": 1}}}}),
     "tables.0x200000.entries.512: entry index 512 is over 511"),
    (base(tables={"0x200800": {"kind": "host"}}), "tables.0x200800: table address 0x200800 is not aligned to 4 KiB"),
    (base(tables={"0x200000": {"kind": "host"}, "2097152": {"kind": "host"}}),
     "tables.2097152: overlaps table '0x200000' (both at 0x200000)"),
    (base(tables={"0x100000": {"kind": "host"}}), "tables.0x100000: table at 0x100000 overlaps the device table"),
    (base(tables={"0x200000": {"kind": "hots"}}), "tables.0x200000.kind: expected one of host, guest, gcr3"),
    (base(tables={"0x200000": {"kind": "host", "level": 7}}), "tables.0x200000.level: a host table's level is 1..6"),
    (base(tables={"0x200000": {"kind": "host", "entries": {"0": {"PR": 1, "Next Table Address": "0x1000"}}}}),
     "'Next Table Address' is a PDE field, but this entry's Next Level makes it a PTE"),
    (base(tables={"0x200000": {"kind": "guest"}}), "tables.0x200000: declared kind 'guest' but devices.0x10 reaches it as a host table"),
    (base(tables={"0x200000": {"kind": "host", "level": 3}}), "tables.0x200000: declared level 3 but devices.0x10 reaches it at level 4"),
    (base(words={"0x200000": "1"}), "words.0x200000: writes the word at 0x200000, already written by tables.0x200000.entries.0"),
    (base(words={"0x300004": "1"}), "words.0x300004: word address 0x300004 is not aligned to 8 bytes"),
    (base(words={"0x300000": "0x10000000000000000"}), "does not fit in a 64-bit word"),
    (base(devices={"0x10": ["1", "0", "0"]}), "a raw DTE is four 64-bit words"),
    (base(devices={"0x10": {**V1, "Mode": "four"}}), "devices.0x10.Mode: 'four' is not a number"),
    (base(device_table={"base": "0x100000", "sise": 0}), "device_table: unknown key 'sise'; did you mean 'size'?"),
    (base(tabels={}), "scenario: unknown key 'tabels'; did you mean 'tables'?"),
    ({"devices": {}}, "missing \"device_table\""),
])
def test_loader_errors_name_the_json_path(obj, expected):
    assert expected in error(obj)


def test_cycle_in_the_page_tables_is_rejected():
    tables = {"0x200000": {"kind": "host", "entries": {
                  "0": {"PR": 1, "Next Level": 3, "Next Table Address": "0x201000", "IR": 1, "IW": 1}}},
              "0x201000": {"kind": "host", "entries": {
                  "0": {"PR": 1, "Next Level": 2, "Next Table Address": "0x200000", "IR": 1, "IW": 1}}}}
    msg = error(base(tables=tables))
    assert "tables: cycle 0x200000 -> 0x201000 -> 0x200000" in msg and "devices.0x10" in msg


def test_gcr3_cycle_through_guest_tables_is_rejected():
    dev = {"V": 1, "TV": 1, "GV": 1, "GLX": 1, "GCR3 Table Root Pointer": "0x500000", "IR": 1, "IW": 1}
    tables = {"0x500000": {"kind": "gcr3", "entries": {"0": {"V": 1, "GCR3": "0x501000"}}},
              "0x501000": {"kind": "gcr3", "entries": {"0": {"V": 1, "GCR3": "0x500000"}}}}
    msg = error({"device_table": {"base": "0x100000"}, "devices": {"0x10": dev}, "tables": tables})
    assert "cycle" in msg and "0x500000" in msg


def test_a_table_pointing_at_itself_is_a_cycle():
    tables = {"0x200000": {"kind": "host", "entries": {
        "0": {"PR": 1, "Next Level": 3, "Next Table Address": "0x200000", "IR": 1, "IW": 1}}}}
    assert "cycle 0x200000 -> 0x200000" in error(base(tables=tables))


def test_malformed_json_and_duplicate_keys():
    with pytest.raises(InputError, match=r"t.json: malformed JSON: .* at line 1"):
        scenario.parse("{\"devices\": ", "t.json")
    with pytest.raises(InputError, match="key 'V' appears twice"):
        scenario.parse('{"device_table": {"base": 0}, "devices": {"1": {"V": 1, "V": 0}}}', "t.json")


@pytest.mark.parametrize("name", BROKEN)
def test_broken_examples_exit_2_with_one_line(capsys, name):
    for cmd in (["walk", EXAMPLES / "broken" / name, "--device", "0x10", "--addr", "0", "--access", "r"],
                ["graph", EXAMPLES / "broken" / name, "--json"]):
        code, out, err = run(capsys, *cmd)
        assert code == 2 and out == ""
        assert err.startswith("amdvi: error: ") and err.count("\n") == 1 and name in err


@pytest.mark.parametrize("argv, expected", [
    (["--device", "0x10000", "--addr", "0", "--access", "r"], "--device: DeviceID 0x10000 does not fit in 16 bits"),
    (["--device", "zz", "--addr", "0", "--access", "r"], "--device: 'zz' is not a number"),
    (["--device", "0x10", "--addr", "0x1g", "--access", "r"], "--addr '0x1g' is not a number"),
    (["--device", "0x10", "--addr", hex(1 << 64), "--access", "r"], "does not fit in 64 bits"),
    (["--device", "0x10", "--addr", "0", "--access", "x"], "--access 'x': use r, w or rw"),
    (["--device", "0x10", "--addr", "0", "--access", "r", "--pasid", "0x100000"], "--pasid '0x100000' does not fit in 20 bits"),
    (["--addr", "0", "--access", "r"], "the following arguments are required: --device"),
])
def test_walk_bad_options_exit_2_with_one_line(capsys, argv, expected):
    code, out, err = run(capsys, "walk", EXAMPLES / "v1-4level.json", *argv)
    assert code == 2 and expected in err and err.count("\n") == 1


def test_missing_scenario_file(capsys, tmp_path):
    code, _, err = run(capsys, "walk", tmp_path / "nope.json", "--device", "1", "--addr", "0", "--access", "r")
    assert code == 2 and "cannot read" in err


# ---- walks --------------------------------------------------------------------------------------

def test_walk_v1_read_only_page_read_then_write(capsys):
    read, write = walk_json(capsys, "v1-4level.json", "--device", "00:02.0", "--addr", "0x1234", "--access", "rw")
    assert [s["table"] for s in read["steps"]] == ["DTE", "PDE/PTE", "PDE/PTE", "PDE/PTE", "PDE/PTE"]
    assert [s["level"] for s in read["steps"][1:]] == [4, 3, 2, 1]
    assert [s["decoded"]["structure"] for s in read["steps"]] == ["DTE", "PDE", "PDE", "PDE", "PTE"]
    assert read["steps"][1]["decoded"]["fields"]["Next Table Address"] == "0x201000"
    assert read["result"] == {"ok": True, "dimension": "none", "domain_id": 1, "logged": False, "spa": "0x401234",
                              "page_shift": 12, "page_size": "0x1000", "readable": True, "writable": False}
    res = write["result"]
    assert res["ok"] is False and res["dimension"] == "host" and res["logged"] is True
    ev = {f["name"]: f["value"] for f in res["event"]["fields"]}
    assert res["event"]["structure"] == "IO_PAGE_FAULT"
    assert ev["DeviceID"] == 0x10 and ev["PR"] == 1 and ev["PE"] == 1 and ev["RW"] == 1 and ev["Address"] == 0x1234


def test_walk_v1_large_pages(capsys):
    (r32k,) = walk_json(capsys, "v1-4level.json", "--device", "0x10", "--addr", "0x9234", "--access", "r")
    assert r32k["result"]["spa"] == "0x409234" and r32k["result"]["page_size"] == "0x8000"
    (r2m,) = walk_json(capsys, "v1-4level.json", "--device", "0x10", "--addr", "0x8000012345", "--access", "w")
    assert r2m["result"]["spa"] == "0xa12345" and r2m["result"]["page_shift"] == 21
    assert [s["level"] for s in r2m["steps"][1:]] == [4, 2]  # the PDE skips level 3


def test_walk_mode0_passthrough_honours_dte_permissions(capsys):
    read, write = walk_json(capsys, "v1-4level.json", "--device", "0x08", "--addr", "0xdead000", "--access", "rw")
    assert read["result"]["ok"] and read["result"]["spa"] == "0xdead000" and read["result"]["page_size"] == "untranslated"
    assert not write["result"]["ok"]


def test_walk_nested_read_only_host_page(capsys):
    read, write = walk_json(capsys, "nested.json", "--device", "0x20", "--pasid", "1", "--addr", "0x1234", "--access", "rw")
    assert read["result"]["ok"] and read["result"]["spa"] == "0x321234" and read["result"]["writable"] is False
    assert write["result"]["dimension"] == "host"
    ev = {f["name"]: f["value"] for f in write["result"]["event"]["fields"]}
    assert ev["Address"] == 0x11234 and ev["PE"] == 1 and ev.get("GN", 0) == 0 and ev["DomainID or PASID[15:0]"] == 7
    tables = [s["table"] for s in read["steps"]]
    assert tables.count("GCR3") == 1 and tables.count("GPTE") == 4 and tables[-1] == "PDE/PTE"


def test_walk_nested_shows_only_the_host_walks_that_happen(capsys):
    (read,) = walk_json(capsys, "nested.json", "--device", "0x20", "--pasid", "1", "--addr", "0x1234", "--access", "r")
    # DTE; GCR3 root (3 host steps); GCR3 entry; gCR3 (3); then per guest level: entry, and for the
    # three non-leaf levels the next table's host walk (3 each); finally the GPA's host walk (3).
    assert len(read["steps"]) == 1 + 3 + 1 + 3 + (1 + 3) * 3 + 1 + 3


def test_walk_guest_only_5_level_user_and_nx_faults(capsys):
    (ok,) = walk_json(capsys, "v2-5level.json", "--device", "0x30", "--pasid", "0x205", "--addr", "0x1234",
                      "--access", "w")
    assert ok["result"]["spa"] == "0x601234" and [s["level"] for s in ok["steps"] if s["table"] == "GCR3"] == [1, 0]
    assert [s["level"] for s in ok["steps"] if s["table"] == "GPTE"] == [5, 4, 3, 2, 1]
    (user,) = walk_json(capsys, "v2-5level.json", "--device", "0x30", "--pasid", "0x205", "--addr", "0x1234",
                        "--access", "r", "--user")
    ev = {f["name"]: f["value"] for f in user["result"]["event"]["fields"]}
    assert ev["US"] == 1 and ev["PE"] == 1 and ev["GN"] == 1 and ev["DomainID or PASID[15:0]"] == 0x205
    (nx,) = walk_json(capsys, "v2-5level.json", "--device", "0x30", "--pasid", "0x205", "--addr", "0x2000",
                      "--access", "r", "--exec")
    assert {f["name"]: f["value"] for f in nx["result"]["event"]["fields"]}["NX"] == 1
    (giant,) = walk_json(capsys, "v2-5level.json", "--device", "0x30", "--pasid", "0x205", "--addr", "0x7654321a",
                         "--access", "r")
    assert giant["result"]["page_shift"] == 30 and giant["result"]["spa"] == hex(0x80000000 | 0x3654321A)
    (giov,) = walk_json(capsys, "v2-5level.json", "--device", "0x30", "--addr", "0x10", "--access", "w")
    assert giov["result"]["ok"] is False  # no PASID, GIoV = 1: PASID 0's read-only page


def test_walk_faults_suppressed_reserved_and_illegal(capsys):
    (sa,) = walk_json(capsys, "faults.json", "--device", "0x42", "--addr", "0x1000", "--access", "r")
    assert sa["result"]["ok"] is False and sa["result"]["logged"] is False
    (rz,) = walk_json(capsys, "faults.json", "--device", "0x43", "--addr", "0x0", "--access", "r")
    assert rz["steps"][-1]["decoded"]["violations"] == ["reserved[58:52]"]
    assert {f["name"]: f["value"] for f in rz["result"]["event"]["fields"]}["RZ"] == 1
    (bad_nl,) = walk_json(capsys, "faults.json", "--device", "0x43", "--addr", "0x1000", "--access", "r")
    assert {f["name"]: f["value"] for f in bad_nl["result"]["event"]["fields"]}["RZ"] == 1
    (glx,) = walk_json(capsys, "faults.json", "--device", "0x41", "--addr", "0x0", "--access", "r")
    assert glx["result"]["event"]["structure"] == "ILLEGAL_DEV_TABLE_ENTRY"
    (tv,) = walk_json(capsys, "faults.json", "--device", "0x40", "--addr", "0x0", "--access", "w")
    assert tv["result"]["dimension"] == "device table" and tv["result"]["event"]["structure"] == "IO_PAGE_FAULT"


def test_walk_device_without_dte_is_noted(capsys):
    (w,) = walk_json(capsys, "v1-4level.json", "--device", "0x11", "--addr", "0x10", "--access", "r")
    assert "no DTE" in w["note"] and w["result"]["ok"] and w["result"]["page_size"] == "untranslated"


def test_walk_text_output(capsys):
    code, out, _ = run(capsys, "walk", EXAMPLES / "v1-4level.json", "--device", "0x10", "--addr", "0x1000",
                       "--access", "rw")
    assert code == 0
    assert "read of 0x1000 by device 0x0010 (00:02.0)" in out and "write of 0x1000" in out
    assert "PDE (host) level 4 at 0x200000" in out and "Next Table Address=0x201000" in out
    assert "allowed: SPA 0x401000 (4 KiB page, permissions r-" in out
    assert "fault in the host dimension, logged" in out and "IO_PAGE_FAULT" in out


# ---- graph ------------------------------------------------------------------------------------------

def test_graph_json_lists_reachable_frames(capsys):
    code, out, err = run(capsys, "graph", EXAMPLES / "v1-4level.json", "--json")
    assert code == 0, err
    rep = json.loads(out)
    frames = {(f["address"], f["size"]): (f["readable"], f["writable"]) for f in rep["devices"]["0x0010"]["frames"]}
    assert frames == {("0x400000", "0x1000"): (True, True), ("0x401000", "0x1000"): (True, False),
                      ("0x408000", "0x8000"): (True, True), ("0x800000", "0x200000"): (True, True),
                      ("0xa00000", "0x200000"): (True, True)}
    assert rep["devices"]["0x0008"]["frames"] == [
        {"address": "0x0", "size": hex(1 << 64), "readable": True, "writable": False}]


def test_graph_writes_dot_atomically_and_notes_missing_graphviz(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no Graphviz here
    dot, svg = tmp_path / "out" / "g.dot", tmp_path / "g.svg"
    code, out, err = run(capsys, "graph", EXAMPLES / "nested.json", "--out", dot, "--svg", svg)
    assert code == 0
    text = dot.read_text()
    assert text.startswith('digraph "nested" {') and text.rstrip().endswith("}")
    assert "guest table L4" in text and "GPA 0x2000 -> 0x311000" in text and "->" in text
    assert not svg.exists() and err.count("\n") == 1 and "note: Graphviz 'dot' is not on PATH" in err
    assert f"wrote DOT to {dot}" in out
    assert not [p for p in dot.parent.iterdir() if p.name.endswith(".tmp")]


def test_graph_without_outputs_prints_dot(capsys):
    code, out, _ = run(capsys, "graph", EXAMPLES / "faults.json")
    assert code == 0 and out.startswith("digraph") and "fault: TV = 0" in out


def test_walk_checks_feature_rules_when_efr_is_given(capsys):
    args = ("v2-5level.json", "--device", "0x30", "--pasid", "0x205", "--addr", "0x1234", "--access", "r")
    (plain,) = walk_json(capsys, *args)
    assert plain["result"]["ok"] is True
    efr = hex(1 << 4 | 1 << 48 | 1 << 12)  # GTSup, GIoSup, GATS = 1 (5-level guest tables)
    (five,) = walk_json(capsys, *args, "--efr", efr)
    assert five["result"]["ok"] is True
    (four_only,) = walk_json(capsys, *args, "--efr", hex(1 << 4 | 1 << 48))  # GATS = 0
    assert four_only["result"]["ok"] is False
    assert four_only["result"]["event"]["structure"] == "ILLEGAL_DEV_TABLE_ENTRY"
    assert four_only["steps"][0]["decoded"]["violations"] == ["GPM-beyond-GATS"]  # the walk says why
