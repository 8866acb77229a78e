"""The command line: every command's --help, configuration errors, dry runs, and a reduced demo end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sparse_circuits.config import DEMO_CONFIG, parse_config
from sparse_circuits.core import check_set

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "sparse-circuits")


def sc(*args, env=None, timeout=600):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


@pytest.mark.parametrize("cmd", ["demo", "run", "plot", "smoke"])
def test_every_command_has_help(cmd):
    out = sc(cmd, "--help")
    assert out.returncode == 0 and "usage: sparse-circuits " + cmd in out.stdout
    assert "--" in out.stdout.split("options:")[-1]  # documents at least one option


def test_shipped_demo_config_is_the_builtin_one():
    assert (ROOT / "configs" / "demo.toml").read_text() == DEMO_CONFIG


@pytest.mark.parametrize("name", ["paper.toml", "demo.toml", "smollm2.toml", "tinystories.toml"])
def test_dry_run_of_shipped_configs(name):
    out = sc("run", ROOT / "configs" / name, "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "configuration is valid" in out.stdout and "n_edges" in out.stdout


def test_dry_run_memory_estimate_follows_the_budget():
    "A smaller --max-memory gives a smaller (or equal) estimate with more attribution passes; a bad size is refused."
    def table(*extra):
        out = sc("run", ROOT / "configs" / "smollm2.toml", "--dry-run", *extra)
        assert out.returncode == 0, out.stderr
        lines = [l.split() for l in out.stdout.splitlines() if "ioi-long" in l and "dense" in l]
        head = [l.split() for l in out.stdout.splitlines() if "n_edges" in l][0]
        return dict(zip(head, lines[0][:2] + lines[0][-len(head) + 2:]))
    big, small = table("--max-memory", "64GB"), table("--max-memory", "256MB")
    assert float(small["memory_gb"]) < float(big["memory_gb"])
    assert int(small["attribution_passes"]) > int(big["attribution_passes"])
    out = sc("run", ROOT / "configs" / "smollm2.toml", "--dry-run", "--max-memory", "lots")
    assert out.returncode == 2 and "--max-memory" in out.stderr


def test_dry_run_estimates_at_the_prompts_length():
    "By default each panel is sized at its own prompts' length (the toy's tokenizer is offline); --seq-len overrides it."
    def rows(*extra):
        out = sc("run", ROOT / "configs" / "demo.toml", "--dry-run", *extra)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        head = [l.split() for l in lines if "n_edges" in l][0]
        return {(l.split()[0], l.split()[1]): dict(zip(head[2:], l.split()[-len(head) + 2:])) for l in lines
                if l.split()[:1] and l.split()[0][:2].isdigit()}
    own, short, long = rows(), rows("--seq-len", "16"), rows("--seq-len", "200")
    lens = {k[0]: int(v["seq_len"]) for k, v in own.items()}
    assert lens["03-ioi-long"] > lens["00-greater-than"] > 16, lens
    assert {int(v["seq_len"]) for v in short.values()} == {16} and {int(v["seq_len"]) for v in long.values()} == {200}
    k = ("03-ioi-long", "sparse")
    assert float(short[k]["memory_gb"]) < float(own[k]["memory_gb"]) < float(long[k]["memory_gb"])
    out = sc("run", ROOT / "configs" / "demo.toml", "--dry-run", "--seq-len", "0")
    assert out.returncode == 2 and "--seq-len" in out.stderr


def test_bad_config_names_the_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[panels]]\ntask = "ioi"\ndense = { hub = "gpt2" }\nsparse = { hub = "gpt2" }\nbatch_size = "big"\n')
    out = sc("run", bad, "--dry-run")
    assert out.returncode == 2 and "panels[0].batch_size: expected int" in out.stderr
    bad.write_text('[[panels]]\ntask = "sorting"\ndense = { hub = "gpt2" }\nsparse = { hub = "gpt2" }\n')
    out = sc("run", bad, "--dry-run")
    assert out.returncode == 2 and "panels[0].task: unknown task 'sorting'" in out.stderr
    out = sc("run", tmp_path / "missing.toml")
    assert out.returncode == 2 and "does not exist" in out.stderr


REDUCED = """
name = "reduced-demo"
tau = 0.9
[defaults]
method = "EAP-IG"
ig_steps = 2
n_examples = 12
batch_size = 12
device = "cpu"
curve_points = 6
n_boot = 100
seed = 10000
task_options = { prefix = [0, 1] }
[toy]
n_layer = 2
n_head = 2
n_embd = 32
seq_len = 64
doc_prefix = [0, 1]
n_docs = 3000
train_steps = 60
sparsify_steps = 30
n_heldout = 12
n_eval_rows = 16
[[panels]]
title = "Greater Than"
task = "greater-than"
dense = { toy = "dense", label = "Toy GPT-2" }
sparse = { toy = "sparse", label = "Sparse toy GPT-2" }
[[panels]]
title = "IOI Long"
task = "ioi-long"
task_options = { min_tokens = 30, max_tokens = 60 }
dense = { toy = "dense" }
sparse = { toy = "sparse" }
"""


def test_reduced_demo_end_to_end(tmp_path):
    """The demo pipeline (toy world -> training -> sparsify -> attribution -> curves -> figures) on reduced settings."""
    cfg = tmp_path / "reduced.toml"
    cfg.write_text(REDUCED)
    parse_config(cfg)
    out, env = tmp_path / "out", {"SPARSE_CIRCUITS_CACHE": str(tmp_path / "cache")}
    r = sc("run", cfg, "--out", out, "--quiet", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    for f in ("figure.png", "figure.pdf", "heads.png", "results.csv", "summary.json"):
        assert (out / f).stat().st_size > 0, f
    s = json.loads((out / "summary.json").read_text())
    assert [p["title"] for p in s["panels"]] == ["Greater Than", "IOI Long"]
    for p in s["panels"]:
        for v in ("dense", "sparse"):
            assert 0 <= p["models"][v]["accuracy"] <= 1
            assert p["models"][v]["prompts_held_out"] == 1.0 and p["models"][v]["prepend_bos"] is True
            assert {"gap", "gap_se", "gap_z", "significant"} <= set(p["models"][v])
        m = p["multiplier"]
        noisy = not (p["models"]["dense"]["significant"] and p["models"]["sparse"]["significant"])
        if noisy: assert m["multiplier"] is None and "not significant" in m["note"]   # never a multiplier from noise
        elif m["dense_reached"] and m["sparse_reached"]: assert m["multiplier"] == m["dense_edges"] / m["sparse_edges"]
    assert 0 < s["toy"]["density"] <= 1 and s["toy"]["dense_loss"] > 0 and s["toy"]["source"] == "trained"
    check_set(out, "summary.json")                     # a complete set of files
    assert "torch" in s["versions"]
    df = pd.read_csv(out / "results.csv")
    assert set(df.unit) == {"edges", "heads"} and set(df.variant) == {"dense", "sparse"}
    # the ends of every edge curve are the baselines: explained effect 0 with no edge, 1 with all edges
    for _, t in df[df.unit == "edges"].groupby(["panel", "variant"]):
        t = t.sort_values("k")
        assert t.explained_effect.iloc[0] == pytest.approx(0, abs=1e-6)
        assert t.explained_effect.iloc[-1] == pytest.approx(1, abs=1e-6)
    # rerun: every panel is read back from OUT/panels, nothing recomputed
    first = (out / "results.csv").read_bytes()
    r2 = sc("run", cfg, "--out", out, "--quiet", env=env)
    assert r2.returncode == 0
    assert all(p.get("resumed") for p in json.loads((out / "summary.json").read_text())["panels"])
    assert (out / "results.csv").read_bytes() == first          # byte-identical after a resume
    # replot from the saved table: with its summary beside it, the run's own counts and intervals: the same figure
    figures = {f: (out / f).read_bytes() for f in ("figure.png", "heads.png")}
    (out / "figure.png").unlink()
    r3 = sc("plot", out / "results.csv")
    assert r3.returncode == 0 and "note:" not in r3.stderr
    assert {f: (out / f).read_bytes() for f in figures} == figures
    # the table alone (no summary): counts read off the curves' points, and the command says so
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "results.csv").write_bytes(first)
    r3b = sc("plot", alone / "results.csv")
    assert r3b.returncode == 0 and (alone / "figure.png").exists() and "no bisection" in r3b.stderr
    # --retrain trains the recipe again although it is cached; on one machine training is deterministic, also in a
    # process whose torch default is one thread: both trainings run on the recipe's threads (toy.threads, 2)
    r4 = sc("run", cfg, "--out", tmp_path / "again", "--quiet", "--retrain", env=dict(env, OMP_NUM_THREADS="1"))
    assert r4.returncode == 0, r4.stderr[-3000:]
    t = json.loads((tmp_path / "again" / "summary.json").read_text())["toy"]
    assert t["source"] == "trained" and (t["dense_loss"], t["sparse_loss"]) == (s["toy"]["dense_loss"], s["toy"]["sparse_loss"])
    assert t["machine"]["threads"] == s["toy"]["machine"]["threads"] == 2


def test_shipped_models_match_their_recipe(tmp_path):
    from sparse_circuits.toy import SHIPPED, ToyConfig, check_toy_files, ship_toy_models, shipped_info
    info = shipped_info()
    assert info is not None, "the package has no shipped toy models"
    assert info["key"] == ToyConfig().key() == ToyConfig.from_dict(info["config"]).key()
    check_toy_files(SHIPPED, info)                       # every file is the file recorded
    assert {"dense/model.safetensors", "sparse/model.safetensors"} <= set(info["files"])
    assert {"torch", "transformers"} <= set(info["versions"]) and info["seconds"] > 0
    copy = ship_toy_models(SHIPPED, tmp_path / "copy")   # a damaged copy is refused
    (copy / "dense" / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ValueError, match="not the file its info.json records"): check_toy_files(copy, info)


def test_demo_prints_the_readme_numbers(tmp_path):
    """`sparse-circuits demo` on the shipped models: the lines it prints are the README's, on this machine too."""
    r = sc("demo", "--out", tmp_path / "demo", "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert s["toy"]["source"] == "shipped"
    for p in s["panels"]:             # every multiplier and count comes with a bootstrap interval that contains it
        for kind, unit in (("multiplier", "edges"), ("heads_multiplier", "heads")):
            m = p[kind]
            assert m["multiplier"] is not None and m["interval"]["n_boot"] == 1000
            lo, hi = m["interval"]["low"], m["interval"]["high"]
            assert lo <= m["multiplier"] and (hi is None or m["multiplier"] <= hi)
            for v in ("dense", "sparse"):
                lo, hi = p["models"][v][f"{unit}_interval"]
                assert lo <= p["models"][v][f"{unit}_to_reach"] and (hi is None or p["models"][v][f"{unit}_to_reach"] <= hi)
    lines = r.stdout.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("demo: explained effect"))
    printed = [l for l in lines[start:] if not l.startswith(("files in", "demo finished"))]
    readme = (ROOT / "README.md").read_text()
    missing = [l for l in printed if l.strip() and l not in readme]
    assert not missing, "the demo printed lines the README does not have:\n" + "\n".join(missing)
    assert len(printed) >= 6 and any(l.startswith("demo finished in") for l in lines)
    # every explained effect is the stored reference's, from another machine (benchmarks/demo_reference/machine.json), to
    # float32 rounding: measured differences between machines, thread counts and float32/float64 are below 3e-7
    ref_dir = ROOT / "benchmarks" / "demo_reference"
    ref_summary = json.loads((ref_dir / "summary.json").read_text())
    assert ref_summary["versions"]["numbers"] == s["versions"]["numbers"], (
        "the library's numbers version changed: rerun `python benchmarks/demo_repro.py --save-reference benchmarks/demo_reference`")
    key = ["panel", "variant", "unit", "k"]
    ours, ref = pd.read_csv(tmp_path / "demo" / "results.csv"), pd.read_csv(ref_dir / "results.csv")
    both = ours.merge(ref, on=key, suffixes=("", "_ref"), how="outer", indicator=True)
    assert (both["_merge"] == "both").all(), "the demo's curve points are not the reference's:\n" + str(both[both._merge != "both"][key])
    diff = (both.explained_effect - both.explained_effect_ref).abs()
    assert diff.max() < 1e-5, f"explained effect differs from the reference by {diff.max():.2e} at\n{both.loc[diff.idxmax(), key]}"
    # replotted from its table and summary, the figure is the run's: bisected counts and intervals, not the grid's
    r2 = sc("plot", tmp_path / "demo" / "results.csv", "--out", tmp_path / "replot")
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert (tmp_path / "replot" / "figure.png").read_bytes() == (tmp_path / "demo" / "figure.png").read_bytes()
