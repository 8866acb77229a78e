"""Task tests outside the notebook: alignment as a property over seeds and tasks, and a real model on IOI."""
import pytest
import torch

from sparse_circuits.models import gpt2_tokenizer, smollm2
from sparse_circuits.tasks import TASKS, evaluate_task, make_task


@pytest.mark.parametrize("name", sorted(TASKS))
@pytest.mark.parametrize("seed", [1, 7, 123])
@pytest.mark.parametrize("prefix", [None, (0, 2)])
def test_clean_and_corrupted_align_for_any_seed(name, seed, prefix):
    tok = gpt2_tokenizer()
    task = make_task(name, tok, 40, seed=seed, **({"prefix": prefix} if prefix else {}))
    assert len(set(task.clean)) == 40
    for b in task.batches(16):
        real = b.attention_mask.bool()
        assert torch.equal(b.answer_pos, real.sum(1) - 1)
        assert torch.equal(b.clean[~real], b.corrupted[~real])
        assert (b.clean[real] != b.corrupted[real]).any()  # the corruption changes something


def test_smollm2_tokenizer_tasks_and_ioi_signal():
    model = smollm2()
    with pytest.raises(ValueError, match="two-digit year"):
        make_task("greater-than", model.tokenizer, 10)  # SmolLM2 splits digits one by one
    res = evaluate_task(model, make_task("ioi", model.tokenizer, 60, seed=0), batch_size=20)
    assert res["clean"] > res["corrupted"] + 1.0, res  # the IOI behaviour is there and the corruption removes it
    assert res["accuracy"] > 0.8, res
