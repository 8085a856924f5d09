"""No kernel log, however cut, mixed or corrupted, gives a traceback: not the parser, not the report,
not `amdvi decode dmesg -` (exit status 0, or 2 with one line on standard error).

Inputs are real log lines (the corpora of the other dmesg tests), cut at random places, dropped, repeated
and shuffled, with random text and random bytes between them.
"""

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from unittest import mock

from hypothesis import given, settings, strategies as st
from rich.console import Console

from amdvi.frontend import dmesg_report
from amdvi.frontend.main import main
from amdvi.frontend.dmesg import Record, parse_dmesg

from test_dmesg import BOOT, REAL
from test_dmesg_formats import DEV_ERR_4_19, PCENGINES_4_9

LINES = [ln for text in (*REAL, BOOT, DEV_ERR_4_19, PCENGINES_4_9) for ln in text.splitlines()]
KINDS = {"event", "unknown_event", "not_attached", "completion_wait_timeout", "command_buffer_timeout",
         "command_buffer_reset", "event_log_overflow", "no_event_written", "unrecognised"}

whole = st.sampled_from(LINES)
cut = st.tuples(whole, st.integers(0, 160), st.integers(0, 160)).map(lambda t: t[0][min(t[1], t[2]):max(t[1], t[2])])
head = st.tuples(whole, st.integers(0, 160)).map(lambda t: t[0][: t[1]])
noise = st.one_of(st.text(max_size=30), st.binary(max_size=30).map(lambda b: b.decode("utf-8", "replace")),
                  st.sampled_from(["AMD-Vi: Event logged [", "DTE[0]: 0", "]", "\r", "\x01", "kernel: "]))
piece = st.one_of(whole, whole, cut, head, noise)
logs = st.lists(piece, max_size=14).map("\n".join)


def check_records(records, text):
    n = len(text.splitlines())
    for r in records:
        assert isinstance(r, Record) and r.kind in KINDS
        assert list(r.lines) == sorted(set(r.lines)) and all(1 <= i <= n for i in r.lines)
        if r.bits is not None:
            assert r.bits & ~r.known_mask == 0 and r.bits >> 128 == 0
        if r.dte_bits is not None:
            assert r.dte_bits & ~r.dte_known_mask == 0


@settings(max_examples=60, deadline=None)
@given(logs)
def test_parser_and_report_take_any_cut_of_real_logs(text):
    records = parse_dmesg(text)
    check_records(records, text)
    reports = dmesg_report.decode_log(text)
    json.dumps(reports)  # JSON-ready all the way down
    out = io.StringIO()
    dmesg_report.print_log(Console(file=out, width=120), reports)
    assert out.getvalue()


def run_cli(data: bytes, *options: str) -> tuple[int, str, str]:
    stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace")
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.object(sys, "stdin", stdin), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["decode", "dmesg", "-", *options])
    return code, out.getvalue(), err.getvalue()


@settings(max_examples=25, deadline=None)
@given(logs, st.binary(max_size=20), st.sampled_from([(), ("--json",), ("--efr", "0x5000f00004852")]))
def test_command_line_takes_any_cut_of_real_logs(text, junk, options):
    code, out, err = run_cli(text.encode("utf-8", "surrogatepass") + junk, *options)
    assert code in (0, 2)
    if code == 0:
        assert err == "" and out
        if "--json" in options:
            assert isinstance(json.loads(out), list)
    else:
        assert err.startswith("amdvi: error:") and err.count("\n") == 1


def test_installed_command_on_a_cut_and_corrupted_log_prints_no_traceback(tmp_path):
    script = Path(sys.executable).with_name("amdvi")
    if not script.exists():
        import pytest

        pytest.skip("console script not installed next to this interpreter")
    lines = (DEV_ERR_4_19 + "\n" + PCENGINES_4_9).splitlines()
    mangled = "\n".join(ln[: len(ln) * 2 // 3] if i % 3 == 1 else ln for i, ln in enumerate(lines))
    data = mangled.encode() + b"\n\xff\xfe\x00AMD-Vi: Event logged [\n\xc3(DTE[0]: 12\n"
    proc = subprocess.run([str(script), "decode", "dmesg", "-"], input=data, capture_output=True, cwd=tmp_path)
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr and proc.stderr == b""
    assert b"INVALID_DEVICE_REQUEST" in proc.stdout and b"not decoded" in proc.stdout
