"""Training stops on a NaN or infinite loss or gradient with an error naming the optimizer step (or skips such
steps when asked, counted and logged), and never saves non-finite weights — in TCTTrainer and ColBERTTrainer."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import make_examples
from datasets import Dataset
from safetensors.torch import load_file

from tct_hf import ColBERTModel, TCTModel
from tct_hf.data import TCTCollator
from tct_hf.training import ColBERTTrainer, ColBERTTrainingArguments, TCTTrainer, TCTTrainingArguments
from tct_hf.training.nonfinite import NonFiniteTrainingError

COMMON = dict(per_device_train_batch_size=4, logging_steps=1, report_to="none", use_cpu=True, seed=7,
              dataloader_drop_last=True, query_max_length=8, passage_max_length=16, num_negatives=1,
              disable_tqdm=True)  # fmt: skip


def poisoned(trainer_class):
    """The trainer with a NaN loss at the optimizer steps in ``bad_steps`` (1-based), or NaN gradients only
    (``bad_gradients``: the loss stays finite, a hook poisons one parameter's gradient)."""

    class Poisoned(trainer_class):
        bad_steps: set = set()
        bad_gradients: set = set()

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if model.training and self.state.global_step + 1 in self.bad_steps:
                loss = loss * float("nan")
            return loss

    return Poisoned


def tct_trainer(tiny_dirs, tmp_path, bad_steps=(), bad_gradients=(), **overrides):
    student = TCTModel.from_pretrained(tiny_dirs[0])
    teacher = ColBERTModel.from_pretrained(tiny_dirs[1])
    args = TCTTrainingArguments(output_dir=str(tmp_path), **{**COMMON, "learning_rate": 1e-3, "max_steps": 4,
                                                             "save_strategy": "no", **overrides})  # fmt: skip
    trainer_class = poisoned(TCTTrainer)
    trainer_class.bad_steps = set(bad_steps)
    trainer = trainer_class(model=student, teacher=teacher, args=args,
                            train_dataset=Dataset.from_list(make_examples(16)),
                            data_collator=TCTCollator.from_training_args(args, student, teacher))  # fmt: skip
    if bad_gradients:
        weight = student.bert.embeddings.word_embeddings.weight
        weight.register_hook(
            lambda grad: grad * float("nan") if trainer.state.global_step + 1 in set(bad_gradients) else grad
        )
    return trainer, student


def parameters(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_nan_loss_stops_training_naming_the_step(tiny_dirs, tmp_path):
    trainer, student = tct_trainer(tiny_dirs, tmp_path, bad_steps={3}, save_strategy="steps", save_steps=1)
    with pytest.raises(NonFiniteTrainingError, match="optimizer step 3: the loss and a gradient are NaN or infinite"):
        trainer.train()
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    saved = load_file(str(tmp_path / "checkpoint-2" / "model.safetensors"))
    current = {f"bert.{name}" if not name.startswith("bert.") else name: p for name, p in parameters(student).items()}
    for name, tensor in saved.items():  # step 3 did not update the weights
        torch.testing.assert_close(current[name], tensor, rtol=0, atol=0)


def test_nan_gradient_with_a_finite_loss_is_caught(tiny_dirs, tmp_path):
    trainer, _ = tct_trainer(tiny_dirs, tmp_path, bad_gradients={2})
    with pytest.raises(NonFiniteTrainingError, match="optimizer step 2: a gradient is NaN or infinite"):
        trainer.train()


def test_skip_mode_counts_logs_and_leaves_the_weights(tiny_dirs, tmp_path, caplog):
    trainer, student = tct_trainer(tiny_dirs, tmp_path, bad_steps={1, 2, 3, 4}, skip_nonfinite_steps=True)
    before = parameters(student)
    with caplog.at_level(logging.WARNING, logger="tct_hf.training.nonfinite"):
        trainer.train()
    for name, tensor in parameters(student).items():  # every step skipped: not even weight decay moved them
        torch.testing.assert_close(tensor, before[name], rtol=0, atol=0)
    assert trainer.nonfinite_guard.skipped == 4
    assert "optimizer step 3: the loss and a gradient are NaN or infinite; step skipped (3 so far)" in caplog.text
    logged = [entry["nonfinite_steps_skipped"] for entry in trainer.state.log_history if "loss" in entry]
    assert logged == [1, 2, 3, 4]

    trainer, student = tct_trainer(tiny_dirs, tmp_path / "one", bad_steps={2}, skip_nonfinite_steps=True)
    before = parameters(student)
    trainer.train()  # one step skipped, the others train
    assert trainer.nonfinite_guard.skipped == 1
    assert any(not torch.equal(tensor, before[name]) for name, tensor in parameters(student).items())
    assert all(torch.isfinite(p).all() for p in student.parameters())


def test_diverging_learning_rate_never_saves_nan_weights(tiny_dirs, tmp_path):
    trainer, _ = tct_trainer(tiny_dirs, tmp_path, learning_rate=1e38, max_steps=8, save_strategy="steps",
                             save_steps=1, max_grad_norm=0.0)  # fmt: skip
    with pytest.raises(NonFiniteTrainingError):
        trainer.train()
    for checkpoint in tmp_path.glob("checkpoint-*"):
        for name, tensor in load_file(str(checkpoint / "model.safetensors")).items():
            assert torch.isfinite(tensor).all(), (checkpoint.name, name)


def test_save_refuses_non_finite_weights(tiny_dirs, tmp_path):
    trainer, student = tct_trainer(tiny_dirs, tmp_path)
    with torch.no_grad():
        student.bert.encoder.layer[0].output.dense.weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteTrainingError, match="parameter bert.encoder.layer.0.output.dense.weight"):
        trainer.save_model(str(tmp_path / "final"))
    assert not (tmp_path / "final" / "model.safetensors").exists()


def test_colbert_trainer_has_the_same_guard(tiny_dirs, tmp_path):
    teacher = ColBERTModel.from_pretrained(tiny_dirs[1])
    args = ColBERTTrainingArguments(output_dir=str(tmp_path), **{**COMMON, "learning_rate": 1e-3, "max_steps": 3,
                                                                 "save_strategy": "no"})  # fmt: skip
    trainer_class = poisoned(ColBERTTrainer)
    trainer_class.bad_steps = {2}
    trainer = trainer_class(model=teacher, args=args, train_dataset=Dataset.from_list(make_examples(12)),
                            data_collator=TCTCollator.from_training_args(args, teacher=teacher))  # fmt: skip
    with pytest.raises(NonFiniteTrainingError, match="optimizer step 2"):
        trainer.train()
