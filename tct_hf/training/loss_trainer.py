"""What every tct_hf trainer shares: a loss computed by `compute_loss` itself, reported in evaluation,
collators whose negative draws follow the epoch, and the non-finite guard (`nonfinite`: a NaN loss or gradient
stops the run, or skips the step, and non-finite weights are never saved)."""

from __future__ import annotations

import torch
from transformers import Trainer, TrainerCallback

from tct_hf.host_memory import keep_freed_host_memory

from .nonfinite import NonFiniteGuard, check_finite_weights


class CollatorEpochCallback(TrainerCallback):
    """Tell the collator the epoch, so that examples with more negatives than needed draw new ones each epoch
    (the draw is a function of seed, epoch and example: a resumed run draws the same)."""

    def __init__(self, collator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.set_epoch(int(state.epoch or 0))


class LossTrainer(Trainer):
    """Base of `TCTTrainer` and `ColBERTTrainer`: subclasses implement `compute_loss` returning a mean over the
    micro-batch's queries (Trainer divides it by the accumulation steps: `loss_is_scaled_for_ga = False`). Their
    arguments (`TCTTrainingArguments`, `ColBERTTrainingArguments`) carry `keep_freed_host_memory`: on the
    CPU it keeps freed host memory for the next step (`host_memory`; `keep_freed_host_memory=False` opts out)."""

    loss_is_scaled_for_ga = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.fsdp and not self.is_fsdp_enabled:
            # accelerate gives CPU processes (and a single process) DDP or nothing whatever `fsdp` says.
            raise ValueError(
                f"fsdp={self.args.fsdp!r} is set but accelerate runs this {self.accelerator.distributed_type} job "
                "without FSDP (its FSDP mode needs several accelerator processes). Drop fsdp here, or launch on GPUs "
                "with examples/accelerate/fsdp.yaml."
            )
        if self.args.keep_freed_host_memory and self.args.device.type == "cpu":
            keep_freed_host_memory()
        if hasattr(self.data_collator, "set_epoch"):
            self.add_callback(CollatorEpochCallback(self.data_collator))
        self.nonfinite_guard = NonFiniteGuard(self, skip=self.args.skip_nonfinite_steps)
        self.add_callback(self.nonfinite_guard)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.nonfinite_guard.observe_loss(loss)
        return loss

    def log(self, logs, start_time=None):
        self.nonfinite_guard.add_to_logs(logs)
        super().log(logs, start_time)

    def _save(self, output_dir=None, state_dict=None):
        """Every save (``save_model``, each checkpoint) first refuses non-finite weights."""
        check_finite_weights(self.model, output_dir or self.args.output_dir, self.state.global_step)
        super()._save(output_dir, state_dict=state_dict)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation reports the training loss on the eval batches (the models themselves return no loss)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None
