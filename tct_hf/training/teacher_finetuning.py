"""A ColBERT teacher fine-tuned briefly on the training data, for runs that are given no teacher (the demo, the
examples): a new 128-d projection on the student's backbone, trained with `ColBERTTrainer`.

Example:
    >>> teacher = fine_tune_teacher(default_backbone(), train, training_args, steps=60)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

from ..data import TCTCollator
from ..modeling_colbert import ColBERTModel
from .arguments import ColBERTTrainingArguments
from .colbert_trainer import ColBERTTrainer


def fine_tune_teacher(
    backbone: str,
    train: Any,
    training_args: Any,
    *,
    convention: str = "tct",
    dim: int = 128,
    steps: int = 60,
    learning_rate: float = 5e-5,
    batch_size: int = 16,
    num_negatives: int | None = None,
    output_dir: str | None = None,
    save: bool = True,
) -> ColBERTModel:
    """Fine-tune a new ColBERT (``convention``, ``dim``) from ``backbone`` on ``train`` for ``steps`` steps; seed,
    logging and device come from the student's ``training_args``, and so do lengths and negatives where it has them
    (sentence-transformers' arguments have neither: ColBERT's default lengths, ``num_negatives`` or 1). The trainer
    writes under ``output_dir`` (default ``training_args.output_dir/teacher``), where the teacher is saved (main
    process) unless ``save`` is false; it is returned."""
    if num_negatives is None:
        num_negatives = getattr(training_args, "num_negatives", 1)
    lengths = {
        name: getattr(training_args, name)
        for name in ("query_max_length", "passage_max_length")
        if hasattr(training_args, name)
    }
    teacher = ColBERTModel.from_pretrained(backbone, convention=convention, dim=dim)
    args = ColBERTTrainingArguments(
        output_dir=output_dir or os.path.join(training_args.output_dir, "teacher"),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=0.1,
        weight_decay=0.01,
        logging_steps=training_args.logging_steps,
        save_strategy="no",
        report_to="none",
        seed=training_args.seed,
        dataloader_drop_last=True,
        num_negatives=num_negatives,
        **lengths,
        use_cpu=training_args.use_cpu,
        bf16=training_args.bf16,
    )
    collator = TCTCollator.from_training_args(args, teacher=teacher)
    trainer = ColBERTTrainer(model=teacher, args=args, train_dataset=train, data_collator=collator)
    trainer.train()
    if save:
        trainer.save_model(args.output_dir)  # main process only
    return teacher
