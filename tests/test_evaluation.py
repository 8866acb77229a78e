"""Edge patching against the naive per-receiver reference, invariants on every family, remote="local", errors."""
import pytest
import torch

import reference
from sparse_circuits.evaluation import Evaluator, curve, edges_to_reach, explained_effect
from sparse_circuits.attribution import attribute
from sparse_circuits.models import gpt2_tokenizer, tiny_model
from sparse_circuits.tasks import Task, make_task

FAMILIES = ["gpt2", "olmo", "llama"]


@pytest.fixture(scope="module")
def task():
    return make_task("ioi", gpt2_tokenizer(), 6, seed=9)


@pytest.mark.parametrize("family", FAMILIES)
def test_patched_metric_equals_reference_for_random_circuits(family, task):
    model = tiny_model(family, seed=4, dtype=torch.float64)
    ev = Evaluator(model, task, batch_size=4)
    g = ev.graph
    gen = torch.Generator().manual_seed(1)
    for density in (0.05, 0.3, 0.7, 0.97):
        keep = (torch.rand(g.n_senders, g.n_receivers, generator=gen) < density) & g.valid
        got = ev.metrics([keep])[0].mean().item()
        want = reference.patched_metric(model._module, task, (~keep).double())
        assert got == pytest.approx(want, rel=1e-6, abs=1e-9), (density, got, want)


@pytest.mark.parametrize("density_threshold", [0.0, 1.0])
def test_sparse_and_dense_plans_agree_with_reference(density_threshold, task, monkeypatch):
    "Every plan matrix dense (threshold 0) or every one sparse CSR (threshold 1): both equal the reference."
    import sparse_circuits.evaluation as E
    monkeypatch.setattr(E, "SPARSE_PLAN_DENSITY", density_threshold)
    model = tiny_model("llama", seed=4, dtype=torch.float64)
    ev = Evaluator(model, task, batch_size=4)
    g = ev.graph
    gen = torch.Generator().manual_seed(2)
    layouts = set()
    for density in (0.02, 0.5, 0.99):
        keep = (torch.rand(g.n_senders, g.n_receivers, generator=gen) < density) & g.valid
        layouts |= {p[3].layout for pair in E._plans(g, keep)[:-1] for p in pair if p is not None and len(p[2])}
        got = ev.metrics([keep])[0].mean().item()
        want = reference.patched_metric(model._module, task, (~keep).double())
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


@pytest.mark.parametrize("family", FAMILIES)
def test_all_and_no_edges(family, task):
    model = tiny_model(family, seed=5)
    g_valid = Evaluator(model, task).graph.valid
    assert explained_effect(model, task, circuit=g_valid) == pytest.approx(1.0, abs=1e-4)
    assert explained_effect(model, task, circuit=torch.zeros_like(g_valid)) == pytest.approx(0.0, abs=1e-4)


def test_remote_local_equals_local(task):
    model = tiny_model("llama", seed=6)
    attr = attribute(model, task, method="EAP", progress=False)
    masks = [attr.top_k(k) for k in (3, 40)]
    local = Evaluator(model, task, batch_size=3).metrics(masks)
    sim = Evaluator(model, task, batch_size=3, remote="local").metrics(masks)
    torch.testing.assert_close(sim, local, rtol=1e-5, atol=1e-6)


def test_degenerate_task_is_a_clear_error():
    tok = gpt2_tokenizer()
    base = make_task("ioi", tok, 4, seed=0)
    same = Task("ioi", [dict(r, corrupted=r["clean"]) for r in base.rows], tok)  # corrupted == clean
    with pytest.raises(ValueError, match="explained effect is undefined"):
        Evaluator(tiny_model("gpt2"), same)


def test_curve_and_refinement_on_a_model(task):
    model = tiny_model("gpt2", seed=0)
    attr = attribute(model, task, method="EAP-IG", steps=2, progress=False)
    c = curve(model, task, scores=attr, n_points=8, progress=False, n_boot=50)
    r = edges_to_reach(c, 0.5)
    if r.reached:  # the refined k really reaches tau and k - bracket does not improve the grid
        assert c.evaluate(r.edges) >= 0.5
        assert r.bracket[0] < r.edges
