"""nanoGPT checkpoints: the converted transformers model equals a direct nanoGPT-style forward of the same weights."""
import math

import pytest
import torch
import torch.nn.functional as F

from sparse_circuits.models import gpt2_tokenizer, load_sparse, nanogpt_to_hf, random_nanogpt_state, tiny_model
from sparse_circuits.sparse_attention import attention_density, is_sparse, make_sparse


def nanogpt_forward(sd, idx, n_head, gate_bias=None, eps=1e-5):
    """nanoGPT's GPT.forward written out on the raw state dict (Linear layout, padded vocabulary).
    With `gate_bias`, attention weights are softmax * 1[score + bias > 0] (evaluation-mode sparse gate)."""
    sd = {k.removeprefix("_orig_mod."): v.double() for k, v in sd.items()}
    B, T = idx.shape
    x = sd["transformer.wte.weight"][idx] + sd["transformer.wpe.weight"][:T]
    n_layer = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transformer.h."))
    C = x.shape[-1]
    ln = lambda h, p: F.layer_norm(h, (C,), sd[p + ".weight"], sd.get(p + ".bias"), eps)
    lin = lambda h, p: F.linear(h, sd[p + ".weight"], sd.get(p + ".bias"))
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for l in range(n_layer):
        p = f"transformer.h.{l}"
        q, k, v = lin(ln(x, p + ".ln_1"), p + ".attn.c_attn").split(C, dim=2)
        q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // n_head)
        w = F.softmax(att.masked_fill(~causal, float("-inf")), dim=-1)
        if gate_bias is not None: w = w * ((att + gate_bias) > 0) * causal
        y = (w @ v).transpose(1, 2).reshape(B, T, C)
        x = x + lin(y, p + ".attn.c_proj")
        h = lin(ln(x, p + ".ln_2"), p + ".mlp.c_fc")
        x = x + lin(F.gelu(h, approximate="tanh"), p + ".mlp.c_proj")
    x = ln(x, "transformer.ln_f")
    return x @ sd["lm_head.weight"].T   # [B, T, padded vocab]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("gate_bias", [None, 0.0, 0.4])
def test_nanogpt_checkpoint_matches_direct_forward(tmp_path, bias, gate_bias):
    sd = random_nanogpt_state(n_layer=2, n_head=4, n_embd=32, seed=1, bias=bias)
    # scale up attention weights so that scores spread around 0 and the gate closes some pairs
    for k in sd:
        if k.endswith("c_attn.weight"): sd[k] = sd[k] * 8
    path = tmp_path / "final.pth"
    torch.save({"model": sd, "model_args": {"n_head": 4}}, path)
    hf = nanogpt_to_hf(path, gate_bias=gate_bias)
    assert is_sparse(hf) == (gate_bias is not None)
    idx = torch.randint(0, 50257, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = hf(idx).logits.double()
    want = nanogpt_forward(sd, idx, n_head=4, gate_bias=gate_bias)
    assert want.shape[-1] == 50304 and got.shape[-1] == 50257
    torch.testing.assert_close(got, want[..., :50257], atol=1e-4, rtol=1e-4)
    if gate_bias is not None:  # the check is not vacuous: some gates are closed and some open
        d = attention_density(hf, idx).overall
        assert 0.05 < d < 0.95, d


def test_nanogpt_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        nanogpt_to_hf(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="pass n_head"):
        nanogpt_to_hf(random_nanogpt_state(n_embd=32))
    with pytest.raises(ValueError, match="gate_bias must be finite"):
        make_sparse(tiny_model("gpt2"), float("nan"))


def test_saved_sparse_model_round_trips_gate(tmp_path):
    m = make_sparse(tiny_model("llama", seed=4), gate_bias=0.001)
    m._module.save_pretrained(tmp_path)
    m.tokenizer.save_pretrained(tmp_path)
    back = load_sparse(tmp_path, device="cpu")
    assert back.config.sparse_gate_bias == 0.001 and is_sparse(back)
    ids = torch.randint(0, 50257, (3, 9), generator=torch.Generator().manual_seed(1))
    a, b = attention_density(m, ids), attention_density(back, ids)
    torch.testing.assert_close(a.per_head, b.per_head)
    assert 0 < a.overall < 1


def test_the_gate_keeps_working_after_a_remote_local_run():
    """nnsight's remote="local" path unpickles the library's modules by value, running their source again; the gate
    registered for attn_implementation="sparse" must stay the library's, so that `record_gates` and `gate_gradient`
    still reach it afterwards (they stopped silently before the fix)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from sparse_circuits.attribution import attribute
    from sparse_circuits.sparse_attention import sparse_attention_forward
    from sparse_circuits.tasks import make_task
    task = make_task("ioi", gpt2_tokenizer(), 3, seed=5)
    sparse = make_sparse(tiny_model("gpt2", seed=2), 0.0)
    run = lambda **kw: attribute(sparse, task, method="EAP", batch_size=3, progress=False, **kw).scores
    local = run()
    torch.testing.assert_close(run(remote="local"), local, rtol=1e-5, atol=1e-7)   # the gate's gradient on that path too
    assert ALL_ATTENTION_FUNCTIONS.get("sparse") is sparse_attention_forward
    torch.testing.assert_close(run(), local, rtol=0, atol=0)
    hard = run(gate_temperature=None)
    assert (hard - local).abs().max() > 1e-3 * local.abs().max()
    assert 0 < attention_density(sparse, next(task.batches(3))).overall < 1
