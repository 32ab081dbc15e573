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

Cached gradients (`gradient_cache_chunk_size=N`, GradCache): the same loss over the same batch, with the student's
activation memory of N rows: `tct_hf.losses.cached_loss` embeds N queries / passages at a time without a graph,
caches the loss's gradient with respect to the embeddings, and re-embeds each chunk with a graph (same RNG, so the
same dropout) inside Trainer's `backward`, which scales it by 1 / accumulation steps like any loss. The frozen
teacher scores the batch N rows at a time as well (`teacher.streamed_in_batch_teacher_scores`,
`streamed_pairwise_teacher_scores`), so neither side's memory grows with the batch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..losses import (
    CachedSide,
    InBatchKDLoss,
    InBatchNegativesLoss,
    PairwiseKDLoss,
    cached_loss,
    num_negatives_per_query,
)
from ..losses.global_batch import resolve_gather_across_devices
from .arguments import TCTTrainingArguments
from .loss_trainer import LossTrainer
from .teacher import freeze, in_batch_teacher_scores, pairwise_teacher_scores

STUDENT_INPUTS = ("query_input_ids", "query_attention_mask", "passage_input_ids", "passage_attention_mask")


def student_side(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> CachedSide:
    """One input side of a cached-gradient step: rows ``begin:end`` embedded without a graph through the unwrapped
    model (pass 1) or with one through `model` itself (pass 3, so DDP's gradient hooks run), each chunk cut to its
    own longest row (the same width in both passes, so the same dropout draws)."""
    plain = model.module if isinstance(model, DistributedDataParallel) else model

    def encode(begin: int, end: int, with_grad: bool) -> torch.Tensor:
        mask = attention_mask[begin:end]
        used = mask.any(dim=0).nonzero()
        width = int(used.max()) + 1 if used.numel() else mask.shape[1]
        encoder = model if with_grad else plain
        return encoder(input_ids=input_ids[begin:end, :width], attention_mask=mask[:, :width]).embeddings

    return CachedSide(encode, count=input_ids.shape[0])


def loss_for(args: TCTTrainingArguments) -> nn.Module:
    """The loss object of `args.kd_mode`, with the arguments' temperatures, weights, masking and gathering:
    `InBatchKDLoss` (in_batch), `PairwiseKDLoss` (pairwise), `InBatchNegativesLoss` (none; its softmax uses
    `student_temperature`, the temperature of the student's scores)."""
    common = {"mask_duplicates": args.mask_duplicate_passages, "gather_across_devices": args.gather_across_devices}
    if args.kd_mode == "none":
        return InBatchNegativesLoss(temperature=args.student_temperature, **common)
    kd = {
        "temperature": args.temperature,
        "student_temperature": args.student_temperature,
        "ce_weight": args.ce_weight,
    }
    if args.kd_mode == "pairwise":
        return PairwiseKDLoss(**kd, **common)
    return InBatchKDLoss(**kd, **common)


class TCTTrainer(LossTrainer):
    """Distil a ColBERT `teacher` into the TCT student `model` (see module docstring for the averaging rules).

    The trainer encodes (student embeddings through the model's forward, teacher scores in inference mode) and
    calls `self.loss` (`loss_for(args)`), which holds all the loss maths.

    Args:
        model: the student, a `TCTModel`.
        args: `TCTTrainingArguments` (`kd_mode`, `temperature`, `gather_across_devices`, `teacher_autocast_dtype`,
            ...).
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
        self.loss = loss_for(args)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        missing = [key for key in STUDENT_INPUTS if key not in inputs]
        if missing:
            raise KeyError(f"batch lacks {missing}; use tct_hf.data.TCTCollator (remove_unused_columns=False)")
        outputs = {}
        targets = ()
        if self.args.kd_mode != "none":
            outputs["teacher_scores"] = self.teacher_scores(inputs)
            targets = (outputs["teacher_scores"],)
        passage_ids = inputs.get("passage_ids")

        def loss_of(queries, passages):
            return self.loss(queries, passages, *targets, passage_ids=passage_ids)

        chunk_size = self.args.gradient_cache_chunk_size
        if chunk_size is None:
            queries = model(input_ids=inputs["query_input_ids"], attention_mask=inputs["query_attention_mask"])
            passages = model(input_ids=inputs["passage_input_ids"], attention_mask=inputs["passage_attention_mask"])
            loss = loss_of(queries.embeddings, passages.embeddings)
        else:
            sides = [
                student_side(model, inputs["query_input_ids"], inputs["query_attention_mask"]),
                student_side(model, inputs["passage_input_ids"], inputs["passage_attention_mask"]),
            ]
            no_sync = getattr(model, "no_sync", None)  # DDP (and FSDP): synchronise gradients after the last chunk
            loss = cached_loss(sides, chunk_size, loss_of, no_sync=no_sync)
        return (loss, outputs) if return_outputs else loss

    def teacher_scores(self, inputs) -> torch.Tensor:
        """The loss's targets: in_batch, the local queries against every passage of the (gathered) batch,
        ``[B_local, N]``; pairwise, `teacher_pair_scores` of the own pairs, ``[B_local, 1 + n]``."""
        args: TCTTrainingArguments = self.args
        if args.kd_mode == "pairwise":
            num_local = inputs["query_input_ids"].shape[0]
            num_negatives = num_negatives_per_query(num_local, inputs["passage_input_ids"].shape[0])
            return self.teacher_pair_scores(inputs, num_negatives)
        gather = resolve_gather_across_devices(args.gather_across_devices)
        return in_batch_teacher_scores(
            self.teacher,
            inputs,
            gather=gather,
            dtype_name=args.teacher_autocast_dtype,
            chunk_size=args.gradient_cache_chunk_size,
            passage_layout=args.teacher_passages,
        )

    def teacher_pair_scores(self, inputs, num_negatives: int) -> torch.Tensor:
        """Pairwise KD's targets: the teacher's score of each local query with its own positive and negatives,
        ``[B_local, 1 + n]`` (column 0 the positive). Override to distil another scorer, e.g. a cross-encoder."""
        return pairwise_teacher_scores(
            self.teacher,
            inputs,
            num_negatives,
            self.args.teacher_autocast_dtype,
            chunk_size=self.args.gradient_cache_chunk_size,
            passage_layout=self.args.teacher_passages,
        )
