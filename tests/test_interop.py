"""The field's files (issue 16): EAP-IG graph files and prompt CSVs, MIB submissions, BOS as TransformerLens does it.

EAP-IG cannot be installed here (it needs TransformerLens and pygraphviz), so the schema its `Graph.from_json` reads
is pinned from its source (hannamw/EAP-IG, src/eap/graph.py): `from_json` asserts the keys cfg, nodes and edges,
builds the graph with `Graph.from_model(cfg, neuron_level=True, node_scores=True)`, which reads cfg['n_layers'],
cfg['n_heads'], cfg['parallel_attn_mlp'] and cfg['d_model'], then looks up every node name except 'logits' and
every edge name in the graph it built. The names below are built by EAP-IG's rules, written out independently."""
import json

import pytest
import torch

from sparse_circuits.attribution import attribute, read_eap_ig_json, save_mib
from sparse_circuits.models import gpt2_tokenizer, tiny_model
from sparse_circuits.tasks import load_task, make_task


def eap_ig_names(n_layers, n_heads, parallel):
    "Node and edge names of EAP-IG's Graph.from_model, by its construction rules."
    nodes, edges, stream = ["input"], [], ["input"]
    for l in range(n_layers):
        heads = [f"a{l}.h{h}" for h in range(n_heads)]
        nodes += heads + [f"m{l}"]
        for up in stream:
            edges += [f"{up}->{a}<{x}>" for a in heads for x in "qkv"]
            if parallel: edges.append(f"{up}->m{l}")
        stream = stream + heads
        if not parallel: edges += [f"{up}->m{l}" for up in stream]
        stream.append(f"m{l}")
    edges += [f"{up}->logits" for up in stream]
    return nodes + ["logits"], edges


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox"])
def test_eap_ig_json_has_exactly_the_fields_and_names_eap_ig_reads(tmp_path, family):
    model = tiny_model(family, seed=0)
    task = make_task("ioi", gpt2_tokenizer(), 4, seed=0)
    attr = attribute(model, task, method="EAP", batch_size=4, progress=False)
    d = json.loads(attr.to_eap_ig_json(tmp_path / "g.json", in_graph=attr.top_k(20)).read_text())
    assert {"cfg", "nodes", "edges"} <= set(d)
    cfg = d["cfg"]
    assert {k: cfg[k] for k in ("n_layers", "n_heads", "parallel_attn_mlp", "d_model")} == dict(
        n_layers=2, n_heads=4, parallel_attn_mlp=family == "gpt_neox", d_model=64)
    nodes, edges = eap_ig_names(2, 4, family == "gpt_neox")
    assert set(d["nodes"]) == set(nodes)
    assert set(d["edges"]) == set(edges) and len(d["edges"]) == attr.graph.n_edges
    assert all(set(v) == {"score", "in_graph"} and isinstance(v["score"], float) for v in d["edges"].values())
    assert all(isinstance(v["in_graph"], bool) for v in d["nodes"].values())
    back, keep = read_eap_ig_json(tmp_path / "g.json")
    assert torch.equal(keep, attr.top_k(20))
    torch.testing.assert_close(back.scores.float() * 4, attr.scores, rtol=1e-6, atol=1e-9)   # EAP-IG's scale x batch size


def test_grouped_query_models_are_refused_for_eap_ig_files(tmp_path):
    attr = attribute(tiny_model("llama"), make_task("ioi", gpt2_tokenizer(), 2), method="EAP", progress=False)
    with pytest.raises(ValueError, match="no exact EAP-IG form"):
        attr.to_eap_ig_json(tmp_path / "g.json")


def test_mib_submission_layout(tmp_path):
    attr = attribute(tiny_model("gpt2"), make_task("ioi", gpt2_tokenizer(), 2), method="EAP", progress=False)
    for model in ("gpt2", "qwen2.5"):
        save_mib(attr, tmp_path, "ioi", model)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json")) == \
        ["ioi_gpt2/importances.json", "ioi_qwen2.5/importances.json"]


EAP_IG_GT = "clean,corrupted,label\n" + "\n".join(
    f"The {n} lasted from the year 17{y:02d} to the year 17,The {n} lasted from the year 1701 to the year 17,{y}"
    for n, y in (("contract", 52), ("war", 4), ("reign", 83)))
EAP_IG_IOI = (',clean,corrupted,corrupted_hard,correct_idx,incorrect_idx\n'
              '470,"Then, Mary and John went to the store. John gave a drink to","Then, Anna and Ben went to the store. Kate gave a drink to",'
              '"Then, Mary and John went to the store. Mary gave a drink to",5335,1757\n')


def test_eap_ig_prompt_csvs_load_as_they_are(tmp_path):
    tok = gpt2_tokenizer()
    (tmp_path / "gt.csv").write_text(EAP_IG_GT)
    gt = load_task(tmp_path / "gt.csv", tok, task="greater-than")
    assert [r["correct_idx"] for r in gt.rows] == [52, 4, 83] and {r["incorrect_idx"] for r in gt.rows} == {1}
    (tmp_path / "ioi.csv").write_text(EAP_IG_IOI)
    ioi = load_task(tmp_path / "ioi.csv", tok, task="ioi")
    assert ioi.rows[0]["correct_idx"] == 5335 == tok(" Mary").input_ids[0]
    b = next(ioi.batches(1))
    assert b.clean[0, 0].item() == tok.eos_token_id                 # BOS prepended, as TransformerLens does


def test_out_of_vocabulary_ids_fail_at_load(tmp_path):
    (tmp_path / "llama3.csv").write_text(EAP_IG_IOI.replace(",5335,", ",86753,"))
    with pytest.raises(ValueError, match=r"row 0 field 'correct_idx': token id 86753 is outside the tokenizer's vocabulary of 50257"):
        load_task(tmp_path / "llama3.csv", gpt2_tokenizer(), task="ioi")


def test_bos_changes_the_scores_and_is_recorded():
    model = tiny_model("gpt2", seed=0)
    tok = gpt2_tokenizer()
    with_bos = attribute(model, make_task("ioi", tok, 8, seed=0), method="EAP", progress=False)
    without = attribute(model, make_task("ioi", tok, 8, seed=0, prepend_bos=False), method="EAP", progress=False)
    assert with_bos.info["prepend_bos"] is True and without.info["prepend_bos"] is False
    assert not torch.allclose(with_bos.scores, without.scores)
