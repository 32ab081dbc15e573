"""Run by tests/losses/test_losses_distributed.py under `torchrun --nproc_per_node 2` (gloo, CPU, float64).

Each rank takes its half of one fixed batch (`make_problem`), computes every loss with cross-device gathering,
back-propagates, averages the parameter gradients over ranks as DDP does, and saves what it got to
`--out/rank{r}.pt`. The test compares these with `run_losses` on the whole batch in one process.

The batch (B = 4 queries, 2 negatives each, N = 12) has duplicates across ranks: query 0's negative is query 3's
positive, query 2's negative is query 0's positive, and queries 1 and 3 share a negative. Teacher passages have
different token lengths on the two ranks, so the padded gather is exercised.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.distributed as dist

from tct_hf.losses import (
    ColBERTFinetuneLoss,
    InBatchKDLoss,
    InBatchNegativesLoss,
    PairwiseKDLoss,
    gather_passages,
)

NUM_QUERIES, NUM_NEGATIVES, FEATURES, HIDDEN, TOKEN_DIM = 4, 2, 5, 3, 3
LOSS_NAMES = ("in_batch_kd", "in_batch_kd_ce", "pairwise_kd", "in_batch_negatives", "colbert_in_batch", "colbert_own")


def make_problem() -> dict[str, torch.Tensor]:
    """The global batch, in the global column order (positives, then negatives grouped per query)."""
    generator = torch.Generator().manual_seed(1234)
    num_passages = NUM_QUERIES * (1 + NUM_NEGATIVES)
    positive_ids = [100, 101, 102, 103]
    negative_ids = [[200, 103], [201, 202], [203, 100], [201, 204]]
    lengths = torch.tensor([2, 3, 5, 4] + [3, 2, 1, 3, 4, 5, 2, 4])  # rank 0's longest is 3, rank 1's is 5
    token_mask = torch.arange(5)[None, :] < lengths[:, None]
    return {
        "query_features": torch.randn(NUM_QUERIES, FEATURES, generator=generator, dtype=torch.float64),
        "passage_features": torch.randn(num_passages, FEATURES, generator=generator, dtype=torch.float64),
        "passage_ids": torch.tensor(positive_ids + [i for ids in negative_ids for i in ids]),
        "query_tokens": torch.randn(NUM_QUERIES, 3, TOKEN_DIM, generator=generator, dtype=torch.float64),
        "passage_tokens": torch.randn(num_passages, 5, TOKEN_DIM, generator=generator, dtype=torch.float64)
        * token_mask[..., None],
        "passage_token_mask": token_mask,
    }


def shard(problem: dict[str, torch.Tensor], rank: int, world_size: int) -> dict[str, torch.Tensor]:
    """Rank `rank`'s queries, and its passages in the local column order; tokens cut to the local longest."""
    per_rank = NUM_QUERIES // world_size
    queries = slice(rank * per_rank, (rank + 1) * per_rank)
    negatives = slice(
        NUM_QUERIES + rank * per_rank * NUM_NEGATIVES, NUM_QUERIES + (rank + 1) * per_rank * NUM_NEGATIVES
    )
    passage_rows = torch.cat(
        [torch.arange(NUM_QUERIES)[queries], torch.arange(NUM_QUERIES * (1 + NUM_NEGATIVES))[negatives]]
    )
    local = {key: problem[key][queries] for key in ("query_features", "query_tokens")}
    local.update({key: problem[key][passage_rows] for key in ("passage_features", "passage_ids")})
    longest = int(problem["passage_token_mask"][passage_rows].sum(1).max())
    local["passage_tokens"] = problem["passage_tokens"][passage_rows, :longest]
    local["passage_token_mask"] = problem["passage_token_mask"][passage_rows, :longest]
    return local


def maxsim(query_tokens: torch.Tensor, passage_tokens: torch.Tensor, passage_mask: torch.Tensor) -> torch.Tensor:
    """ColBERT late interaction: sum over query tokens of the max over unmasked passage tokens of the dot product."""
    similarity = torch.einsum("bqd,nld->bnql", query_tokens, passage_tokens)
    similarity = similarity.masked_fill(~passage_mask[None, :, None, :], float("-inf"))
    return similarity.max(dim=-1).values.sum(dim=-1)


def run_losses(local: dict[str, torch.Tensor], gather: bool) -> dict[str, dict[str, torch.Tensor]]:
    """Loss, parameter gradients and passage-feature gradient of every loss on this process's shard."""
    results = {}
    num_local_queries = local["query_features"].shape[0]
    for name in LOSS_NAMES:
        torch.manual_seed(0)
        encoder = torch.nn.Linear(FEATURES, HIDDEN, dtype=torch.float64)
        teacher_projection = torch.nn.Linear(TOKEN_DIM, TOKEN_DIM, bias=False, dtype=torch.float64)
        passage_features = local["passage_features"].clone().requires_grad_(True)
        queries, passages = encoder(local["query_features"]), encoder(passage_features)
        tokens = (
            gather_passages(local["passage_tokens"], num_local_queries, pad_dim=1)
            if gather
            else local["passage_tokens"]
        )
        token_mask = local["passage_token_mask"]
        if gather:
            token_mask = gather_passages(token_mask, num_local_queries, pad_dim=1, pad_value=False)
        teacher_scores = maxsim(local["query_tokens"], tokens, token_mask)
        ids = local["passage_ids"]
        if name == "in_batch_kd":
            loss = InBatchKDLoss(gather_across_devices=gather)(queries, passages, teacher_scores, ids)
        elif name == "in_batch_kd_ce":
            loss_fn = InBatchKDLoss(
                temperature=0.5, student_temperature=2.0, ce_weight=0.3, gather_across_devices=gather
            )
            loss = loss_fn(queries, passages, lambda scores=teacher_scores: scores, ids)  # a callable
        elif name == "pairwise_kd":
            loss = PairwiseKDLoss(gather_across_devices=gather)(queries, passages, teacher_scores, ids)
        elif name == "in_batch_negatives":
            loss = InBatchNegativesLoss(gather_across_devices=gather)(queries, passages, ids)
        else:
            projected = teacher_projection(local["passage_tokens"])
            if gather:
                projected = gather_passages(projected, num_local_queries, with_grad=True, pad_dim=1)
            scores = maxsim(teacher_projection(local["query_tokens"]), projected, token_mask)
            loss_fn = ColBERTFinetuneLoss(in_batch=name == "colbert_in_batch", gather_across_devices=gather)
            loss = loss_fn(scores, ids)
        loss.backward()
        parameters = {
            "encoder.weight": encoder.weight,
            "encoder.bias": encoder.bias,
            "teacher": teacher_projection.weight,
        }
        grads = {key: (p.grad if p.grad is not None else torch.zeros_like(p)) for key, p in parameters.items()}
        results[name] = {"loss": loss.detach(), "passage_features_grad": passage_features.grad, **grads}
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    dist.init_process_group("gloo")
    try:
        rank, world_size = dist.get_rank(), dist.get_world_size()
        results = run_losses(shard(make_problem(), rank, world_size), gather=True)
        for values in results.values():
            for key in ("loss", "encoder.weight", "encoder.bias", "teacher"):  # what DDP does to gradients
                dist.all_reduce(values[key], op=dist.ReduceOp.SUM)
                values[key] /= world_size
        results["world_size"] = world_size
        torch.save(results, args.out / f"rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
