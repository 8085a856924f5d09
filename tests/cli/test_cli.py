"""The `amdvi` command: decode, explain, list, docs; bad input is one line and exit 2."""

import re
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from amdvi.frontend.main import main
from amdvi.spec import catalog

LINUX_V1_DTE = ["0x6000000123456603", "0x2a", "0", "0"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def field(report, name):
    return next(f for f in report["fields"] if f["name"] == name)


@pytest.mark.parametrize("spelling", [
    LINUX_V1_DTE,
    ["6000000123456603", "000000000000002a", "0000000000000000", "0000000000000000"],
    ["DTE[0]: 6000000123456603 DTE[1]: 000000000000002a DTE[2]: 0000000000000000 DTE[3]: 0000000000000000"],
    ["0x6000000123456603,0x2a,0,0"],
    ["0x6000000123456603:0x2a:0:0"],
    [hex(0x2A << 64 | 0x6000000123456603)],
    ["0x23456603", "0x60000001", "0x2a", "0", "0", "0", "0", "0"],  # eight dwords, lowest first
])
def test_decode_dte_accepts_the_spellings_found_in_kernel_logs(capsys, spelling):
    rep = run_json(capsys, "decode", "dte", *spelling)
    assert rep["structure"] == "DTE"
    assert field(rep, "Mode")["value"] == 3
    assert field(rep, "DomainID")["value"] == 0x2A
    assert field(rep, "Host Page Table Root Pointer")["address"] == "0x123456000"
    assert rep["legal"] is True


def test_decode_dte_human_table_names_fields_and_section(capsys):
    code, out, _ = run(capsys, "decode", "dte", *LINUX_V1_DTE)
    assert code == 0
    assert "§2.2.2.1" in out and "DomainID" in out and "3-level table" in out


def test_decode_reports_illegal_entries_with_their_event(capsys):
    rep = run_json(capsys, "decode", "dte", hex(1 | 1 << 1 | 7 << 9 | 3 << 56))
    assert rep["legal"] is False
    assert {v["rule"]: v["event"] for v in rep["violations"]} == {"GLX=3": "ILLEGAL_DEV_TABLE_ENTRY", "Mode=7": "IO_PAGE_FAULT"}


def test_efr_option_enables_feature_rules(capsys):
    dte = hex(1 | 1 << 1 | 4 << 9 | 0x1000 << 12)
    assert run_json(capsys, "decode", "dte", dte)["legal"] is True
    rep = run_json(capsys, "decode", "dte", dte, "--efr", hex(3 << 10))  # HATS = 11b: no host translation
    assert [v["rule"] for v in rep["violations"]] == ["host-root-without-HATS"]


def test_decode_command_and_event_pick_the_variant_by_code(capsys):
    cmd = run_json(capsys, "decode", "cmd", "0x2000000000000010", "0")
    assert cmd["structure"] == "INVALIDATE_DEVTAB_ENTRY" and field(cmd, "DeviceID")["value"] == 0x10
    ev = run_json(capsys, "decode", "event", "0x000000a0", "0x2020000d", "0xdeadb000", "0")
    assert ev["structure"] == "IO_PAGE_FAULT"
    assert field(ev, "DeviceID")["value"] == 0xA0 and field(ev, "RW")["value"] == 1


def test_decode_any_register_by_name(capsys):
    rep = run_json(capsys, "decode", "EFR", hex(2 << 10 | 1 << 4))
    assert field(rep, "HATS")["value"] == 2 and field(rep, "GTSup")["value"] == 1


@pytest.mark.parametrize("argv,needle", [
    (["decode", "dte", "0xzz"], "not a hexadecimal number"),
    (["decode", "dte", "0x1", "0x2", "0x3"], "give 1 number or 4 or 8 words"),
    (["decode", "pte", "0x1" + "0" * 16], "has 65 bits"),
    (["decode", "cmd", "0xB000000000000000", "0"], "unknown command opcode 0xb"),
    (["decode", "event", "0x0", "0xf0000000", "0", "0"], "unknown event code 0xf"),
    (["decode", "nonsense", "0"], "unknown structure"),
    (["decode", "dte"], "give the dte value"),
    (["decode", "dmesg", "/nonexistent/kern.log"], "cannot read"),
    (["explain", "DTE.Nope"], "unknown structure or field"),
    (["explain", "DTE.GX"], "did you mean"),
    (["frobnicate"], "invalid choice"),
    (["decode", "dte", "0x1", "--efr", "0xq"], "not a hexadecimal number"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("name,bits", [("DTE.Mode", "11:9"), ("dte.gv", "55"), ("EFR.HATS", "11:10"),
                                       ("IO_PAGE_FAULT.RW", "53")])
def test_explain_field(capsys, name, bits):
    rep = run_json(capsys, "explain", name)
    assert rep["kind"] == "field" and rep["bits"] == bits and rep["section"].startswith("§")


def test_explain_mode_lists_values_and_the_illegal_one(capsys):
    code, out, _ = run(capsys, "explain", "DTE.Mode")
    assert code == 0 and "11:9" in out and "§2.2.2.1" in out and "0x7: reserved" in out
    assert "Mode = 7 is a reserved host paging mode" in out


def test_explain_command_and_bare_field_name(capsys):
    rep = run_json(capsys, "explain", "INVALIDATE_IOMMU_PAGES")
    assert rep["kind"] == "structure" and rep["section"] == "§2.4.3"
    assert {"S", "PDE", "GN", "DomainID"} <= {f["name"] for f in rep["fields"]}
    reps = run_json(capsys, "explain", "GLX")  # a bare field name: every structure that has it
    reps = reps if isinstance(reps, list) else [reps]
    assert "DTE.GLX" in [r["name"] for r in reps]


def test_explain_composite(capsys):
    rep = run_json(capsys, "explain", "DTE.GCR3 Table Root Pointer")
    assert rep["kind"] == "composite" and len(rep["parts"]) == 3


def test_list_names_every_structure(capsys):
    rows = run_json(capsys, "list")
    assert [r["name"] for r in rows] == [s.name for s in catalog.STRUCTURES]


def test_docs_writes_one_page_per_structure_with_sections(capsys, tmp_path):
    out = tmp_path / "ref"
    rep = run_json(capsys, "docs", "--out", str(out))
    assert len(rep["written"]) == len(catalog.STRUCTURES) + 2  # the pages, sources.md and index.md
    page = (out / "dte.md").read_text()
    assert "| 55 | GV |" in page and "§2.2.2.1" in page
    assert "[DTE](dte.md)" in (out / "index.md").read_text()
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_docs_refuses_a_file_as_directory(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = run(capsys, "docs", "--out", str(f))
    assert code == 2 and "not a directory" in err


def test_installed_console_script_runs(tmp_path):
    script = Path(sys.executable).with_name("amdvi")
    if not script.exists():
        pytest.skip("console script not installed next to this interpreter")
    proc = subprocess.run([str(script), "explain", "DTE.GV", "--json"], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "COLUMNS": "120"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["bits"] == "55"
    bad = subprocess.run([str(script), "decode", "dte", "xyz"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("amdvi: error:")


def test_demo_decodes_the_builtin_log_and_reproduces_the_thinkbook_illegal_dte(capsys):
    rep = run_json(capsys, "demo")
    events = [r["event"] for r in rep["records"] if r["kind"] == "event"]
    assert events[0] == "ILLEGAL_DEV_TABLE_ENTRY" and events.count("IO_PAGE_FAULT") == 3
    assert rep["records"][0]["dte"]["legal"] is True  # without register context
    assert [v["rule"] for v in rep["why"]["violations"]] == ["PPR-without-EPHEn"]
    code, out, _ = run(capsys, "demo")
    assert code == 0 and "(Control.EPHEn = 0)" in out and "ILLEGAL_DEV_TABLE_ENTRY" in out


def test_control_option_feeds_control_rules(capsys):
    words = ["0x7d90000000000003", "0x0000100103fc0009", "0x2000000117840013", "0x0"]
    efr = hex(1 << 50 | 1 << 48 | 1 << 4)  # EPHSup, GIoSup, GTSup
    rep = run_json(capsys, "decode", "dte", *words, "--efr", efr, "--control", "0x1005")
    assert [v["rule"] for v in rep["violations"]] == ["PPR-without-EPHEn"]
    rep = run_json(capsys, "decode", "dte", *words, "--efr", efr, "--control", hex(0x1005 | 1 << 45))
    assert rep["legal"] is True


def test_dmesg_from_stdin_tolerates_bytes_that_are_not_utf8(tmp_path):
    script = Path(sys.executable).with_name("amdvi")
    if not script.exists():
        pytest.skip("console script not installed next to this interpreter")
    line = b"AMD-Vi: Event logged [IO_PAGE_FAULT device=00:14.0 domain=0x0000 address=0x1000 flags=0x0008]\n"
    proc = subprocess.run([str(script), "decode", "dmesg", "-", "--json"], input=line + b"\xff\xfe junk\n",
                          capture_output=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8", "LC_ALL": "C.UTF-8"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["event"] == "IO_PAGE_FAULT"


def test_explain_shows_the_sources_and_the_conflict(capsys):
    code, out, _ = run(capsys, "explain", "DTE.GuestID")
    assert code == 0 and "239:224" in out and "confirmed by 3 public sources: FreeBSD, OSDev, AMD-RFC" in out
    assert "conflict:" in out and "DTE_VIOMMU_GUESTID_SHIFT" in out.replace("\n", "")
    rep = run_json(capsys, "explain", "GPTE.G")
    assert (rep["sources"], rep["confirmed_by"], rep["sources_declared"]) == ([], 0, True)
    rep = run_json(capsys, "explain", "DTE.V")
    assert rep["confirmed_by"] >= 5 and "FreeBSD" in rep["sources"] and rep["conflict"] == ""


def test_docs_list_exactly_the_doubtful_and_the_disputed_fields(capsys, tmp_path):
    run_json(capsys, "docs", "--out", str(tmp_path))
    page = (tmp_path / "sources.md").read_text()
    doubtful_part, disputed_part = page.split("## Fields the sources disagree on")
    listed = set(re.findall(r"^\| \[(.+?)\]\(", doubtful_part, re.M))
    want = {f"{s.name}.{f.name}" for s in catalog.STRUCTURES for f in s.named_fields if f.confirmed_by < 2}
    assert listed == want and "GPTE.G" in listed and "DTE.V" not in listed
    disputed = set(re.findall(r"^\| \[(.+?)\]\(", disputed_part, re.M))
    assert disputed == {f"{s.name}.{f.name}" for s in catalog.STRUCTURES for f in s.named_fields if f.conflict}
    assert "(sources.md)" in (tmp_path / "index.md").read_text()
    assert "| 7: Linux, QEMU, Xen, VirtualBox, FreeBSD, NOVA, OSDev |" in (tmp_path / "dte.md").read_text()
