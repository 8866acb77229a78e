"""attribute() against the naive per-receiver reference (tests/reference.py), finite differences, and remote="local"."""
import pytest
import torch

import reference
from sparse_circuits.attribution import attribute
from sparse_circuits.graph import Graph
from sparse_circuits.models import gpt2_tokenizer, tiny_model
from sparse_circuits.tasks import make_task

FAMILIES = ["gpt2", "olmo", "llama"]


def _model(family):
    # float64 so the comparison is about the algorithm, not rounding; a Llama with grouped-query attention
    return tiny_model(family, seed=11, dtype=torch.float64)


@pytest.fixture(scope="module")
def task():
    return make_task("ioi", gpt2_tokenizer(), 6, seed=5)


@pytest.mark.parametrize("family", FAMILIES)
def test_reference_forward_equals_the_model(family, task):
    model = _model(family)
    b = next(task.batches(len(task)))
    with torch.no_grad():
        want = model._module(input_ids=b.clean, attention_mask=b.attention_mask).logits
        got = reference.forward(model._module, b.clean, b.attention_mask).logits
    real = b.attention_mask.bool()
    # OLMo's own LayerNorm computes in float32 even in a float64 model, hence 1e-6 rather than 1e-12
    torch.testing.assert_close(got[real], want[real], rtol=1e-6, atol=1e-6)
    assert reference.receiver_names(model._module) == Graph.from_model(model).receivers


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["EAP", "EAP-IG"])
def test_attribute_equals_naive_reference(family, method, task):
    model = _model(family)
    got = attribute(model, task, method=method, steps=3, batch_size=4, progress=False).scores.double()
    want = reference.edge_scores(model._module, task, method=method, steps=3)
    assert want.abs().max() > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * want.abs().max().item())


@pytest.mark.parametrize("family", FAMILIES)
def test_eap_equals_finite_differences(family, task):
    model = _model(family)
    g = Graph.from_model(model)
    scores = attribute(model, task, method="EAP", batch_size=6, progress=False).scores.double()
    valid = g.valid.nonzero().tolist()
    gen = torch.Generator().manual_seed(0)
    sample = [valid[i] for i in torch.randperm(len(valid), generator=gen)[:8].tolist()]
    sample.append(max(valid, key=lambda ur: scores[ur[0], ur[1]].abs().item()))  # and the strongest edge
    eps = 1e-4
    for u, r in sample:
        coef = torch.zeros(g.n_senders, g.n_receivers, dtype=torch.float64)
        coef[u, r] = eps
        up = reference.patched_metric(model._module, task, coef)
        down = reference.patched_metric(model._module, task, -coef)
        fd = (up - down) / (2 * eps)
        assert abs(fd - scores[u, r].item()) <= 1e-5 * max(1.0, abs(fd)), (g.senders[u], g.receivers[r], fd, scores[u, r])


@pytest.mark.parametrize("family", FAMILIES)
def test_remote_local_equals_local(family, task):
    model = tiny_model(family, seed=2)
    local = attribute(model, task, method="EAP-IG", steps=2, batch_size=3, progress=False)
    sim = attribute(model, task, method="EAP-IG", steps=2, batch_size=3, remote="local", progress=False)
    torch.testing.assert_close(sim.scores, local.scores, rtol=1e-5, atol=1e-7)


def test_float16_model_accumulates_in_float32(task):
    model = tiny_model("gpt2", seed=0, dtype=torch.bfloat16)
    attr = attribute(model, task, method="EAP", batch_size=6, progress=False)
    assert attr.scores.dtype == torch.float32
    ref = attribute(tiny_model("gpt2", seed=0), task, method="EAP", batch_size=6, progress=False)
    # bf16 forward differs, but the ranking of the strongest edges survives
    assert len(set(attr.ranked()[:5].tolist()) & set(ref.ranked()[:10].tolist())) >= 3


@pytest.mark.parametrize("config_kwargs,counts", [
    (dict(model_type="gpt2"), (157, 445, 32491)),
    (dict(model_type="olmo", layers=32, heads=32), (1057, 3105, 1592881)),
])
def test_graph_counts_from_configs(config_kwargs, counts):
    from transformers import GPT2Config, OlmoConfig
    cfg = GPT2Config() if config_kwargs["model_type"] == "gpt2" else OlmoConfig(
        num_hidden_layers=32, num_attention_heads=32, hidden_size=4096)
    g = Graph.from_config(cfg)
    assert (g.n_senders, g.n_receivers, g.n_edges) == counts
    assert int(g.valid.sum()) == counts[2]


def test_grouped_query_graph_counts():
    from transformers import LlamaConfig
    g = Graph.from_config(LlamaConfig(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576))
    # SmolLM2-135M: receivers per layer 9 q + 3 k + 3 v + 1 mlp
    assert g.n_senders == 1 + 30 * 10 and g.n_receivers == 30 * 16 + 1
    per_layer = sum((9 + 6) * (1 + 10 * l) + (1 + 10 * l + 9) for l in range(30))
    assert g.n_edges == per_layer + g.n_senders
    assert g.receivers[9:12] == ["a0.g0<k>", "a0.g1<k>", "a0.g2<k>"]
