"""Benchmark: cost of EAP / EAP-IG attribution relative to plain forward+backward passes.

GPT-2-small-shaped random model (12 layers, 12 heads, d_model 768, GPT-2 vocabulary), IOI batch of 16 prompts
(~15-20 tokens), CPU. Each measurement runs in its own subprocess so that its peak memory (max RSS) is its own. Each
method's ratio is taken in its own subprocess too: after its peak is read, its runs alternate with plain
forward+backward passes, and the ratio is of the two medians (timings on a shared machine drift by 20-30% between
processes; alternating keeps the drift out of the ratio).

    python benchmarks/attribution.py [--steps 5] [--repeats 3] [--device cpu]
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch


def setup(device):
    from sparse_circuits.models import gpt2_tokenizer, tiny_model
    from sparse_circuits.tasks import make_task
    model = tiny_model("gpt2", seed=0, n_layer=12, n_head=12, n_embd=768, n_positions=1024)
    model._module.to(device)
    task = make_task("ioi", gpt2_tokenizer(), 16, seed=0)
    return model, task


def measure(mode, steps, repeats, device):
    from sparse_circuits.attribution import attribute
    model, task = setup(device)
    b = next(task.batches(16, device=device))
    hf = model._module
    metric = task.spec.metric

    def plain_fwd_bwd():  # an ordinary training-style pass: weights require grad
        hf.zero_grad(set_to_none=True)
        metric(hf(input_ids=b.clean, attention_mask=b.attention_mask).logits, b).sum().backward()

    def plain_fwd():
        with torch.no_grad(): hf(input_ids=b.clean, attention_mask=b.attention_mask)

    fns = {"fwd": plain_fwd, "fwd_bwd": plain_fwd_bwd,
           "eap": lambda: attribute(model, task, method="EAP", batch_size=16, progress=False),
           "eap_ig": lambda: attribute(model, task, method="EAP-IG", steps=steps, batch_size=16, progress=False),
           "eap_ig_all": lambda: attribute(model, task, method="EAP-IG", steps=steps, batch_size=16, progress=False,
                                           ig_batch=steps, max_memory="64GB")}   # every step, every row: one pass
    def timed(f):
        if device.startswith("cuda"): torch.cuda.synchronize()
        t = time.perf_counter(); f()
        if device.startswith("cuda"): torch.cuda.synchronize()
        return time.perf_counter() - t

    fn = fns[mode]
    fn()  # warm-up
    times = [timed(fn) for _ in range(repeats)]
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    ref = []
    if mode not in ("fwd", "fwd_bwd"):   # the ratio's denominator, alternating with the method in this process
        plain_fwd_bwd()
        for _ in range(repeats):
            ref.append(timed(plain_fwd_bwd)); times.append(timed(fn))
    return dict(mode=mode, seconds=statistics.median(times), peak_mib=round(peak, 1), tokens=list(b.clean.shape),
                fwd_bwd=statistics.median(ref) if ref else None)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.only:
        print(json.dumps(measure(a.only, a.steps, a.repeats, a.device)))
        return
    res = {}
    for mode in ("fwd", "fwd_bwd", "eap", "eap_ig", "eap_ig_all"):
        out = subprocess.run([sys.executable, __file__, "--only", mode, "--steps", str(a.steps), "--repeats",
                              str(a.repeats), "--device", a.device], capture_output=True, text=True, check=True)
        res[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    fb, m = res["fwd_bwd"]["seconds"], a.steps
    r = {k: res[k]["seconds"] / res[k]["fwd_bwd"] for k in ("eap", "eap_ig", "eap_ig_all")}   # same-process ratios
    print(f"device {a.device}, torch threads {torch.get_num_threads()}, batch x positions {res['fwd']['tokens']}, "
          f"EAP-IG steps {m}, median of {a.repeats} (of {2 * a.repeats} for a method, whose ratio is to the plain "
          f"forward+backward passes alternating with it in its own process)")
    print("| measurement | seconds | peak memory (MiB) | ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| plain forward | {res['fwd']['seconds']:.3f} | {res['fwd']['peak_mib']} | | |")
    print(f"| plain forward+backward | {fb:.3f} | {res['fwd_bwd']['peak_mib']} | 1.00 | |")
    print(f"| EAP | {res['eap']['seconds']:.3f} | {res['eap']['peak_mib']} | "
          f"{r['eap']:.2f} x fwd+bwd | <= 1.3 |")
    print(f"| EAP-IG ({m} steps; default: one per pass on a CPU, rows per pass under the memory budget) | "
          f"{res['eap_ig']['seconds']:.3f} | {res['eap_ig']['peak_mib']} | {r['eap_ig'] / m:.2f} x ({m} fwd+bwd) | <= 1.0 |")
    print(f"| EAP-IG ({m} steps, all in one pass of every row) | {res['eap_ig_all']['seconds']:.3f} | "
          f"{res['eap_ig_all']['peak_mib']} | {r['eap_ig_all'] / m:.2f} x ({m} fwd+bwd) | <= 1.0 |")


if __name__ == "__main__":
    main()
