"""Benchmark: OLMo-7B's graph (32 layers x 32 heads: 1,592,881 edges) end to end on the CPU, at a small width.

A random OLMo-architecture model with 32 layers and 32 heads but width 256 (head size 8; weights drawn with
standard deviation 0.002), IOI batch of 16 prompts:
EAP-IG attribution (5 steps) and a 30-point explained-effect curve with the bisection to 0.9, timed against plain
passes of the same model, with the peak memory (max RSS) after each stage. Scores are one [senders, receivers] tensor
and circuits are bool masks of that shape: no Python object per edge on this path.

    python benchmarks/large_graph.py [--width 256] [--prompts 16] [--points 30]
"""
import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from evaluation import timed  # noqa: E402  median of repeats after a warm-up, as the other benchmarks


def rss_mib(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--points", type=int, default=30)
    a = p.parse_args()
    from sparse_circuits.attribution import attribute
    from sparse_circuits.evaluation import Evaluator, curve, edges_to_reach
    from sparse_circuits.graph import Graph
    from sparse_circuits.models import gpt2_tokenizer, tiny_model
    from sparse_circuits.tasks import make_task
    # initializer_range 0.002: with the default 0.02 a random 32-layer model's gradients overflow float32 within a plain
    # PyTorch backward (x30 per layer from the last layer down); attribution then refuses its NaN scores, rightly
    model = tiny_model("olmo", seed=0, num_hidden_layers=a.layers, num_attention_heads=a.heads, hidden_size=a.width,
                       intermediate_size=2 * a.width, initializer_range=0.002)
    task = make_task("ioi", gpt2_tokenizer(), a.prompts, seed=0)
    g = Graph.from_model(model)
    hf, b = model._module, next(task.batches(a.prompts))
    metric = task.spec.metric

    def fwd():
        with torch.no_grad(): hf(input_ids=b.clean, attention_mask=b.attention_mask)

    def fwd_bwd():
        hf.zero_grad(set_to_none=True)
        metric(hf(input_ids=b.clean, attention_mask=b.attention_mask).logits, b).sum().backward()

    t_f, t_fb = timed(fwd, 3, "cpu")[0], timed(fwd_bwd, 3, "cpu")[0]
    hf.zero_grad(set_to_none=True)
    base = rss_mib()
    t0 = time.perf_counter()
    attr = attribute(model, task, g, method="EAP-IG", steps=5, batch_size=a.prompts, progress=False)
    t_attr, rss_attr = time.perf_counter() - t0, rss_mib()
    t0 = time.perf_counter()
    ev = Evaluator(model, task, g, batch_size=a.prompts)
    t_base = time.perf_counter() - t0
    k_point = min(10_000, g.n_edges)
    t_point = timed(lambda: ev.metrics([attr.top_k(k_point)]), 1, "cpu")[0]
    t0 = time.perf_counter()
    c = curve(model, task, scores=attr, n_points=a.points, evaluator=ev, progress=False, n_boot=200)
    r = edges_to_reach(c, 0.9)
    t_curve, rss_all = time.perf_counter() - t0, rss_mib()
    print(f"{g}; batch x positions {list(b.clean.shape)}; torch threads {torch.get_num_threads()}")
    print("| measurement | seconds | ratio | peak RSS (MiB) |")
    print("|---|---|---|---|")
    print(f"| plain forward | {t_f:.3f} | 1.00 x forward | {base:.0f} |")
    print(f"| plain forward+backward (weight gradients) | {t_fb:.3f} | 1.00 x fwd+bwd | {base:.0f} |")
    print(f"| EAP-IG, 5 steps | {t_attr:.2f} | {t_attr / (5 * t_fb):.2f} x (5 fwd+bwd) | {rss_attr:.0f} |")
    print(f"| baselines (clean and corrupted runs, corrupted cache) | {t_base:.2f} | {t_base / t_f:.1f} x forward | |")
    print(f"| one curve point (top {k_point:,} edges) | {t_point:.2f} | {t_point / t_f:.1f} x forward | |")
    print(f"| {len(c.table)}-point curve + bisection to 0.9 ({r.evaluations} steps) | {t_curve:.1f} | "
          f"{t_curve / t_f:.0f} x forward | {rss_all:.0f} |")
    print(f"edges to reach 0.9 on this random model: {r.edges} of {g.n_edges:,}")


if __name__ == "__main__":
    main()
