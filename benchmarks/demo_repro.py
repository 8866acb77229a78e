"""How long `sparse-circuits demo` takes, and whether its numbers move with the thread count or the precision.

Runs the demo three times as a user would (2 threads by default, the shipped models, nothing resumed) and prints each
wall time and the median; then once with one thread and once in float64, and compares every run's results.csv with
the first: the edge and head counts that reach tau, the multipliers' intervals as printed, and the largest differences of
explained effect at the same k and of the intervals' ends. `--reference DIR` compares the first run also with another
machine's (its results.csv and summary.json; `benchmarks/demo_reference/` holds one, with the machine it came from),
and `--save-reference DIR` stores this machine's first run as such a reference.

    python benchmarks/demo_repro.py [--out DIR] [--runs 3] [--reference benchmarks/demo_reference]
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import pandas as pd

from sparse_circuits.core import machine

CLI = str(Path(sys.executable).parent / "sparse-circuits")


def timed(cmd, env=None):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    if r.returncode: sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return time.perf_counter() - t0, r.stdout


def reach(out: Path) -> dict:
    "Edge and head counts to reach tau, and the multipliers' intervals as printed (one decimal)."
    s = json.loads((out / "summary.json").read_text())
    res = {(p["title"], v): (p["models"][v]["edges_to_reach"], p["models"][v].get("heads_to_reach"))
           for p in s["panels"] for v in ("dense", "sparse")}
    printed = lambda x: None if x is None else round(x, 1)
    for p in s["panels"]:
        for kind in ("multiplier", "heads_multiplier"):
            iv = (p.get(kind) or {}).get("interval") or {}
            res[p["title"], kind] = (printed(iv.get("low")), printed(iv.get("high")))
    return res


def interval_diff(a: Path, b: Path) -> float:
    "Largest difference between the multipliers' interval ends (unrounded) of two runs."
    ends = lambda out: [x for p in json.loads((out / "summary.json").read_text())["panels"]
                        for kind in ("multiplier", "heads_multiplier")
                        for x in ((p.get(kind) or {}).get("interval") or {"low": None, "high": None}).values()
                        if isinstance(x, float)]
    return max((abs(x - y) for x, y in zip(ends(a), ends(b))), default=0.0)


def max_diff(a: Path, b: Path) -> float:
    key = ["panel", "variant", "unit", "k"]
    m = pd.read_csv(a / "results.csv").merge(pd.read_csv(b / "results.csv"), on=key, suffixes=("_a", "_b"))
    return float((m.explained_effect_a - m.explained_effect_b).abs().max())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--reference", default=None, help="folder with another machine's demo results.csv and summary.json")
    ap.add_argument("--save-reference", default=None, help="store this machine's first run here as a reference")
    args = ap.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="demo_repro_"))
    print(f"machine: {machine()} (the demo runs with torch's default threads); outputs in {root}")
    times = []
    for i in range(args.runs):
        t, stdout = timed([CLI, "demo", "--quiet", "--no-resume", "--out", str(root / f"run{i}")])
        times.append(t)
        print(f"run {i}: {t:.1f} s wall (`sparse-circuits demo`, process start to exit)")
    print(f"median of {len(times)}: {statistics.median(times):.1f} s\n")
    print("\n".join(l for l in stdout.splitlines() if l.strip()), "\n")

    from sparse_circuits.config import DEMO_CONFIG
    f64 = root / "demo-float64.toml"
    f64.write_text(DEMO_CONFIG.replace('dtype = "float32"', 'dtype = "float64"').replace('name = "demo"', 'name = "demo-float64"'))
    t1, _ = timed([CLI, "demo", "--quiet", "--no-resume", "--out", str(root / "threads1")], env={"OMP_NUM_THREADS": "1"})
    t2, _ = timed([CLI, "run", str(f64), "--quiet", "--no-resume", "--out", str(root / "float64")])
    print(f"one thread: {t1:.1f} s; float64: {t2:.1f} s")
    base = reach(root / "run0")
    for name in [f"run{i}" for i in range(1, args.runs)] + ["threads1", "float64"]:
        same = reach(root / name) == base
        print(f"{name:>9} vs run0: edge and head counts and printed intervals {'identical' if same else 'DIFFERENT'}; "
              f"largest explained-effect difference {max_diff(root / 'run0', root / name):.2e}, "
              f"interval ends {interval_diff(root / 'run0', root / name):.2e}")
    if args.reference:
        ref = Path(args.reference)
        note = json.loads((ref / "machine.json").read_text()) if (ref / "machine.json").exists() else {}
        same = reach(ref) == base
        print(f"reference ({note.get('cpu', 'another machine')}) vs run0: edge and head counts and printed intervals "
              f"{'identical' if same else 'DIFFERENT'}; largest explained-effect difference {max_diff(ref, root / 'run0'):.2e}, "
              f"interval ends {interval_diff(ref, root / 'run0'):.2e}")
    if args.save_reference:
        dest = Path(args.save_reference)
        dest.mkdir(parents=True, exist_ok=True)
        for f in ("results.csv", "summary.json"): shutil.copy(root / "run0" / f, dest / f)
        (dest / "machine.json").write_text(json.dumps(machine(), indent=1) + "\n")
        print(f"run0's results.csv and summary.json stored in {dest}")


if __name__ == "__main__":
    main()
