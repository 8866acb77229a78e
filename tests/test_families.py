"""Every family of the architecture registry, checked generically against the naive reference (tests/reference.py).

A family added to the registry is tested here without writing a new test: the parametrisation reads the registry.
`test_a_family_registered_in_a_test` registers one more family in a few lines and runs the same checks on it.
"""
import pytest
import torch

import reference
from sparse_circuits.architectures import ARCHITECTURES, Architecture, register_architecture
from sparse_circuits.attribution import attribute
from sparse_circuits.core import unwrap
from sparse_circuits.evaluation import Evaluator, explained_effect
from sparse_circuits.graph import Graph
from sparse_circuits.models import gpt2_tokenizer, load_model, tiny_model
from sparse_circuits.sparse_attention import attention_density, make_sparse
from sparse_circuits.tasks import make_task
from sparse_circuits.trace import circuit_plans

FAMILIES = sorted(ARCHITECTURES)


@pytest.fixture(scope="module")
def task():
    return make_task("ioi", gpt2_tokenizer(), 5, seed=5)


def _model(family, seed=11):
    # float64 so that the comparison is about the algorithm, not rounding
    return tiny_model(family, seed=seed, dtype=torch.float64)


def check_reference_forward(family, task):
    model = _model(family)
    b = next(task.batches(len(task)))
    with torch.no_grad():
        want = unwrap(model)(input_ids=b.clean, attention_mask=b.attention_mask).logits
        got = reference.forward(unwrap(model), b.clean, b.attention_mask).logits
    real = b.attention_mask.bool()
    torch.testing.assert_close(got[real], want[real], rtol=1e-6, atol=1e-6)
    assert reference.receiver_names(unwrap(model)) == Graph.from_model(model).receivers
    assert reference.n_upstream(unwrap(model)) == Graph.from_model(model).n_upstream.tolist()


def check_attribution(family, task, method):
    model = _model(family)
    got = attribute(model, task, method=method, steps=3, batch_size=3, progress=False).scores.double()
    want = reference.edge_scores(unwrap(model), task, method=method, steps=3)
    assert want.abs().max() > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * want.abs().max().item())


def check_patching(family, task):
    model = _model(family, seed=4)
    ev = Evaluator(model, task, batch_size=3)
    g = ev.graph
    gen = torch.Generator().manual_seed(1)
    masks = [(torch.rand(g.n_senders, g.n_receivers, generator=gen) < p) & g.valid for p in (0.05, 0.3, 0.7, 0.97)]
    first = torch.arange(g.n_senders)[:, None] < 3     # every receiver reads the first senders: receivers share inputs
    masks += [g.valid & first, g.valid & (first | (torch.rand(g.valid.shape, generator=gen) < 0.05))]
    assert any(p.groups is not None for pair in circuit_plans(g, masks[-2]).layers for p in pair if p is not None)
    got = ev.metrics(masks).mean(-1)
    for keep, m in zip(masks, got):
        want = reference.patched_metric(unwrap(model), task, (~keep).double())
        assert m.item() == pytest.approx(want, rel=1e-6, abs=1e-9)
    full, empty = ev.metrics([g.valid, torch.zeros_like(g.valid)])
    assert ev.effect(full).item() == pytest.approx(1.0, abs=1e-6)
    assert ev.effect(empty).item() == pytest.approx(0.0, abs=1e-6)


def check_sparse_gate(family, task):
    b = next(task.batches(len(task)))
    dense = tiny_model(family, seed=2)
    with torch.no_grad(): want = unwrap(dense)(b.clean, attention_mask=b.attention_mask).logits
    sparse = make_sparse(tiny_model(family, seed=2), 1e4)           # every gate open: the dense model
    with torch.no_grad(): got = unwrap(sparse)(b.clean, attention_mask=b.attention_mask).logits
    real = b.attention_mask.bool()
    torch.testing.assert_close(got[real], want[real], rtol=1e-4, atol=1e-4)
    assert attention_density(sparse, b).overall == 1.0
    assert attention_density(make_sparse(sparse, -1e4), b).overall == 0.0
    d = attention_density(make_sparse(sparse, 0.0), b)
    assert d.per_head.shape == (sparse.config.num_hidden_layers, sparse.config.num_attention_heads)


@pytest.mark.parametrize("family", FAMILIES)
def test_reference_forward_equals_the_model(family, task):
    check_reference_forward(family, task)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["EAP", "EAP-IG"])
def test_attribute_equals_naive_reference(family, method, task):
    check_attribution(family, task, method)


@pytest.mark.parametrize("family", FAMILIES)
def test_patched_metrics_equal_reference_and_invariants(family, task):
    check_patching(family, task)


@pytest.mark.parametrize("family", FAMILIES)
def test_sparse_gate(family, task):
    check_sparse_gate(family, task)


# Finite differences need a forward pass that is float64 throughout: RMSNorm (Llama-style, Gemma) and OLMo's LayerNorm
# compute in float32 even in a float64 model, which makes a difference quotient noisy at the 1e-5 level.
@pytest.mark.parametrize("family", ["gpt2", "gpt_neox"])
def test_eap_equals_finite_differences(family, task):
    model = _model(family)
    g = Graph.from_model(model)
    scores = attribute(model, task, method="EAP", batch_size=5, progress=False).scores.double()
    valid = g.valid.nonzero().tolist()
    gen = torch.Generator().manual_seed(0)
    sample = [valid[i] for i in torch.randperm(len(valid), generator=gen)[:4].tolist()]
    sample.append(max(valid, key=lambda ur: scores[ur[0], ur[1]].abs().item()))  # and the strongest edge
    eps = 1e-4
    for u, r in sample:
        coef = torch.zeros(g.n_senders, g.n_receivers, dtype=torch.float64)
        coef[u, r] = eps
        fd = (reference.patched_metric(unwrap(model), task, coef) - reference.patched_metric(unwrap(model), task, -coef)) / (2 * eps)
        assert abs(fd - scores[u, r].item()) <= 1e-5 * max(1.0, abs(fd)), (g.senders[u], g.receivers[r], fd, scores[u, r])


def test_a_family_registered_in_a_test(task):
    "StarCoder2 is not in the registry: one entry (a few lines) and the generic checks pass on it."
    entry = Architecture(
        "starcoder2", ("starcoder2",), layers="model.layers", embed="model.embed_tokens", final_norm="model.norm",
        lm_head="lm_head", attn_norm="input_layernorm", mlp_norm="post_attention_layernorm",
        qkv=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), o_proj="self_attn.o_proj", mlp="mlp",
        norm="layernorm", rotary="model.rotary_emb", qkv_bias=True,
        tiny=dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=64, intermediate_size=128,
                  max_position_embeddings=256, vocab_size=50257, use_bias=True, bos_token_id=50256, eos_token_id=50256))
    register_architecture(entry)
    try:
        check_reference_forward("starcoder2", task)
        check_attribution("starcoder2", task, "EAP-IG")
        check_patching("starcoder2", task)
        check_sparse_gate("starcoder2", task)
    finally:
        del ARCHITECTURES["starcoder2"]


def test_remote_local_equals_local(task):
    for family in ("gpt2", "gpt_neox"):
        model = tiny_model(family, seed=2)
        local = attribute(model, task, method="EAP-IG", steps=2, batch_size=3, progress=False)
        sim = attribute(model, task, method="EAP-IG", steps=2, batch_size=3, remote="local", progress=False)
        torch.testing.assert_close(sim.scores, local.scores, rtol=1e-5, atol=1e-7)
        masks = [local.top_k(k) for k in (3, 40)]
        torch.testing.assert_close(Evaluator(model, task, batch_size=3, remote="local").metrics(masks),
                                   Evaluator(model, task, batch_size=3).metrics(masks), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_load_model_accepts_every_registered_family(family, tmp_path):
    m = tiny_model(family, seed=0)
    unwrap(m).save_pretrained(tmp_path); gpt2_tokenizer().save_pretrained(tmp_path)
    back = load_model(tmp_path, device="cpu", dtype=torch.float32)
    assert back.config.model_type == ARCHITECTURES[family].model_types[0]
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad(): torch.testing.assert_close(unwrap(back)(ids).logits, unwrap(m)(ids).logits)
