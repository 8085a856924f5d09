"""Dumps cut short: what the log lacks is unknown, never 0, and no rule is judged on bits that are missing.

The texts are the real reports of tests/cli/test_dmesg.py and amdvi.frontend.builtin_examples, cut the way pastes are.
"""

import json
import random

import pytest
from rich.console import Console

from amdvi.frontend import dmesg_report
from amdvi.frontend.builtin_examples import CONTROL_AFTER_RESUME, EFR_WITH_EPHSUP, THINKBOOK, THINKBOOK_DTE_WORDS
from amdvi.frontend.main import main
from amdvi.frontend.dmesg import EVENT, parse_dmesg
from amdvi.spec.bitvec import INT, mask
from amdvi.spec.device_table import DTE
from amdvi.spec.mmio import CONTROL, EFR, register_context

CONTEXT = {**register_context(EFR, EFR_WITH_EPHSUP), **register_context(CONTROL, CONTROL_AFTER_RESUME)}
THINKBOOK_LINES = THINKBOOK.splitlines()


def rows(report):
    return {f["name"]: f for f in report["fields"]}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_thinkbook_cut_after_dte0_still_shows_the_resume_bug():
    # Linux commit ef75966abf95: after resume Control.EPHEn is clear and the DTE has PPR = 1. DTE[0] holds PPR.
    (rep,) = dmesg_report.decode_log("\n".join(THINKBOOK_LINES[:2]), CONTEXT)
    dte = rep["dte"]
    assert dte["complete"] is False and dte["missing"] == ["DTE[1]", "DTE[2]", "DTE[3]"]
    assert [v["rule"] for v in dte["violations"]] == ["PPR-without-EPHEn"] and dte["legal"] is False
    assert {"reserved[181:180]", "IntCtl=3", "GPM-beyond-GATS"} <= {u["rule"] for u in dte["undetermined"]}
    fields = rows(dte)
    assert fields["PPR"]["value"] == 1 and fields["V"]["value"] == 1
    assert fields["DomainID"]["value"] is None and fields["IntCtl"]["value"] is None  # unknown, not 0
    assert dte["words"][1] == "0x" + "?" * 16 and dte["words"][0] == "0x7d90000000000003"


def test_no_reported_violation_depends_on_a_missing_word():
    rng = random.Random(7)
    for keep in range(2, 6):  # the event line and 0..3 DTE lines
        (rep,) = dmesg_report.decode_log("\n".join(THINKBOOK_LINES[:keep]), CONTEXT)
        r = parse_dmesg("\n".join(THINKBOOK_LINES[:keep]))[0]
        violated = {v["rule"] for v in rep["dte"]["violations"]}
        undetermined = {u["rule"] for u in rep["dte"].get("undetermined", [])}  # a whole dump has none
        for _ in range(20):  # any value of the missing words gives the same verdict on every violated rule
            full = r.dte_bits | (rng.getrandbits(256) & ~r.dte_known_mask & mask(256))
            broken = {x.name for x in DTE.validate(full, CONTEXT)}
            assert violated <= broken
            assert broken <= violated | undetermined


def test_the_text_report_says_what_is_missing(capsys):
    dmesg_report.print_log(Console(width=200), dmesg_report.decode_log("\n".join(THINKBOOK_LINES[:3])))
    out = capsys.readouterr().out
    assert "cut short: DTE[2], DTE[3] not in the log" in out
    dte_part = out.split("the DTE dumped after it")[1]
    assert "unknown (bits not given): " in dte_part and "IntCtl" in dte_part.split("unknown (bits not given): ")[1]
    assert "undetermined without the missing bits: " in out and "legal: no reserved bit" not in out


def test_event_fields_the_line_did_not_print_are_unknown():
    (rep,) = dmesg_report.decode_log("AMD-Vi: Event logged [IO_PAGE_FAULT domain=0x0055 address=0xfffffffdf8000000 "
                                     "flags=0x0008]")
    fields = rows(rep["record"])
    assert fields["DeviceID"]["value"] is None and fields["PASID[19:16]"]["value"] is None
    assert fields["I"]["value"] == 1 and fields["DomainID or PASID[15:0]"]["value"] == 0x55
    assert set(rep["not_in_log"]) >= {"DeviceID", "PASID[19:16]"}


def test_command_dump_cut_after_the_opcode_dword():
    head = "iommu ivhd0: AMD-Vi: Event logged [ILLEGAL_COMMAND_ERROR address=0x10a3f2c30]\n"
    (rep,) = dmesg_report.decode_log(head + "AMD-Vi: CMD[0]: 00000010\nAMD-Vi: CMD[1]: 20000000")
    cmd = rep["command"]  # opcode 2: INVALIDATE_DEVTAB_ENTRY, DeviceID 0x10, CMD[2..3] missing
    assert cmd["structure"] == "INVALIDATE_DEVTAB_ENTRY" and cmd["missing"] == ["CMD[2]", "CMD[3]"]
    assert cmd["complete"] is False and any(u["rule"].startswith("reserved") for u in cmd["undetermined"])
    (rep,) = dmesg_report.decode_log(head + "AMD-Vi: CMD[0]: 00000010")
    assert "CMD[1]" in rep["command"]["error"] and rep["command"]["hex"].endswith("????????00000010")


# ---- `amdvi decode dte` with fewer than four words ----------------------------------------------------

def test_decode_dte_with_two_words_checks_only_what_they_decide(capsys):
    code, out, err = run(capsys, "decode", "dte", *THINKBOOK_DTE_WORDS[:2], "--efr", hex(EFR_WITH_EPHSUP),
                         "--control", hex(CONTROL_AFTER_RESUME), "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["complete"] is False and rep["legal"] is False
    assert [v["rule"] for v in rep["violations"]] == ["PPR-without-EPHEn"]
    assert rows(rep)["DomainID"]["value"] == 9 and rows(rep)["IntTabLen"]["value"] is None
    assert rep["known_mask"] == hex(mask(128))


@pytest.mark.parametrize("words,bits,known", [
    (["DTE[1]: 0000100103fc0009 DTE[3]: 0000000000000000"], 0x0000100103FC0009 << 64, mask(64) << 64 | mask(64) << 192),
    (["00000003", "60000000", "00000001"], 0x0000000160000000_00000003 & mask(96) | 0x6000000000000003, mask(96)),
    (["DTE[0]: 6000000000000003"], 0x6000000000000003, mask(64)),
])
def test_decode_dte_places_each_given_word(capsys, words, bits, known):
    code, out, err = run(capsys, "decode", "dte", *words, "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["known_mask"] == hex(known) and int(rep["hex"].replace("?", "0"), 16) == bits


def test_hand_typed_short_lists_stay_a_miscount(capsys):
    # Without labels only words zero-padded as Linux prints them read as a cut dump.
    code, out, err = run(capsys, "decode", "dte", "0x1", "0x2", "0x3")
    assert code == 2 and "give 1 number or 4 or 8 words" in err
    code, out, err = run(capsys, "decode", "dte", "6000000000000003", "0000000000000001", "--json")
    assert code == 0 and json.loads(out)["known_mask"] == hex(mask(128))


def test_whole_dtes_and_single_numbers_decode_as_before(capsys):
    code, out, _ = run(capsys, "decode", "dte", "0x6000000123456603", "--json")
    rep = json.loads(out)
    assert code == 0 and "complete" not in rep and rows(rep)["Mode"]["value"] == 3
    code, out, _ = run(capsys, "decode", "dte", *THINKBOOK_DTE_WORDS, "--json")
    assert code == 0 and "complete" not in json.loads(out)


@pytest.mark.parametrize("words,why", [
    (["DTE[5]: 0"], "4 words"),
    (["DTE[0]: 1 DTE[0]: 2"], "twice"),
    (["junk DTE[0]: 1"], "before the first"),
    (["DTE[0]: 1 2"], "one hexadecimal word"),
    (["DTE[1]: 0xzz"], "not a hexadecimal"),
    (["DTE[0]: 10000000000000000 DTE[1]: 0"], "does not fit"),
])
def test_decode_dte_refuses_words_it_cannot_place(capsys, words, why):
    code, out, err = run(capsys, "decode", "dte", *words)
    assert code == 2 and out == "" and why in err and err.count("\n") == 1 and "Traceback" not in err


def test_partial_decode_agrees_with_int_decoding_of_every_known_field():
    r = parse_dmesg("\n".join(THINKBOOK_LINES[:3]))[0]
    assert r.kind == EVENT
    rep = dmesg_report.record_report(r)
    decoded = DTE.decode(r.dte_bits)
    for f in DTE.named_fields:
        row = rows(rep["dte"])[f.name]
        if f.hi < 128:
            assert row["value"] == decoded[f.name]
        else:
            assert row["value"] is None
    assert INT.extract(r.dte_bits, 127, 0) == int(THINKBOOK_DTE_WORDS[1], 16) << 64 | int(THINKBOOK_DTE_WORDS[0], 16)
