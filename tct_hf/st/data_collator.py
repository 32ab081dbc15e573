"""`InBatchKDDataCollator`: sentence-transformers' collator that always hands the loss each column's exact texts.

Not needed in the usual case: `InBatchKDLoss`'s constructor already makes the student's ``preprocess`` return the
texts (`tct_hf.st.texts`), so the collator that `SentenceTransformerTrainer` builds by default carries them. This
collator is the explicit fallback where that default never sees the loss's student: a loss given to the trainer as
a factory (``loss=lambda model: InBatchKDLoss(model, teacher)``, created after the collator), a trainer built before
the loss, or a trainer subclass with its own ``get_data_collator``.

Example::

    trainer = SentenceTransformerTrainer(
        model=student, args=args, train_dataset=dataset, loss=lambda model: InBatchKDLoss(model, teacher),
        data_collator=InBatchKDDataCollator.for_model(student, args),
    )
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

from .texts import with_texts

__all__ = ["InBatchKDDataCollator"]


@dataclass
class InBatchKDDataCollator(SentenceTransformerDataCollator):
    """`SentenceTransformerDataCollator` whose ``preprocess_fn`` also returns the raw strings, kept as
    ``{column}_text`` (the prompt not prepended: the teacher applies its own conventions)."""

    def __post_init__(self) -> None:
        self.preprocess_fn = with_texts(self.preprocess_fn)

    @classmethod
    def for_model(cls, model: Any, args: Any = None) -> InBatchKDDataCollator:
        """The collator `SentenceTransformerTrainer` would build for ``model`` and ``args`` (prompts, router mapping,
        max length), keeping the texts."""
        return cls(
            preprocess_fn=model.preprocess,
            router_mapping=getattr(args, "router_mapping", None) or {},
            prompts=getattr(args, "prompts", None) or {},
            max_length=getattr(args, "max_length", None),
        )
