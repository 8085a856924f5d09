"""Sequence files: every kind of bad file is one line naming the step and the field, exit 2 (never a
traceback), whether the loader or the running step finds it; every library entry reads back as written."""

import copy
import json
from importlib import resources

import pytest

from amdvi.frontend import sequence_format, sequence_library
from amdvi.frontend.errors import InputError
from amdvi.frontend.main import main

BASE = json.loads((resources.files("amdvi.examples") / "sequences" / "plain-device.json").read_text())
# plain-device: 1 bind, 2 IOAS_ALLOC, 3 IOAS_MAP, 4 ATTACH, 5 DMA, 6 DMA, 7 UNMAP, 8 DMA, 9 DETACH


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _set(path, value):
    def change(obj):
        *head, last = path
        for p in head:
            obj = obj[p]
        obj[last] = value
    return change


def _insert(index, step):
    return lambda obj: obj["steps"].insert(index, step)


def _append_choice(layer, text):
    return lambda obj: obj["scenario"]["choices"][layer].append(text)


def _pop(path):
    def change(obj):
        *head, last = path
        for p in head:
            obj = obj[p]
        del obj[last]
    return change


BAD = {
    # name: (change to plain-device.json, what the one line must contain)
    "unknown step kind": (_set(["steps", 1, "step"], "Foo"), ["step 2", "field step", '"Foo"']),
    "step not an object": (_set(["steps", 1], 5), ["step 2", "not an object"]),
    "unknown call name": (_set(["steps", 1, "name"], "IOMMU_FOO"), ["step 2", "field name", "IOMMU_FOO"]),
    "call name missing": (_pop(["steps", 1, "name"]), ["step 2", "field name", "missing"]),
    "unknown argument field": (_set(["steps", 2, "args", "bogus"], "0x1"),
                               ["step 3 (IOMMU_IOAS_MAP)", "field args", "'bogus'"]),
    "unbound id name": (_set(["steps", 2, "args", "ioas_id"], "other"),
                        ["step 3 (IOMMU_IOAS_MAP)", "field args", "'other'", "no earlier step bound"]),
    "name where a number goes": (_set(["steps", 2, "args", "iova"], "somewhere"),
                                 ["step 3 (IOMMU_IOAS_MAP)", "field args", "iova is a number"]),
    "list where a number goes": (_set(["steps", 2, "args", "iova"], ["0x1"]),
                                 ["step 3 (IOMMU_IOAS_MAP)", "field args", "iova is a number"]),
    "flag where a number goes": (_set(["steps", 2, "args", "length"], True),
                                 ["step 3 (IOMMU_IOAS_MAP)", "field args", "length"]),
    "JSON number for an argument": (_set(["steps", 2, "args", "iova"], 4096),
                                    ["step 3 (IOMMU_IOAS_MAP)", "field args.iova", "4096"]),
    "unknown output bound": (_set(["steps", 1, "bind"], {"out_foo": "x"}),
                             ["step 2 (IOMMU_IOAS_ALLOC)", "field bind", "'out_foo'"]),
    "bad hex in an argument": (_set(["steps", 2, "args", "iova"], "0xzz"),
                               ["step 3 (IOMMU_IOAS_MAP)", "field args.iova", '"0xzz"']),
    "bad hex in a DMA": (_set(["steps", 4, "address"], "0xg"), ["step 5 (DeviceDma)", "field address", '"0xg"']),
    "argument wider than its uAPI field": (_set(["steps", 2, "args", "flags"], "0x1ffffffff"),
                                           ["step 3 (IOMMU_IOAS_MAP)", "field args", "flags", "wider than 32 bits"]),
    "argument wider than 64 bits": (_set(["steps", 2, "args", "iova"], "0x1" + "0" * 17),
                                    ["step 3 (IOMMU_IOAS_MAP)", "field args.iova", "wider than 64 bits"]),
    "PASID wider than 20 bits": (_set(["steps", 4, "pasid"], "0x100000"),
                                 ["step 5 (DeviceDma)", "field pasid", "wider than 20 bits"]),
    "DeviceID wider than 16 bits": (_set(["scenario", "devices", 0, "device_id"], "0x10000"),
                                    ["field scenario.devices[0].device_id", "wider than 16 bits"]),
    "unknown device in a DMA": (_set(["steps", 4, "device"], "gpu"), ["step 5 (DeviceDma)", "field device", "'gpu'"]),
    "unknown device in a call": (_set(["steps", 0, "args", "device"], "gpu"),
                                 ["step 1 (VFIO_DEVICE_BIND_IOMMUFD)", "field args", "'gpu'"]),
    "unknown choice name": (_append_choice("driver", "nope=on"), ["field scenario.choices.driver", "'nope'"]),
    "unknown choice value": (_append_choice("driver", "unmap-skips-flush=maybe"),
                             ["field scenario.choices.driver", "unmap-skips-flush", "'maybe'"]),
    "unknown reading value": (_append_choice("iommufd", "nested-alloc=sideways"),
                              ["field scenario.choices.iommufd", "nested-alloc", "sideways"]),
    "choice without a value": (_append_choice("hardware", "completion-wait-early"),
                               ["field scenario.choices.hardware", "NAME=VALUE"]),
    "guest write to an unbound IOAS": (_insert(3, {"step": "GuestWrite", "ioas": "zz", "gpa": "0x100000",
                                                   "value": "0x1"}), ["step 4 (GuestWrite)", "field ioas", "'zz'"]),
    "guest commands of an unbound vIOMMU": (_insert(3, {"step": "GuestCommands", "viommu": "vi", "commands": ["0x1"],
                                                        "semaphore": "0xf000"}),
                                            ["step 4 (GuestCommands)", "field viommu", "'vi'"]),
    "guest command wider than 128 bits": (_insert(3, {"step": "GuestCommands", "viommu": "ioas",
                                                      "commands": ["0x1" + "0" * 32], "semaphore": "0xf000"}),
                                          ["step 4 (GuestCommands)", "field commands[0]", "wider than 128 bits"]),
    "bad errno name": (_set(["steps", 2, "expect"], "EFOO"), ["step 3 (IOMMU_IOAS_MAP)", "field expect", '"EFOO"']),
    "errno as a number": (_set(["steps", 2, "expect"], 22), ["step 3 (IOMMU_IOAS_MAP)", "field expect", "22"]),
    "unknown mode": (_set(["scenario", "mode"], "eager"), ["field scenario.mode", '"eager"']),
    "two devices of one name": (lambda o: o["scenario"]["devices"].append(o["scenario"]["devices"][0]),
                                ["field scenario", "same name"]),
    "scenario missing": (_pop(["scenario"]), ["field scenario", "missing"]),
    "steps not a list": (_set(["steps"], {}), ["field steps", "not a list"]),
    "unknown version": (_set(["version"], 9), ["field version", "9"]),
    "unknown claimed property": (_set(["violation"], {"property": "nope"}), ["field violation.property", '"nope"']),
}

# found only when the step runs (the loader cannot know what the IOAS maps then)
AT_RUN = {
    "guest commands of something not a vIOMMU": (_insert(3, {"step": "GuestCommands", "viommu": "ioas",
                                                              "commands": [], "semaphore": "0xf000"}),
                                                  ["step 4 (GuestCommands)", "field viommu", "not a vIOMMU"]),
    "guest write to an unmapped GPA": (_insert(3, {"step": "GuestWrite", "ioas": "ioas", "gpa": "0x900000",
                                                   "value": "0x1"}),
                                       ["step 4 (GuestWrite)", "field gpa", "0x900000", "not mapped"]),
    "guest write after the IOAS is unmapped": (_insert(7, {"step": "GuestWrite", "ioas": "ioas", "gpa": "0x100000",
                                                           "value": "0x1"}),
                                               ["step 8 (GuestWrite)", "field gpa", "not mapped"]),
}


def _one_line_exit_2(capsys, tmp_path, text, needles, commands=("check", "replay")):
    path = tmp_path / "bad.json"
    path.write_text(text)
    for command in commands:
        code, out, err = run(capsys, command, path)
        assert code == 2 and out == "", (command, err)
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("amdvi: error: "), (command, err)
        assert "Traceback" not in err
        for needle in needles:
            assert needle in lines[0], (command, needle, lines[0])


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_file_is_one_line_naming_the_step_and_field(capsys, tmp_path, case):
    change, needles = BAD[case]
    obj = copy.deepcopy(BASE)
    change(obj)
    _one_line_exit_2(capsys, tmp_path, json.dumps(obj), needles)
    with pytest.raises(InputError):  # the loader alone finds it
        sequence_format.load(obj, "bad.json")


@pytest.mark.parametrize("case", sorted(AT_RUN))
def test_a_step_that_cannot_run_is_one_line_naming_the_step_and_field(capsys, tmp_path, case):
    change, needles = AT_RUN[case]
    obj = copy.deepcopy(BASE)
    change(obj)
    sequence_format.load(obj, "bad.json")  # well formed: only running it finds the problem
    _one_line_exit_2(capsys, tmp_path, json.dumps(obj), needles)


@pytest.mark.parametrize("text,needle", [('{"version": 1,', "not JSON"), ("[1, 2]", "a JSON object, not"),
                                         ('"sequence"', "a JSON object"), ("", "not JSON")])
def test_not_json_or_not_an_object(capsys, tmp_path, text, needle):
    _one_line_exit_2(capsys, tmp_path, text, [needle], commands=("check",))


def test_replay_of_a_non_object_is_one_line(capsys, tmp_path):
    _one_line_exit_2(capsys, tmp_path, "[1, 2]", [], commands=("replay",))


@pytest.mark.parametrize("entry", sequence_library.ENTRIES, ids=lambda e: e.file)
def test_every_library_entry_round_trips(entry):
    from amdvi.frontend.sequence_trace import describe_step

    written = sequence_format.to_json(entry.loaded(), describe=describe_step,
                                      violation=(entry.claims, "why") if entry.claims else None)
    back = sequence_format.load(json.loads(sequence_format.dumps(written)), entry.file)
    assert back.steps == entry.steps
    assert back.scenario == entry.scenario
    assert back.title == entry.title and back.notes == entry.notes and back.claimed == entry.claims
    # and again: the file of what was read is the same file
    assert sequence_format.to_json(back, describe=describe_step,
                                   violation=(back.claimed, "why") if back.claimed else None) == written


def test_more_user_memory_than_the_model_maps_is_one_line(tmp_path, capsys):
    """The driver model maps page by page: a scenario bounds the work it can ask for."""
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"version": 1, "kind": "sequence", "title": "big", "steps": [], "scenario": {
        "devices": [{"name": "nic", "device_id": "0x10"}],
        "user_memory": [{"base": "0x0", "bytes": "0x100000000000"}]}}))
    code, _, err = run(capsys, "check", str(path))
    assert code == 2 and "user_memory" in err and len(err.strip().splitlines()) == 1
