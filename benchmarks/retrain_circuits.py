"""Edges ranked and pruned, and attribution completeness, for a folder of retrained toy models (what
`sparse-circuits demo --retrain` leaves in the cache, e.g. ~/.cache/sparse_circuits/toy/<recipe key>): the measures
of nbs/experiments/toy_seeds.ipynb ("A second count", "Attribution through the gates") on another draw of the recipe.
The measures are that notebook's own functions (its setup cell is executed here, so they are written once).

    python benchmarks/retrain_circuits.py ~/.cache/sparse_circuits/toy/ba44787d3b3b
"""
import json, sys, warnings
from pathlib import Path

folder = Path(sys.argv[1]).expanduser().resolve()
nb = Path(__file__).resolve().parents[1] / "nbs" / "experiments" / "toy_seeds.ipynb"
notebook = {}
exec("".join(json.loads(nb.read_text())["cells"][2]["source"]), notebook)   # toy_seeds' setup cell
DEMO, pruned_of, completeness_of = notebook["DEMO"], notebook["pruned_of"], notebook["completeness_of"]
import pandas as pd
import torch
from sparse_circuits.models import load_model, load_sparse
from sparse_circuits.toy import ToyConfig, toy_tasks, toy_tokenizer

info = json.loads((folder / "info.json").read_text())
cfg, tok = ToyConfig.from_dict(info["config"]), toy_tokenizer()
models = {"dense": load_model(str(folder / "dense"), tokenizer=tok), "sparse": load_sparse(folder / "sparse", tokenizer=tok)}
every, rows = toy_tasks(cfg), []
warnings.simplefilter("ignore")
for name, task in toy_tasks(cfg, n=DEMO.n_examples).items():
    torch.manual_seed(0)                                   # as toy_seeds' per_circuit
    rows += [dict(task=name, model=v, **pruned_of(m, task, every[name]), **completeness_of(m, task, every[name]))
             for v, m in models.items()]
df = pd.DataFrame(rows)
print(f"toy models in {folder} (recipe {info['key']}, dense loss {info['dense_loss']:.4f})")
print(df.round(3).to_string(index=False))
x = df.pivot_table(index="task", columns="model", values=["edges", "pruned"], sort=False)
print("multipliers, ranked:", (x["edges", "dense"] / x["edges", "sparse"]).round(2).to_dict())
print("multipliers, pruned:", (x["pruned", "dense"] / x["pruned", "sparse"]).round(2).to_dict())
