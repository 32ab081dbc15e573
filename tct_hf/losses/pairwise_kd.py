"""Pairwise knowledge distillation: KL from the tempered teacher to the student over each query's own passages only.

For query ``i``, ``C_i`` = its positive and its own ``n_neg`` negatives (columns ``labels[i]`` and
``B + labels[i] * n_neg + k``, see :mod:`tct_hf.losses.columns`); no other query's passage takes part:

    p_i = softmax_{j in C_i}(teacher[i, j] / temperature)
    q_i = softmax_{j in C_i}(student[i, j] / student_temperature)
    loss = mean_i KL(p_i || q_i) + ce_weight * mean_i -log q_i[positive]

This is the paper's "pairwise KD" baseline (with one negative: a softmax over the positive/negative pair), i.e.
:func:`in_batch_kd_loss` on the ``[B, 1 + n_neg]`` matrices of own pairs with the positive in column 0.
Duplicates: a negative identical to the query's positive (or to one of its extra positives, or to an earlier own
negative) is dropped from both softmaxes (:func:`tct_hf.losses.masking.own_candidate_mask`); another query's
passages never matter, so neither does a negative that equals another query's positive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .citations import TCT_COLBERT_CITATION
from .columns import check_labels, check_mask, check_score_matrix, num_negatives_per_query, own_columns
from .global_batch import global_layout, resolve_gather_across_devices
from .in_batch_kd import in_batch_kd_loss
from .logits import check_temperature
from .masking import own_candidate_mask

__all__ = ["PairwiseKDLoss", "pairwise_kd_loss"]


def pairwise_kd_loss(
    student_scores: Tensor,
    teacher_scores: Tensor,
    temperature: float = 0.25,
    student_temperature: float = 1.0,
    labels: Tensor | None = None,
    num_queries: int | None = None,
    mask: Tensor | None = None,
    ce_weight: float = 0.0,
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
        mask: ``BoolTensor[B, N]``, True = exclude (only the own columns are read).
        ce_weight: weight of an added cross-entropy of the positive over the row's own candidates (default 0).

    Example (row 0 scores columns 0 and 2, row 1 columns 1 and 3; student and teacher agree on row 1)::

        >>> student = torch.tensor([[1.0, 9.0, 0.0, 9.0], [9.0, 0.0, 9.0, 0.0]])
        >>> teacher = torch.tensor([[0.25, -9.0, 0.0, -9.0], [-9.0, 0.0, -9.0, 0.0]])
        >>> pairwise_kd_loss(student, teacher)  # row 0: p = q = sigmoid(1), row 1: p = q = 1/2
        tensor(0.)
        >>> pairwise_kd_loss(student, teacher, temperature=0.125)  # row 0: p = sigmoid(2), q = sigmoid(1); / 2 rows
        tensor(0.0336)
    """
    check_score_matrix("pairwise_kd_loss", student_scores, "student_scores")
    check_score_matrix("pairwise_kd_loss", teacher_scores, "teacher_scores")
    if student_scores.shape != teacher_scores.shape:
        raise ValueError(
            f"pairwise_kd_loss: student_scores {tuple(student_scores.shape)} and teacher_scores "
            f"{tuple(teacher_scores.shape)} must score the same query x passage pairs."
        )
    check_temperature("pairwise_kd_loss", "temperature", temperature)
    check_temperature("pairwise_kd_loss", "student_temperature", student_temperature)
    labels = check_labels("pairwise_kd_loss", labels, student_scores)
    check_mask("pairwise_kd_loss", mask, student_scores, labels, keep_labels=False)
    num_queries = student_scores.shape[0] if num_queries is None else num_queries
    columns = own_columns(labels, num_queries, student_scores.shape[1])
    own_mask = None if mask is None else mask.gather(1, columns)
    return in_batch_kd_loss(
        student_scores.gather(1, columns),
        teacher_scores.gather(1, columns),
        temperature=temperature,
        student_temperature=student_temperature,
        ce_weight=ce_weight,
        labels=torch.zeros_like(labels),
        mask=own_mask,
    )


class PairwiseKDLoss(nn.Module):
    """Pairwise KD on student embeddings: each query against its own positive and negatives only.

    Args:
        temperature: teacher temperature (0.25).
        student_temperature: student temperature (1.0).
        ce_weight: weight of an extra ground-truth cross-entropy over the query's own candidates (0: pure KD).
        mask_duplicates: drop a negative identical to the query's positive (or repeating an own negative) when
            ``passage_ids`` are given (:func:`tct_hf.losses.masking.own_candidate_mask`).
        gather_across_devices: only says which passages a FULL teacher matrix holds (every process's when True;
            None = when world size > 1). The student is never gathered: each query's own passages are local.

    References:
        Lin, Yang & Lin, RepL4NLP 2021 (the "pairwise KD" baseline). https://aclanthology.org/2021.repl4nlp-1.17/

    Inputs:
        query_embeddings ``[B_local, H]``; passage_embeddings ``[B_local * (1 + n), H]``; teacher_scores (or a
        callable returning them) either of the own pairs, ``[B_local, 1 + n]`` with the positive in column 0
        (B(1 + n) teacher interactions instead of B x N), or a full matrix ``[B_local, N]`` in the student's column
        order (``N`` global when gathering); optional passage_ids ``[B_local * (1 + n)]``, optional
        extra_positive_ids (one sequence of other relevant passage ids per local query).

    Averaging: the mean over this process's queries; with DDP's gradient averaging ``R`` processes x ``B/R``
    equal 1 process x ``B`` (no world-size scaling). The teacher scores are detached.

    Example (2 queries, 2 negatives each; query 1's first negative is a copy of its positive)::

        >>> queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> passages = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
        >>> ids = torch.tensor([1, 2, 3, 4, 2, 5])  # positives 1, 2; negatives 3, 4 (query 0) and 2, 5 (query 1)
        >>> teacher = torch.tensor([[0.25, 0.0, 0.0], [0.25, 0.25, 0.25]])  # own pairs, positive first
        >>> PairwiseKDLoss()(queries, passages, teacher, ids)  # row 0: 0; row 1: KL((1/2, 1/2) || softmax(1, 0))
        tensor(0.0601)
        >>> PairwiseKDLoss(mask_duplicates=False)(queries, passages, teacher, ids)  # row 1 over 3 candidates
        tensor(0.0484)
    """

    def __init__(
        self,
        temperature: float = 0.25,
        student_temperature: float = 1.0,
        mask_duplicates: bool = True,
        gather_across_devices: bool | None = None,
        ce_weight: float = 0.0,
    ) -> None:
        super().__init__()
        check_temperature("PairwiseKDLoss", "temperature", temperature)
        check_temperature("PairwiseKDLoss", "student_temperature", student_temperature)
        self.temperature = temperature
        self.student_temperature = student_temperature
        self.ce_weight = ce_weight
        self.mask_duplicates = mask_duplicates
        self.gather_across_devices = gather_across_devices

    def forward(
        self,
        query_embeddings: Tensor,
        passage_embeddings: Tensor,
        teacher_scores: Tensor | Callable[[], Tensor],
        passage_ids: Tensor | None = None,
        extra_positive_ids: Sequence[Sequence[int] | Tensor] | None = None,
    ) -> Tensor:
        if query_embeddings.dim() != 2 or passage_embeddings.dim() != 2:
            raise ValueError(
                "PairwiseKDLoss: query_embeddings [B, H] and passage_embeddings [N, H] must be 2-D, got "
                f"{tuple(query_embeddings.shape)} and {tuple(passage_embeddings.shape)}."
            )
        num_local = query_embeddings.shape[0]
        num_negatives = num_negatives_per_query(num_local, passage_embeddings.shape[0])
        own = own_columns(
            torch.arange(num_local, device=query_embeddings.device), num_local, passage_embeddings.shape[0]
        )
        student_pairs = torch.einsum("bh,bkh->bk", query_embeddings, passage_embeddings[own])  # [B_local, 1 + n]
        teacher_pairs = self.own_teacher_pairs(teacher_scores, num_local, num_negatives)
        if extra_positive_ids is not None and (passage_ids is None or not self.mask_duplicates):
            raise ValueError("PairwiseKDLoss: extra_positive_ids needs passage_ids and mask_duplicates=True.")
        mask = None
        if self.mask_duplicates and passage_ids is not None:
            if passage_ids.shape != (passage_embeddings.shape[0],):
                raise ValueError(
                    f"PairwiseKDLoss: passage_ids must have one id per passage ({passage_embeddings.shape[0]}), got "
                    f"shape {tuple(passage_ids.shape)}."
                )
            mask = own_candidate_mask(passage_ids.to(student_pairs.device), num_local, extra_positive_ids)
        return in_batch_kd_loss(
            student_pairs,
            teacher_pairs,
            temperature=self.temperature,
            student_temperature=self.student_temperature,
            ce_weight=self.ce_weight,
            labels=torch.zeros(num_local, dtype=torch.int64, device=student_pairs.device),
            mask=mask,
        )

    def own_teacher_pairs(
        self, teacher_scores: Tensor | Callable[[], Tensor], num_local: int, num_negatives: int
    ) -> Tensor:
        """``[B_local, 1 + n]`` detached teacher scores of the own pairs, from own pairs or from a full matrix."""
        teacher = teacher_scores() if callable(teacher_scores) else teacher_scores
        if isinstance(teacher, Tensor) and teacher.shape == (num_local, 1 + num_negatives):
            return teacher.detach()
        gather = resolve_gather_across_devices(self.gather_across_devices)
        labels, num_queries, _ = global_layout(num_local, gather_across_devices=gather)
        full = (num_local, num_queries * (1 + num_negatives))
        if not isinstance(teacher, Tensor) or teacher.shape != full:
            got = tuple(getattr(teacher, "shape", ())) or type(teacher).__name__
            passages = "gathered global" if gather else "local"
            raise ValueError(
                f"PairwiseKDLoss: teacher_scores must be the own pairs [B_local, 1 + n] = "
                f"{(num_local, 1 + num_negatives)} (positive first) or the full matrix {full} (local queries x "
                f"{passages} passages, student column order), got {got}."
            )
        labels = labels.to(teacher.device)
        return teacher.detach().gather(1, own_columns(labels, num_queries, full[1]))

    def get_config_dict(self) -> dict[str, float | bool | None]:
        return {
            "temperature": self.temperature,
            "student_temperature": self.student_temperature,
            "ce_weight": self.ce_weight,
            "mask_duplicates": self.mask_duplicates,
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        return TCT_COLBERT_CITATION
