"""The differential case format: round trip, and one-line refusals of bad files (exit 2 on the CLI)."""

import json

import pytest

from amdvi.difftest import case as case_format, firmware
from amdvi.difftest.case import Case, CaseError, Commands, CpuStore, EduDma, RegisterWrite
from amdvi.difftest.layout import LAYOUT, pattern, pattern_address, token
from amdvi.frontend.main import main

GOOD = Case(2, ((0x100300, 0x6000000000200803), (0x200000, 0x6000000001000001)),
            (CpuStore(0x200000, 0x6000000001001001), EduDma(1, 0x1008, True),
             Commands((0x3000000100000000, 0x1000000000130001 | (7 << 64))), RegisterWrite("STATUS", 4)),
            title="t", ring_start=0xFE0)


def test_round_trip():
    assert case_format.loads(case_format.dumps(GOOD)) == GOOD


# a finding as diff-qemu wrote it before the step records were renamed (Store -> CpuStore, DeviceDma ->
# EduDma): the file format names steps by "op", so old files replay unchanged
WRITTEN_BEFORE_THE_RENAME = """{"kind": "amdvi-qemu-case", "version": 1, "title": "new divergence", "devices": 2,
 "ring_start": "0x0", "memory": {"0x100300": "0x6000000000200603", "0x200008": "0x4000000040000001"},
 "steps": [{"op": "dma", "device": 0, "address": "0x40000008", "access": "write"},
           {"op": "store", "address": "0x100300", "value": "0x6000000000200602"},
           {"op": "commands", "commands": ["0x2000000000000018", "0x21000000000130011"]},
           {"op": "dma", "device": 0, "address": "0x40000018", "access": "read"}],
 "finding": {"qemu": "7.2.22", "shape": "dma-read:qemu-blocked/spec-ok"}}"""


def test_a_case_written_before_the_rename_loads_and_writes_back_the_same_steps():
    c = case_format.loads(WRITTEN_BEFORE_THE_RENAME)
    assert c.steps == (EduDma(0, 0x40000008, True), CpuStore(0x100300, 0x6000000000200602),
                       Commands((0x2000000000000018, 0x21000000000130011)), EduDma(0, 0x40000018))
    assert case_format.to_json(c)["steps"] == json.loads(WRITTEN_BEFORE_THE_RENAME)["steps"]


@pytest.mark.parametrize("change, message", [
    ({"kind": "trace"}, "kind is 'trace'"),
    ({"version": 7}, "version 7 is not supported"),
    ({"devices": 9}, "devices: 9 is not between 1 and 4"),
    ({"memory": {"0x100301": "0x1"}}, "is not 8-byte aligned"),
    ({"memory": {str(LAYOUT.cmd_ring): "0x1"}}, "harness owns"),
    ({"memory": {"0x100000000": "0x1"}}, "beyond the machine's"),
    ({"steps": [{"op": "dma", "device": 0, "address": "0x1004", "access": "read"}]}, "not 8-byte aligned"),
    ({"steps": [{"op": "dma", "device": 2, "address": "0x1000", "access": "read"}]}, "the case has 2 device"),
    ({"steps": [{"op": "dma", "device": 0, "address": "0x1000", "access": "rw"}]}, "is not read or write"),
    ({"steps": [{"op": "poke"}]}, "unknown op 'poke'"),
    ({"steps": [{"op": "store", "address": "0x200000"}]}, "needs 'value'"),
    ({"steps": [{"op": "commands", "commands": []}]}, "a list of 1 to 255 commands"),
    ({"steps": [{"op": "register", "name": "CONTROL", "value": "0"}]}, "is not one of"),
    ({"ring_start": "0x8"}, "not a 16-byte offset"),
    ({"steps": [{"op": "dma", "device": 0, "address": "0xc0000098", "access": "write"}]}, "MMIO hole"),
    ({"steps": [{"op": "dma", "device": 0, "address": "0x1000", "access": "read"}] * 513}, "more than 512 DMAs"),
    ({"memory": {"0x100300": "zz"}}, "is not a number"),
])
def test_bad_cases_are_one_line_errors(change, message):
    obj = case_format.to_json(GOOD)
    obj.update(change)
    with pytest.raises(CaseError, match=message.replace("(", r"\(")):
        case_format.from_json(obj)


def test_cli_refuses_a_bad_case_with_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "amdvi-qemu-case", "version": 1, "steps": [{"op": "nope"}]}))
    assert main(["diff-qemu", "--replay", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown op 'nope'" in err[0]


def test_cli_without_qemu_is_a_one_line_error(capsys):
    assert main(["diff-qemu", "--qemu", "/no/such/qemu", "--cases", "1"]) == 2
    assert "not found" in capsys.readouterr().err


def test_patterns_name_their_address_and_never_collide_with_tokens():
    for a in (0x1000000, 0x40000008, 0x7FFFFFF8):
        assert pattern_address(pattern(a)) == a
        assert pattern(a) != 0
    assert pattern_address(token(3)) is None


def test_firmware_halts_at_the_reset_vector():
    image = firmware.image()
    assert len(image) == 64 * 1024
    assert image[0xFFF0:0xFFF3] == bytes((0xF4, 0xEB, 0xFD))  # hlt; jmp back to the hlt


def test_a_seed_gives_the_same_cases_whatever_local_modules_are_loaded(tmp_path, monkeypatch):
    """Hypothesis harvests literal constants from 'local' modules (an editable install's, not a regular
    one's); the campaign's cases must not depend on them, or a seed names different cases elsewhere."""
    import hashlib
    import importlib
    import sys

    from amdvi.difftest import campaign, case as case_format

    def digest() -> str:
        return hashlib.md5("".join(case_format.dumps(c) for c in campaign.generate(7, 0, 30)).encode()).hexdigest()

    before = digest()
    words = ", ".join(hex(v) for k in range(200) for v in (k, 0x1000 * k + 8 * k, 0x20_0000 + 0x1008 * k,
                                                           0x6000_0000_0020_0003 + (k << 12)))
    (tmp_path / "amdvi_local_constants_probe.py").write_text(f"WORDS = [{words}]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("amdvi_local_constants_probe")
    try:
        assert digest() == before
    finally:
        sys.modules.pop("amdvi_local_constants_probe", None)
