"""The stored-outputs check (.ci/notebooks.py check) fails on a notebook whose outputs were stripped."""
import importlib.util
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("nbcheck", ROOT / ".ci" / "notebooks.py")
nbcheck = importlib.util.module_from_spec(spec); spec.loader.exec_module(nbcheck)


def test_stripped_outputs_are_caught(tmp_path, monkeypatch):
    src = ROOT / "nbs" / "00_core.ipynb"
    nb = json.loads(src.read_text())
    monkeypatch.setattr(nbcheck, "ROOT", tmp_path)
    p = tmp_path / "00_core.ipynb"
    p.write_text(json.dumps(nb))
    assert nbcheck.problems(p) == []                                   # as stored: fine
    for c in nb["cells"]:
        if c["cell_type"] == "code": c["outputs"] = []                # stripped, e.g. by nbstripout
    p.write_text(json.dumps(nb))
    assert any("had outputs and has none now" in m for m in nbcheck.problems(p))
    del nb["metadata"]["sparse_circuits"]                              # never executed by make notebooks
    p.write_text(json.dumps(nb))
    assert any("never executed" in m for m in nbcheck.problems(p))


def test_paths_of_this_machine_are_scrubbed():
    assert nbcheck.scrub(f"saved to /tmp/tmpab12_x/out.csv and {ROOT}/nbs") == "saved to <tmp>/out.csv and <repo>/nbs"


def _notebook(cells):
    "A minimal notebook of code cells (source, stored stdout)."
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
            "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None, "source": src,
                       "outputs": [{"name": "stdout", "output_type": "stream", "text": out}]} for i, (src, out) in enumerate(cells)]}


def test_verify_reports_moved_outputs_and_ignores_timings(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(nbcheck, "ROOT", tmp_path)
    p = tmp_path / "nb.ipynb"
    same = [("print('edges', 42)", "edges 42\n"), ("print('analysis', 3.5, 's')", "analysis 71.2 s\n"),
            ("#| slow\nprint(1)", "anything\n")]                        # a flagged cell keeps its outputs unchecked
    p.write_text(json.dumps(_notebook(same)))
    assert nbcheck.verify(p) == 0                                       # only a timing differs
    p.write_text(json.dumps(_notebook([("print('edges', 42)", "edges 41\n")] + same[1:])))
    assert nbcheck.verify(p) == 1                                       # a stale number
    out = capsys.readouterr().out
    assert "-edges 41" in out and "+edges 42" in out
    assert json.loads(p.read_text())["cells"][0]["outputs"][0]["text"] == "edges 41\n"   # nothing written
