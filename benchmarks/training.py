"""Seconds per step of the toy recipe's two trainings: dense training (`train_lm`) and sparse post-training
(`sparsify`), at the shipped recipe's shape (4 layers x 12 heads, width 96, 32 rows x 128 tokens, the toy
vocabulary), on random token rows. With --lib, the same steps with another version of the library, in alternating
fresh processes, and whether the two end at the same weights bit for bit.

    python benchmarks/training.py                          # this checkout
    python benchmarks/training.py --lib /path/to/checkout   # against another version (e.g. a git worktree of an older commit)
"""
import argparse, hashlib, json, os, statistics, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--lib", default=None, help="also time the library in this folder (e.g. an older checkout)")
ap.add_argument("--steps", type=int, default=12, help="steps of each training per run (the first two are not timed)")
ap.add_argument("--repeats", type=int, default=3, help="runs of each library, alternating")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
a = ap.parse_args()

def child(lib):
    sys.path.insert(0, lib)
    import torch
    torch.set_num_threads(a.threads)
    import sparse_circuits
    assert os.path.realpath(sparse_circuits.__file__).startswith(os.path.realpath(lib)), sparse_circuits.__file__
    from sparse_circuits.toy import ToyConfig, _toy_gpt2, toy_tokenizer
    from sparse_circuits.training import sparsify, train_lm
    cfg, vocab = ToyConfig(), len(toy_tokenizer())
    data = torch.randint(0, vocab, (256, cfg.seq_len), generator=torch.Generator().manual_seed(0))
    out, times = {}, {}
    for stage in ("dense", "sparse"):
        model, steps = _toy_gpt2(cfg, vocab), []
        tick = [time.perf_counter()]
        def timed(step, _):
            now = time.perf_counter(); steps.append(now - tick[0]); tick[0] = now
        if stage == "dense": train_lm(model, data, steps=a.steps, batch_size=32, progress=False, callback=timed)
        else: sparsify(model, data, steps=a.steps, batch_size=32, target_loss=6.0, progress=False, callback=timed)
        times[stage] = statistics.mean(steps[2:])
        out[stage] = hashlib.sha256(b"".join(t.detach().numpy().tobytes() for t in model.state_dict().values())).hexdigest()[:12]
    print(json.dumps(dict(times=times, weights=out)))

if a.child: child(a.child); sys.exit()
here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
libs = {"this code": here} | ({"--lib": a.lib} if a.lib else {})
res = {name: [] for name in libs}
for r in range(a.repeats):
    for name, lib in libs.items():
        p = subprocess.run([sys.executable, __file__, "--child", lib, "--steps", str(a.steps), "--threads", str(a.threads)],
                           capture_output=True, text=True, check=True)
        res[name].append(json.loads(p.stdout.strip().splitlines()[-1]))
print(f"toy recipe shape, {a.threads} threads, seconds per step: median of {a.repeats} runs of {a.steps - 2} timed steps each")
print("| library | dense training | sparse post-training | weights after the steps (dense, sparse) |")
print("|---|---|---|---|")
med = {}
for name, runs in res.items():
    med[name] = {s: statistics.median(r["times"][s] for r in runs) for s in ("dense", "sparse")}
    w = {tuple(r["weights"].values()) for r in runs}
    print(f"| {name} | {med[name]['dense']:.3f} | {med[name]['sparse']:.3f} | {', '.join(next(iter(w)))}"
          f"{'' if len(w) == 1 else ' (runs differ!)'} |")
if a.lib:
    same = {tuple(res[n][0]["weights"].values()) for n in res}
    print(f"ratio --lib / this code: dense {med['--lib']['dense'] / med['this code']['dense']:.2f} x, "
          f"sparse {med['--lib']['sparse'] / med['this code']['sparse']:.2f} x; "
          f"weights {'identical' if len(same) == 1 else 'DIFFERENT'} bit for bit")
