"""Cross-device gathering: 2 gloo processes x B/2 give the loss and gradients of 1 process x B (float64)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tct_hf.losses import (
    all_gather_no_grad,
    all_gather_with_grad,
    gather_padded,
    gather_passages,
    rank,
    world_size,
)

SCRIPT = Path(__file__).with_name("distributed_equivalence_script.py")


def load_script():
    spec = importlib.util.spec_from_file_location("distributed_equivalence_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gathers_are_identity_when_not_distributed():
    x = torch.randn(4, 3, requires_grad=True)
    assert world_size() == 1 and rank() == 0
    assert all_gather_with_grad(x) is x
    assert torch.equal(all_gather_no_grad(x), x) and not all_gather_no_grad(x).requires_grad
    assert gather_padded(x, dim=1) is x
    assert gather_passages(x, num_local_queries=2, with_grad=True) is x
    assert torch.equal(gather_passages(x, num_local_queries=2), x) and not gather_passages(x, 2).requires_grad


def test_gather_padded_rejects_dim_zero():
    with pytest.raises(ValueError, match="other than 0"):
        gather_padded(torch.zeros(2, 3), dim=0)


def test_gather_passages_rejects_a_layout_that_does_not_divide():
    with pytest.raises(ValueError, match="N = B"):
        gather_passages(torch.zeros(5, 3), num_local_queries=2)


@pytest.mark.distributed
def test_two_gloo_processes_equal_one_process_on_the_whole_batch(tmp_path):
    script = load_script()
    reference = script.run_losses(script.shard(script.make_problem(), rank=0, world_size=1), gather=False)

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    completed = subprocess.run(
        [*command, str(SCRIPT), "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=180
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert all(result["world_size"] == 2 for result in ranks)

    per_rank_passages = len(reference["in_batch_kd"]["passage_features_grad"]) // 2
    num_queries, num_negatives = script.NUM_QUERIES, script.NUM_NEGATIVES
    for name in script.LOSS_NAMES:
        expected = reference[name]
        for result in ranks:
            got = result[name]
            torch.testing.assert_close(got["loss"], expected["loss"], atol=1e-6, rtol=0, msg=name)
            for key in ("encoder.weight", "encoder.bias", "teacher"):
                torch.testing.assert_close(got[key], expected[key], atol=1e-6, rtol=0, msg=f"{name} {key}")
        trained = "teacher" if name.startswith("colbert") else "encoder.weight"
        assert expected[trained].abs().sum() > 0, f"{name}: no gradient reaches {trained}, the test would be empty"
        if name.startswith("colbert"):
            continue  # the student's passage features do not enter the teacher's loss
        # The leaf passage features are not replicated parameters: each rank's shard receives the gradient of
        # every rank's loss, i.e. world_size x the gradient of the mean loss (DDP averages parameters only).
        full_grad = expected["passage_features_grad"]
        for r, result in enumerate(ranks):
            per_rank = num_queries // 2
            rows = list(range(r * per_rank, (r + 1) * per_rank))
            rows += [num_queries + r * per_rank * num_negatives + k for k in range(per_rank * num_negatives)]
            assert len(rows) == per_rank_passages
            torch.testing.assert_close(
                result[name]["passage_features_grad"], 2 * full_grad[rows], atol=1e-6, rtol=0, msg=name
            )
