"""In-batch knowledge distillation (TCT-ColBERT): KL from the tempered teacher to the student over the whole batch.

For query ``i`` and every passage ``j`` of the batch (all positives and all negatives, ``N = B * (1 + n_neg)``):

    p_i = softmax_j(teacher[i, j] / temperature)          (teacher, tempered: 0.25 in the paper)
    q_i = softmax_j(student[i, j] / student_temperature)  (student, untempered in the paper: 1.0)
    loss = mean_i KL(p_i || q_i) + ce_weight * mean_i -log q_i[labels[i]]

Masked entries (``mask[i, j]`` True) are removed from both softmaxes: the teacher puts probability 0 there and
they contribute nothing (no NaN, no gradient). The KL is not multiplied by ``temperature ** 2`` (the published
recipe does not). The ground-truth cross-entropy term (default weight 0) is an experiment, not the paper's loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .citations import TCT_COLBERT_CITATION
from .columns import check_labels, check_mask, check_score_matrix
from .global_batch import build_global_scores, resolve_gather_across_devices
from .logits import check_temperature, kl_divergence_per_row, masked_cross_entropy, masked_logits

__all__ = ["InBatchKDLoss", "in_batch_kd_loss", "resolve_teacher_scores"]


def in_batch_kd_loss(
    student_scores: Tensor,
    teacher_scores: Tensor,
    temperature: float = 0.25,
    student_temperature: float = 1.0,
    ce_weight: float = 0.0,
    labels: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """Mean over the ``B`` rows of ``KL(softmax(teacher/temperature) || softmax(student/student_temperature))``.

    Args:
        student_scores: ``[B, N]`` student scores (dot products), columns as in :mod:`tct_hf.losses.columns`.
        teacher_scores: ``[B, N]`` teacher (ColBERT MaxSim) scores of the same pairs.
        temperature: teacher temperature (the paper: 0.25).
        student_temperature: student temperature (the paper: 1.0, i.e. untempered).
        ce_weight: weight of an added cross-entropy on the student with the positive as target (default 0).
        labels: ``LongTensor[B]`` column of each row's positive; ``arange(B)`` by default.
        mask: ``BoolTensor[B, N]``, True = exclude the entry (e.g. :func:`duplicate_passage_mask`).

    Returns:
        A scalar: the mean over rows (+ ``ce_weight`` times the mean cross-entropy over rows).

    Example::

        >>> student = torch.tensor([[2.0, 0.0, 1.0, -1.0], [0.0, 0.0, 0.0, 0.0]])  # 2 queries, 2 negatives
        >>> teacher = student / 4  # softmax(teacher / 0.25) == softmax(student): nothing to distil
        >>> in_batch_kd_loss(student, teacher)
        tensor(0.)
        >>> in_batch_kd_loss(student, teacher, ce_weight=1.0)  # + mean CE of the positives: (0.4402 + log 4) / 2
        tensor(0.9132)
    """
    check_score_matrix("in_batch_kd_loss", student_scores, "student_scores")
    check_score_matrix("in_batch_kd_loss", teacher_scores, "teacher_scores")
    if student_scores.shape != teacher_scores.shape:
        raise ValueError(
            f"in_batch_kd_loss: student_scores {tuple(student_scores.shape)} and teacher_scores "
            f"{tuple(teacher_scores.shape)} must score the same query x passage pairs."
        )
    check_temperature("in_batch_kd_loss", "temperature", temperature)
    check_temperature("in_batch_kd_loss", "student_temperature", student_temperature)
    labels = check_labels("in_batch_kd_loss", labels, student_scores)
    check_mask("in_batch_kd_loss", mask, student_scores, labels, keep_labels=ce_weight != 0)
    student_logits = masked_logits(student_scores, student_temperature, mask)
    teacher_logits = masked_logits(teacher_scores, temperature, mask)
    loss = kl_divergence_per_row(student_logits, teacher_logits, mask).mean()
    if ce_weight != 0:
        loss = loss + ce_weight * masked_cross_entropy(student_logits, labels).mean()
    return loss


class InBatchKDLoss(nn.Module):
    """TCT-ColBERT's in-batch KD loss on student embeddings, with cross-device in-batch passages.

    Args:
        temperature: teacher temperature (0.25, the paper's).
        student_temperature: student temperature (1.0: untempered, the paper's).
        ce_weight: weight of an extra ground-truth cross-entropy term (0: the paper's pure KD).
        mask_duplicates: exclude duplicate passages when ``passage_ids`` are given (see duplicate_passage_mask).
        gather_across_devices: gather every process's passages (with gradient) so each query sees the global batch;
            None = on when the world size is > 1.

    References:
        Lin, Yang & Lin, "In-Batch Negatives for Knowledge Distillation with Tightly-Coupled Teachers for Dense
        Retrieval", RepL4NLP 2021. https://aclanthology.org/2021.repl4nlp-1.17/

    Inputs:
        +------------------------------------------+----------------------------------------------------------+
        | query_embeddings ``[B_local, H]``        | student query embeddings (this process's queries)        |
        +------------------------------------------+----------------------------------------------------------+
        | passage_embeddings ``[B_local*(1+n), H]``| local positives, then each local query's n negatives     |
        +------------------------------------------+----------------------------------------------------------+
        | teacher_scores ``[B_local, N]``          | teacher scores of the local queries against the global   |
        | or a callable returning them             | passages (``N = N_global`` when gathering) in the global |
        |                                          | column order (build them with ``gather_passages``)       |
        +------------------------------------------+----------------------------------------------------------+
        | passage_ids ``[B_local*(1+n)]`` optional | passage identifiers for the duplicate mask               |
        +------------------------------------------+----------------------------------------------------------+

    Averaging: the returned loss is the mean over this process's ``B_local`` queries of their KL over all ``N``
    columns. DDP averages gradients over the ``R`` processes, and the gathered passages carry back the gradient
    of every process's loss, so ``R`` processes x ``B_local`` equal 1 process x ``R * B_local`` exactly. There is
    no world-size scaling. The teacher scores are detached (the teacher is frozen).

    Example::

        >>> queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> passages = torch.tensor([[2.0, 0.0], [0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])  # positives, then negatives
        >>> teacher = (queries @ passages.T) / 4  # the student's scores / 4
        >>> InBatchKDLoss(temperature=0.25)(queries, passages, teacher)  # same softmax: KL 0
        tensor(0.)
        >>> InBatchKDLoss(temperature=0.5)(queries, passages, teacher)  # a flatter teacher: KL > 0
        tensor(0.0553)
    """

    def __init__(
        self,
        temperature: float = 0.25,
        student_temperature: float = 1.0,
        ce_weight: float = 0.0,
        mask_duplicates: bool = True,
        gather_across_devices: bool | None = None,
    ) -> None:
        super().__init__()
        check_temperature("InBatchKDLoss", "temperature", temperature)
        check_temperature("InBatchKDLoss", "student_temperature", student_temperature)
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
        batch = build_global_scores(
            query_embeddings,
            passage_embeddings,
            passage_ids=passage_ids,
            gather_across_devices=self.gather_across_devices,
            mask_duplicates=self.mask_duplicates,
            extra_positive_ids=extra_positive_ids,
        )
        teacher = resolve_teacher_scores(
            "InBatchKDLoss", teacher_scores, batch.scores.shape, self.gather_across_devices
        )
        return in_batch_kd_loss(
            batch.scores,
            teacher,
            temperature=self.temperature,
            student_temperature=self.student_temperature,
            ce_weight=self.ce_weight,
            labels=batch.labels,
            mask=batch.mask,
        )

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


def resolve_teacher_scores(
    owner: str,
    teacher_scores: Tensor | Callable[[], Tensor],
    shape: torch.Size,
    gather_across_devices: bool | None,
) -> Tensor:
    """The teacher score tensor (calling it if it is a callable), detached, checked against the student's shape."""
    teacher = teacher_scores() if callable(teacher_scores) else teacher_scores
    if not isinstance(teacher, Tensor) or teacher.shape != shape:
        gathering = resolve_gather_across_devices(gather_across_devices)
        raise ValueError(
            f"{owner}: teacher_scores must be [B_local, N] = {tuple(shape)} (local queries x "
            f"{'gathered global' if gathering else 'local'} passages, global column order), got "
            f"{tuple(getattr(teacher, 'shape', ())) or type(teacher).__name__}. Compute them against "
            "gather_passages(...) of the teacher's passage tokens when gathering across devices."
        )
    return teacher.detach()
