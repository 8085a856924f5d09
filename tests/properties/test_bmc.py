"""Bounded model checking with symbolic move kinds: after software queued INVALIDATE_DEVTAB_ENTRY and a
COMPLETION_WAIT, any k <= 4 moves of the command processor (take the next command, carry out in-flight
invalidation 0 or 1) keep "the wait seen => nothing in flight and the cached DTE cleared"; the model
whose wait overtakes in-flight invalidations breaks it, and the moves found replay on Python ints."""

import pytest

from amdvi.models.iommu import ProcessCommand, in_flight_count
from amdvi.properties import bmc
from amdvi.properties.proof import VACUOUS
from amdvi.spec.bitvec import INT
from amdvi.spec.choices import Hardware

EARLY_WAIT = Hardware(completion_wait_early=True)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_the_wait_means_the_invalidation_took_effect_within_k_moves(depth):
    # the wait needs three moves (take the invalidation, carry it out, take the wait) to be seen
    result = bmc.check_wait(depth, witnessed=depth >= 3)
    assert result.status == bmc.BOUNDED, result.detail


def test_a_depth_the_wait_cannot_complete_in_is_vacuous():
    assert bmc.check_wait(2).status == VACUOUS


def test_an_early_wait_is_refuted_with_moves_that_replay():
    result = bmc.check_wait(4, choices=EARLY_WAIT)
    assert result.status == "refuted"
    assert result.moves.count(ProcessCommand()) == 2  # the invalidation, then the wait overtaking it
    end = result.states[-1]
    seen = bmc.wait_seen()(INT, end)
    assert seen and (in_flight_count(end) or end.caches.dte[0].valid)
    assert bmc.replay(bmc.invalidation_then_wait(), result.moves, choices=EARLY_WAIT)[-1] == end
    assert not bmc.wait_means_invalidated()(INT, end)
    # the same moves on the correct model keep the wait blocked
    assert bmc.wait_means_invalidated()(INT, bmc.replay(bmc.invalidation_then_wait(), result.moves)[-1])
