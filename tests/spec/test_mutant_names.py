"""A misspelt broken-model name is refused by every function that takes ``mutants``.

Before this, ``fresh_after_change("dte", "dte", "v1", mutants={"devtab-invalidaton-ignored"})`` ran the
correct model and came out proved while the correct spelling is refuted: a silent proof. The entry
points are discovered, not listed, so a new function that takes ``mutants`` cannot slip past.
"""

import importlib
import inspect
import pkgutil

import pytest

import amdvi.models
import amdvi.properties
import amdvi.spec
from amdvi.properties import catalog, invalidation
from amdvi.properties.proof import REFUTED
from amdvi.spec.mutants import MUTANTS

MISSPELT = frozenset({"devtab-invalidaton-ignored"})


def _functions_taking_mutants():
    for pkg in (amdvi.spec, amdvi.models, amdvi.properties):
        for info in pkgutil.iter_modules(pkg.__path__):
            module = importlib.import_module(f"{pkg.__name__}.{info.name}")
            for name, obj in vars(module).items():
                if (inspect.isfunction(obj) and obj.__module__ == module.__name__ and name != "check_known"
                        and "mutants" in inspect.signature(obj).parameters):
                    yield pytest.param(obj, id=f"{info.name}.{name}")
    for name, prop in catalog.PROPERTIES.items():
        yield pytest.param(prop.run, id=f"catalog.PROPERTIES[{name}].run")


ENTRY_POINTS = list(_functions_taking_mutants())


def test_the_entry_points_were_found():
    ids = {p.id for p in ENTRY_POINTS}
    assert {"invalidation.fresh_after_change", "serving.serves_fresh", "iommu.step", "translation.translate",
            "stateful.run_machine", "catalog.run_property", "counterexample.replay"} <= ids


@pytest.mark.parametrize("function", ENTRY_POINTS)
def test_a_misspelt_mutant_is_refused(function):
    # every other argument is a placeholder: the name must be refused before any work is done
    params = inspect.signature(function).parameters
    args = {n: None for n, p in params.items()
            if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    args["mutants"] = MISSPELT
    with pytest.raises(ValueError, match="devtab-invalidaton-ignored"):
        result = function(**args)
        next(iter(result))  # a generator must refuse on its first step at the latest


def test_the_reported_hole_is_closed():
    with pytest.raises(ValueError, match="unknown mutant"):
        invalidation.fresh_after_change("dte", "dte", "v1", mutants=MISSPELT)
    right = invalidation.fresh_after_change("dte", "dte", "v1", mutants=frozenset({"devtab-invalidation-ignored"}),
                                            stale_possible=False, observe=True)
    assert right.status == REFUTED


def test_a_single_string_is_not_read_as_a_set_of_letters():
    with pytest.raises(ValueError):
        invalidation.fresh_after_change("dte", "dte", "v1", mutants="devtab-invalidation-ignored")
    assert "devtab-invalidation-ignored" in MUTANTS
