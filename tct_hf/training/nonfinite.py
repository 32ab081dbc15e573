"""Training never continues past a NaN or an infinity silently, and never saves non-finite weights.

transformers' Trainer, by default (``logging_nan_inf_filter``), replaces a non-finite loss by the running mean in
its logs and steps the optimizer anyway: a diverging run logs plausible losses and saves NaN weights with exit
status 0. Both tct_hf trainers (`LossTrainer`) install `NonFiniteGuard`, which, at every optimizer step, looks at the
micro-batches' losses and the gradients (after clipping, before ``optimizer.step``):

- by default a non-finite loss or gradient raises `NonFiniteTrainingError` naming the optimizer step (1-based, as
  ``checkpoint-N`` counts them); the weights of that step are not updated;
- with ``skip_nonfinite_steps=True`` (the training arguments' field) the step is skipped instead: every gradient is
  dropped, so the optimizer leaves the weights and its moments as they were (the learning-rate schedule still
  advances), the step is logged as a warning and counted in the logs as ``nonfinite_steps_skipped``.

Under several processes the verdict is reduced over all of them (one small all-reduce per step), so every process
raises or skips the same step. With fp16 mixed precision the gradient scaler already skips overflowing steps and
lowers its scale: only the loss is checked then, and a skipped step is left to the scaler.

Saving (`LossTrainer._save`, used by ``save_model`` and every checkpoint) refuses weights that hold a NaN or an
infinity, naming the parameter.
"""

from __future__ import annotations

import logging

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

__all__ = ["NonFiniteGuard", "NonFiniteTrainingError", "check_finite_weights"]


class NonFiniteTrainingError(FloatingPointError):
    """A NaN or infinite loss, gradient or weight during training; the message names the step and the fix."""


FIX = (
    "Fix: lower the learning rate or raise the warm-up, check the inputs of that step, or set "
    "skip_nonfinite_steps=True (--skip_nonfinite_steps) to skip such steps (counted and logged)."
)


class NonFiniteGuard(TrainerCallback):
    """Check each optimizer step's losses and gradients (see the module docstring).

    Args:
        trainer: the Trainer whose ``training_step`` reports each micro-batch loss to :meth:`observe_loss`.
        skip: skip non-finite steps instead of raising.
    """

    def __init__(self, trainer, skip: bool = False):
        self.trainer = trainer
        self.skip = skip
        self.skipped = 0
        self._loss_is_bad: torch.Tensor | None = None

    def observe_loss(self, loss: torch.Tensor) -> None:
        """Remember whether a micro-batch loss is non-finite (no device synchronisation here)."""
        bad = ~torch.isfinite(loss.detach()).all()
        self._loss_is_bad = bad if self._loss_is_bad is None else (self._loss_is_bad | bad)

    def _scaler_active(self) -> bool:
        accelerator = getattr(self.trainer, "accelerator", None)
        return getattr(accelerator, "scaler", None) is not None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        model = model if model is not None else self.trainer.model
        parameters = [p for p in model.parameters() if p.grad is not None]
        device = parameters[0].grad.device if parameters else args.device
        loss_bad = self._loss_is_bad if self._loss_is_bad is not None else torch.tensor(False)
        self._loss_is_bad = None
        grad_bad = torch.tensor(False, device=device)
        if parameters and not self._scaler_active():
            norms = torch._foreach_norm([p.grad for p in parameters])
            grad_bad = ~torch.isfinite(torch.stack([norm.float().to(device) for norm in norms])).all()
        flags = torch.stack([loss_bad.to(device), grad_bad]).float()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        loss_bad, grad_bad = (bool(flag) for flag in flags.tolist())  # the one synchronisation per step
        if not (loss_bad or grad_bad):
            return
        step = state.global_step + 1
        what = " and ".join(name for name, bad in (("the loss", loss_bad), ("a gradient", grad_bad)) if bad)
        what += " are" if loss_bad and grad_bad else " is"
        if not self.skip:
            raise NonFiniteTrainingError(
                f"optimizer step {step}: {what} NaN or infinite (learning rate {self._learning_rate()}); the "
                f"weights were not updated by this step. {FIX}"
            )
        self.skipped += 1
        if not self._scaler_active():
            for parameter in parameters:
                parameter.grad = None  # the optimizer skips parameters without a gradient: weights and moments kept
        logger.warning("optimizer step %d: %s NaN or infinite; step skipped (%d so far)", step, what, self.skipped)

    def _learning_rate(self) -> str:
        try:
            return f"{self.trainer._get_learning_rate():.3g}"
        except Exception:  # before the scheduler exists, or a custom optimizer without one
            return "unknown"

    def add_to_logs(self, logs: dict) -> None:
        """Put the count of skipped steps into a log record (called by `LossTrainer.log`, before it is kept)."""
        if self.skip:
            logs["nonfinite_steps_skipped"] = self.skipped


def check_finite_weights(model: torch.nn.Module, where: str, step: int) -> None:
    """Raise `NonFiniteTrainingError` naming the first parameter of ``model`` holding a NaN or an infinity."""
    for name, parameter in model.named_parameters():
        if not torch.isfinite(parameter.detach()).all():
            raise NonFiniteTrainingError(
                f"refusing to save {where}: parameter {name} holds NaN or infinity (after optimizer step {step}). "
                f"{FIX}"
            )
