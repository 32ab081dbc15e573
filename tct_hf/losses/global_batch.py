"""The global score matrix of one process: its local queries against the passages of every process.

Each process holds ``B_local`` queries, their ``B_local`` positives and ``B_local * n_neg`` negatives (negatives
grouped per query, see :mod:`tct_hf.losses.columns`). Gathering and reordering the passages as
``[rank 0 positives, ..., rank R-1 positives, rank 0 negatives, ..., rank R-1 negatives]`` gives exactly the column
order of one process holding the whole batch of ``B = R * B_local`` queries, so rank ``r``'s rows are rows
``r * B_local ... (r + 1) * B_local - 1`` of the single-process matrix, with
``labels = r * B_local + arange(B_local)``.

Each loss returns the mean over the local queries; DDP averages gradients over the ``R`` processes, so
``R`` processes x ``B/R`` queries give the loss and gradients of 1 process x ``B`` queries (no world-size scaling).

Example (teacher scores for the local queries against the global passages, in the same column order)::

    tokens = gather_passages(teacher_passage_tokens, num_local_queries=B_local, pad_dim=1)
    token_mask = gather_passages(teacher_passage_mask, num_local_queries=B_local, pad_dim=1, pad_value=False)
    teacher_scores = teacher.maxsim(query_tokens, query_mask, tokens, token_mask)  # [B_local, N_global]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .columns import num_negatives_per_query
from .distributed import all_gather_no_grad, all_gather_with_grad, gather_padded, rank, world_size
from .masking import duplicate_passage_mask

__all__ = [
    "GlobalScores",
    "build_global_scores",
    "gather_passages",
    "global_layout",
    "resolve_gather_across_devices",
]


def resolve_gather_across_devices(gather_across_devices: bool | None) -> bool:
    """``None`` means on exactly when more than one process is running."""
    return world_size() > 1 if gather_across_devices is None else bool(gather_across_devices)


def gather_passages(
    local_passages: Tensor,
    num_local_queries: int,
    with_grad: bool = False,
    pad_dim: int | None = None,
    pad_value: float | bool = 0,
) -> Tensor:
    """Gather ``[N_local, ...]`` passage rows of every rank and put them in the global column order.

    Args:
        local_passages: this rank's passages in column order (``B_local`` positives, then the negatives).
        num_local_queries: ``B_local`` (the same on every rank).
        with_grad: keep the gradient (student embeddings, a teacher being fine-tuned); the local shard then
            receives the gradient of every rank's loss.
        pad_dim: a variable-length dimension to pad to the longest over ranks (e.g. 1 for tokens ``[N, L, d]``).
        pad_value: what the padding is filled with (0 for embeddings, False for masks).

    Returns:
        ``[N_global, ...]``: all ranks' positives, then all ranks' negatives. The input when not distributed.
    """
    num_local_passages = local_passages.shape[0]
    num_negatives_per_query(num_local_queries, num_local_passages)  # validates the local layout
    if pad_dim is not None:
        gathered = gather_padded(local_passages, dim=pad_dim, value=pad_value, with_grad=with_grad)
    elif with_grad:
        gathered = all_gather_with_grad(local_passages)
    else:
        gathered = all_gather_no_grad(local_passages)
    num_ranks = gathered.shape[0] // num_local_passages
    if num_ranks == 1:
        return gathered
    per_rank = gathered.unflatten(0, (num_ranks, num_local_passages))
    positives = per_rank[:, :num_local_queries].flatten(0, 1)
    negatives = per_rank[:, num_local_queries:].flatten(0, 1)
    return torch.cat([positives, negatives], dim=0)


@dataclass
class GlobalScores:
    """Scores of this process's queries against the (gathered) batch, and where each row's positive is.

    Attributes:
        scores: ``[B_local, N]`` query x passage scores (``N = N_global`` when gathering, else ``N_local``).
        labels: ``LongTensor[B_local]``: column of each row's positive (= its global query index).
        num_queries: ``B`` of the whole matrix (``R * B_local`` when gathering) — locates the negatives.
        mask: ``BoolTensor[B_local, N]`` (True = exclude) from :func:`duplicate_passage_mask`, or None.
    """

    scores: Tensor
    labels: Tensor
    num_queries: int
    mask: Tensor | None = None


def build_global_scores(
    query_embeddings: Tensor,
    passage_embeddings: Tensor,
    passage_ids: Tensor | None = None,
    gather_across_devices: bool | None = None,
    mask_duplicates: bool = True,
    extra_positive_ids: Sequence[Sequence[int] | Tensor] | None = None,
) -> GlobalScores:
    """Dot-product scores of the local queries against the (gathered) passages, with labels and duplicate mask.

    Args:
        query_embeddings: ``[B_local, H]``.
        passage_embeddings: ``[B_local * (1 + n_neg), H]``: positives first, then each query's negatives in turn.
        passage_ids: optional ``LongTensor[N_local]`` passage identifiers; with ``mask_duplicates`` they give the mask.
        gather_across_devices: gather the passages of every process (with gradient); None = when world size > 1.
        mask_duplicates: build :func:`duplicate_passage_mask` from ``passage_ids`` (ignored without ids).
        extra_positive_ids: optional, per local query, other relevant passage ids (see duplicate_passage_mask).
    """
    if query_embeddings.dim() != 2 or passage_embeddings.dim() != 2:
        raise ValueError(
            "build_global_scores: query_embeddings [B, H] and passage_embeddings [N, H] must be 2-D, got "
            f"{tuple(query_embeddings.shape)} and {tuple(passage_embeddings.shape)}."
        )
    if query_embeddings.shape[1] != passage_embeddings.shape[1]:
        raise ValueError(
            f"build_global_scores: query and passage embeddings differ in size: "
            f"{query_embeddings.shape[1]} vs {passage_embeddings.shape[1]}."
        )
    num_local_queries = query_embeddings.shape[0]
    num_negatives_per_query(num_local_queries, passage_embeddings.shape[0])
    if passage_ids is not None and passage_ids.shape != (passage_embeddings.shape[0],):
        raise ValueError(
            f"build_global_scores: passage_ids must have one id per passage ({passage_embeddings.shape[0]}),"
            f" got shape {tuple(passage_ids.shape)}."
        )

    gather = resolve_gather_across_devices(gather_across_devices)
    passages = gather_passages(passage_embeddings, num_local_queries, with_grad=True) if gather else passage_embeddings
    scores = query_embeddings @ passages.T
    labels, num_queries, mask = global_layout(
        num_local_queries,
        gather_across_devices=gather,
        passage_ids=passage_ids,
        mask_duplicates=mask_duplicates,
        extra_positive_ids=extra_positive_ids,
        device=scores.device,
    )
    return GlobalScores(scores=scores, labels=labels, num_queries=num_queries, mask=mask)


def global_layout(
    num_local_queries: int,
    gather_across_devices: bool | None = None,
    passage_ids: Tensor | None = None,
    mask_duplicates: bool = True,
    extra_positive_ids: Sequence[Sequence[int] | Tensor] | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, int, Tensor | None]:
    """``(labels[B_local], num_queries, mask[B_local, N] | None)`` of this process's rows in the (global) matrix.

    For a caller that computes the scores itself (e.g. the teacher's MaxSim against :func:`gather_passages` of its
    token embeddings): ``labels = rank * B_local + arange(B_local)`` and ``num_queries = R * B_local`` when gathering,
    else ``arange(B_local)`` and ``B_local``; the mask comes from the gathered ``passage_ids``.
    """
    if resolve_gather_across_devices(gather_across_devices):
        offset, num_queries = rank() * num_local_queries, num_local_queries * world_size()
        ids = None if passage_ids is None else gather_passages(passage_ids, num_local_queries)
    else:
        offset, num_queries, ids = 0, num_local_queries, passage_ids
    labels = offset + torch.arange(num_local_queries, device=device)
    if extra_positive_ids is not None and (ids is None or not mask_duplicates):
        raise ValueError("global_layout: extra_positive_ids needs passage_ids and mask_duplicates=True.")
    mask = None
    if mask_duplicates and ids is not None:
        mask = duplicate_passage_mask(
            ids.to(device), num_queries, extra_positive_ids=extra_positive_ids, query_indices=labels
        )
    return labels, num_queries, mask
