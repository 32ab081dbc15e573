"""One SGD step of SentenceTransformerTrainer + InBatchKDLoss on a fixed 8-example batch; 1 or 2 processes.

    python distributed_st_script.py STUDENT_DIR TEACHER_DIR OUT_DIR
    torchrun --standalone --nproc_per_node 2 distributed_st_script.py STUDENT_DIR TEACHER_DIR OUT_DIR

Rank 0 saves the student's weights after the step and the logged loss to OUT_DIR/result.pt.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
from torch.utils.data import BatchSampler, SequentialSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))

from st_helpers import make_rows, make_student  # noqa: E402

from tct_hf import ColBERTModel  # noqa: E402
from tct_hf.st import InBatchKDLoss  # noqa: E402
from tct_hf.training import end_training  # noqa: E402

GLOBAL_BATCH = 8


def rows() -> list[dict]:
    examples = make_rows(GLOBAL_BATCH, num_negatives=2, seed=3)
    examples[6]["negative_1"] = examples[1]["positive"]  # rank 0's positive as a negative on rank 1: masked
    return examples


class InOrderTrainer(SentenceTransformerTrainer):
    """Batches in dataset order: the global batch is rows 0..7 whatever the number of processes."""

    def get_batch_sampler(self, dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
        return BatchSampler(SequentialSampler(range(len(dataset))), batch_size=batch_size, drop_last=drop_last)


def main(student_dir: str, teacher_dir: str, out_dir: str) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.manual_seed(0)
    student = make_student(Path(student_dir))
    teacher = ColBERTModel.from_pretrained(teacher_dir)
    args = SentenceTransformerTrainingArguments(
        output_dir=out_dir,
        per_device_train_batch_size=GLOBAL_BATCH // world,
        max_steps=1,
        optim="sgd",
        learning_rate=1.0,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        use_cpu=True,
        save_strategy="no",
        report_to="none",
        logging_steps=1,
        disable_tqdm=True,
        ddp_backend="gloo" if world > 1 else None,
    )
    trainer = InOrderTrainer(
        model=student,
        args=args,
        train_dataset=Dataset.from_list(rows()),
        loss=InBatchKDLoss(student, teacher, teacher_autocast_dtype="float32"),  # the trainer's own collator
    )
    trainer.train()
    if trainer.is_world_process_zero():
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        result = {"world_size": trainer.accelerator.num_processes, "loss": losses[0]}
        result["weights"] = {k: v.detach().clone() for k, v in student.state_dict().items()}
        torch.save(result, f"{out_dir}/result.pt")
    end_training(trainer)


if __name__ == "__main__":
    main(*sys.argv[1:4])
