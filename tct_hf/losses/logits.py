"""The pieces every softmax loss here is built from: temperature checks, tempered masked logits, row KL and row CE.

Each loss module computes ``scores / temperature`` in at least float32 with the excluded entries at ``-inf`` (so
they get probability 0 and no gradient), then a per-row KL or cross-entropy, then the mean over rows.

Example::

    >>> masked_logits(torch.tensor([[1.0, 2.0]]), 0.5, torch.tensor([[False, True]]))
    tensor([[2., -inf]])
    >>> kl_divergence_per_row(torch.zeros(1, 2), torch.tensor([[1.0, 3.0]]).log())  # .25 ln .5 + .75 ln 1.5
    tensor([0.1308])
    >>> masked_cross_entropy(torch.zeros(2, 4), torch.tensor([0, 3]))  # uniform over 4: log 4
    tensor([1.3863, 1.3863])
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_temperature", "kl_divergence_per_row", "masked_cross_entropy", "masked_logits"]


def check_temperature(owner: str, name: str, value: float) -> None:
    """A temperature divides scores: it must be a positive number. ``owner`` names the loss in the message."""
    if not value > 0:
        raise ValueError(f"{owner}: {name} must be > 0, got {value!r}.")


def masked_logits(scores: Tensor, temperature: float, mask: Tensor | None = None) -> Tensor:
    """``scores / temperature`` in at least float32, entries where ``mask`` is True set to ``-inf``."""
    logits = scores.to(torch.promote_types(scores.dtype, torch.float32)) / temperature
    return logits if mask is None else logits.masked_fill(mask, float("-inf"))


def kl_divergence_per_row(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """``KL(softmax(teacher_logits[i]) || softmax(student_logits[i]))`` for each row ``i``: ``Tensor[B]``.

    Masked entries (True) must already be -inf in both logit matrices; they are dropped from the sum. The
    log-probabilities are zeroed there before the product, so neither the value nor the gradient sees
    ``0 * (-inf - -inf)``.
    """
    student_log_probs = torch.log_softmax(student_logits, dim=1)
    teacher_log_probs = torch.log_softmax(teacher_logits, dim=1)
    if mask is not None:
        student_log_probs = student_log_probs.masked_fill(mask, 0.0)
        teacher_log_probs = teacher_log_probs.masked_fill(mask, 0.0)
    teacher_probs = teacher_log_probs.exp()
    if mask is not None:
        teacher_probs = teacher_probs.masked_fill(mask, 0.0)
    return (teacher_probs * (teacher_log_probs - student_log_probs)).sum(dim=1)


def masked_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """``-log softmax(logits[i])[labels[i]]`` per row: ``Tensor[B]``. Masked entries must already be -inf."""
    return -torch.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
