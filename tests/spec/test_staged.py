"""The staged engine (``spec.staged``) against the reference: the same Outcome, field for field and type
for type, on random images (every DTE shape, depth, fault, permission, nested, cached starts), and a
broken compiled form is caught."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings

from amdvi.spec import staged
from amdvi.spec.bitvec import INT
from amdvi.spec.guest_translation import GuestResume
from amdvi.spec.staged_translation import STAGER
from amdvi.spec.translation import CachedStart, Request, read_dte, translate, walk_request
from amdvi.spec.walk_types import GUEST, HOST

from test_translation_reference import SLOW, scenarios

ADDRESS = 0x000F_FFFF_FFFF_F000


@pytest.fixture(autouse=True)
def fresh_engine(monkeypatch):
    """Each test starts with no compiled paths and the staged engine on, tracing every new path at once
    (never backing off, whatever the paths traced earlier answered)."""
    monkeypatch.setattr(staged, "HOT", 1)
    monkeypatch.setattr(staged, "PAYBACK", 0)
    STAGER.reset()
    staged.use(True)
    yield
    STAGER.reset()


def reference(mem, bar, request, cached=None):
    return walk_request(INT, mem, bar, request, cached=cached)


def agree(mem, bar, request, cached=None):
    """The staged answer, traced and then compiled, equals the reference's (types included)."""
    want = reference(mem, bar, request, cached)
    for attempt in ("first call", "compiled path"):
        got = translate(INT, mem, bar, request, cached=cached)
        assert staged.same(got, want), (attempt, request, cached, got, want)
    return want


def cached_starts(mem, bar, request, outcome):
    """What caches could supply for ``request``: its DTE, and walks resumed below each directory entry it read."""
    dte, _, _ = read_dte(INT, mem, bar, request.device_id)
    yield CachedStart(dte=dte)
    for s in outcome.active_steps():
        table, level = s.entry & ADDRESS, (s.entry >> 9) & 7
        if s.dimension == HOST and 1 <= level < s.level:
            yield CachedStart(dte=dte, host_resume=(table, level, s.readable, s.writable))
        if s.dimension == GUEST and s.table == "GPTE" and s.level > 1:
            yield CachedStart(dte=dte, guest_resume=GuestResume(table, s.level - 1, s.writable, True, False))
        if s.table == "GCR3":
            yield CachedStart(dte=dte, gcr3_entry=s.entry)


def check_example(scenario):
    mem, bar, requests = scenario
    STAGER.reset()
    for req in requests:
        request = Request(**req)
        want = agree(mem, bar, request)
        for cached in cached_starts(mem, bar, request, want):
            agree(mem, bar, request, cached)
        # a neighbour in the same page mostly takes a compiled path traced for another input
        agree(mem, bar, dataclasses.replace(request, address=request.address ^ 0x18))


@settings(max_examples=40, **SLOW)
@given(scenarios("any"))
def test_staged_agrees_on_mixed_images(scenario):
    check_example(scenario)


@settings(max_examples=40, **SLOW)
@given(scenarios("host"))
def test_staged_agrees_on_host_tables(scenario):
    check_example(scenario)


@settings(max_examples=40, **SLOW)
@given(scenarios("guest"))
def test_staged_agrees_on_guest_and_nested_tables(scenario):
    check_example(scenario)


@pytest.mark.deep
@pytest.mark.parametrize("kind", ["any", "host", "guest"])
def test_staged_agrees_deep(kind):

    @settings(max_examples=3000, **SLOW)
    @given(scenarios(kind))
    def run(scenario):
        check_example(scenario)

    run()


# ---- the engine's own machinery ------------------------------------------------------------------

def _image():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
    from bench_translation import BAR, images
    return BAR, images()


def test_paths_are_compiled_once_and_reused():
    bar, images = _image()
    mem, request = images["v1_4level"]
    agree(mem, bar, request)
    traces = STAGER.traces
    for offset in range(0, 0x4000, 0x1000):  # other pages of the same table: the same path
        agree(mem, bar, dataclasses.replace(request, address=offset | 0x123))
    assert STAGER.traces - traces <= 2, "a page of the same table must not need a new path"
    (fn,) = STAGER.functions.values()
    assert "_get(" in fn.source and fn.paths >= 1



def _with_domain(mem, device, domain):
    """The image with another DomainID in ``device``'s DTE (bench_translation's device table at 0x100000;
    DomainID is DTE bits 79:64, the low half of word 1): the DTE is specialised on, so a path of its own."""
    m = dict(mem)
    at = 0x100000 + device * 32 + 8
    m[at] = (m[at] & ~0xFFFF) | domain
    return m


def _asked(images_asked, times):
    """Translate each image ``times`` times, each answer the reference's; the configuration's function."""
    for mem, bar, request in images_asked:
        for _ in range(times):
            assert staged.same(translate(INT, mem, bar, request), reference(mem, bar, request))
    (fn,) = STAGER.functions.values()
    return fn


def test_a_configuration_whose_traces_do_not_pay_back_stops_tracing(monkeypatch):
    """Paths met a few times each and never again (a differential campaign's random DTEs): after the first
    trace the configuration waits for hotter paths rather than tracing each."""
    monkeypatch.setattr(staged, "PAYBACK", 64)
    bar, images = _image()
    mem, request = images["v1_4level"]
    traces = STAGER.traces
    fn = _asked([(_with_domain(mem, request.device_id, 100 + k), bar, request) for k in range(40)], 3)
    assert STAGER.traces - traces <= 2 and fn.backoff > 1


def test_traces_that_pay_back_make_tracing_eager_again(monkeypatch):
    """After one-off paths, paths asked hundreds of times: each is still traced (at most HOT x MAX_BACKOFF
    misses in), and as their compiled answers pay back, new paths are traced at once again."""
    monkeypatch.setattr(staged, "PAYBACK", 64)
    monkeypatch.setattr(staged, "HOT", 4)
    bar, images = _image()
    mem, request = images["v1_4level"]
    fn = _asked([(_with_domain(mem, request.device_id, 100 + k), bar, request) for k in range(20)], 40)
    assert fn.backoff == staged.MAX_BACKOFF  # paths asked 40 times: none pays back a trace
    traces = STAGER.traces
    fn = _asked([(_with_domain(mem, request.device_id, 200 + k), bar, request) for k in range(8)], 200)
    assert STAGER.traces - traces == 8 and fn.backoff == 1

def test_the_reference_switch_runs_no_compiled_code():
    bar, images = _image()
    mem, request = images["nested_4x4"]
    traces = STAGER.traces
    with staged.use_reference():
        out = translate(INT, mem, bar, request)
    assert STAGER.traces == traces and not STAGER.functions
    assert staged.same(out, translate(INT, mem, bar, request)) and STAGER.traces == traces + 1


def test_requests_outside_their_widths_get_the_reference_error():
    bar, images = _image()
    mem, request = images["v1_4level"]
    for bad in (dict(device_id=0x1_0000), dict(address=1 << 64)):
        with pytest.raises(ValueError) as want:
            reference(mem, bar, dataclasses.replace(request, **bad))
        with pytest.raises(ValueError) as got:
            translate(INT, mem, bar, dataclasses.replace(request, **bad))
        assert str(got.value) == str(want.value)


def test_an_unaligned_read_fails_as_in_the_reference():
    bar, images = _image()
    mem, request = images["v1_4level"]
    dte, _, _ = read_dte(INT, mem, bar, request.device_id)
    for table in (0x20_1000, 0x20_1004):  # a cached directory entry pointing at an aligned table, then not
        cached = CachedStart(dte=dte, host_resume=(table, 2, True, True))
        try:
            want = reference(mem, bar, request, cached)
        except Exception as error:  # noqa: BLE001 - the reference's error is the expectation
            with pytest.raises(type(error)) as got:
                translate(INT, mem, bar, request, cached=cached)
            assert str(got.value) == str(error)
        else:
            assert staged.same(translate(INT, mem, bar, request, cached=cached), want)
    assert STAGER.traces >= 1


def test_a_configuration_past_the_path_limit_runs_the_reference(monkeypatch):
    monkeypatch.setattr(staged, "MAX_PATHS", 1)
    bar, images = _image()
    mem, request = images["v1_4level"]
    agree(mem, bar, request)
    (fn,) = STAGER.functions.values()
    assert fn.full
    faulting = dataclasses.replace(request, address=0x10_0000)  # another path: not traced any more
    traces = STAGER.traces
    agree(mem, bar, faulting)
    assert STAGER.traces == traces


# ---- a broken compiled form is caught ------------------------------------------------------------

def _broken_ule(self, a, b):
    """The emitted comparison is off by one (the traced answers stay right: only the compiled code errs)."""
    return self._op("ule", "({0} < {1})", (a, b), kind=staged.BOOL)


def test_a_mutated_compiled_form_fails_the_differential_check(monkeypatch):
    monkeypatch.setattr(staged.Tracer, "ule", _broken_ule)
    monkeypatch.setattr(STAGER, "check", False)  # the engine's own self-check off: the test must catch it
    bar, images = _image()
    mem, request = images["v1_4level"]
    with pytest.raises(AssertionError):
        agree(mem, bar, request)


def test_a_mutated_compiled_form_fails_the_engines_self_check(monkeypatch):
    monkeypatch.setattr(staged.Tracer, "ule", _broken_ule)
    bar, images = _image()
    mem, request = images["v1_4level"]
    with pytest.raises(staged.StagedMismatch):
        translate(INT, mem, bar, request)


def test_strict_comparison_tells_true_from_one():
    assert staged.same((1, True), (1, True))
    assert not staged.same(True, 1)
    assert not staged.same((0,), (False,))
