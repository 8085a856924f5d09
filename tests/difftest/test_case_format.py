"""The differential case format: round trip, and one-line refusals of bad files (exit 2 on the CLI)."""

import json

import pytest

from amdvi.difftest import case as case_format, firmware
from amdvi.difftest.case import Case, CaseError, Commands, DeviceDma, RegisterWrite, Store
from amdvi.difftest.layout import LAYOUT, pattern, pattern_address, token
from amdvi.frontend.main import main

GOOD = Case(2, ((0x100300, 0x6000000000200803), (0x200000, 0x6000000001000001)),
            (Store(0x200000, 0x6000000001001001), DeviceDma(1, 0x1008, True),
             Commands((0x3000000100000000, 0x1000000000130001 | (7 << 64))), RegisterWrite("STATUS", 4)),
            title="t", ring_start=0xFE0)


def test_round_trip():
    assert case_format.loads(case_format.dumps(GOOD)) == GOOD


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
