"""The streamed teacher under gathering (2 gloo processes): the unstreamed gathered scores and a float64 loop over
every pair, without any process encoding more than `chunk_size` rows at once or holding another's passages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tct_hf import ColBERTModel
from tct_hf.training.teacher import teacher_token_embeddings

SCRIPT = Path(__file__).with_name("distributed_teacher_script.py")


def naive_global_scores(teacher, batches: list[dict], rank: int) -> torch.Tensor:
    """Rank `rank`'s queries against every rank's passages in the global column order ([all positives, all
    negatives]), one pair at a time in float64 from each rank's own token embeddings."""
    tokens = [teacher_token_embeddings(teacher, batch, "float32") for batch in batches]
    b = tokens[0].queries.shape[0]
    columns = [(r, n) for r in range(len(tokens)) for n in range(b)]
    columns += [(r, n) for r in range(len(tokens)) for n in range(b, tokens[r].passages.shape[0])]
    rows = []
    for i in range(b):
        query, query_mask = tokens[rank].queries[i].double(), tokens[rank].query_mask[i]
        row = []
        for r, n in columns:
            similarity = query @ tokens[r].passages[n].double().T  # [Lq, Ld]
            best = similarity[:, tokens[r].passage_mask[n]].max(dim=1).values
            row.append(float(best[query_mask].sum()))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.distributed
def test_streamed_gathered_teacher_scores_equal_unstreamed_and_naive(tiny_dirs, tmp_path):
    _, teacher_dir = tiny_dirs
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("WORLD_SIZE", None)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    completed = subprocess.run(
        [*torchrun, str(SCRIPT), str(teacher_dir), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [result["world_size"] for result in ranks] == [2, 2]
    batches = [result["batch"] for result in ranks]
    # Different lengths on the two ranks: the padded gathers of queries and passages are exercised.
    for key in ("teacher_query_input_ids", "teacher_passage_input_ids"):
        assert batches[0][key].shape[1] != batches[1][key].shape[1], key
    teacher = ColBERTModel.from_pretrained(teacher_dir).eval()
    b, n = batches[0]["teacher_query_input_ids"].shape[0], batches[0]["teacher_passage_input_ids"].shape[0]
    for rank, result in enumerate(ranks):
        naive = naive_global_scores(teacher, batches, rank).float()
        assert result["unstreamed"].shape == (b, 2 * n)
        torch.testing.assert_close(result["unstreamed"], naive, atol=1e-5, rtol=1e-6)
        for chunk_size in (1, 3):
            streamed, calls = result[chunk_size]["scores"], result[chunk_size]["calls"]
            assert not streamed.is_inference()  # usable as a loss target
            torch.testing.assert_close(streamed, result["unstreamed"], atol=1e-5, rtol=1e-6)
            torch.testing.assert_close(streamed, naive, atol=1e-5, rtol=1e-6)
            # Each process encodes its own rows only, at most chunk_size per call.
            assert max(calls["encode_query_tokens"]) <= chunk_size and sum(calls["encode_query_tokens"]) == b
            assert max(calls["encode_passage_tokens"]) <= chunk_size and sum(calls["encode_passage_tokens"]) == n
            # MaxSim: all gathered queries (padded to the longer rank's) against at most chunk_size own passages,
            # in blocks of chunk_size x chunk_size pairs.
            assert {q for q, *_ in calls["maxsim"]} == {2 * b}
            assert max(d for _, d, *_ in calls["maxsim"]) <= chunk_size and sum(d for _, d, *_ in calls["maxsim"]) == n
            passage_length = batches[rank]["teacher_passage_input_ids"].shape[1]
            budgets = {budget - chunk_size**2 * lq * passage_length for _, _, budget, lq in calls["maxsim"]}
            assert budgets == {0}
        st = result["st"]
        assert st[3].shape == (b, 2 * n) and not st[3].is_inference()
        torch.testing.assert_close(st[3], st[None], atol=1e-5, rtol=1e-6)
        # Unequal local batches (5 and 4 queries) are refused on every rank, as for any gathered batch.
        assert result["unequal"] is not None and "same shape on every rank" in result["unequal"]
