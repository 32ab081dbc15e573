"""`CachedInBatchKDLoss`: `InBatchKDLoss` with cached gradients (GradCache), so a batch of thousands of queries
trains in the memory of one mini-batch.

The loss is exactly `InBatchKDLoss`'s (the same KL over the whole, gathered batch); only the student's embeddings
are computed differently, by `tct_hf.losses.cached_loss`: every column embedded ``mini_batch_size`` texts at a time
without a graph, the loss's gradient with respect to those embeddings cached, then each mini-batch embedded again
with a graph (same RNG, so the same dropout) and back-propagated with its cached gradient. The teacher scores its
texts ``mini_batch_size`` at a time as well. Cost: one more forward pass of the student per step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn

from ..losses import CachedSide, cached_loss
from ..losses.gradient_cache import check_chunk_size
from .in_batch_kd import InBatchKDLoss

__all__ = ["CachedInBatchKDLoss"]


def rows_of(features: dict[str, Any], begin: int, end: int, count: int) -> dict[str, Any]:
    """Rows ``begin:end`` of one column's features: every tensor whose first dimension is the batch is sliced (and
    copied: a module that edits its features in place must not change what the second pass sees)."""
    return {
        key: value[begin:end].clone()
        if isinstance(value, Tensor) and value.dim() and value.shape[0] == count
        else value
        for key, value in features.items()
    }


class CachedInBatchKDLoss(InBatchKDLoss):
    """`InBatchKDLoss` (TCT-ColBERT in-batch KD into any `SentenceTransformer`) with cached gradients.

    The interface follows sentence-transformers' `CachedMultipleNegativesRankingLoss`: the same arguments as the
    uncached loss plus ``mini_batch_size``; the loss value and the gradients are those of `InBatchKDLoss` on the same
    batch (without dropout; with dropout the masks are those of the mini-batch forward passes).

    Args:
        model, teacher, temperature, scale, mask_duplicates, gather_across_devices, teacher_autocast_dtype: as
            `InBatchKDLoss`.
        mini_batch_size: texts per forward pass of the student (and of the teacher). Memory grows with it, not with
            the batch; the batch size then only sets how many in-batch negatives each query sees.

    References:
        Gao, Zhang, Han & Callan, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup",
        RepL4NLP 2021. https://aclanthology.org/2021.repl4nlp-1.3/ ; Lin, Yang & Lin, RepL4NLP 2021 (the loss).

    Requirements, inputs and averaging: as `InBatchKDLoss`. Call ``backward`` on the returned loss exactly once per
    forward (SentenceTransformerTrainer does): the second forward pass of the student runs inside it.

    Example::

        loss = CachedInBatchKDLoss(student, teacher, mini_batch_size=32)
        trainer = SentenceTransformerTrainer(
            model=student, args=args, train_dataset=dataset, loss=loss  # per_device_train_batch_size=1024
        )
    """

    def __init__(
        self,
        model: Any,
        teacher: nn.Module,
        temperature: float = 0.25,
        scale: float | None = None,
        mask_duplicates: bool = True,
        gather_across_devices: bool | None = None,
        teacher_autocast_dtype: str = "auto",
        mini_batch_size: int = 32,
    ) -> None:
        super().__init__(
            model,
            teacher,
            temperature=temperature,
            scale=scale,
            mask_duplicates=mask_duplicates,
            gather_across_devices=gather_across_devices,
            teacher_autocast_dtype=teacher_autocast_dtype,
        )
        check_chunk_size("CachedInBatchKDLoss", mini_batch_size)
        self.mini_batch_size = mini_batch_size

    @property
    def teacher_chunk_size(self) -> int:
        """The teacher encodes ``mini_batch_size`` texts per forward pass too."""
        return self.mini_batch_size

    def column_side(self, features: dict[str, Any]) -> CachedSide:
        """One text column as a `CachedSide`: rows ``begin:end`` through the student (DDP-wrapped or not)."""
        count = (
            len(features["input_ids"])
            if "input_ids" in features
            else next(value.shape[0] for value in features.values() if isinstance(value, Tensor) and value.dim())
        )
        model = self.model

        def encode(begin: int, end: int, with_grad: bool) -> Tensor:
            return model(rows_of(features, begin, end, count))["sentence_embedding"]

        return CachedSide(encode, count=count)

    def forward(self, sentence_features: Iterable[dict[str, Any]], labels: Tensor | None = None) -> Tensor:
        sentence_features = [dict(features) for features in sentence_features]
        queries, passages = self.batch_texts(sentence_features)
        device = self.device
        teacher = self.teacher_scores(queries, passages, device=device)
        ids = self.passage_ids(passages, device=device) if self.mask_duplicates else None

        def loss_of(*column_embeddings: Tensor) -> Tensor:
            query_embeddings, passage_embeddings = self.split_embeddings(list(column_embeddings))
            return self.loss_from_scores(self.student_scores(query_embeddings, passage_embeddings, ids), teacher)

        sides = [self.column_side(features) for features in sentence_features]
        no_sync = getattr(self.model, "no_sync", None)  # DDP-wrapped by the trainer: synchronise after the last chunk
        return cached_loss(sides, self.mini_batch_size, loss_of, no_sync=no_sync)

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "mini_batch_size": self.mini_batch_size}
