"""Model-zoo tests that are better outside notebooks: the real SmolLM2-135M (slow to convert once) and the CLI."""
import subprocess
import sys
from pathlib import Path

import pytest

from sparse_circuits.models import ModelNotAvailableError, load_model, smollm2

CLI = str(Path(sys.executable).parent / "sparse-circuits")  # the installed console script


def test_smollm2_knows_paris():
    model = smollm2()
    assert model.config.model_type == "llama"
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # grouped-query attention
    ids = model.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with model.trace(ids):
        logits = model.output.logits.save()
    assert model.tokenizer.decode(logits[0, -1].argmax()) == " Paris"


def test_offline_hub_id_fails_clearly():
    with pytest.raises(ModelNotAvailableError, match="(?s)sparse-circuits-no-such/model.*To provide it"):
        load_model("sparse-circuits-no-such/model", local_files_only=True)


def test_cli_smoke_run():
    out = subprocess.run([CLI, "smoke", "--seed", "3"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    from sparse_circuits.architectures import ARCHITECTURES
    for family in ARCHITECTURES:
        assert f"{family}: logits (50257,)" in out.stdout


def test_cli_help_lists_commands():
    out = subprocess.run([CLI, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "demo" in out.stdout
