"""The command registry and the option groups commands share: every command takes --json, and the
shared readers turn bad values into one-line input errors."""

import argparse

import pytest

from amdvi.frontend import options
from amdvi.frontend.commands import COMMANDS
from amdvi.frontend.errors import InputError
from amdvi.frontend.main import build_parser
from amdvi.spec.choices import Hardware


def test_every_registered_command_has_a_name_help_and_json(capsys):
    assert len({c.NAME for c in COMMANDS}) == len(COMMANDS)
    parser = build_parser()
    for c in COMMANDS:
        assert c.HELP and callable(c.add_arguments) and callable(c.run)
        with pytest.raises(SystemExit):
            parser.parse_args([c.NAME, "--help"])
        assert "--json" in capsys.readouterr().out


def _parser(*groups):
    p = argparse.ArgumentParser()
    for add in groups:
        add(p)
    return p


def test_choices_apply_in_order_and_bad_ones_are_input_errors():
    p = _parser(options.add_choices)
    args = p.parse_args(["--choice", "completion-wait-early=on", "--choice", "completion-wait-early=off",
                         "--choice", "illegal-command=stop"])
    assert options.apply_choices(args, Hardware()) == Hardware()
    for bad in (["--choice", "no-such=1"], ["--choice", "completion-wait-early"], ["--preset", "nope"]):
        with pytest.raises(InputError):
            options.apply_choices(p.parse_args(bad), Hardware())
    fast = Hardware().assign(["completion-wait-early=on"])
    assert options.apply_choices(p.parse_args(["--preset", "fast"]), Hardware(), {"fast": fast}) == fast


def test_trace_input_reads_a_json_object(tmp_path):
    p = _parser(options.add_trace_input)
    good, bad, array = tmp_path / "t.json", tmp_path / "bad.json", tmp_path / "a.json"
    good.write_text('{"moves": []}')
    bad.write_text("{")
    array.write_text("[]")
    assert options.read_trace(p.parse_args([str(good)])) == {"moves": []}
    for path in (bad, array, tmp_path / "missing.json"):
        with pytest.raises(InputError):
            options.read_trace(p.parse_args([str(path)]))


def test_register_context_reads_efr_and_control():
    p = _parser(options.add_register_context)
    assert options.register_context(p.parse_args([])) is None
    ctx = options.register_context(p.parse_args(["--efr", hex(3 << 10), "--control", "0x1"]))
    assert ctx
    with pytest.raises(InputError):
        options.register_context(p.parse_args(["--efr", "0xq"]))
