"""Peak memory and time of the SmolLM2-135M IOI-Long dense panel's stages (configs/smollm2.toml's prompts: 20 IOI-Long
prompts, batch 20, EAP-IG 5 steps, CPU): attribution, the evaluator's baselines and cache, and patched passes, each
with the process's RSS sampled every 5 ms, next to the estimate `pass_bytes` gives.

    python benchmarks/memory.py                 # under the default budget (core.memory_budget)
    python benchmarks/memory.py --max-memory 2GB
    python benchmarks/memory.py --lib /path/to/other/checkout   # the same stages with another version of the library
"""
import argparse, json, os, sys, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--max-memory", default=None)
ap.add_argument("--lib", default=None, help="import sparse_circuits from this folder (e.g. an older checkout)")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--points", type=int, default=3, help="patched passes (circuits) to time")
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

PAGE = os.sysconf("SC_PAGE_SIZE")
def rss(): return int(open("/proc/self/statm").read().split()[1]) * PAGE
peak = [0]
def sampler():
    while True: peak[0] = max(peak[0], rss()); time.sleep(0.005)
threading.Thread(target=sampler, daemon=True).start()
rows = []
def stage(name, fn):
    t0 = time.perf_counter(); out = fn(); sec = time.perf_counter() - t0; time.sleep(0.02)
    rows.append(dict(stage=name, seconds=round(sec, 2), peak_rss_gib=round(peak[0] / 2**30, 2))); print(rows[-1], flush=True)
    return out

model = stage("load SmolLM2-135M", smollm2)
task = make_task("ioi-long", model.tokenizer, n=20, seed=0)
g = Graph.from_model(model)
budget = {"max_memory": a.max_memory} if a.max_memory else {}   # (an older checkout's Evaluator may not take it)
attr = stage("attribution EAP-IG(5)", lambda: attribute(model, task, g, steps=5, batch_size=20, progress=False, **budget))
ev = stage("evaluator baselines + cache", lambda: Evaluator(
    model, task, g, batch_size=20, **(budget if "max_memory" in Evaluator.__init__.__code__.co_varnames else {})))
ks = [200, 2000, 20000][:a.points]
for k in ks: stage(f"patched pass, top {k} edges", lambda: ev.metrics([attr.top_k(k)]))
info = dict(library=sparse_circuits.__file__, threads=a.threads, tokens=list(next(task.batches(20)).clean.shape),
            attribution_rows_per_pass=attr.info.get("rows_per_pass"), evaluator=getattr(ev, "memory", None),
            max_memory=a.max_memory)
try:
    from sparse_circuits.trace import pass_bytes
    from sparse_circuits.architectures import Layout
    info["pass_bytes_gib"] = {k: round(v * 20 / 2**30, 3) for k, v in pass_bytes(Layout(model.config), g, info["tokens"][1]).items()}
except ImportError: pass
print(json.dumps(dict(rows=rows, info=info)), flush=True)
