"""In-batch negatives without a teacher: softmax cross-entropy over every passage of the batch (the paper's baseline).

For query ``i`` with its positive at column ``labels[i]`` (``i`` by default):

    loss = mean_i -log softmax_j(student[i, j] / temperature)[labels[i]],   j over all N = B * (1 + n_neg) columns

Masked entries (True) are removed from the softmax. ``temperature = 1`` (raw dot products) is the TCT-ColBERT
baseline; sentence-transformers' MultipleNegativesRankingLoss is the same loss with cosine scores and 0.05.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .citations import TCT_COLBERT_CITATION
from .columns import check_labels, check_mask, check_score_matrix
from .global_batch import build_global_scores
from .logits import check_temperature, masked_cross_entropy, masked_logits

__all__ = ["InBatchNegativesLoss", "in_batch_negatives_loss"]


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

        >>> scores = torch.tensor([[2.0, 0.0, 1.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
        >>> in_batch_negatives_loss(scores)  # row 0: log(e^2 + 1 + e + 1/e) - 2 = 0.4402; row 1: log 4 = 1.3863
        tensor(0.9132)
    """
    check_score_matrix("in_batch_negatives_loss", student_scores, "student_scores")
    check_temperature("in_batch_negatives_loss", "temperature", temperature)
    labels = check_labels("in_batch_negatives_loss", labels, student_scores)
    check_mask("in_batch_negatives_loss", mask, student_scores, labels, keep_labels=True)
    return masked_cross_entropy(masked_logits(student_scores, temperature, mask), labels).mean()


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

        >>> queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> passages = torch.tensor([[2.0, 0.0], [0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])  # scores as in the function
        >>> InBatchNegativesLoss()(queries, passages)
        tensor(0.9132)
    """

    def __init__(
        self, temperature: float = 1.0, mask_duplicates: bool = True, gather_across_devices: bool | None = None
    ) -> None:
        super().__init__()
        check_temperature("InBatchNegativesLoss", "temperature", temperature)
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
