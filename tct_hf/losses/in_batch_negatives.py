"""In-batch negatives without a teacher: softmax cross-entropy over every passage of the batch (the paper's baseline).

For query ``i`` with its positive at column ``labels[i]`` (``i`` by default):

    loss = mean_i -log softmax_j(student[i, j] / temperature)[labels[i]],   j over all N = B * (1 + n_neg) columns

Masked entries (True) are removed from the softmax. ``temperature = 1`` (raw dot products) is the TCT-ColBERT
baseline; sentence-transformers' MultipleNegativesRankingLoss is the same loss with cosine scores and 0.05.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .citations import TCT_COLBERT_CITATION
from .columns import check_labels, check_mask, check_score_matrix
from .global_batch import build_global_scores

__all__ = ["InBatchNegativesLoss", "in_batch_negatives_loss", "masked_cross_entropy"]


def masked_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """``-log softmax(logits[i])[labels[i]]`` per row: ``Tensor[B]``. Masked entries must already be -inf."""
    return -torch.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)


def in_batch_negatives_loss(
    student_scores: Tensor,
    labels: Tensor | None = None,
    mask: Tensor | None = None,
    temperature: float = 1.0,
) -> Tensor:
    """Mean over the ``B`` rows of the cross-entropy of ``softmax(student[i] / temperature)`` against ``labels[i]``.

    Args:
        student_scores: ``[B, N]`` scores, columns as in :mod:`tct_hf.losses.columns`.
        labels: ``LongTensor[B]`` column of each row's positive; ``arange(B)`` by default (the diagonal).
        mask: ``BoolTensor[B, N]``, True = exclude; must keep each row's positive.
        temperature: divides the scores (1.0: raw dot products, the paper's baseline).

    Example::

        >>> loss = in_batch_negatives_loss(torch.randn(2, 4))
    """
    check_score_matrix(student_scores, "student_scores")
    if not temperature > 0:
        raise ValueError(f"tct_hf/losses/in_batch_negatives.py: temperature must be > 0, got {temperature}.")
    labels = check_labels(labels, student_scores)
    check_mask(mask, student_scores, labels, keep_labels=True)
    logits = student_scores.to(torch.promote_types(student_scores.dtype, torch.float32)) / temperature
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf"))
    return masked_cross_entropy(logits, labels).mean()


class InBatchNegativesLoss(nn.Module):
    """In-batch negatives cross-entropy on student embeddings (no teacher), with cross-device in-batch passages.

    Args:
        temperature: divides the dot-product scores (1.0 = none).
        mask_duplicates: exclude duplicate passages when ``passage_ids`` are given (see duplicate_passage_mask).
        gather_across_devices: gather every process's passages (with gradient); None = on when world size > 1.

    References:
        Lin, Yang & Lin, RepL4NLP 2021 (the "in-batch negatives, no KD" baseline).
        https://aclanthology.org/2021.repl4nlp-1.17/

    Inputs:
        query_embeddings ``[B_local, H]``; passage_embeddings ``[B_local * (1 + n), H]`` (local positives, then each
        local query's negatives); optional passage_ids ``[B_local * (1 + n)]``.

    Averaging: the mean over this process's queries; with DDP's gradient averaging ``R`` processes x ``B/R``
    equal 1 process x ``B`` (no world-size scaling).

    Example::

        >>> loss = InBatchNegativesLoss()(torch.randn(2, 8), torch.randn(4, 8))
    """

    def __init__(
        self, temperature: float = 1.0, mask_duplicates: bool = True, gather_across_devices: bool | None = None
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.mask_duplicates = mask_duplicates
        self.gather_across_devices = gather_across_devices

    def forward(
        self,
        query_embeddings: Tensor,
        passage_embeddings: Tensor,
        passage_ids: Tensor | None = None,
        extra_positive_ids: Sequence[Sequence[int] | Tensor] | None = None,
    ) -> Tensor:
        batch = build_global_scores(
            query_embeddings,
            passage_embeddings,
            passage_ids=passage_ids,
            gather_across_devices=self.gather_across_devices,
            mask_duplicates=self.mask_duplicates,
            extra_positive_ids=extra_positive_ids,
        )
        return in_batch_negatives_loss(
            batch.scores, labels=batch.labels, mask=batch.mask, temperature=self.temperature
        )

    def get_config_dict(self) -> dict[str, float | bool | None]:
        return {
            "temperature": self.temperature,
            "mask_duplicates": self.mask_duplicates,
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        return TCT_COLBERT_CITATION
