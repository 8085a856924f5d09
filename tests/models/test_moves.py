"""Moves by kind: the registry, templates with holes, and ``step_any`` (a move whose kind is a symbolic
choice) agreeing with the concrete ``step`` of the chosen move."""

import dataclasses

import pytest
import z3

from amdvi.models import iommu, software as sw
from amdvi.models.caches import Caches
from amdvi.models.dma import ServeChoice
from amdvi.models.iommu import IommuState, step, step_any
from amdvi.models.moves import (
    ANY, MOVE_KINDS, CpuWrite, Dma, Evict, Fill, ProcessCommand, Retire, SetTail, TranslatedDma, any_request,
    argument_sorts, decode, holes, instantiate, kind_of, symbolic_move,
)
from amdvi.spec.bitvec import INT, Z3
from amdvi.spec.records import concrete_value, map_terms
from amdvi.spec.translation import Request

LAYOUT = sw.Layout()
DEVICE, ATS_DEVICE, DOMAIN, ROOT, IOVA, PAGE = 0x10, 0x11, 1, 0x50_0000, 0x4000, 0x80_0000


def test_every_kind_is_registered_under_its_class_name():
    assert list(MOVE_KINDS) == ["CpuWrite", "SetTail", "ProcessCommand", "Retire", "Fill", "Evict", "Dma",
                                "TranslatedDma"]
    assert all(cls.__name__ == name for name, cls in MOVE_KINDS.items())
    assert iommu.CpuWrite is CpuWrite and iommu.TranslatedDma is TranslatedDma  # the old import path works
    assert iommu.STEP_BY_KIND.keys() == MOVE_KINDS.keys()


def test_a_non_move_is_refused():
    with pytest.raises(TypeError, match="not a move"):
        kind_of(object())
    with pytest.raises(TypeError, match="not a move"):
        step(INT, sw.initial_state(LAYOUT), "ProcessCommand")


def test_templates_name_their_holes_by_path():
    assert holes(CpuWrite(ANY, 5)) == {"address": 64}
    assert holes(Retire(1)) == {}
    assert holes(Dma(any_request(device_id=DEVICE), ServeChoice(dte=0), ANY)) == {
        "request.address": 64, "request.write": None, "request.pasid": 20, "request.has_pasid": None,
        "request.user": None, "request.execute": None, "request.ats": None, "data": 64}
    with pytest.raises(TypeError, match="cannot be a hole"):
        holes(Retire(ANY))
    move = instantiate(Fill("dte", 0, any_request(address=0)), {"request.device_id": 7, **{
        f"request.{n}": False for n in ("write", "has_pasid", "user", "execute", "ats")}, "request.pasid": 0})
    assert move == Fill("dte", 0, Request(7, 0))


def initial_state() -> IommuState:
    """Device DEVICE on a 3-level v1 table mapping IOVA, an ATS device on the same table, every cache of
    interest filled, an invalidation in flight and a COMPLETION_WAIT queued behind it."""
    mapped = sw.v1_map({}, ROOT, 3, IOVA, PAGE, ROOT + 0x1000)
    memory = sw.write_dte(mapped.memory, LAYOUT, DEVICE, sw.v1_dte(DOMAIN, ROOT, 3))
    memory = sw.write_dte(memory, LAYOUT, ATS_DEVICE, sw.v1_dte(DOMAIN, ROOT, 3, ats=True))
    state = sw.initial_state(LAYOUT, memory, Caches.empty(dte=1, iotlb=1, pde=1, guest_pde=1, gcr3=1,
                                                          device_iotlb=1))
    fills = [Fill("dte", 0, Request(DEVICE, IOVA)), Fill("iotlb", 0, Request(DEVICE, IOVA)),
             Fill("pde", 0, Request(DEVICE, IOVA), 1), Fill("device_iotlb", 0, Request(ATS_DEVICE, IOVA, ats=True))]
    commands = [sw.inv_pages(DOMAIN, IOVA, 0x1000), sw.completion_wait(LAYOUT.semaphore, 1)]
    for move in fills + sw.queue_moves(state, LAYOUT, commands) + [ProcessCommand()]:
        state, _ = step(INT, state, move)
    assert state.in_flight[0].valid and state.caches.iotlb[0].valid
    return state


# the DMA and the DTE fill take any request; the other fills fix the device (its DTE shape), which keeps
# the formula small and, for the PDE cache, the walk's steps in the places its step index counts
TEMPLATES = (
    CpuWrite(ANY, ANY), SetTail(ANY), ProcessCommand(), Retire(0), Retire(1),
    Fill("dte", 0, any_request()), Fill("iotlb", 0, any_request(device_id=DEVICE)),
    Fill("pde", 0, any_request(device_id=DEVICE), 1), Fill("device_iotlb", 0, any_request(device_id=ATS_DEVICE)),
    Evict("iotlb", 0), Dma(any_request(), ServeChoice(dte=0, iotlb=0, pde=0), ANY),
    TranslatedDma(any_request(device_id=ATS_DEVICE), 0, 0, ANY),
)


def requests():
    base = Request(DEVICE, IOVA)
    return [base, dataclasses.replace(base, write=True), dataclasses.replace(base, address=IOVA + 0x1000),
            Request(ATS_DEVICE, IOVA, write=True, ats=True), Request(0x12, IOVA)]


def argument_sets():
    """Concrete arguments for every hole: stores into the DTE, the ring and a table; tails; requests."""
    for i, request in enumerate(requests()):
        stores = [(LAYOUT.dte_address(DEVICE), 0), (LAYOUT.cmd_ring + 0x40, 0x1234), (ROOT, 0), (0x9000, 7)]
        address, value = stores[i % len(stores)]
        yield {"address": address, "value": value, "offset": [0x20, 0x10, 0x30, 0, 0x40][i], "data": 0xAB + i,
               **{f"request.{f.name}": getattr(request, f.name) for f in dataclasses.fields(Request)}}


def test_step_any_with_the_kind_fixed_is_the_concrete_step():
    state = initial_state()
    move = symbolic_move(TEMPLATES, "m")
    symbolic, out = step_any(Z3, state.replace(memory=Z3.memory_image(state.memory)), move, TEMPLATES)
    for args in argument_sets():
        for index, template in enumerate(TEMPLATES):
            inputs = z3.Solver()  # a model giving the kind and each argument its value
            inputs.add(move.kind == index, *[move.args[p] == (bool(args[p]) if w is None else args[p])
                                             for p, w in argument_sorts(TEMPLATES).items()])
            assert inputs.check() == z3.sat
            model = inputs.model()
            concrete = instantiate(template, args)
            expected, expected_out = step(INT, state, concrete)
            assert decode(TEMPLATES, move, lambda t: concrete_value(model.eval(t, model_completion=True))) == concrete
            addresses = sorted(set(expected.memory) | {args["address"]})
            words = tuple(Z3.read64(symbolic.memory, Z3.const(a, 64)) for a in addresses)
            got, got_words, got_out = evaluated((symbolic.replace(memory=None), words, out), model)
            assert got == expected.replace(memory=None), (template, args)
            assert got_words == tuple(expected.memory.get(a, 0) for a in addresses), (template, args)
            assert happened(got_out) == happened(expected_out.complete(INT)), (template, args)


def evaluated(record, model):
    """``record`` with every term replaced by its value in ``model`` (a few evaluations of packed terms)."""
    terms = []
    map_terms(record, lambda t: terms.append(t) or t)
    values = []
    for start in range(0, len(terms), 40):
        chunk = terms[start:start + 40]  # at most 40 x 256 bits: as_long stays within Python's digit limit
        bits = [z3.If(t, z3.BitVecVal(1, 1), z3.BitVecVal(0, 1)) if z3.is_bool(t) else t for t in chunk]
        packed = model.eval(z3.Concat(*bits) if len(bits) > 1 else bits[0], model_completion=True).as_long()
        top = sum(b.size() for b in bits)
        for term, b in zip(chunk, bits):
            top -= b.size()
            v = (packed >> top) & ((1 << b.size()) - 1)
            values.append(bool(v) if z3.is_bool(term) else v)
    found = iter(values)
    return map_terms(record, lambda t: next(found))


def happened(out):
    """Outputs with the walk's steps reduced to those that happened."""
    walk = out.dma.outcome
    walk = dataclasses.replace(walk, steps=tuple(s for s in walk.steps if s.active))
    return dataclasses.replace(out, dma=dataclasses.replace(out.dma, outcome=walk))


def test_a_known_kind_steps_one_template():
    state = initial_state()
    move = iommu.SymbolicMove(TEMPLATES.index(Retire(0)), {})
    assert step_any(INT, state, move, TEMPLATES)[0] == step(INT, state, Retire(0))[0]
