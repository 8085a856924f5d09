"""Command ordering: a COMPLETION_WAIT store is visible only after every earlier invalidation has
taken effect (48882 §2.4.1: the wait completes when all earlier commands have completed).

Proved with Z3 over one symbolic step of the model's command processor: any memory (command ring
included), any registers, any invalidations in flight. If the step performs a COMPLETION_WAIT
store, nothing was in flight before it; an invalidation is carried out (``Retire``) before it leaves
the in-flight set, so every invalidation processed before the wait has taken effect. The broken
model ``completion-wait-early`` (a fault switch of ``spec.choices.Hardware``) refutes it.
"""

from __future__ import annotations

import z3

from amdvi.models.caches import Caches
from amdvi.models.iommu import IN_FLIGHT, InFlight, IommuState, process_command
from amdvi.models.registers import Registers
from amdvi.spec.bitvec import Z3
from amdvi.spec.choices import SPEC, Hardware

from .proof import ProofResult, Witness, prove


def wait_after_invalidations(*, choices: Hardware = SPEC, timeout_ms: int = 120_000) -> ProofResult:
    b = Z3
    regs = Registers(**{name: z3.BitVec(f"reg_{name}", 64) for name in Registers().names()})
    in_flight = tuple(InFlight(z3.Bool(f"in_flight_{i}"), z3.BitVec(f"in_flight_command_{i}", 128))
                      for i in range(IN_FLIGHT))
    state = IommuState(memory=Z3.memory_function("memory"), regs=regs, caches=Caches.empty(0, 0, 0, 0, 0),
                       in_flight=in_flight)
    _, out = process_command(b, state, choices=choices)
    stored = out.effect.store
    nothing_in_flight = z3.Not(z3.Or(*[q.valid for q in in_flight]))
    return prove("completion-wait-ordering", [], z3.Implies(stored, nothing_in_flight),
                 witnesses=[Witness("a COMPLETION_WAIT store happens", stored)], timeout_ms=timeout_ms,
                 strategy="bit-blast")
