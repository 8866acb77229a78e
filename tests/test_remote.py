"""Remote (NDIF) runs, checked offline: a model loaded as a remote user loads it (meta, no weights) runs the whole
attribution and evaluation path through nnsight's local simulation of the remote backend; and every way a real
remote run cannot start fails at once with what to do."""
import pytest
import torch

from hubcache import fake_hub_repo, offline_hub
from sparse_circuits.attribution import attribute
from sparse_circuits.core import RemoteError
from sparse_circuits.evaluation import Evaluator, curve
from sparse_circuits.models import gpt2_tokenizer, load_model, tiny_model
from sparse_circuits.tasks import make_task


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama", seed=3)._module.save_pretrained(d)
    gpt2_tokenizer().save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def task():
    return make_task("ioi", gpt2_tokenizer(), 4, seed=0)


def test_meta_model_runs_the_whole_path_through_the_simulated_remote_backend(folder, task):
    meta = load_model(folder, remote=True)
    assert next(meta._module.parameters()).device.type == "meta" and meta.sc_remote is True
    local = load_model(folder, device="cpu")
    for method in ("EAP", "EAP-IG"):
        a_sim = attribute(meta, task, method=method, steps=2, batch_size=4, remote="local", progress=False)
        a_loc = attribute(local, task, method=method, steps=2, batch_size=4, progress=False)
        torch.testing.assert_close(a_sim.scores, a_loc.scores, rtol=1e-5, atol=1e-7)
    c_sim = curve(meta, task, scores=a_sim, n_points=5, remote="local", n_boot=20, progress=False).table
    c_loc = curve(local, task, scores=a_loc, n_points=5, n_boot=20, progress=False).table
    torch.testing.assert_close(torch.tensor(c_sim.explained_effect.values), torch.tensor(c_loc.explained_effect.values))


def test_hub_id_loads_for_ndif_from_a_cache_with_config_and_tokenizer_only(tmp_path, monkeypatch, folder):
    "As for `openai-community/gpt2` with only its config and tokenizer cached: no weights, no tokenizer guessing."
    files = {p.name: p for p in folder.iterdir() if p.suffix != ".safetensors"}
    fake_hub_repo(tmp_path, "sparse-circuits/tiny-llama", files)
    offline_hub(monkeypatch, tmp_path)
    m = load_model("sparse-circuits/tiny-llama", remote=True)
    assert m.tokenizer is not None and m.repo_id == "sparse-circuits/tiny-llama"
    assert next(m._module.parameters()).device.type == "meta"


def test_a_local_model_sent_remote_is_a_clear_error(folder, task):
    with pytest.raises(RemoteError, match="from a module in memory"):
        attribute(tiny_model("gpt2"), task, remote=True, progress=False)
    with pytest.raises(RemoteError, match="from the local folder"):
        Evaluator(load_model(folder, remote=True), task)       # its default is remote=True


def test_no_key_is_a_clear_error(folder, task, monkeypatch):
    import nnsight
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", None)
    m = load_model(folder, remote=True)
    m.repo_id = "sparse-circuits/tiny-llama"                   # as if NDIF hosted it
    with pytest.raises(RemoteError, match="needs an API key.*NDIF_API_KEY"):
        attribute(m, task, remote=True, progress=False)


def test_unreachable_server_is_a_clear_error(folder, task, monkeypatch):
    import nnsight, huggingface_hub.constants as hc
    monkeypatch.setenv("NDIF_API_KEY", "not-a-real-key")
    monkeypatch.setattr(nnsight.CONFIG.API, "HOST", "http://127.0.0.1:9")   # nothing listens there
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)                          # and the hub cannot be asked
    m = load_model(folder, remote=True)
    m.repo_id = "sparse-circuits/tiny-llama"
    with pytest.raises(RemoteError, match="could not reach NDIF"):
        attribute(m, task, remote=True, progress=False)
