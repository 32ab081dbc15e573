"""One SGD step of TCTTrainer on a fixed 8-example batch; run by torchrun with 2 processes or directly with 1.

    python distributed_trainer_script.py STUDENT_DIR TEACHER_DIR OUT_DIR [CHUNK_SIZE [KD_MODE ...]]
    torchrun --standalone --nproc_per_node 2 distributed_trainer_script.py STUDENT_DIR TEACHER_DIR OUT_DIR

One step per kd_mode (default in_batch), each from the saved student; CHUNK_SIZE > 0 turns on cached gradients
(`gradient_cache_chunk_size`). Rank 0 saves {kd_mode: {"loss", "weights"}} and the world size to OUT_DIR/result.pt.
"""

from __future__ import annotations

import os
import sys

import torch
from datasets import Dataset
from torch.utils.data import SequentialSampler

from tct_hf import ColBERTModel, TCTModel
from tct_hf.data import TCTCollator
from tct_hf.training import TCTTrainer, TCTTrainingArguments, end_training

GLOBAL_BATCH = 8
WORDS = "heat water river city flow wing pressure speed shock wave theory music film game food blood".split()


def examples() -> list[dict]:
    rows = []
    for i in range(GLOBAL_BATCH):
        words = [WORDS[(i + k) % len(WORDS)] for k in range(4)]
        rows.append({"query": f"{words[0]} {words[1]} {i}", "positive": " ".join(words), "negatives": []})
    for i, row in enumerate(rows):
        row["negatives"] = [" ".join(reversed(rows[(i + 3) % GLOBAL_BATCH]["positive"].split()))]
    rows[6]["negatives"] = [rows[1]["positive"]]  # a positive of rank 0 as a negative on rank 1: masked for query 1
    return rows


class InOrderTrainer(TCTTrainer):
    """Batches in dataset order, so the global batch is the same whatever the number of processes."""

    def _get_train_sampler(self, train_dataset=None):
        return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)


def one_step(student_dir: str, teacher_dir: str, out_dir: str, chunk_size: int | None, kd_mode: str):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    student = TCTModel.from_pretrained(student_dir)
    teacher = ColBERTModel.from_pretrained(teacher_dir)
    args = TCTTrainingArguments(
        output_dir=f"{out_dir}/{kd_mode}",
        kd_mode=kd_mode,
        gradient_cache_chunk_size=chunk_size,
        per_device_train_batch_size=GLOBAL_BATCH // world,
        max_steps=1,
        optim="sgd",
        learning_rate=1.0,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        use_cpu=True,
        save_strategy="no",
        report_to="none",
        logging_steps=1,
        disable_tqdm=True,
        query_max_length=8,
        passage_max_length=12,
        ddp_backend="gloo" if world > 1 else None,
        # bf16 targets round differently with the batch split; this test is about the maths
        teacher_autocast_dtype="float32",
    )
    collator = TCTCollator(student, teacher, query_max_length=8, passage_max_length=12, num_negatives=1)
    trainer = InOrderTrainer(
        model=student, teacher=teacher, args=args, train_dataset=Dataset.from_list(examples()), data_collator=collator
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    result = {"loss": losses[0], "weights": {k: v.detach().clone() for k, v in student.state_dict().items()}}
    return trainer, result


def main(student_dir: str, teacher_dir: str, out_dir: str, chunk: str = "0", *kd_modes: str) -> None:
    chunk_size = int(chunk) or None
    results = {"world_size": int(os.environ.get("WORLD_SIZE", "1")), "modes": {}}
    for kd_mode in kd_modes or ("in_batch",):
        trainer, results["modes"][kd_mode] = one_step(student_dir, teacher_dir, out_dir, chunk_size, kd_mode)
    if trainer.is_world_process_zero():
        torch.save(results, f"{out_dir}/result.pt")
    end_training(trainer)


if __name__ == "__main__":
    main(*sys.argv[1:])
