"""Edge patching beyond the per-family reference checks (tests/test_families.py): plan layouts, answer-only logits,
noise-driven effects, curve arguments and refinement."""
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import reference
import sparse_circuits.trace as tr
from sparse_circuits.attribution import attribute
from sparse_circuits.core import unwrap
from sparse_circuits.evaluation import (Curve, Evaluator, crossing, curve, edges_to_reach, log_grid, multiplier,
                                        multiplier_interval, reach_bootstrap)
from sparse_circuits.models import gpt2_tokenizer, tiny_model
from sparse_circuits.tasks import Task, make_task


@pytest.fixture(scope="module")
def task():
    return make_task("ioi", gpt2_tokenizer(), 6, seed=9)


@pytest.mark.parametrize("density_threshold", [0.0, 1.0])
def test_sparse_and_dense_plans_agree_with_reference(density_threshold, task, monkeypatch):
    "Every plan matrix dense (threshold 0) or every one sparse CSR (threshold 1): both equal the reference."
    monkeypatch.setattr(tr, "SPARSE_PLAN_DENSITY", density_threshold)
    model = tiny_model("llama", seed=4, dtype=torch.float64)
    ev = Evaluator(model, task, batch_size=4)
    g = ev.graph
    gen = torch.Generator().manual_seed(2)
    layouts = set()
    for density in (0.02, 0.5, 0.99):
        keep = (torch.rand(g.n_senders, g.n_receivers, generator=gen) < density) & g.valid
        plans = tr.circuit_plans(g, keep)
        layouts |= {p.matrix.layout for pair in plans.layers for p in pair if p is not None and len(p.active)}
        got = ev.metrics([keep])[0].mean().item()
        want = reference.patched_metric(unwrap(model), task, (~keep).double())
        assert got == pytest.approx(want, rel=1e-6, abs=1e-9), (density, got, want)
    assert layouts == {torch.sparse_csr if density_threshold else torch.strided}, layouts


def test_logits_only_at_answer_positions_equal_full_logits(task):
    model = tiny_model("gpt2", seed=7)
    g_valid = Evaluator(model, task).graph.valid
    gen = torch.Generator().manual_seed(3)
    masks = [(torch.rand(g_valid.shape, generator=gen) < d) & g_valid for d in (0.1, 0.9)]
    short = Evaluator(model, task, batch_size=4)
    full = Evaluator(model, task, batch_size=4, answer_logits_only=False)
    assert "logits_to_keep" in short._kw[0][0] and "logits_to_keep" not in full._kw[0][0]
    torch.testing.assert_close(short.clean, full.clean)
    torch.testing.assert_close(short.metrics(masks), full.metrics(masks), rtol=1e-5, atol=1e-6)


def test_a_task_without_an_effect_gives_no_multiplier():
    "Clean and corrupted prompts that are the same: the gap is not significant, the curve is flagged, no multiplier."
    tok = gpt2_tokenizer()
    base = make_task("ioi", tok, 8, seed=0)
    same = Task("ioi", [dict(r, corrupted=r["clean"]) for r in base.rows], tok)
    model = tiny_model("gpt2")
    ev = Evaluator(model, same, batch_size=4)
    assert not ev.gap["significant"]
    attr = attribute(model, base, method="EAP", progress=False)
    c = curve(model, same, scores=attr, n_points=4, evaluator=ev, n_boot=20, progress=False)
    assert not c.table.gap_significant.any()
    r = edges_to_reach(c, 0.5)
    assert not r.significant
    m = multiplier(r, r)
    assert m["multiplier"] is None and "not significant for dense and sparse" in m["note"]


def test_curve_rejects_ks_outside_the_graph(task):
    model = tiny_model("gpt2", seed=0)
    attr = attribute(model, task, method="EAP", progress=False)
    ev = Evaluator(model, task)
    n = ev.graph.n_edges
    for ks in ([n + 1], [-1], [1.5], ["7"]):
        with pytest.raises(ValueError, match="k|integer"):
            curve(model, task, scores=attr, ks=ks, evaluator=ev, progress=False)
    t = curve(model, task, scores=attr, ks=[0, 3, n], evaluator=ev, n_boot=20, progress=False).table
    assert t.explained_effect.tolist()[0] == pytest.approx(0) and t.explained_effect.tolist()[-1] == pytest.approx(1)
    assert ((t.ci_low <= t.explained_effect) & (t.explained_effect <= t.ci_high)).all()


def test_curve_and_refinement_on_a_model(task):
    model = tiny_model("gpt2", seed=0)
    attr = attribute(model, task, method="EAP-IG", steps=2, progress=False)
    c = curve(model, task, scores=attr, n_points=8, progress=False, n_boot=50)
    r = edges_to_reach(c, 0.5)
    if r.reached:  # the refined k really reaches tau and k - bracket does not improve the grid
        assert c.evaluate(r.edges) >= 0.5
        assert r.bracket[0] < r.edges


def test_crossing_lies_in_the_grid_bracket_of_edges_to_reach():
    "On random curves (monotone or not), the interpolated crossing lies between the grid points edges_to_reach brackets."
    rng = np.random.default_rng(0)
    ks = log_grid(1519, 24)
    for trial in range(300):
        e = rng.uniform(-0.2, 1.1, len(ks))
        if trial % 2: e = np.sort(e)
        r = edges_to_reach(pd.DataFrame(dict(k=ks, explained_effect=e)), 0.9, refine=False)
        x = crossing(ks, e, 0.9)[0]
        if not r.reached: assert math.isinf(x)
        elif r.bracket[0] is None: assert x == r.edges
        else: assert r.bracket[0] <= x <= r.edges


def _fake_curve(ks, metrics, clean, corrupted):
    ev = SimpleNamespace(clean=clean, corrupted=corrupted)
    return Curve(pd.DataFrame(dict(k=ks)), evaluator=ev, metrics=metrics)


def _naive_crossing(ks, effects, tau):
    for j, (k, e) in enumerate(zip(ks, effects)):
        if e >= tau:
            if j == 0: return float(k)
            x0, x1, e0 = math.log1p(ks[j - 1]), math.log1p(k), effects[j - 1]
            return math.expm1(x0 + (tau - e0) / (e - e0) * (x1 - x0))
    return math.inf


def test_reach_bootstrap_equals_a_naive_resampling():
    "reach_bootstrap = resampling the prompts by hand (same generator draws), recomputing the effects and the crossing."
    gen = torch.Generator().manual_seed(5)
    n, ks = 12, [1, 2, 4, 8, 16, 32]
    clean, corrupted = 1 + torch.rand(n, generator=gen, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    metrics = torch.stack([clean * min(1.0, k / 10) + 0.2 * torch.randn(n, generator=gen, dtype=torch.float64) for k in ks])
    fast = reach_bootstrap(_fake_curve(ks, metrics, clean, corrupted), 0.9, n_boot=40, seed=3)
    idx = torch.randint(0, n, (40, n), generator=torch.Generator().manual_seed(3))
    for b in range(40):
        i = idx[b].tolist()
        c, k = sum(clean[j] for j in i) / n, sum(corrupted[j] for j in i) / n
        effects = [float((sum(metrics[r, j] for j in i) / n - k) / (c - k)) for r in range(len(ks))]
        assert fast[b] == pytest.approx(_naive_crossing(ks, effects, 0.9), rel=1e-9)


def test_multiplier_interval_is_paired():
    """Two models with the same per-prompt metrics: every paired resample gives the ratio 1, so the interval is [1, 1];
    resampling the two independently (another seed for one of them) would not give that."""
    gen = torch.Generator().manual_seed(0)
    n, ks = 30, [1, 4, 16, 64, 256]
    clean, corrupted = torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    metrics = torch.stack([torch.full((n,), k / 300.0, dtype=torch.float64) + 0.3 * torch.randn(n, generator=gen, dtype=torch.float64)
                           for k in ks])
    d = reach_bootstrap(_fake_curve(ks, metrics, clean, corrupted), 0.5, n_boot=200)
    assert np.isfinite(d).mean() > 0.5 and np.nanstd(d[np.isfinite(d)]) > 0      # the crossing does move
    same = multiplier_interval(d, reach_bootstrap(_fake_curve(ks, metrics, clean, corrupted), 0.5, n_boot=200))
    assert (same["low"], same["high"]) == (1.0, 1.0)
    other = reach_bootstrap(_fake_curve(ks, metrics, clean, corrupted), 0.5, n_boot=200, seed=1)   # other resamples
    assert multiplier_interval(d, other)["high"] is None or multiplier_interval(d, other)["high"] > 1.0
