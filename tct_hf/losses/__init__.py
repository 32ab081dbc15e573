"""Losses of TCT-ColBERT training: pure functions of score matrices, each wrapped as a small ``nn.Module``.

Column convention of every score matrix ``[B, N]``: the ``B`` positives first (column ``i`` = query ``i``'s),
then the negatives grouped per query (negative ``k`` of query ``i`` at ``B + i * n_neg + k``); see
:mod:`tct_hf.losses.columns`. Every loss is the mean over its query rows; no world-size scaling anywhere.
"""

from .colbert_finetune import ColBERTFinetuneLoss, colbert_finetune_loss
from .columns import negative_columns, num_negatives_per_query, own_columns, positive_columns
from .distributed import all_gather_no_grad, all_gather_with_grad, gather_padded, rank, world_size
from .global_batch import GlobalScores, build_global_scores, gather_passages, global_layout
from .gradient_cache import CachedSide, cached_loss, chunk_ranges
from .in_batch_kd import InBatchKDLoss, in_batch_kd_loss
from .in_batch_negatives import InBatchNegativesLoss, in_batch_negatives_loss
from .logits import check_temperature, kl_divergence_per_row, masked_cross_entropy, masked_logits
from .masking import duplicate_passage_mask, own_candidate_mask
from .pairwise_kd import PairwiseKDLoss, pairwise_kd_loss

__all__ = [
    "CachedSide",
    "ColBERTFinetuneLoss",
    "GlobalScores",
    "InBatchKDLoss",
    "InBatchNegativesLoss",
    "PairwiseKDLoss",
    "all_gather_no_grad",
    "all_gather_with_grad",
    "build_global_scores",
    "cached_loss",
    "check_temperature",
    "chunk_ranges",
    "colbert_finetune_loss",
    "duplicate_passage_mask",
    "gather_padded",
    "gather_passages",
    "global_layout",
    "in_batch_kd_loss",
    "in_batch_negatives_loss",
    "kl_divergence_per_row",
    "masked_cross_entropy",
    "masked_logits",
    "negative_columns",
    "num_negatives_per_query",
    "own_candidate_mask",
    "own_columns",
    "pairwise_kd_loss",
    "positive_columns",
    "rank",
    "world_size",
]
