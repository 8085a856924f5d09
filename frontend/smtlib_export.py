"""``amdvi prove --smtlib DIR``: every question a proof asks, as an SMT-LIB 2 file any solver can read.

One file per question, ``DIR/<property>/<obligation>/<NN>-<question>.smt2``: NN counts the questions of
that obligation in the order they were asked (an obligation may ask several: each witness, then the
counterexample). The files are written as the proof asks the questions, while it proves: which
questions are asked depends on earlier answers (a refuted claim leads to a search for a stale access),
so the set written is exactly the set the proof needed. Each file is written atomically.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from amdvi.frontend.errors import InputError
from amdvi.frontend.files import write_atomically
from amdvi.properties.solvers import Question


def slug(name: str) -> str:
    """``name`` as one path component: letters, digits, ``.``, ``-``; every other run becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_.") or "_"


class SmtlibExport:
    """A ``Settings.on_script`` that writes each question under ``root``; ``property`` names the folder."""

    def __init__(self, root: Path) -> None:
        if root.exists() and not root.is_dir():
            raise InputError(f"--smtlib {root}: not a directory")
        self.root, self.property, self.written = root, "queries", 0
        self._asked: Counter[tuple[str, str]] = Counter()

    def __call__(self, question: Question, script: str) -> None:
        key = (self.property, question.obligation)
        self._asked[key] += 1
        path = (self.root / slug(self.property) / slug(question.obligation)
                / f"{self._asked[key]:02d}-{slug(question.label)}.smt2")
        header = (f"; amdvi prove: property {self.property}, obligation {question.obligation}, "
                  f"question {question.label}\n")
        try:
            write_atomically(path, header + script)
        except OSError as e:
            raise InputError(f"cannot write {path}: {e.strerror or e}") from None
        self.written += 1
