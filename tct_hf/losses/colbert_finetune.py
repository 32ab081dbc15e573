"""The teacher's own fine-tuning loss: softmax cross-entropy over ColBERT MaxSim scores.

For query ``i`` with its positive at column ``labels[i]``:

* ``in_batch=False`` (Stanford ColBERT's original loss): the softmax runs over the query's own positive and
  its own ``n_neg`` negatives, ``C_i = {labels[i]} + {B + labels[i] * n_neg + k}``;
* ``in_batch=True``: the softmax runs over every passage of the batch (all ``N`` columns).

    loss = mean_i -log softmax_{j in C_i}(scale * scores[i, j])[labels[i]]

Masked entries (True) are dropped from the softmax. ``scale`` is 1 by default: MaxSim sums of cosine similarities
already span tens of units, as in Stanford ColBERT's training. The TCT-ColBERT paper's TensorFlow code
(castorini/tct_colbert ``train/model_fn.py``: ``batch_max_sim_softmax_loss(..., 4*batch_size)``) multiplies its
teacher's scores by 4 x the per-core batch size: 48 with its 12 queries per TPU core.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .citations import COLBERT_CITATION
from .columns import check_labels, check_mask, check_score_matrix, own_columns
from .global_batch import gather_passages, global_layout, resolve_gather_across_devices
from .in_batch_negatives import in_batch_negatives_loss
from .masking import own_candidate_mask

__all__ = ["ColBERTFinetuneLoss", "colbert_finetune_loss"]


def colbert_finetune_loss(
    teacher_scores: Tensor,
    in_batch: bool = True,
    labels: Tensor | None = None,
    num_queries: int | None = None,
    mask: Tensor | None = None,
    scale: float = 1.0,
) -> Tensor:
    """Mean over rows of the cross-entropy of each row's positive (formula in the module docstring).

    Args:
        teacher_scores: ``[B, N]`` MaxSim scores (with gradient: this trains the teacher).
        in_batch: softmax over all ``N`` passages (True) or over the row's own positive and negatives (False).
        labels: ``LongTensor[B]`` each row's global query index = positive column; ``arange(B)`` by default.
        num_queries: the ``B`` of the whole matrix when the rows are one process's queries; the row count by default.
        mask: ``BoolTensor[B, N]``, True = exclude; must keep each row's positive.
        scale: factor applied to the scores before the softmax (> 0).

    Example::

        >>> scores = torch.tensor([[2.0, 0.0, 1.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
        >>> colbert_finetune_loss(scores, in_batch=False)  # row 0: columns 0, 2 -> log(1 + e^-1); row 1: log 2
        tensor(0.5032)
        >>> colbert_finetune_loss(scores)  # every column: (0.4402 + log 4) / 2
        tensor(0.9132)
        >>> colbert_finetune_loss(scores, in_batch=False, scale=2.0)  # row 0: log(1 + e^-2); row 1: log 2
        tensor(0.4100)
    """
    check_score_matrix("colbert_finetune_loss", teacher_scores, "teacher_scores")
    labels = check_labels("colbert_finetune_loss", labels, teacher_scores)
    check_mask("colbert_finetune_loss", mask, teacher_scores, labels, keep_labels=True)
    if not scale > 0:
        raise ValueError(f"colbert_finetune_loss: scale must be > 0, got {scale!r}.")
    if scale != 1.0:
        teacher_scores = teacher_scores * scale
    if in_batch:
        return in_batch_negatives_loss(teacher_scores, labels=labels, mask=mask)
    num_queries = teacher_scores.shape[0] if num_queries is None else num_queries
    columns = own_columns(labels, num_queries, teacher_scores.shape[1])
    own_mask = None if mask is None else mask.gather(1, columns)
    own_labels = torch.zeros_like(labels)  # the positive is the first own column
    return in_batch_negatives_loss(teacher_scores.gather(1, columns), labels=own_labels, mask=own_mask)


class ColBERTFinetuneLoss(nn.Module):
    """Fine-tunes the ColBERT teacher: cross-entropy over its MaxSim scores, optionally with in-batch negatives.

    Args:
        in_batch: every passage of the (gathered) batch is a negative (True) or only the query's own (False).
        mask_duplicates: exclude duplicate passages when ``passage_ids`` are given: over the whole batch
            (duplicate_passage_mask) with ``in_batch``, among the row's own candidates (own_candidate_mask) without.
        gather_across_devices: the scores are against every process's passages; None = on when world size > 1.
        scale: factor on the scores before the softmax (1 = Stanford ColBERT; the TCT-ColBERT paper's TensorFlow
            code uses 4 x its per-core batch size, 48 for 12 queries per TPU core).

    References:
        Khattab & Zaharia, "ColBERT: Efficient and Effective Passage Search via Contextualized Late Interaction
        over BERT", SIGIR 2020. https://doi.org/10.1145/3397271.3401075

    Inputs:
        scores ``[B_local, N]``: MaxSim of the local queries against the passages; when gathering, against
        ``gather_passages(tokens, B_local, with_grad=True, pad_dim=1)`` (global column order, ``N = N_global``);
        optional passage_ids ``[N_local]`` (this process's, gathered here).

    Averaging: the mean over this process's queries; with DDP's gradient averaging ``R`` processes x ``B/R``
    equal 1 process x ``B`` (no world-size scaling).

    Example::

        >>> ColBERTFinetuneLoss(in_batch=False)(torch.tensor([[2.0, 0.0, 1.0, -1.0], [0.0, 0.0, 0.0, 0.0]]))
        tensor(0.5032)
    """

    def __init__(
        self,
        in_batch: bool = True,
        mask_duplicates: bool = True,
        gather_across_devices: bool | None = None,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"ColBERTFinetuneLoss: scale must be > 0, got {scale!r}.")
        self.scale = scale
        self.in_batch = in_batch
        self.mask_duplicates = mask_duplicates
        self.gather_across_devices = gather_across_devices

    def forward(
        self,
        scores: Tensor,
        passage_ids: Tensor | None = None,
        extra_positive_ids: Sequence[Sequence[int] | Tensor] | None = None,
    ) -> Tensor:
        check_score_matrix("ColBERTFinetuneLoss", scores, "scores")
        gather = resolve_gather_across_devices(self.gather_across_devices)
        labels, num_queries, mask = global_layout(
            scores.shape[0],
            gather_across_devices=gather,
            passage_ids=passage_ids,
            mask_duplicates=self.mask_duplicates,
            extra_positive_ids=extra_positive_ids,
            device=scores.device,
        )
        if mask is not None and mask.shape != scores.shape:
            raise ValueError(
                f"ColBERTFinetuneLoss: scores {tuple(scores.shape)} do not match the "
                f"{'gathered ' if gather else ''}passage_ids ({mask.shape[1]} passages)."
            )
        if mask is not None and not self.in_batch:
            # Only the row's own candidates compete: the duplicate rule applies among them (as in pairwise KD).
            ids = gather_passages(passage_ids, scores.shape[0]) if gather else passage_ids
            own = own_candidate_mask(ids.to(scores.device), num_queries, extra_positive_ids, query_indices=labels)
            mask = torch.zeros_like(mask).scatter(1, own_columns(labels, num_queries, scores.shape[1]), own)
        return colbert_finetune_loss(
            scores, in_batch=self.in_batch, labels=labels, num_queries=num_queries, mask=mask, scale=self.scale
        )

    def get_config_dict(self) -> dict[str, bool | float | None]:
        return {
            "in_batch": self.in_batch,
            "scale": self.scale,
            "mask_duplicates": self.mask_duplicates,
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        return COLBERT_CITATION
