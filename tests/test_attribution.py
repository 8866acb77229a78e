"""attribute() beyond the per-family reference checks (tests/test_families.py): dtypes, non-finite scores, graph files."""
import json

import pytest
import torch

from sparse_circuits.attribution import Attribution, NonFiniteScoresError, attribute
from sparse_circuits.core import unwrap
from sparse_circuits.graph import Graph
from sparse_circuits.models import gpt2_tokenizer, tiny_model
from sparse_circuits.sparse_attention import make_sparse
from sparse_circuits.tasks import make_task

import reference


@pytest.fixture(scope="module")
def task():
    return make_task("ioi", gpt2_tokenizer(), 6, seed=5)


def test_half_precision_model_accumulates_in_float32(task):
    model = tiny_model("gpt2", seed=0, dtype=torch.bfloat16)
    attr = attribute(model, task, method="EAP", batch_size=6, progress=False)
    assert attr.scores.dtype == torch.float32
    ref = attribute(tiny_model("gpt2", seed=0), task, method="EAP", batch_size=6, progress=False)
    # bf16 forward differs, but the ranking of the strongest edges survives
    assert len(set(attr.ranked()[:5].tolist()) & set(ref.ranked()[:10].tolist())) >= 3


def test_float64_model_is_scored_in_float64(task):
    attr = attribute(tiny_model("llama", seed=0, dtype=torch.float64), task, method="EAP", batch_size=6, progress=False)
    assert attr.scores.dtype == torch.float64 and attr.info["dtype"] == "float64"


def test_nan_in_the_model_is_an_error_not_a_ranking(task):
    model = tiny_model("gpt2", seed=0)
    with torch.no_grad(): unwrap(model).transformer.h[1].mlp.c_fc.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteScoresError, match="are NaN or infinite"):
        attribute(model, task, method="EAP", batch_size=6, progress=False)
    g = Graph(1, 2, 2)
    s = torch.zeros(g.n_senders, g.n_receivers); s[0, 0] = float("inf")
    with pytest.raises(NonFiniteScoresError):
        Attribution(s, g, "EAP", 1, "ioi", 1).ranked()


def test_saved_scores_load_safely(tmp_path, task):
    attr = attribute(tiny_model("gpt_neox", seed=1), task, method="EAP", batch_size=6, progress=False)
    back = Attribution.load(attr.save(tmp_path / "s.pt"))
    assert torch.equal(back.scores, attr.scores) and back.graph.parallel
    import pickle
    class Evil:
        def __reduce__(self): return (exec, ("raise SystemExit('code ran')",))
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"scores": Evil(), "graph": {}, "method": "EAP"}))
    with pytest.raises(ValueError, match="is not a scores file"):
        Attribution.load(tmp_path / "evil.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="is not a scores file"):
        Attribution.load(tmp_path / "empty.pt")


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("method", ["EAP", "EAP-IG"])
def test_sparse_model_scores_match_the_reference_through_the_gate(family, method, task):
    """On a sparse model (float64, gate bias 0: about half the gates open) the scores equal the naive reference's,
    with the gate's surrogate gradient (the default, temperature 1; and 0.5) and without it (None); the surrogate
    changes the scores, and each attribution records the temperature it used."""
    model = make_sparse(tiny_model(family, seed=3, dtype=torch.float64), gate_bias=0.0)
    got = {}
    for T in (1.0, 0.5, None):
        kw = {} if T == 1.0 else dict(gate_temperature=T)
        attr = attribute(model, task, method=method, steps=3, batch_size=3, progress=False, **kw)
        want = reference.edge_scores(unwrap(model), task, method=method, steps=3, gate_temperature=T)
        torch.testing.assert_close(attr.scores.double(), want, rtol=1e-5, atol=1e-6 * want.abs().max().item())  # as test_families
        assert attr.info["gate_temperature"] == T
        got[T] = attr.scores
    moved = lambda a, b: (a - b).abs().max() / b.abs().max()
    assert moved(got[1.0], got[None]) > 1e-3 and moved(got[1.0], got[0.5]) > 1e-3, (moved(got[1.0], got[None]), moved(got[1.0], got[0.5]))


def test_gate_temperature_is_checked_and_ignored_on_a_dense_model(task):
    dense = tiny_model("gpt2", seed=0)
    a = attribute(dense, task, method="EAP", batch_size=6, progress=False)
    b = attribute(dense, task, method="EAP", batch_size=6, progress=False, gate_temperature=None)
    assert torch.equal(a.scores, b.scores) and a.info["gate_temperature"] is None
    for bad in (0.0, -1.0, "warm"):
        with pytest.raises((ValueError, TypeError), match="gate_temperature"):
            attribute(dense, task, method="EAP", batch_size=6, progress=False, gate_temperature=bad)
