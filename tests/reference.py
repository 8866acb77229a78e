"""A naive reference of the edge graph, in plain torch, for tests only.

It re-implements the forward pass of any model of a registered family from the registry's *description* of it
(module paths, q/k/v layout, weight layout, parallel blocks, rotary, q/k norms), giving every receiver (each head's
q, k, v input; each MLP input; the logits) its own explicit copy of the residual stream:

    x_r = resid + sum_u coef[u, r] * (a_u(corrupt) - a_u(current))

With coef = 1 - keep this is edge patching (design.md section 2); with coef = 0 it is the clean forward, and the
gradient with respect to each copy x_r is the per-receiver gradient that EAP needs. Nothing here is shared with the
library's computation: weights are sliced per head with explicit loops, attention is written out, every edge's
score is computed on its own. Only the model's own modules for norms, MLPs, embeddings and rotary tables are
called, as the model calls them.
"""
from dataclasses import dataclass
from functools import reduce

import torch

from sparse_circuits.architectures import architecture_for


def _get(root, path):
    return reduce(getattr, path.split("."), root)


def _dims(hf):
    c, arch = hf.config, architecture_for(hf.config)
    L, H, d = c.num_hidden_layers, c.num_attention_heads, c.hidden_size
    G = getattr(c, "num_key_value_heads", None) or H
    dh = getattr(c, "head_dim", None) or d // H
    parallel = bool(getattr(c, arch.parallel, False)) if isinstance(arch.parallel, str) else bool(arch.parallel)
    return arch, L, H, G, d, dh, parallel


def _in_out(arch, module):
    "A projection's weight as [in, out], from the registry's weight layout."
    return module.weight if arch.weights == "conv1d" else module.weight.T


def _head_slices(hf, blk):
    "Per-head q/k/v weights [in, dh] and biases, sliced with explicit loops from the registry's q/k/v layout."
    arch, L, H, G, d, dh, _ = _dims(hf)
    mods = [_get(blk, p) for p in arch.qkv]
    out = {"q": [], "k": [], "v": []}
    if arch.qkv_layout == "split":
        for name, mod, n in zip("qkv", mods, (H, G, G)):
            w, b = _in_out(arch, mod), getattr(mod, "bias", None)
            for h in range(n):
                out[name].append((w[:, h * dh:(h + 1) * dh], None if b is None else b[h * dh:(h + 1) * dh]))
        return out
    w, b = _in_out(arch, mods[0]), getattr(mods[0], "bias", None)
    if arch.qkv_layout == "fused":
        starts = {"q": 0, "k": H * dh, "v": H * dh + G * dh}
        for name, n in zip("qkv", (H, G, G)):
            for h in range(n):
                s = starts[name] + h * dh
                out[name].append((w[:, s:s + dh], None if b is None else b[s:s + dh]))
        return out
    for h in range(H):  # interleaved: head h owns columns [h*3*dh, (h+1)*3*dh) as [q k v]
        for i, name in enumerate("qkv"):
            s = h * 3 * dh + i * dh
            out[name].append((w[:, s:s + dh], None if b is None else b[s:s + dh]))
    return out


def _rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def _rotary(x, cos, sin):
    "Rotary embedding on the first cos.shape[-1] dimensions (partial rotary leaves the rest), x [b, s, dh]."
    rd = cos.shape[-1]
    xr, xp = x[..., :rd], x[..., rd:]
    return torch.cat([xr * cos + _rotate_half(xr) * sin, xp], dim=-1)


@dataclass
class RefOut:
    logits: torch.Tensor
    acts: torch.Tensor          # [b, s, n_senders, d] sender activations of this run
    embeds: torch.Tensor        # token embeddings used (the embedding module's output)
    inputs: dict                # receiver name -> its explicit input copy (retain_grad)


def receiver_names(hf):
    arch, L, H, G, d, dh, _ = _dims(hf)
    kv = "g" if G != H else "h"
    out = []
    for l in range(L):
        out += [f"a{l}.h{h}<q>" for h in range(H)] + [f"a{l}.{kv}{g}<k>" for g in range(G)]
        out += [f"a{l}.{kv}{g}<v>" for g in range(G)] + [f"m{l}"]
    return out + ["logits"]


def n_upstream(hf):
    "Senders upstream of each receiver, from the order of the forward pass (a prefix of the sender list)."
    arch, L, H, G, d, dh, parallel = _dims(hf)
    out = []
    for l in range(L):
        out += [1 + l * (H + 1)] * (H + 2 * G) + [1 + l * (H + 1) + (0 if parallel else H)]
    return out + [1 + L * (H + 1)]


def forward(hf, ids, mask, *, embeds=None, coef=None, acts_corr=None, retain=False, gate_temperature=None):
    """Reference forward. `coef` [n_senders, n_receivers] (float) mixes in `acts_corr` per edge; `retain` keeps the
    gradient of every receiver's explicit input copy. A model with sparse attention multiplies the softmax by its
    gate 1[score + bias > 0] (written out, with the straight-through gradient of sigmoid((score + bias) / T) where a
    `gate_temperature` T is given)."""
    arch, L, H, G, d, dh, parallel = _dims(hf)
    sparse = hf.config._attn_implementation == "sparse"
    bias = getattr(hf.config, "sparse_gate_bias", 0.0)
    b, s = ids.shape
    e = _get(hf, arch.embed)(ids) if embeds is None else embeds
    if retain and not e.requires_grad: e = e.detach().requires_grad_(True)
    resid = e + (_get(hf, arch.pos_embed)(torch.arange(s, device=ids.device))[None] if arch.pos_embed else 0)
    if arch.rotary:
        pos = torch.arange(s, device=ids.device)[None].expand(b, s)
        cos, sin = _get(hf, arch.rotary)(resid, pos)          # [b, s, rotary dims]
    causal = torch.tril(torch.ones(s, s, dtype=torch.bool, device=ids.device))
    allowed = causal[None] & mask.bool()[:, None, :]         # [b, i, j]
    acts, inputs = [e], {}
    names, ups = iter(receiver_names(hf)), iter(n_upstream(hf))

    def receiver_input(resid):
        name, U = next(names), next(ups)
        x = resid.clone()
        if coef is not None:
            cur = torch.stack(acts, dim=2)  # [b, s, U, d]
            x = x + torch.einsum("u,bsud->bsd", coef[:U, len(inputs)].to(x.dtype), acts_corr[:, :, :U] - cur)
        if retain: x.retain_grad()
        inputs[name] = x
        return x

    blocks = _get(hf, arch.layers)
    for l in range(L):
        blk = blocks[l]
        norm1, norm2 = _get(blk, arch.attn_norm), _get(blk, arch.mlp_norm)
        attn = _get(blk, arch.o_proj.rsplit(".", 1)[0])
        o_proj = _get(blk, arch.o_proj)
        W = _head_slices(hf, blk)
        xq = [receiver_input(resid) for _ in range(H)]
        xk = [receiver_input(resid) for _ in range(G)]
        xv = [receiver_input(resid) for _ in range(G)]
        proj = lambda x, wb: norm1(x) @ wb[0] + (0 if wb[1] is None else wb[1])
        q = [proj(xq[h], W["q"][h]) for h in range(H)]                       # each [b, s, dh]
        k = [proj(xk[g], W["k"][g]) for g in range(G)]
        v = [proj(xv[g], W["v"][g]) for g in range(G)]
        if arch.qk_norm:
            qn, kn = _get(blk, arch.qk_norm[0]), _get(blk, arch.qk_norm[1])
            q, k = [qn(t) for t in q], [kn(t) for t in k]
        if arch.rotary:
            q, k = [_rotary(t, cos, sin) for t in q], [_rotary(t, cos, sin) for t in k]
        Wo = _in_out(arch, o_proj)
        heads = []
        for h in range(H):
            g = h // (H // G)
            raw = torch.einsum("bie,bje->bij", q[h], k[g]) * attn.scaling
            att = raw.masked_fill(~allowed, torch.finfo(raw.dtype).min).softmax(-1)
            if sparse:
                gate = (raw + bias > 0).to(raw.dtype)
                if gate_temperature is not None:
                    s_ = torch.sigmoid((raw + bias) / gate_temperature)
                    gate = gate + s_ - s_.detach()
                att = att * gate * allowed
            z = torch.einsum("bij,bje->bie", att, v[g])
            heads.append(z @ Wo[h * dh:(h + 1) * dh])
        attn_out = sum(heads) + (0 if getattr(o_proj, "bias", None) is None else o_proj.bias)
        if parallel:                # the MLP reads the layer's input, before its own heads wrote
            xm = receiver_input(resid)
            acts += heads
            m = _get(blk, arch.mlp)(norm2(xm))
            resid = resid + attn_out + m
        else:
            resid = resid + attn_out
            acts += heads
            xm = receiver_input(resid)
            m = _get(blk, arch.mlp)(norm2(xm))
            resid = resid + m
        acts.append(m)
    xf = receiver_input(resid)
    logits = _get(hf, arch.lm_head)(_get(hf, arch.final_norm)(xf))
    return RefOut(logits, torch.stack(acts, dim=2), e, inputs)


def edge_scores(hf, task, method="EAP", steps=5, gate_temperature=None):
    """Reference EAP / EAP-IG scores [n_senders, n_receivers]: per-receiver gradients from explicit input copies,
    then each edge's score computed separately in a Python loop (through a sparse model's gate as `forward` says)."""
    metric = task.spec.metric
    arch, L, H, G, d, dh, _ = _dims(hf)
    names, ups = receiver_names(hf), n_upstream(hf)
    scores = torch.zeros(1 + L * (H + 1), len(names), dtype=torch.float64)
    n_steps = 1 if method == "EAP" else steps
    for b in task.batches(len(task)):
        corr = forward(hf, b.corrupted, b.attention_mask)
        clean = forward(hf, b.clean, b.attention_mask)
        delta = (corr.acts - clean.acts).detach()
        grads = {r: 0 for r in names}
        for k in range(n_steps):
            if method == "EAP":
                run = forward(hf, b.clean, b.attention_mask, retain=True, gate_temperature=gate_temperature)
            else:
                e = (corr.embeds + (k / steps) * (clean.embeds - corr.embeds)).detach()
                run = forward(hf, b.clean, b.attention_mask, embeds=e, retain=True, gate_temperature=gate_temperature)
            metric(run.logits, b).sum().backward()
            for r in names: grads[r] = grads[r] + run.inputs[r].grad.detach()
        for ri, r in enumerate(names):
            for u in range(ups[ri]):  # each edge on its own
                scores[u, ri] += (delta[:, :, u] * grads[r]).sum().double()
    return scores / (len(task) * n_steps)


def patched_metric(hf, task, coef):
    "Mean metric of the clean run with per-edge mixing `coef` [n_senders, n_receivers] toward the corrupted run."
    total = 0.0
    for b in task.batches(len(task)):
        corr = forward(hf, b.corrupted, b.attention_mask)
        out = forward(hf, b.clean, b.attention_mask, coef=coef, acts_corr=corr.acts.detach())
        total += task.spec.metric(out.logits, b).sum().item()
    return total / len(task)
