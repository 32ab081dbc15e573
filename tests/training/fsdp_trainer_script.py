"""TCTTrainer's loss with the student sharded by torch FSDP (``fully_shard``, per BERT layer and at the root) and
the frozen teacher outside it, on gloo CPU processes; run by torchrun with 2 processes or directly with 1.

    python fsdp_trainer_script.py STUDENT_DIR TEACHER_DIR OUT_DIR
    torchrun --standalone --nproc_per_node 2 fsdp_trainer_script.py STUDENT_DIR TEACHER_DIR OUT_DIR

Each process takes its half of the fixed 8-example batch (the 1-process run takes all of it), computes
``TCTTrainer.compute_loss(fsdp_student, inputs)`` and backpropagates; FSDP reduce-scatters the averaged gradients.
Rank 0 saves the loss (mean over ranks) and the full gradients to OUT_DIR/result.pt.

accelerate gives CPU processes DDP whatever the FSDP settings (its FSDP mode is for accelerators), so this script
wraps the student with torch's FSDP itself instead of going through ``Trainer.train``.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import torch
import torch.distributed as dist
from distributed_trainer_script import GLOBAL_BATCH, examples

from tct_hf import ColBERTModel, TCTModel
from tct_hf.data import TCTCollator
from tct_hf.training import TCTTrainer, TCTTrainingArguments, end_training


def main(student_dir: str, teacher_dir: str, out_dir: str) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    student = TCTModel.from_pretrained(student_dir)
    teacher = ColBERTModel.from_pretrained(teacher_dir)
    args = TCTTrainingArguments(
        output_dir=out_dir,
        per_device_train_batch_size=GLOBAL_BATCH // world,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        query_max_length=8,
        passage_max_length=12,
        ddp_backend="gloo" if world > 1 else None,
        teacher_autocast_dtype="float32",
    )
    refusal = None
    if world > 1:  # accelerate would give these CPU processes DDP: TCTTrainer refuses fsdp=True instead of ignoring it
        try:
            TCTTrainer(model=student, teacher=teacher, args=dataclasses.replace(args, fsdp=True))
        except ValueError as error:
            refusal = str(error)
    trainer = TCTTrainer(model=student, teacher=teacher, args=args)  # initialises the gloo process group
    rank = trainer.accelerator.process_index
    if world > 1:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import FSDPModule, fully_shard

        mesh = init_device_mesh("cpu", (world,))
        for layer in student.bert.encoder.layer:
            fully_shard(layer, mesh=mesh)
        fully_shard(student, mesh=mesh)
        assert isinstance(student, FSDPModule) and not isinstance(trainer.teacher, FSDPModule)
    collator = TCTCollator(student, teacher, query_max_length=8, passage_max_length=12, num_negatives=1)
    local = examples()[rank * (GLOBAL_BATCH // world) : (rank + 1) * (GLOBAL_BATCH // world)]
    loss = trainer.compute_loss(student, collator(local))
    loss.backward()
    gradients = {}
    for name, parameter in student.named_parameters():
        if parameter.grad is None:
            continue
        gradient = parameter.grad
        gradients[name] = gradient.full_tensor() if hasattr(gradient, "full_tensor") else gradient.detach().clone()
    mean_loss = loss.detach().clone()
    if world > 1:
        dist.all_reduce(mean_loss)
        mean_loss /= world
    if rank == 0:
        result = {"world_size": world, "loss": float(mean_loss), "gradients": gradients, "fsdp_refusal": refusal}
        torch.save(result, f"{out_dir}/result.pt")
    end_training(trainer)


if __name__ == "__main__":
    main(*sys.argv[1:4])
