"""The column convention of every score matrix the losses take, and the checks that enforce it.

A score matrix ``scores[B, N]`` holds ``B`` query rows against the ``N`` passages of the batch:

* the ``B`` positives first: column ``i`` is query ``i``'s positive;
* then the negatives **grouped per query**: negative ``k`` of query ``i`` is column ``B + i * n_neg + k``,
  so ``N = B * (1 + n_neg)``.

Grouping negatives per query makes gathering across devices a plain concatenation: rank ``r`` holds
queries ``r * B_local ... (r + 1) * B_local - 1`` and their negatives are one contiguous block, so the
global matrix is ``[all ranks' positives, all ranks' negatives]`` (see :mod:`tct_hf.losses.global_batch`).
With one negative per query (the published recipe) both groupings coincide.

A matrix may also hold only some of the queries (the local queries of one process against the global
passages). Its rows then say where their positive is through ``labels[b]`` (the global query index, which
is also the positive's column) and ``num_queries`` (the global ``B``, which locates the negatives).

Example::

    >>> positive_columns(2)
    tensor([0, 1])
    >>> negative_columns(2, 2)
    tensor([[2, 3],
            [4, 5]])
    >>> own_columns(torch.tensor([1]), num_queries=2, num_passages=6)
    tensor([[1, 4, 5]])
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "check_labels",
    "check_mask",
    "check_score_matrix",
    "negative_columns",
    "num_negatives_per_query",
    "own_columns",
    "positive_columns",
]


def positive_columns(num_queries: int, device: torch.device | str | None = None) -> Tensor:
    """Column of each query's positive: ``LongTensor[B] = [0, 1, ..., B - 1]``."""
    if num_queries < 1:
        raise ValueError(f"positive_columns: num_queries must be >= 1, got {num_queries}.")
    return torch.arange(num_queries, device=device)


def negative_columns(num_queries: int, num_negatives: int, device: torch.device | str | None = None) -> Tensor:
    """Columns of each query's own negatives: ``LongTensor[B, n_neg]``, row ``i`` = ``B + i * n_neg + [0..n_neg)``."""
    if num_queries < 1 or num_negatives < 0:
        raise ValueError(
            f"negative_columns: need num_queries >= 1 and num_negatives >= 0, got {num_queries} and {num_negatives}."
        )
    first = num_queries + torch.arange(num_queries, device=device) * num_negatives
    return first[:, None] + torch.arange(num_negatives, device=device)[None, :]


def num_negatives_per_query(num_queries: int, num_passages: int) -> int:
    """``n_neg`` such that ``num_passages == num_queries * (1 + n_neg)``; a clear error when it does not divide."""
    if num_queries < 1 or num_passages < num_queries or num_passages % num_queries != 0:
        raise ValueError(
            f"num_negatives_per_query: {num_passages} passage columns do not fit {num_queries} queries with the "
            f"convention N = B * (1 + n_neg) (positives first, then n_neg negatives per query). Pass every query's "
            f"positive and the same number of negatives for every query."
        )
    return num_passages // num_queries - 1


def own_columns(labels: Tensor, num_queries: int, num_passages: int) -> Tensor:
    """Each row's own passages, positive first: ``LongTensor[b, 1 + n_neg]``.

    ``labels[b]`` is row ``b``'s global query index (= its positive's column), ``num_queries`` the global ``B``.
    """
    num_negatives = num_negatives_per_query(num_queries, num_passages)
    negatives = num_queries + labels[:, None] * num_negatives + torch.arange(num_negatives, device=labels.device)
    return torch.cat([labels[:, None], negatives], dim=1)


def check_score_matrix(owner: str, scores: Tensor, name: str) -> None:
    """A 2-D floating-point matrix with at least one row and one column; ``owner`` (the loss) names the error."""
    if not isinstance(scores, Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor [B, N], got {type(scores).__name__}.")
    if scores.dim() != 2 or scores.shape[0] < 1 or scores.shape[1] < 1:
        raise ValueError(f"{owner}: {name} must be a score matrix [B, N], got shape {tuple(scores.shape)}.")
    if not scores.is_floating_point():
        raise TypeError(f"{owner}: {name} must be floating point, got {scores.dtype}; cast it with .float().")


def check_labels(owner: str, labels: Tensor | None, scores: Tensor) -> Tensor:
    """``labels`` (each row's positive column) checked against ``scores[B, N]``; ``arange(B)`` when None."""
    num_rows, num_columns = scores.shape
    if labels is None:
        return positive_columns(num_rows, device=scores.device)
    if labels.shape != (num_rows,) or labels.dtype not in (torch.int32, torch.int64):
        raise ValueError(
            f"{owner}: labels must be an integer tensor [B={num_rows}] (each row's positive column), got "
            f"shape {tuple(labels.shape)} and dtype {labels.dtype}."
        )
    if num_rows and (int(labels.min()) < 0 or int(labels.max()) >= num_columns):
        raise ValueError(f"{owner}: labels must lie in [0, {num_columns}), got {labels.tolist()}.")
    return labels.to(device=scores.device, dtype=torch.int64)


def check_mask(owner: str, mask: Tensor | None, scores: Tensor, labels: Tensor, keep_labels: bool) -> None:
    """``mask[B, N]`` bool (True = exclude) must leave every row a column, and the positive when ``keep_labels``."""
    if mask is None:
        return
    if mask.shape != scores.shape or mask.dtype != torch.bool:
        raise ValueError(
            f"{owner}: mask must be a bool tensor of the scores' shape {tuple(scores.shape)} (True = exclude), "
            f"got shape {tuple(mask.shape)} and dtype {mask.dtype}."
        )
    if bool(mask.all(dim=1).any()):
        rows = mask.all(dim=1).nonzero().flatten().tolist()
        raise ValueError(f"{owner}: mask excludes every column of rows {rows}; keep at least the positive.")
    if keep_labels and bool(mask.gather(1, labels[:, None]).any()):
        rows = mask.gather(1, labels[:, None]).flatten().nonzero().flatten().tolist()
        raise ValueError(
            f"{owner}: mask excludes the positive column of rows {rows}; a loss with a ground-truth term needs "
            f"it (duplicate_passage_mask never masks the positive)."
        )
