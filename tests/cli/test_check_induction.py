"""amdvi check --prove reports the induction proof: proved on a correct sequence, unknown when the
budget is spent, one line and exit 2 on a bad budget."""

from __future__ import annotations

import json

from amdvi.frontend import sequence_format
from amdvi.frontend.main import main
from amdvi.frontend.sequence_library import IOVA, NIC, RAM, _scenario, attach, bind, dma, ioas, map_fixed, unmap, Entry


def _file(tmp_path):
    entry = Entry("short.json", "short", _scenario(NIC), (bind("nic"), ioas(), map_fixed(IOVA, RAM, 0x1000),
                                                            attach("nic", "ioas"), dma("nic", IOVA), unmap(IOVA, 0x1000)))
    path = tmp_path / "short.json"
    path.write_text(json.dumps(sequence_format.to_json(entry.loaded())))
    return str(path)


def test_prove_reports_the_induction(tmp_path, capsys):
    assert main(["check", _file(tmp_path), "--prove", "--json"]) == 0
    proofs = json.loads(capsys.readouterr().out)["sequences"][0]["proofs"]
    induction = next(p for p in proofs if p["proof"] == "isolation-induction")
    assert induction["status"] == "proved" and "every address" in induction["detail"]


def test_a_tiny_budget_is_reported_unknown(tmp_path, capsys):
    code = main(["check", _file(tmp_path), "--prove", "--prove-budget", "0.000001", "--json"])
    proofs = json.loads(capsys.readouterr().out)["sequences"][0]["proofs"]
    induction = next(p for p in proofs if p["proof"] == "isolation-induction")
    assert induction["status"] == "unknown" and "budget" in induction["detail"]
    assert code == 1  # a correct sequence whose proof did not come out proved is not as expected


def test_a_bad_budget_is_one_line(tmp_path, capsys):
    assert main(["check", _file(tmp_path), "--prove", "--prove-budget", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--prove-budget" in err
