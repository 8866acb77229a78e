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
