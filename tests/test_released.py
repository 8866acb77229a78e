"""The paper's released models by hub id (issue 21), offline: a local hub cache laid out exactly as huggingface_hub
lays it out, holding a random checkpoint under the repo id, in each key layout; checked against a plain
reimplementation of the forward pass (gate, padded vocabulary, LayerNorm and attention settings)."""
import io
import json
import math

import pytest
import torch
import torch.nn.functional as F

from hubcache import fake_hub_repo, offline_hub
from sparse_circuits.models import ModelNotAvailableError, load_nanogpt, load_released, random_nanogpt_state
from sparse_circuits.sparse_attention import attention_density, is_sparse

H, D, L = 4, 32, 2


def tl_layout(sd):
    "The same weights in TransformerLens's layout (unfolded LayerNorms, as HookedTransformer keeps them with fold_ln=False)."
    n = {k.removeprefix("_orig_mod."): v for k, v in sd.items()}
    tl = {"embed.W_E": n["transformer.wte.weight"], "pos_embed.W_pos": n["transformer.wpe.weight"],
          "ln_final.w": n["transformer.ln_f.weight"], "ln_final.b": n["transformer.ln_f.bias"],
          "unembed.W_U": n["transformer.wte.weight"].T.clone(), "unembed.b_U": torch.zeros(n["transformer.wte.weight"].shape[0])}
    for l in range(L):
        p, q = f"blocks.{l}.", f"transformer.h.{l}."
        for x, w, b in zip("QKV", n[q + "attn.c_attn.weight"].split(D), n[q + "attn.c_attn.bias"].split(D)):
            tl[p + f"attn.W_{x}"], tl[p + f"attn.b_{x}"] = w.T.reshape(D, H, D // H).permute(1, 0, 2), b.reshape(H, D // H)
        tl[p + "attn.W_O"], tl[p + "attn.b_O"] = n[q + "attn.c_proj.weight"].T.reshape(H, D // H, D), n[q + "attn.c_proj.bias"]
        for a, b in (("ln1", "ln_1"), ("ln2", "ln_2")): tl[p + f"{a}.w"], tl[p + f"{a}.b"] = n[q + f"{b}.weight"], n[q + f"{b}.bias"]
        tl[p + "mlp.W_in"], tl[p + "mlp.b_in"] = n[q + "mlp.c_fc.weight"].T, n[q + "mlp.c_fc.bias"]
        tl[p + "mlp.W_out"], tl[p + "mlp.b_out"] = n[q + "mlp.c_proj.weight"].T, n[q + "mlp.c_proj.bias"]
    return tl


def plain_forward(sd, idx, eps, inverse_layer_idx, act, gate_bias):
    "A GPT-2 forward written out on the raw nanoGPT state dict; attention weights softmax * 1[score + bias > 0]."
    sd = {k.removeprefix("_orig_mod."): v.double() for k, v in sd.items()}
    B, T = idx.shape
    x = sd["transformer.wte.weight"][idx] + sd["transformer.wpe.weight"][:T]
    ln = lambda h, p: F.layer_norm(h, (D,), sd[p + ".weight"], sd[p + ".bias"], eps)
    lin = lambda h, p: F.linear(h, sd[p + ".weight"], sd[p + ".bias"])
    gelu = {"gelu_new": lambda t: F.gelu(t, approximate="tanh"), "gelu": F.gelu, "relu": F.relu}[act]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for l in range(L):
        p = f"transformer.h.{l}"
        q, k, v = lin(ln(x, p + ".ln_1"), p + ".attn.c_attn").split(D, dim=2)
        q, k, v = (t.view(B, T, H, D // H).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(D // H) / ((l + 1) if inverse_layer_idx else 1)
        w = F.softmax(att.masked_fill(~causal, float("-inf")), dim=-1)
        if gate_bias is not None: w = w * ((att + gate_bias) > 0) * causal
        x = x + lin((w @ v).transpose(1, 2).reshape(B, T, D), p + ".attn.c_proj")
        x = x + lin(gelu(lin(ln(x, p + ".ln_2"), p + ".mlp.c_fc")), p + ".mlp.c_proj")
    return ln(x, "transformer.ln_f") @ sd["lm_head.weight"].T


def _bytes(state):
    buf = io.BytesIO(); torch.save(state, buf); return buf.getvalue()


@pytest.fixture
def state():
    sd = random_nanogpt_state(n_layer=L, n_head=H, n_embd=D, seed=7)
    for k in sd:                                   # spread the attention scores so that the gate closes some pairs
        if k.endswith("c_attn.weight"): sd[k] = sd[k] * 8
    return sd


@pytest.mark.parametrize("layout", ["nanogpt", "nanogpt-wrapped", "transformerlens"])
@pytest.mark.parametrize("settings", [dict(layer_norm_epsilon=1e-5, scale_attn_by_inverse_layer_idx=False, activation_function="gelu_new"),
                                      dict(layer_norm_epsilon=1e-3, scale_attn_by_inverse_layer_idx=True, activation_function="relu")])
def test_released_model_by_repo_id_equals_a_plain_forward(tmp_path, monkeypatch, state, layout, settings):
    blob = {"nanogpt": state, "nanogpt-wrapped": {"model": state, "model_args": {"n_head": H}},
            "transformerlens": tl_layout(state)}[layout]
    config = dict(n_embd=D, n_head=H, n_layer=L, n_positions=64, vocab_size=50304, **settings)
    fake_hub_repo(tmp_path, "ansonisl/SparseGPT2", {"config.json": json.dumps(config), "final.pth": _bytes(blob)})
    offline_hub(monkeypatch, tmp_path)
    m = load_released("ansonisl/SparseGPT2", device="cpu")
    assert is_sparse(m) and m.config.sparse_gate_bias == 0.0 and m.config.vocab_size == 50257
    idx = torch.randint(0, 50257, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(): got = m._module(idx).logits.double()
    want = plain_forward(state, idx, settings["layer_norm_epsilon"], settings["scale_attn_by_inverse_layer_idx"],
                         settings["activation_function"], 0.0)
    assert want.shape[-1] == 50304
    torch.testing.assert_close(got, want[..., :50257], rtol=1e-4, atol=1e-4)   # padded ids can be neither answer nor prediction
    assert 0.05 < attention_density(m, idx).overall < 0.95                     # the gate is doing something
    assert m.tokenizer.eos_token_id == 50256                                   # no tokenizer in the repo: GPT-2's


def test_dense_release_loads_dense_and_nanogpt_loader_takes_repo_ids(tmp_path, monkeypatch, state):
    config = dict(n_embd=D, n_head=H, n_layer=L, n_positions=64)
    for repo in ("ansonisl/DenseTinystories", "someone/sparse-gpt2"):
        fake_hub_repo(tmp_path, repo, {"config.json": json.dumps(config), "final.pth": _bytes(state)})
    offline_hub(monkeypatch, tmp_path)
    assert not is_sparse(load_released("ansonisl/DenseTinystories", device="cpu"))
    assert is_sparse(load_nanogpt("someone/sparse-gpt2", device="cpu"))


def test_not_cached_names_the_repo_file_and_what_to_download(tmp_path, monkeypatch):
    offline_hub(monkeypatch, tmp_path)
    with pytest.raises(ModelNotAvailableError, match=r"ansonisl/SparseGPT2: the file 'config.json'.*hf download ansonisl/SparseGPT2"):
        load_released("ansonisl/SparseGPT2")


def test_unknown_config_fields_and_folded_layernorms_are_refused(tmp_path, monkeypatch, state):
    tl = tl_layout(state)
    folded = {k: v for k, v in tl.items() if not k.endswith((".w", ".b")) or "ln" not in k}
    files = {"a/x": (dict(n_embd=D, n_head=H, n_layer=L, rotary_dim=8), state), "b/y": (dict(n_embd=D, n_head=H, n_layer=L), folded)}
    for repo, (cfg, blob) in files.items():
        fake_hub_repo(tmp_path, repo, {"config.json": json.dumps(cfg), "final.pth": _bytes(blob)})
    offline_hub(monkeypatch, tmp_path)
    with pytest.raises(ValueError, match=r"config fields \['rotary_dim'\] are not understood"):
        load_released("a/x", device="cpu")
    with pytest.raises(ValueError, match="fold_ln"):
        load_released("b/y", device="cpu")


def test_a_repo_with_transformers_weights_loads_those(tmp_path, monkeypatch):
    from sparse_circuits.models import gpt2_tokenizer, tiny_model
    src = tmp_path / "src"
    tiny_model("gpt2", seed=3)._module.save_pretrained(src); gpt2_tokenizer().save_pretrained(src)
    fake_hub_repo(tmp_path / "hub", "ansonisl/SparseGPT2Finetuned", {p.name: p for p in src.iterdir()})
    offline_hub(monkeypatch, tmp_path / "hub")
    m = load_released("ansonisl/SparseGPT2Finetuned", device="cpu")
    assert is_sparse(m) and m.config.n_layer == 2
