"""`ColBERTTrainer`: fine-tune the ColBERT teacher with softmax cross-entropy over MaxSim scores.

Each process scores its queries against their own positive and negatives (`in_batch_negatives=False`, Stanford
ColBERT's recipe) or against every passage of the process's batch (`True`; passages of other processes are not
gathered for the teacher). The loss is the mean over the local queries; DDP averages
gradients over processes (no world-size factor), and Trainer divides by the gradient-accumulation steps.
"""

from __future__ import annotations

from ..losses import ColBERTFinetuneLoss
from .arguments import ColBERTTrainingArguments
from .loss_trainer import LossTrainer

TEACHER_INPUTS = (
    "teacher_query_input_ids",
    "teacher_query_attention_mask",
    "teacher_passage_input_ids",
    "teacher_passage_attention_mask",
)


class ColBERTTrainer(LossTrainer):
    """Trainer for `ColBERTModel`; batches come from `TCTCollator(student=None, teacher=colbert)`. The model's
    forward scores; `self.loss`, a `ColBERTFinetuneLoss` built from the arguments, holds the loss maths."""

    def __init__(self, model=None, args: ColBERTTrainingArguments | None = None, **kwargs):
        if args is None or not isinstance(args, ColBERTTrainingArguments):
            raise TypeError("ColBERTTrainer needs args=ColBERTTrainingArguments(...)")
        super().__init__(model=model, args=args, **kwargs)
        # The model scores its queries against this process's passages only, so the loss must not gather.
        self.loss = ColBERTFinetuneLoss(
            in_batch=args.in_batch_negatives,
            mask_duplicates=args.mask_duplicate_passages,
            gather_across_devices=False,
            scale=args.logit_scale,
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        missing = [key for key in TEACHER_INPUTS if key not in inputs]
        if missing:
            raise KeyError(f"batch lacks {missing}; use tct_hf.data.TCTCollator with a teacher")
        # Through the (possibly DDP-wrapped) model's forward, so gradient synchronisation hooks run.
        scores = model(
            query_input_ids=inputs["teacher_query_input_ids"],
            query_attention_mask=inputs["teacher_query_attention_mask"],
            passage_input_ids=inputs["teacher_passage_input_ids"],
            passage_attention_mask=inputs["teacher_passage_attention_mask"],
        ).scores  # [B, B(1+n)]
        loss = self.loss(scores, passage_ids=inputs.get("passage_ids"))
        return (loss, {"scores": scores.detach()}) if return_outputs else loss
