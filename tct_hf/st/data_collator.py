"""`InBatchKDDataCollator`: sentence-transformers' collator that also hands the loss each column's exact texts.

sentence-transformers' collator turns every text column into the student's token ids, so a loss sees only those.
An in-batch KD teacher must read the same texts with its own tokenizer: this collator adds, for each text column
``c``, the list of raw strings under ``c_text`` (the student's prompt not prepended: the teacher applies its own
conventions). `SentenceTransformerTrainer.collect_features` groups keys by column prefix, so the loss finds them
as ``features[i]["text"]`` and removes them before the student's forward.

Example::

    loss = InBatchKDLoss(student, teacher)
    trainer = SentenceTransformerTrainer(
        model=student, args=args, train_dataset=dataset, loss=loss,
        data_collator=InBatchKDDataCollator.for_model(student, args),
    )
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

__all__ = ["TEXT_KEY", "InBatchKDDataCollator"]

TEXT_KEY = "text"


@dataclass
class InBatchKDDataCollator(SentenceTransformerDataCollator):
    """`SentenceTransformerDataCollator` plus ``{column}_text``: the column's raw strings, for the teacher."""

    @classmethod
    def for_model(cls, model: Any, args: Any = None) -> InBatchKDDataCollator:
        """The collator `SentenceTransformerTrainer` would build for ``model`` and ``args`` (prompts, router mapping),
        keeping the texts."""
        return cls(
            preprocess_fn=model.preprocess,
            router_mapping=getattr(args, "router_mapping", None) or {},
            prompts=getattr(args, "prompts", None) or {},
        )

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super().__call__(features)
        if not features:
            return batch
        for column in features[0]:
            if column == "dataset_name" or f"{column}_input_ids" not in batch:
                continue  # labels and non-text columns
            texts = [row[column] for row in features]
            if all(isinstance(text, str) for text in texts):
                batch[f"{column}_{TEXT_KEY}"] = texts
        return batch
