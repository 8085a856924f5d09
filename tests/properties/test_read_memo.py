"""Remembering walks by the words they read: the same answer as calling again, and never a stale one."""

import pytest
from hypothesis import given, strategies as st

from amdvi.models import software as sw
from amdvi.properties.read_memo import ReadMemo
from amdvi.spec.bitvec import INT
from amdvi.spec.translation import Request, translate

L = sw.Layout()
ROOT, DOMAIN, DEVICE, IOVA = 0x50_0000, 5, 1, 0x1000
BAR = sw.initial_state(L).regs.dev_tab_bar


def _walk(memo, memory, request):
    return memo.call(("walk", request), memory, lambda m: translate(INT, m, BAR, request))


def _memory(frame: int) -> dict:
    mapped = sw.v1_map({}, ROOT, 3, IOVA, frame, ROOT + 0x1000).memory
    dte = sw.v1_dte(DOMAIN, ROOT, 3)
    return {**mapped, **{L.dte_address(DEVICE) + 8 * i: (dte >> (64 * i)) & (2 ** 64 - 1) for i in range(4)}}


def test_a_memory_that_differs_only_where_the_walk_does_not_read_gets_the_stored_walk():
    memo, request = ReadMemo(), Request(device_id=DEVICE, address=IOVA)
    first = _walk(memo, _memory(0x90_0000), request)
    again = _walk(memo, {**_memory(0x90_0000), 0x7000_0000: 1}, request)
    assert again is first and (memo.hits, memo.misses) == (1, 1)


@given(frames=st.lists(st.sampled_from([0x90_0000, 0x91_0000, 0]), min_size=1, max_size=6),
       addresses=st.lists(st.sampled_from([IOVA, IOVA + 0x1000, 0x40_0000]), min_size=1, max_size=6))
def test_remembered_walks_equal_fresh_walks(frames, addresses):
    memo = ReadMemo()
    for frame, address in zip(frames, addresses):
        memory = _memory(frame) if frame else {}
        request = Request(device_id=DEVICE, address=address)
        assert _walk(memo, memory, request) == translate(INT, memory, BAR, request)


def test_a_function_that_is_not_pure_in_memory_is_refused():
    """The same value at the first word read, then another word: the tree cannot hold both."""
    memo, second = ReadMemo(), iter([0x10, 0x18])
    impure = lambda m: (m.get(0x8, 0), m.get(next(second), 0))  # noqa: E731
    memo.call("f", {}, impure)
    with pytest.raises(ValueError, match="not a pure function"):
        memo.call("f", {0x10: 5}, impure)
