"""No silent wrong numbers (issue 15): stale results, interrupted runs, output sets and permissions, user errors of
the command line. (The checks that live with their code are tested in the notebooks: task files against their
tokenizer in 01_tasks, nanoGPT gaps in 05_models, non-finite scores and safe loading in 07_attribution, the
clean-corrupted gap in 08_evaluation, sparsify resume in 09_training, configuration fields in 12_config.)"""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import sparse_circuits.experiment as E
from sparse_circuits.core import check_set

CLI = str(Path(sys.executable).parent / "sparse-circuits")
TINY_TOY = dict(n_layer=1, n_head=2, n_embd=16, seq_len=64, n_docs=600, train_steps=20, sparsify_steps=10, n_heldout=8,
                n_eval_rows=8, batch_size=8, doc_prefix=[0, 1])


def two_panels(toy=TINY_TOY):
    d = dict(method="EAP", seed=10000, n_examples=8, batch_size=8, device="cpu", curve_points=4, n_boot=30,
             head_points=4, task_options={"prefix": [0, 1]})
    return {"defaults": d, "toy": dict(toy),
            "panels": [dict(title="IOI", task="ioi", dense={"toy": "dense"}, sparse={"toy": "sparse"}),
                       dict(title="GT", task="greater-than", dense={"toy": "dense"}, sparse={"toy": "sparse"})]}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSE_CIRCUITS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_interrupted_then_resumed_run_is_byte_identical(tmp_path, cache, monkeypatch):
    straight = E.run(two_panels(), tmp_path / "a", progress=False)
    real = E.run_panel
    def crash_on_second(panel, *a, **k):
        if panel.index == 1: raise KeyboardInterrupt
        return real(panel, *a, **k)
    monkeypatch.setattr(E, "run_panel", crash_on_second)
    with pytest.raises(KeyboardInterrupt): E.run(two_panels(), tmp_path / "b", progress=False)
    assert not (tmp_path / "b" / "summary.json").exists()           # no complete set after an interruption
    monkeypatch.setattr(E, "run_panel", real)
    resumed = E.run(two_panels(), tmp_path / "b", progress=False)
    assert [p.get("resumed") for p in resumed["panels"]] == [True, None]
    assert (tmp_path / "a" / "results.csv").read_bytes() == (tmp_path / "b" / "results.csv").read_bytes()
    assert straight["multipliers"] == resumed["multipliers"]


def test_a_changed_recipe_or_model_folder_recomputes(tmp_path, cache):
    E.run(two_panels(), tmp_path / "o", progress=False)
    again = E.run(two_panels(), tmp_path / "o", progress=False)
    assert all(p.get("resumed") for p in again["panels"])
    other = E.run(two_panels(dict(TINY_TOY, n_embd=24)), tmp_path / "o", progress=False)
    assert not any(p.get("resumed") for p in other["panels"])
    assert other["toy"]["config"]["n_embd"] == 24


def test_a_set_of_outputs_is_checkable_and_readable_by_others(tmp_path, cache):
    E.run(two_panels(), tmp_path / "o", progress=False)
    body = check_set(tmp_path / "o", "summary.json")
    assert {"results.csv", "figure.png", "figure.pdf", "heads.png"} <= set(body["files"]) <= \
        {"results.csv", "figure.png", "figure.pdf", "heads.png", "circuits.png", "circuits.pdf"}
    mask = os.umask(0); os.umask(mask)
    for f in ("results.csv", "summary.json", "figure.png"):
        assert stat.S_IMODE((tmp_path / "o" / f).stat().st_mode) == 0o666 & ~mask
    (tmp_path / "o" / "results.csv").write_text("panel,task\n")
    with pytest.raises(Exception, match="results.csv is not the file"):
        check_set(tmp_path / "o", "summary.json")


def sc(*args, env=None):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=300, env=dict(os.environ, **(env or {})))


def test_cli_user_errors_are_messages_not_tracebacks(tmp_path):
    out = sc("run", tmp_path)                                         # a directory as the configuration
    assert out.returncode == 2 and "is a directory" in out.stderr and "Traceback" not in out.stderr
    res = tmp_path / "r"; res.mkdir()
    pd.DataFrame(dict(panel=["A"], task=["ioi"], variant=["dense"], model=["m"], unit=["edges"], k=["seven"],
                      explained_effect=[0.5], ci_low=[0.4], ci_high=[0.6])).to_csv(res / "results.csv", index=False)
    out = sc("plot", res / "results.csv")                             # a non-numeric k
    assert out.returncode == 2 and "column 'k' must be numeric" in out.stderr and "Traceback" not in out.stderr
    pd.DataFrame(dict(panel=["A"] * 2, task=["ioi"] * 2, variant=["dense", "sparse"], model=["m", "s"], unit=["edges"] * 2,
                      k=[7, 7], explained_effect=[0.5, 0.9], ci_low=[0.4, 0.8], ci_high=[0.6, 1.0])).to_csv(res / "results.csv", index=False)
    (res / "summary.json").write_text("{not json")
    out = sc("plot", res / "results.csv")                             # a corrupt summary.json next to it
    assert out.returncode == 0 and "warning:" in out.stderr and "not valid JSON" in out.stderr and "Traceback" not in out.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[[panels]]\ntask = "ioi"\ndense = { hub = "gpt2" }\nsparse = { hub = "gpt2" }\ndtype = "float128"\n')
    out = sc("run", bad, "--dry-run")
    assert out.returncode == 2 and "panels[0].dtype: expected one of" in out.stderr
