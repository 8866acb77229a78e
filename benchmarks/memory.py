"""Peak memory and time of a SmolLM2-135M panel's stages (the dense model's, or with --model sparse its sparse twin's) (configs/smollm2.toml's prompts; default the IOI-Long
panel: 20 prompts, batch 20, EAP-IG 5 steps, CPU): attribution, the evaluator's baselines and cache, and patched
passes, each with the process's RSS sampled every 5 ms, next to the estimate `pass_bytes` gives and `--dry-run`'s
estimate of the panel's peak.

    python benchmarks/memory.py                 # under the default budget (core.memory_budget)
    python benchmarks/memory.py --max-memory 2GB
    python benchmarks/memory.py --panel 1       # the IOI panel (2: Docstring, 3: IOI-Long)
    python benchmarks/memory.py --model sparse  # the sparse twin (nbs/experiments/smollm2.ipynb makes it)
    python benchmarks/memory.py --model sparse --sparse-path DIR   # another gated model of the same shapes
    python benchmarks/memory.py --lib /path/to/other/checkout   # the same stages with another version of the library
"""
import argparse, json, os, sys, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--max-memory", default=None)
ap.add_argument("--lib", default=None, help="import sparse_circuits from this folder (e.g. an older checkout)")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--points", type=int, default=3, help="patched passes (circuits) to time")
ap.add_argument("--panel", type=int, default=3, help="panel of configs/smollm2.toml (1-based)")
ap.add_argument("--model", choices=("dense", "sparse"), default="dense", help="the panel's model to measure")
ap.add_argument("--sparse-path", default=None, help="a sparse model's folder to use instead of the config's")
a = ap.parse_args()
if a.lib: sys.path.insert(0, a.lib)
import torch
torch.set_num_threads(a.threads)
import sparse_circuits
from sparse_circuits.attribution import attribute
from sparse_circuits.evaluation import Evaluator
from sparse_circuits.graph import Graph
from sparse_circuits.models import smollm2
from sparse_circuits.tasks import make_task
from sparse_circuits.config import parse_config

PAGE = os.sysconf("SC_PAGE_SIZE")
try:  # glibc's view of the heap at each stage's end: in use, free but kept by the process, mmapped (older --lib: none)
    from sparse_circuits.core import heap_stats
except ImportError:
    def heap_stats(): return None
def heap():
    h = heap_stats()
    return {} if h is None else {f"heap_{k}_gib": round(v / 2**30, 2) for k, v in h.items()}
def rss(): return int(open("/proc/self/statm").read().split()[1]) * PAGE
peak = [0]
def sampler():
    while True: peak[0] = max(peak[0], rss()); time.sleep(0.005)
threading.Thread(target=sampler, daemon=True).start()
rows = []
def stage(name, fn):
    t0 = time.perf_counter(); out = fn(); sec = time.perf_counter() - t0; time.sleep(0.02)
    rows.append(dict(stage=name, seconds=round(sec, 2), peak_rss_gib=round(peak[0] / 2**30, 2),
                     rss_gib=round(rss() / 2**30, 2), **heap()))
    print(rows[-1], flush=True)
    return out

cfg = parse_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "smollm2.toml"))
panel = cfg.panels[a.panel - 1]
if a.sparse_path: panel.sparse = dict(panel.sparse, path=a.sparse_path)
if a.model == "dense": model = stage("load SmolLM2-135M", smollm2)
else:
    from sparse_circuits.experiment import ModelCache
    model = stage("load the sparse SmolLM2-135M", lambda: ModelCache().get(panel.sparse, panel))
if a.max_memory: panel.max_memory = a.max_memory
bs = panel.batch_size
task = make_task(panel.task, model.tokenizer, n=panel.n_examples, seed=panel.seed, prepend_bos=panel.prepend_bos, **panel.task_options)
g = Graph.from_model(model)
budget = {"max_memory": a.max_memory} if a.max_memory else {}   # (an older checkout's Evaluator may not take it)
attr = stage("attribution EAP-IG(5)", lambda: attribute(model, task, g, steps=panel.ig_steps, batch_size=bs, progress=False, **budget))
ev = stage("evaluator baselines + cache", lambda: Evaluator(
    model, task, g, batch_size=bs, **(budget if "max_memory" in Evaluator.__init__.__code__.co_varnames else {})))
ks = [200, 2000, 20000][:a.points]
for k in ks: stage(f"patched pass, top {k} edges", lambda: ev.metrics([attr.top_k(k)]))
info = dict(library=sparse_circuits.__file__, threads=a.threads, panel=panel.title, model=a.model, n=len(task),
            tokens=list(max((b.clean.shape for b in task.batches(bs)), key=lambda s: s[1])),
            attribution_rows_per_pass=attr.info.get("rows_per_pass"), evaluator=getattr(ev, "memory", None),
            max_memory=a.max_memory)
try:
    from sparse_circuits.trace import pass_bytes
    from sparse_circuits.architectures import Layout
    info["pass_bytes_gib"] = {k: round(v * bs / 2**30, 3) for k, v in pass_bytes(Layout(model.config), g, info["tokens"][1]).items()}
    from sparse_circuits.experiment import estimate_panel
    est = estimate_panel(panel, cfg.toy, seq_len=info["tokens"][1])[a.model]["memory_gb"]
    info.update(dry_run_estimate_gib=est, measured_peak_gib=round(peak[0] / 2**30, 2), estimate_over_measured=round(est / (peak[0] / 2**30), 2))
except ImportError: pass
print(json.dumps(dict(rows=rows, info=info)), flush=True)
