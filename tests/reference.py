"""A naive reference of the edge graph, in plain torch, for tests only.

It re-implements the forward pass of GPT-2, OLMo and Llama (grouped-query) models from their weights, giving every
receiver (each head's q, k, v input; each MLP input; the logits) its own explicit copy of the residual stream:

    x_r = resid + sum_u coef[u, r] * (a_u(corrupt) - a_u(current))

With coef = 1 - keep this is edge patching (design.md section 2); with coef = 0 it is the clean forward, and the
gradient with respect to each copy x_r is the per-receiver gradient that EAP needs. Nothing here is shared with the
library: weights are sliced per head with explicit loops, norms are PyTorch's, attention is written out.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _layout(hf):
    c = hf.config
    fam = c.model_type
    L = c.n_layer if fam == "gpt2" else c.num_hidden_layers
    H = c.n_head if fam == "gpt2" else c.num_attention_heads
    G = H if fam == "gpt2" else (c.num_key_value_heads or H)
    d = c.n_embd if fam == "gpt2" else c.hidden_size
    return fam, L, H, G, d, d // H


@dataclass
class RefLayer:
    Wq: list; bq: list; Wk: list; bk: list; Wv: list; bv: list; Wo: list; bo: object
    norm1: object; norm2: object; mlp: object


def _layer(hf, l):
    fam, L, H, G, d, dh = _layout(hf)
    if fam == "gpt2":
        blk = hf.transformer.h[l]
        w, b = blk.attn.c_attn.weight, blk.attn.c_attn.bias
        col = lambda part, h: slice(part * d + h * dh, part * d + (h + 1) * dh)
        Wq = [w[:, col(0, h)] for h in range(H)]; bq = [b[col(0, h)] for h in range(H)]
        Wk = [w[:, col(1, h)] for h in range(H)]; bk = [b[col(1, h)] for h in range(H)]
        Wv = [w[:, col(2, h)] for h in range(H)]; bv = [b[col(2, h)] for h in range(H)]
        Wo = [blk.attn.c_proj.weight[h * dh:(h + 1) * dh, :] for h in range(H)]
        ln1, ln2 = blk.ln_1, blk.ln_2
        return RefLayer(Wq, bq, Wk, bk, Wv, bv, Wo, blk.attn.c_proj.bias,
                        lambda x: F.layer_norm(x, (d,), ln1.weight, ln1.bias, ln1.eps),
                        lambda x: F.layer_norm(x, (d,), ln2.weight, ln2.bias, ln2.eps), blk.mlp)
    blk = hf.model.layers[l]
    a = blk.self_attn
    rows = lambda mod, n: [mod.weight[h * dh:(h + 1) * dh, :].T for h in range(n)]
    bias = lambda mod, n: [None if mod.bias is None else mod.bias[h * dh:(h + 1) * dh] for h in range(n)]
    Wo = [a.o_proj.weight[:, h * dh:(h + 1) * dh].T for h in range(H)]
    if fam == "olmo":
        n1 = n2 = lambda x: F.layer_norm(x, (d,), None, None, 1e-5)
    else:
        w1, w2, eps = blk.input_layernorm.weight, blk.post_attention_layernorm.weight, blk.input_layernorm.variance_epsilon
        n1 = lambda x: F.rms_norm(x, (d,), w1, eps)
        n2 = lambda x: F.rms_norm(x, (d,), w2, eps)
    return RefLayer(rows(a.q_proj, H), bias(a.q_proj, H), rows(a.k_proj, G), bias(a.k_proj, G), rows(a.v_proj, G),
                    bias(a.v_proj, G), Wo, a.o_proj.bias, n1, n2, blk.mlp)


def _rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


@dataclass
class RefOut:
    logits: torch.Tensor
    acts: torch.Tensor          # [b, s, n_senders, d] sender activations of this run
    embeds: torch.Tensor        # token embeddings used
    inputs: dict                # receiver name -> its explicit input copy (retain_grad)


def receiver_names(hf):
    fam, L, H, G, d, dh = _layout(hf)
    kv = "g" if G != H else "h"
    out = []
    for l in range(L):
        out += [f"a{l}.h{h}<q>" for h in range(H)] + [f"a{l}.{kv}{g}<k>" for g in range(G)]
        out += [f"a{l}.{kv}{g}<v>" for g in range(G)] + [f"m{l}"]
    return out + ["logits"]


def n_upstream(hf):
    "Senders upstream of each receiver, derived from the order of the forward pass (prefix of the sender list)."
    fam, L, H, G, d, dh = _layout(hf)
    out = []
    for l in range(L):
        out += [1 + l * (H + 1)] * (H + 2 * G) + [1 + l * (H + 1) + H]
    return out + [1 + L * (H + 1)]


def forward(hf, ids, mask, *, embeds=None, coef=None, acts_corr=None, retain=False):
    """Reference forward. `coef` [n_senders, n_receivers] (float) mixes in `acts_corr` per edge; `retain` keeps the
    gradient of every receiver's explicit input copy."""
    fam, L, H, G, d, dh = _layout(hf)
    b, s = ids.shape
    wte = hf.transformer.wte if fam == "gpt2" else hf.model.embed_tokens
    e = wte(ids) if embeds is None else embeds
    if retain and not e.requires_grad: e = e.detach().requires_grad_(True)
    resid = e + hf.transformer.wpe(torch.arange(s, device=ids.device))[None] if fam == "gpt2" else e
    if fam != "gpt2":
        pos = torch.arange(s, device=ids.device)[None].expand(b, s)
        cos, sin = hf.model.rotary_emb(resid, pos)
        cos, sin = cos[:, :, None, :], sin[:, :, None, :]   # [b, s, 1, dh]
    causal = torch.tril(torch.ones(s, s, dtype=torch.bool, device=ids.device))
    allowed = causal[None] & mask.bool()[:, None, :]         # [b, i, j]
    acts = [e]
    inputs = {}
    names = iter(receiver_names(hf))
    ups = iter(n_upstream(hf))

    def receiver_input(resid):
        name, U = next(names), next(ups)
        x = resid.clone()
        if coef is not None:
            cur = torch.stack(acts, dim=2)  # [b, s, U, d]
            x = x + torch.einsum("u,bsud->bsd", coef[:U, len(inputs)].to(x.dtype), acts_corr[:, :, :U] - cur)
        if retain: x.retain_grad()
        inputs[name] = x
        return x

    for l in range(L):
        W = _layer(hf, l)
        xq = [receiver_input(resid) for _ in range(H)]
        xk = [receiver_input(resid) for _ in range(G)]
        xv = [receiver_input(resid) for _ in range(G)]
        proj = lambda x, W_, b_: W.norm1(x) @ W_ + (0 if b_ is None else b_)
        q = torch.stack([proj(xq[h], W.Wq[h], W.bq[h]) for h in range(H)], 2)   # [b, s, H, dh]
        k = torch.stack([proj(xk[g], W.Wk[g], W.bk[g]) for g in range(G)], 2)
        v = torch.stack([proj(xv[g], W.Wv[g], W.bv[g]) for g in range(G)], 2)
        if fam != "gpt2":
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
        heads = []
        for h in range(H):
            g = h // (H // G)
            att = torch.einsum("bie,bje->bij", q[:, :, h], k[:, :, g]) / dh ** 0.5
            att = att.masked_fill(~allowed, torch.finfo(att.dtype).min).softmax(-1)
            z = torch.einsum("bij,bje->bie", att, v[:, :, g])
            heads.append(z @ W.Wo[h])
        resid = resid + sum(heads) + (0 if W.bo is None else W.bo)
        acts += heads
        xm = receiver_input(resid)
        m = W.mlp(W.norm2(xm))
        resid = resid + m
        acts.append(m)
    xf = receiver_input(resid)
    if fam == "gpt2":
        hs = F.layer_norm(xf, (d,), hf.transformer.ln_f.weight, hf.transformer.ln_f.bias, hf.transformer.ln_f.eps)
    elif fam == "olmo":
        hs = F.layer_norm(xf, (d,), None, None, 1e-5)
    else:  # PyTorch's norm in the input's dtype (transformers' own RMSNorm computes in float32)
        hs = F.rms_norm(xf, (d,), hf.model.norm.weight, hf.model.norm.variance_epsilon)
    logits = hf.lm_head(hs)
    return RefOut(logits, torch.stack(acts, dim=2), e, inputs)


def edge_scores(hf, task, method="EAP", steps=5):
    """Reference EAP / EAP-IG scores [n_senders, n_receivers]: per-receiver gradients from explicit input copies,
    then each edge's score computed separately in a Python loop."""
    from sparse_circuits.tasks import METRICS
    metric = METRICS[task.name]
    fam, L, H, G, d, dh = _layout(hf)
    names = receiver_names(hf)
    ups = n_upstream(hf)
    S = 1 + L * (H + 1)
    scores = torch.zeros(S, len(names), dtype=torch.float64)
    n_steps = 1 if method == "EAP" else steps
    for b in task.batches(len(task)):
        corr = forward(hf, b.corrupted, b.attention_mask)
        clean = forward(hf, b.clean, b.attention_mask)
        delta = (corr.acts - clean.acts).detach()
        grads = {r: 0 for r in names}
        for k in range(n_steps):
            if method == "EAP":
                run = forward(hf, b.clean, b.attention_mask, retain=True)
            else:
                alpha = k / steps
                e = (corr.embeds + alpha * (clean.embeds - corr.embeds)).detach()
                run = forward(hf, b.clean, b.attention_mask, embeds=e, retain=True)
            metric(run.logits, b).sum().backward()
            for r in names: grads[r] = grads[r] + run.inputs[r].grad.detach()
        for ri, r in enumerate(names):
            for u in range(ups[ri]):  # each edge on its own
                scores[u, ri] += (delta[:, :, u] * grads[r]).sum().double()
    return scores / (len(task) * n_steps)


def patched_metric(hf, task, coef):
    "Mean metric of the clean run with per-edge mixing `coef` [n_senders, n_receivers] toward the corrupted run."
    from sparse_circuits.tasks import METRICS
    total = 0.0
    for b in task.batches(len(task)):
        corr = forward(hf, b.corrupted, b.attention_mask)
        out = forward(hf, b.clean, b.attention_mask, coef=coef, acts_corr=corr.acts.detach())
        total += METRICS[task.name](out.logits, b).sum().item()
    return total / len(task)
