"""Pairwise knowledge distillation: KL from the tempered teacher to the student over each query's own passages only.

For query ``i``, ``C_i`` = its positive and its own ``n_neg`` negatives (columns ``labels[i]`` and
``B + labels[i] * n_neg + k``, see :mod:`tct_hf.losses.columns`); no other query's passage takes part:

    p_i = softmax_{j in C_i}(teacher[i, j] / temperature)
    q_i = softmax_{j in C_i}(student[i, j] / student_temperature)
    loss = mean_i KL(p_i || q_i)

This is the paper's "pairwise KD" baseline (with one negative: a softmax over the positive/negative pair).
Masked entries of ``C_i`` (e.g. a negative identical to the positive) are dropped from both softmaxes.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from .citations import TCT_COLBERT_CITATION
from .columns import check_labels, check_mask, check_score_matrix, own_columns
from .global_batch import build_global_scores
from .in_batch_kd import _check_temperature, _logits, kl_divergence_per_row, resolve_teacher_scores

__all__ = ["PairwiseKDLoss", "pairwise_kd_loss"]


def pairwise_kd_loss(
    student_scores: Tensor,
    teacher_scores: Tensor,
    temperature: float = 0.25,
    student_temperature: float = 1.0,
    labels: Tensor | None = None,
    num_queries: int | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """Mean over rows of the KL over each row's own positive and negatives (formula in the module docstring).

    Args:
        student_scores: ``[B, N]`` student scores; only each row's own columns are read.
        teacher_scores: ``[B, N]`` teacher scores of the same pairs.
        temperature: teacher temperature (0.25).
        student_temperature: student temperature (1.0).
        labels: ``LongTensor[B]`` each row's global query index = positive column; ``arange(B)`` by default.
        num_queries: the ``B`` of the whole matrix (differs from the row count when the rows are one process's
            queries against gathered passages); the row count by default.
        mask: ``BoolTensor[B, N]``, True = exclude.

    Example::

        >>> student, teacher = torch.randn(2, 4), torch.randn(2, 4)
        >>> loss = pairwise_kd_loss(student, teacher)  # row 0 uses columns 0 and 2, row 1 columns 1 and 3
    """
    check_score_matrix(student_scores, "student_scores")
    check_score_matrix(teacher_scores, "teacher_scores")
    if student_scores.shape != teacher_scores.shape:
        raise ValueError(
            f"tct_hf/losses/pairwise_kd.py: student_scores {tuple(student_scores.shape)} and teacher_scores "
            f"{tuple(teacher_scores.shape)} must score the same query x passage pairs."
        )
    _check_temperature(temperature, "temperature")
    _check_temperature(student_temperature, "student_temperature")
    labels = check_labels(labels, student_scores)
    check_mask(mask, student_scores, labels, keep_labels=False)
    num_queries = student_scores.shape[0] if num_queries is None else num_queries
    columns = own_columns(labels, num_queries, student_scores.shape[1])
    own_mask = None if mask is None else mask.gather(1, columns)
    student = student_scores.gather(1, columns)
    check_mask(own_mask, student, labels.new_zeros(labels.shape), keep_labels=False)
    student_logits = _logits(student, student_temperature, own_mask)
    teacher_logits = _logits(teacher_scores.gather(1, columns), temperature, own_mask)
    return kl_divergence_per_row(student_logits, teacher_logits, own_mask).mean()


class PairwiseKDLoss(nn.Module):
    """Pairwise KD on student embeddings: each query against its own positive and negatives only.

    Args:
        temperature: teacher temperature (0.25).
        student_temperature: student temperature (1.0).
        mask_duplicates: drop a negative identical to the query's positive when ``passage_ids`` are given.
        gather_across_devices: gather every process's passages; None = on when world size > 1. The loss only
            reads each query's own columns, so gathering does not change it; turn it off to save the
            communication, and then give teacher scores against the local passages.

    References:
        Lin, Yang & Lin, RepL4NLP 2021 (the "pairwise KD" baseline). https://aclanthology.org/2021.repl4nlp-1.17/

    Inputs:
        query_embeddings ``[B_local, H]``; passage_embeddings ``[B_local * (1 + n), H]``; teacher_scores
        ``[B_local, N]`` (or a callable returning them) in the same column order as the student's matrix;
        optional passage_ids ``[B_local * (1 + n)]``.

    Averaging: the mean over this process's queries; with DDP's gradient averaging ``R`` processes x ``B/R``
    equal 1 process x ``B`` (no world-size scaling). The teacher scores are detached.

    Example::

        >>> loss = PairwiseKDLoss()(torch.randn(2, 8), torch.randn(4, 8), torch.randn(2, 4))
    """

    def __init__(
        self,
        temperature: float = 0.25,
        student_temperature: float = 1.0,
        mask_duplicates: bool = True,
        gather_across_devices: bool | None = None,
    ) -> None:
        super().__init__()
        _check_temperature(temperature, "temperature")
        _check_temperature(student_temperature, "student_temperature")
        self.temperature = temperature
        self.student_temperature = student_temperature
        self.mask_duplicates = mask_duplicates
        self.gather_across_devices = gather_across_devices

    def forward(
        self,
        query_embeddings: Tensor,
        passage_embeddings: Tensor,
        teacher_scores: Tensor | Callable[[], Tensor],
        passage_ids: Tensor | None = None,
    ) -> Tensor:
        batch = build_global_scores(
            query_embeddings,
            passage_embeddings,
            passage_ids=passage_ids,
            gather_across_devices=self.gather_across_devices,
            mask_duplicates=self.mask_duplicates,
        )
        teacher = resolve_teacher_scores(teacher_scores, batch.scores.shape, self.gather_across_devices)
        return pairwise_kd_loss(
            batch.scores,
            teacher,
            temperature=self.temperature,
            student_temperature=self.student_temperature,
            labels=batch.labels,
            num_queries=batch.num_queries,
            mask=batch.mask,
        )

    def get_config_dict(self) -> dict[str, float | bool | None]:
        return {
            "temperature": self.temperature,
            "student_temperature": self.student_temperature,
            "mask_duplicates": self.mask_duplicates,
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        return TCT_COLBERT_CITATION
