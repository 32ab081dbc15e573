"""Streamed (iterable) datasets keep every passage of a batch: accelerate's batch dispatching, its default for
iterable datasets, slices each tensor to the queries' first dimension and would drop all negatives silently."""

from __future__ import annotations

import pytest
from conftest import make_examples
from datasets import Dataset

from tct_hf import ColBERTModel, TCTModel
from tct_hf.data import TCTCollator
from tct_hf.training import ColBERTTrainer, ColBERTTrainingArguments, TCTTrainer, TCTTrainingArguments

COMMON = dict(report_to="none", use_cpu=True, max_steps=2, per_device_train_batch_size=3, save_strategy="no",
              query_max_length=8, passage_max_length=16, num_negatives=2, disable_tqdm=True)  # fmt: skip


@pytest.mark.parametrize("trainer_class", ["tct", "colbert"])
def test_iterable_dataset_batches_reach_the_loss_whole(tiny_dirs, tmp_path, trainer_class):
    student_dir, teacher_dir = tiny_dirs
    teacher = ColBERTModel.from_pretrained(teacher_dir)
    dataset = Dataset.from_list(make_examples(6, num_negatives=2)).to_iterable_dataset()
    if trainer_class == "tct":
        student = TCTModel.from_pretrained(student_dir)
        args = TCTTrainingArguments(output_dir=str(tmp_path), teacher_autocast_dtype="float32", **COMMON)
        collator = TCTCollator.from_training_args(args, student=student, teacher=teacher)
        trainer = TCTTrainer(model=student, teacher=teacher, args=args, train_dataset=dataset, data_collator=collator)
    else:
        args = ColBERTTrainingArguments(output_dir=str(tmp_path), **COMMON)
        collator = TCTCollator.from_training_args(args, teacher=teacher)
        trainer = ColBERTTrainer(model=teacher, args=args, train_dataset=dataset, data_collator=collator)
    shapes = []
    compute_loss = trainer.compute_loss

    def recording(model, inputs, *rest, **kwargs):
        shapes.append({key: tuple(value.shape[:1]) for key, value in inputs.items()})
        return compute_loss(model, inputs, *rest, **kwargs)

    trainer.compute_loss = recording
    trainer.train()
    assert len(shapes) == 2
    for batch in shapes:
        assert batch["teacher_query_input_ids"] == (3,)
        assert batch["teacher_passage_input_ids"] == (9,) and batch["passage_ids"] == (9,)  # 3 positives + 3 x 2


def test_batch_dispatching_is_refused(tmp_path):
    with pytest.raises(ValueError, match="dispatch_batches"):
        TCTTrainingArguments(output_dir=str(tmp_path), report_to="none", accelerator_config={"dispatch_batches": True})
