"""Scenarios with HW-vIOMMU guests (``"viommu"``): loading, refused input, and `amdvi graph` output."""

import contextlib
import copy
import io
import json
from pathlib import Path

import pytest

from amdvi.frontend import scenario
from amdvi.frontend.main import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "viommu-guests.json"
GOOD = json.loads(EXAMPLE.read_text())


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def example_json():
    """`amdvi graph --json` of the example (one run shared by the tests that read it)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["graph", str(EXAMPLE), "--json"]) == 0
    return json.loads(out.getvalue())


def test_the_set_up_writes_the_translate_and_iommu_dtes_and_keeps_the_declared_ones():
    s = scenario.load(EXAMPLE)
    assert s.devices == (0x02, 0x10, 0x11, 0x18, 0x20, 0xF1, 0xF2, 0xF3)
    assert s.viommu.iommu_device_id == 0x02 and s.tables[0x200000] == ("host", 1)
    plain = scenario.from_dict({k: v for k, v in GOOD.items() if k != "viommu"})
    assert all(s.memory[a] == w for a, w in plain.memory.items())  # host devices' DTEs and tables as declared


def test_graph_json_has_a_guests_key_with_ownership_frames_and_sharing(example_json):
    rep = example_json
    assert set(rep) >= {"devices", "guests", "sharing", "dangling", "truncated"}
    assert list(rep["guests"]) == ["1", "2", "3"]
    g1 = rep["guests"]["1"]
    assert set(g1) == {"translate_device", "command_buffer_enabled", "devices", "domains", "frames", "shared",
                       "dangling"}
    assert g1["translate_device"] == "0x00f1"
    assert g1["devices"] == [{"guest": "0x0008", "host": "0x0010"}, {"guest": "0x0009", "host": "0x0011"}]
    assert [f["address"] for f in rep["guests"]["2"]["frames"]] == ["0xb00000", "0xb01000"]
    assert rep["guests"]["3"]["frames"][1]["via"] == ["stage 2", "0x0020"]
    assert rep["sharing"] == [{"kind": "domain", "id": "0x21", "guests": [1, 3]}]
    assert rep["guests"]["3"]["shared"] == rep["sharing"] and rep["guests"]["2"]["shared"] == []
    assert rep["devices"]["0x0002"]["roles"] == ["IOMMU (its private address space)"]


def test_graph_text_summary_and_dot(capsys, tmp_path):
    dot = tmp_path / "g.dot"
    code, out, err = run(capsys, "graph", EXAMPLE, "--out", dot)
    assert code == 0, err
    assert "guest 3: stage 2 through DeviceID 0x00f3, command buffer on" in out
    assert "  domains: 0x1 -> 0x24, 0x2 -> 0x21" in out
    assert "shared: host domain 0x21 with guest(s) 1" in out
    text = dot.read_text()
    assert all(f"guest {gid}\\n" in text for gid in (1, 2, 3))


def _with(path, value):
    """The example with the value at ``path`` (keys and list indices) replaced."""
    obj = copy.deepcopy(GOOD)
    *outer, last = path
    at = obj
    for key in outer:
        at = at[key]
    at[last] = value
    return obj


GUEST0 = ("viommu", "guests", 0)


@pytest.mark.parametrize("obj, message", [
    (_with(("viommu",), []), "viommu: expected an object"),
    (_with(("viommu", "guests"), {}), "viommu.guests: expected a list of guests"),
    (_with((*GUEST0, "pages"), ["0x0"]), "viommu.guests[0].pages: expected an object"),
    (_with((*GUEST0, "guest_id"), "one"), "viommu.guests[0].guest_id: 'one' is not a number"),
    (_with((*GUEST0, "guest_id"), 0), "viommu.guests[0].guest_id: GuestID 0 is never given to a guest"),
    (_with((*GUEST0, "guest_id"), 65536), "viommu.guests[0].guest_id: GuestID 0x10000 does not fit in 16 bits"),
    (_with((*GUEST0, "guest_id"), 3), "viommu.guests[2].guest_id: GuestID 3 is also viommu.guests[0]'s"),
    (_with((*GUEST0, "translate_device_id"), "0x10000"), "translate_device_id: DeviceID 0x10000 does not fit"),
    (_with((*GUEST0, "devices"), {"0x8": "0x10000"}), "devices.0x8: DeviceID 0x10000 does not fit in 16 bits"),
    (_with((*GUEST0, "domains"), {"0x10000": "1"}), "domains.0x10000: DomainID 0x10000 does not fit in 16 bits"),
    (_with((*GUEST0, "pages"), {"0x800": "0xa00000"}), "pages.0x800: guest physical page 0x800 is not aligned"),
    (_with((*GUEST0, "pages"), {"0x0": "0xa00800"}), "pages.0x0: system page 0xa00800 is not aligned to 4 KiB"),
    (_with((*GUEST0, "translate_device_id"), "0xf2"), "DeviceID 0x00f2 is already viommu.guests[0]'s translate"),
    (_with((*GUEST0, "translate_device_id"), "0x10"), "DeviceID 0x0010 is also declared in devices.0x10"),
    (_with(("device_table", "size"), 0), "translate_device_id: the DTE of DeviceID 0xf1 lies outside the device"),
    (_with(("viommu", "host"), {"table_pages": "0x200000"}), "viommu.host.table_pages: the host set-up's tables"),
    (_with((*GUEST0, "pagez"), {}), "unknown guest key 'pagez'; did you mean 'pages'?"),
], ids=["viommu-type", "guests-type", "pages-type", "guest-id-type", "guest-id-0", "guest-id-wide",
        "guest-id-repeated", "translate-wide", "host-device-wide", "domain-wide", "gpa-unaligned", "spa-unaligned",
        "translate-repeated", "translate-declared", "translate-outside-table", "host-tables-overlap", "unknown-key"])
def test_bad_viommu_input_is_one_line_and_exit_2(capsys, tmp_path, obj, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(obj))
    code, out, err = run(capsys, "graph", path, "--json")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"amdvi: error: {path}: ") and message in err, err
