"""`--dry-run`'s memory estimate against the measured peak, panel by panel: each panel runs alone in a fresh process
(as `sparse-circuits run` would, without the figure), whose high-water mark (ru_maxrss) is compared with
`estimate_panel` for the same panel at the task's real prompt length and the same budget.

    python benchmarks/dry_run.py                                   # the demo's four panels
    python benchmarks/dry_run.py configs/smollm2.toml --panels 3   # SmolLM2 IOI-Long (long: about an hour)
    python benchmarks/dry_run.py --max-memory 64MB                 # under a budget small enough to split the passes
"""
import argparse, json, os, resource, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("config", nargs="?", default="configs/demo.toml")
ap.add_argument("--panels", default=None, help="comma-separated 1-based panel numbers (default: all)")
ap.add_argument("--max-memory", default=None)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
a = ap.parse_args()

import torch
torch.set_num_threads(a.threads)
from sparse_circuits.config import parse_config
from sparse_circuits.core import memory_budget, resolve_device
from sparse_circuits.experiment import ModelCache, estimate_panel, prompt_len, run_panel

def panels(cfg):
    if a.max_memory:
        for p in cfg.panels: p.max_memory = a.max_memory
    return cfg.panels

if a.child is not None:         # one panel, in this fresh process
    cfg = parse_config(a.config)
    p = panels(cfg)[a.child]
    cache = ModelCache(cfg.toy, progress=False)
    lens = {v: prompt_len(p, v) for v in ("dense", "sparse")}   # the padded length the run's prompts will have
    t0 = time.perf_counter()
    _, summary = run_panel(p, cache, progress=False)
    print(json.dumps(dict(seq_len=lens, seconds=round(time.perf_counter() - t0, 1),
                          peak_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                          memory={v: m.get("memory") for v, m in summary["models"].items()})), flush=True)
    sys.exit(0)

cfg = parse_config(a.config)
budget = memory_budget(resolve_device("cpu"))
print(f"config {cfg.source}, threads {a.threads}, max_memory {a.max_memory or f'default ({budget / 2**30:.2f} GiB here)'}")
print(f"{'panel':<22} {'seq':>4} {'estimate GiB':>12} {'measured GiB':>12} {'est/meas':>8} {'run s':>6}")
idx = [int(i) - 1 for i in a.panels.split(",")] if a.panels else range(len(cfg.panels))
rows = []
for i in idx:
    p = panels(cfg)[i]
    cmd = [sys.executable, __file__, a.config, "--child", str(i), "--threads", str(a.threads)]
    if a.max_memory: cmd += ["--max-memory", a.max_memory]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if out.returncode: sys.exit(f"panel {p.slug} failed:\n{out.stderr[-3000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    seq = max(r["seq_len"].values())
    est = estimate_panel(p, cfg.toy, seq_len=seq, budget=budget)
    e = max(est[v]["memory_gb"] for v in ("dense", "sparse"))
    rows.append(dict(panel=p.slug, seq_len=seq, estimate_gib=e, measured_gib=round(r["peak_gib"], 2),
                     ratio=round(e / r["peak_gib"], 2), seconds=r["seconds"], evaluator=r["memory"]))
    print(f"{p.slug:<22} {seq:>4} {e:>12.2f} {r['peak_gib']:>12.2f} {e / r['peak_gib']:>8.2f} {r['seconds']:>6.0f}", flush=True)
ratios = [r["ratio"] for r in rows]
print(f"estimate / measured: {min(ratios):.2f} - {max(ratios):.2f} (target 0.7 - 1.3)")
print(json.dumps(rows))
