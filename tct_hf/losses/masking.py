"""Duplicate-passage mask: a passage is never a negative of the query it answers, and counts once per row.

In a batch drawn from MS MARCO the same passage can appear twice: two queries share a positive, a hard
negative of one query is another query's positive, or a negative is repeated. Scoring such a copy as a
negative pushes the student away from a correct answer, and a repeated passage weighs twice in the softmax.

The rule, for row ``i`` (query ``i``, whose positive is column ``i``) and column ``j``; ``mask[i, j]`` is
True (= exclude) exactly when ``j != i`` and at least one of:

1. **same as my positive**: ``passage_ids[j] == passage_ids[i]`` (another copy of query ``i``'s positive,
   wherever it sits: another query's positive, anyone's negative);
2. **another of my positives**: ``passage_ids[j]`` is in ``extra_positive_ids[i]`` (e.g. the other relevant
   passages of query ``i`` from the qrels);
3. **later duplicate**: some column ``j' < j`` has ``passage_ids[j'] == passage_ids[j]``, so each distinct
   passage is counted once per row, at its first column.

Column ``i`` itself is never masked in row ``i``, so every row keeps its positive and the losses stay finite.
A consequence of rules 1 and 3: if query ``k``'s negative is query ``i``'s positive, row ``i`` excludes that
negative column (rule 1) and row ``k`` excludes it too (rule 3) but still sees the passage once, as a
negative, at column ``i``.

Example (2 queries, one negative each; query 1's negative is query 0's positive)::

    >>> duplicate_passage_mask(torch.tensor([10, 11, 12, 10]), num_queries=2)
    tensor([[False, False, False,  True],
            [False, False, False,  True]])

Pairwise KD sees only each query's own candidates ``C_i`` (its positive, then its own negatives), so
:func:`own_candidate_mask` applies the same three rules inside ``C_i``: a negative is dropped when it is a copy
of the query's positive, one of its extra positives, or a repeat of an earlier own candidate. Other queries'
passages play no part: a negative that happens to be another query's positive stays, since it appears once in
``C_i`` and is not relevant to query ``i``. Same batch as above (query 1 keeps its negative)::

    >>> own_candidate_mask(torch.tensor([10, 11, 12, 10]), num_queries=2)
    tensor([[False, False],
            [False, False]])
    >>> own_candidate_mask(torch.tensor([10, 11, 10, 12, 11, 11]), num_queries=2)  # 2 negatives each
    tensor([[False,  True, False],
            [False,  True,  True]])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .columns import num_negatives_per_query, own_columns, positive_columns

__all__ = ["duplicate_passage_mask", "own_candidate_mask"]


def duplicate_passage_mask(
    passage_ids: Tensor,
    num_queries: int,
    extra_positive_ids: Sequence[Sequence[int] | Tensor] | None = None,
    query_indices: Tensor | None = None,
) -> Tensor:
    """``BoolTensor[B, N]``: True where column ``j`` must not count for query ``i`` (rule in the module docstring).

    Args:
        passage_ids: ``LongTensor[N]`` identifiers (e.g. content hashes) of the batch's passages in column order
            (positives first, then the negatives grouped per query).
        num_queries: ``B``, the number of queries; column ``i < B`` is query ``i``'s positive.
        extra_positive_ids: optional, one sequence of passage ids per returned row: other passages known to be
            relevant to that query, never counted as its negatives.
        query_indices: optional ``LongTensor[b]``: return only these query rows (e.g. the local queries of this
            process, ``rank * B_local + arange(B_local)``, against the gathered global passages).

    Returns:
        ``BoolTensor[b, N]`` (``b = B`` by default) on ``passage_ids``' device, True = exclude; the positive
        ``[row, query_indices[row]]`` is always False.
    """
    if not isinstance(passage_ids, Tensor) or passage_ids.dim() != 1 or passage_ids.is_floating_point():
        raise ValueError(
            "duplicate_passage_mask: passage_ids must be an integer tensor [N] (one id per passage column), got "
            f"{type(passage_ids).__name__} {tuple(getattr(passage_ids, 'shape', ()))}."
        )
    num_passages = passage_ids.shape[0]
    num_negatives_per_query(num_queries, num_passages)  # validates N = B * (1 + n_neg)
    device = passage_ids.device
    columns = torch.arange(num_passages, device=device)

    same_as_positive = passage_ids[None, :] == passage_ids[:num_queries, None]

    _, group = torch.unique(passage_ids, return_inverse=True)
    first_column = torch.full((num_passages,), num_passages, device=device, dtype=torch.int64)
    first_column = first_column.scatter_reduce(0, group, columns, reduce="amin")
    later_duplicate = first_column[group] != columns

    rows = positive_columns(num_queries, device=device) if query_indices is None else query_indices.to(device)
    if rows.dim() != 1 or (rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= num_queries)):
        raise ValueError(
            f"duplicate_passage_mask: query_indices must be a 1-D tensor of query indices in [0, {num_queries}), "
            f"got {rows.tolist()}."
        )
    mask = (same_as_positive | later_duplicate[None, :])[rows]
    if extra_positive_ids is not None:
        if len(extra_positive_ids) != rows.numel():
            raise ValueError(
                f"duplicate_passage_mask: extra_positive_ids needs one sequence per returned query row "
                f"({rows.numel()}), got {len(extra_positive_ids)}."
            )
        for row, extra in enumerate(extra_positive_ids):
            extra = torch.as_tensor(extra, dtype=passage_ids.dtype, device=device).reshape(-1)
            if extra.numel():
                mask[row] |= torch.isin(passage_ids, extra)
    mask[torch.arange(rows.numel(), device=device), rows] = False
    return mask


def own_candidate_mask(
    passage_ids: Tensor,
    num_queries: int,
    extra_positive_ids: Sequence[Sequence[int] | Tensor] | None = None,
    query_indices: Tensor | None = None,
) -> Tensor:
    """``BoolTensor[b, 1 + n_neg]`` over each query's own candidates (positive first): True = drop from pairwise KD.

    Column ``k > 0`` of row ``i`` (query ``i``'s negative ``k - 1``) is True when its id equals the positive's,
    is in ``extra_positive_ids[i]``, or equals an earlier own candidate's (rule in the module docstring). Column 0
    is never masked.

    Args:
        passage_ids: ``LongTensor[N]`` ids of the batch's passages in column order (``N = B * (1 + n_neg)``).
        num_queries: ``B``.
        extra_positive_ids: optional, one sequence of other relevant passage ids per returned query row.
        query_indices: optional ``LongTensor[b]``: return only these query rows (e.g. this process's queries).
    """
    if not isinstance(passage_ids, Tensor) or passage_ids.dim() != 1 or passage_ids.is_floating_point():
        raise ValueError(
            "own_candidate_mask: passage_ids must be an integer tensor [N] (one id per passage column), got "
            f"{type(passage_ids).__name__} {tuple(getattr(passage_ids, 'shape', ()))}."
        )
    rows = positive_columns(num_queries, device=passage_ids.device) if query_indices is None else query_indices
    rows = rows.to(passage_ids.device)
    if rows.dim() != 1 or (rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= num_queries)):
        raise ValueError(
            f"own_candidate_mask: query_indices must be a 1-D tensor of query indices in [0, {num_queries}), got "
            f"{rows.tolist()}."
        )
    ids = passage_ids[own_columns(rows, num_queries, passage_ids.shape[0])]  # [b, 1 + n_neg]
    width = ids.shape[1]
    earlier = torch.ones(width, width, dtype=torch.bool, device=ids.device).tril(diagonal=-1)  # [k, k'] k' < k
    mask = ((ids[:, :, None] == ids[:, None, :]) & earlier).any(dim=2)  # equal to the positive or an earlier one
    if extra_positive_ids is not None:
        if len(extra_positive_ids) != rows.numel():
            raise ValueError(
                f"own_candidate_mask: extra_positive_ids needs one sequence per returned query row "
                f"({rows.numel()}), got {len(extra_positive_ids)}."
            )
        for row, extra in enumerate(extra_positive_ids):
            extra = torch.as_tensor(extra, dtype=ids.dtype, device=ids.device).reshape(-1)
            if extra.numel():
                mask[row] |= torch.isin(ids[row], extra)
    mask[:, 0] = False
    return mask
