"""ColBERTTrainer: the loss it computes is ColBERTFinetuneLoss's cross-entropy, duplicates masked by passage id."""

from __future__ import annotations

import pytest
import torch
from conftest import make_examples
from datasets import Dataset

from tct_hf import ColBERTModel
from tct_hf.data import TCTCollator
from tct_hf.losses import ColBERTFinetuneLoss
from tct_hf.training import ColBERTTrainer, ColBERTTrainingArguments


def hand_cross_entropy(scores, columns_per_row, positives):
    """Mean over rows of log sum_{j in row's columns} exp(s_j) - s_positive."""
    rows = [
        torch.logsumexp(scores[i, columns], 0) - scores[i, positives[i]] for i, columns in enumerate(columns_per_row)
    ]
    return float(sum(rows) / len(rows))


@pytest.mark.parametrize("in_batch", [True, False])
@pytest.mark.parametrize("masked", [True, False])
def test_colbert_trainer_loss_is_cross_entropy_over_unmasked_columns(tiny_dirs, tmp_path, in_batch, masked):
    examples = make_examples(3, num_negatives=1)
    examples[1]["negatives"][0] = examples[0]["positive"]  # query 1's negative (column 4) = query 0's positive
    teacher = ColBERTModel.from_pretrained(tiny_dirs[1])
    args = ColBERTTrainingArguments(
        output_dir=str(tmp_path),
        report_to="none",
        use_cpu=True,
        query_max_length=8,
        passage_max_length=16,
        in_batch_negatives=in_batch,
        mask_duplicate_passages=masked,
    )
    collator = TCTCollator.from_training_args(args, teacher=teacher)
    trainer = ColBERTTrainer(
        model=teacher, args=args, train_dataset=Dataset.from_list(examples), data_collator=collator
    )
    assert isinstance(trainer.loss, ColBERTFinetuneLoss) and trainer.loss.in_batch is in_batch
    teacher.eval()
    batch = collator(examples)
    loss = float(trainer.compute_loss(teacher, batch).detach())
    with torch.no_grad():
        scores = teacher(
            query_input_ids=batch["teacher_query_input_ids"],
            query_attention_mask=batch["teacher_query_attention_mask"],
            passage_input_ids=batch["teacher_passage_input_ids"],
            passage_attention_mask=batch["teacher_passage_attention_mask"],
        ).scores.double()
    if in_batch:  # column 4 copies column 0: row 0 drops it (a copy of its positive), rows 1, 2 count it once
        columns = [[0, 1, 2, 3, 5], [0, 1, 2, 3, 5], [0, 1, 2, 3, 5]] if masked else [list(range(6))] * 3
    else:  # own positive and negative; query 1's negative is not its own positive, so nothing is dropped
        columns = [[0, 3], [1, 4], [2, 5]]
    assert abs(loss - hand_cross_entropy(scores, columns, [0, 1, 2])) < 1e-5
