"""`TCTTrainer`: a `transformers.Trainer` whose loss is TCT-ColBERT's in-batch knowledge distillation.

Only `compute_loss` (here) and `prediction_step` (`LossTrainer`) are overridden. The frozen teacher lives on the
trainer (like TRL's `ref_model`): eval mode, no gradients, placed on the training device, never part of the
student's checkpoints.

What is averaged over what: each process computes the mean, over ITS queries, of the per-query loss against the
passages of the GLOBAL batch (all processes' passages when `gather_across_devices`); DDP then averages gradients over
processes. With equal local batches this is exactly the gradient of the mean over all queries of one big batch — there
is no hidden world-size factor. Under gradient accumulation, each micro-batch's mean is divided by the number of
accumulation steps (`loss_is_scaled_for_ga = False`), so the update is the mean over every accumulated query; in-batch
negatives are the passages of the same micro-batch (the paper's batch is one micro-batch).
"""

from __future__ import annotations

import torch

from ..losses import InBatchKDLoss, InBatchNegativesLoss, kl_divergence_per_row
from ..losses.columns import own_columns
from ..losses.global_batch import resolve_gather_across_devices
from .arguments import TCTTrainingArguments
from .loss_trainer import LossTrainer
from .teacher import freeze, in_batch_teacher_scores, pairwise_teacher_scores

STUDENT_INPUTS = ("query_input_ids", "query_attention_mask", "passage_input_ids", "passage_attention_mask")


class TCTTrainer(LossTrainer):
    """Distil a ColBERT `teacher` into the TCT student `model` (see module docstring for the averaging rules).

    Args:
        model: the student, a `TCTModel`.
        args: `TCTTrainingArguments` (`kd_mode`, `temperature`, `gather_across_devices`, `teacher_dtype`, ...).
        teacher: a `ColBERTModel`; required unless `args.kd_mode == "none"`.
        **kwargs: passed to `transformers.Trainer` (data_collator = `tct_hf.data.TCTCollator`, datasets, callbacks).

    Example:
        >>> trainer = TCTTrainer(model=student, teacher=teacher, args=args, train_dataset=ds,
        ...                      data_collator=TCTCollator(student, teacher))  # doctest: +SKIP
        >>> trainer.train()  # doctest: +SKIP
    """

    def __init__(self, model=None, args: TCTTrainingArguments | None = None, teacher=None, **kwargs):
        if args is None or not isinstance(args, TCTTrainingArguments):
            raise TypeError("TCTTrainer needs args=TCTTrainingArguments(...)")
        if args.kd_mode != "none" and teacher is None:
            raise ValueError(f"kd_mode={args.kd_mode!r} needs a teacher; pass teacher=ColBERTModel or kd_mode='none'")
        super().__init__(model=model, args=args, **kwargs)
        self.teacher = None
        if teacher is not None and args.kd_mode != "none":
            self.teacher = freeze(teacher).to(self.args.device)
        common = {"mask_duplicates": args.mask_duplicate_passages, "gather_across_devices": args.gather_across_devices}
        if args.kd_mode == "none":
            self.in_batch_loss = InBatchNegativesLoss(**common)
        else:  # in_batch (pairwise KD has its own, cheaper path in compute_loss)
            self.in_batch_loss = InBatchKDLoss(
                temperature=args.temperature, student_temperature=args.student_temperature, ce_weight=args.ce_weight,
                **common,
            )  # fmt: skip

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        missing = [key for key in STUDENT_INPUTS if key not in inputs]
        if missing:
            raise KeyError(f"batch lacks {missing}; use tct_hf.data.TCTCollator (remove_unused_columns=False)")
        args: TCTTrainingArguments = self.args
        queries = model(input_ids=inputs["query_input_ids"], attention_mask=inputs["query_attention_mask"]).embeddings
        passages = model(
            input_ids=inputs["passage_input_ids"], attention_mask=inputs["passage_attention_mask"]
        ).embeddings

        if args.kd_mode == "pairwise":
            # Each query against its own positive and negatives only: no in-batch negatives, no gathering.
            b = queries.shape[0]
            own = own_columns(torch.arange(b, device=queries.device), b, passages.shape[0])
            student_pairs = torch.einsum("bh,bkh->bk", queries, passages[own])
            teacher_pairs = self.teacher_pair_scores(inputs, own.shape[1] - 1)
            student_logits = student_pairs.float() / args.student_temperature
            loss = kl_divergence_per_row(student_logits, teacher_pairs / args.temperature).mean()
            outputs = {"student_scores": student_pairs.detach(), "teacher_scores": teacher_pairs}
            return (loss, outputs) if return_outputs else loss

        passage_ids = inputs.get("passage_ids")
        if args.kd_mode == "none":
            loss = self.in_batch_loss(queries, passages, passage_ids=passage_ids)
            outputs = {}
        else:
            gather = resolve_gather_across_devices(args.gather_across_devices)
            teacher_scores = in_batch_teacher_scores(
                self.teacher, inputs, gather=gather, dtype_name=args.teacher_dtype
            )
            loss = self.in_batch_loss(queries, passages, teacher_scores, passage_ids=passage_ids)
            outputs = {"teacher_scores": teacher_scores}
        return (loss, outputs) if return_outputs else loss

    def teacher_pair_scores(self, inputs, num_negatives: int) -> torch.Tensor:
        """Pairwise KD's targets: the teacher's score of each local query with its own positive and negatives,
        ``[B_local, 1 + n]`` (column 0 the positive). Override to distil another scorer, e.g. a cross-encoder."""
        return pairwise_teacher_scores(self.teacher, inputs, num_negatives, self.args.teacher_dtype)
