"""Device-aware checks: on every accelerator this machine has (CUDA, MPS), attribution, evaluation, the sparse gate
and sparse post-training give the CPU's results on the same weights, within float32 tolerances.

On a machine without an accelerator these tests are skipped (there is nothing to compare); benchmarks/gpu_run.py
runs them on a GPU, and `tests/test_gpu_run.py` runs that script with --tiny on the CPU."""
import copy
import os

import pytest
import torch

from sparse_circuits.attribution import attribute
from sparse_circuits.core import unwrap
from sparse_circuits.evaluation import Evaluator
from sparse_circuits.models import gpt2_tokenizer, tiny_model
from sparse_circuits.sparse_attention import attention_density, make_sparse
from sparse_circuits.tasks import make_task
from sparse_circuits.training import repeat_corpus, sparsify


def accelerators():
    out = []
    if torch.cuda.is_available(): out.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(): out.append("mps")
    return out or [pytest.param("cuda", marks=pytest.mark.skip(reason="no accelerator on this machine"))]


DEVICES = accelerators()
RTOL = 1e-4        # float32 on two devices: different kernels, different summation order


@pytest.fixture(scope="module")
def task():
    return make_task("ioi", gpt2_tokenizer(), 8, seed=3)


def on(model, device):
    m = copy.deepcopy(model)
    unwrap(m).to(device)
    return m


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", ["gpt2", "llama", "gpt_neox"])
def test_attribution_on_device_equals_cpu(device, family, task):
    cpu = tiny_model(family, seed=1)
    dev = on(cpu, device)
    for method in ("EAP", "EAP-IG"):
        a = attribute(cpu, task, method=method, steps=3, batch_size=4, progress=False).scores
        b = attribute(dev, task, method=method, steps=3, batch_size=4, progress=False).scores
        assert b.device.type == device
        torch.testing.assert_close(b.cpu(), a, rtol=RTOL, atol=RTOL * a.abs().max().item())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", ["gpt2", "qwen2"])
def test_evaluation_on_device_equals_cpu(device, family, task):
    cpu = tiny_model(family, seed=2)
    dev = on(cpu, device)
    g_valid = Evaluator(cpu, task).graph.valid
    gen = torch.Generator().manual_seed(0)
    masks = [(torch.rand(g_valid.shape, generator=gen) < p) & g_valid for p in (0.02, 0.5, 0.98)] + [g_valid]
    a = Evaluator(cpu, task, batch_size=4).metrics(masks)
    b = Evaluator(dev, task, batch_size=4).metrics(masks)
    torch.testing.assert_close(b, a, rtol=RTOL, atol=RTOL * a.abs().max().item())


@pytest.mark.parametrize("device", DEVICES)
def test_sparse_gate_and_sparsify_on_device(device, task):
    cpu = make_sparse(tiny_model("llama", seed=4), 0.0)
    dev = on(cpu, device)
    b = next(task.batches(8))
    torch.testing.assert_close(attention_density(dev, b.to(device)).per_head, attention_density(cpu, b).per_head)
    corpus = repeat_corpus(512, vocab=64, seed=0)
    res = sparsify(unwrap(dev), corpus, steps=20, target_loss=20.0, lr=1e-2, device=device, progress=False)
    assert res.log["kept"].iloc[-1] < res.log["kept"].iloc[0] and torch.isfinite(torch.tensor(res.log["loss"].values)).all()
