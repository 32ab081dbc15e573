"""The paper's TPU semantics as a preset: 12 queries per device, no gathering, 8 x 12 per optimizer step (gradient
accumulation on fewer devices). Its loss and gradient must equal the mean of 8 independent 12-query losses, each
query's softmax over its own group's 24 passages (castorini/tct_colbert train/model_fn.py per TPU core)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import make_examples
from datasets import Dataset
from transformers import TrainerCallback

from tct_hf import ColBERTModel, TCTModel
from tct_hf.data import TCTCollator
from tct_hf.training import ColBERTTrainer, ColBERTTrainingArguments, TCTTrainer, TCTTrainingArguments

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"query_max_length": 8, "passage_max_length": 16}


def no_dropout(model):
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


class GradientRecorder(TrainerCallback):
    """Keeps the accumulated gradient of the first optimizer step (after Trainer's clipping, which is off here)."""

    def __init__(self, model):
        self.model, self.gradients = model, None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.gradients is None:
            self.gradients = {
                name: p.grad.detach().clone() for name, p in self.model.named_parameters() if p.grad is not None
            }


def group_loss(student, teacher, group: list[dict]) -> torch.Tensor:
    """One TPU core's loss, written from the paper's code: KL(softmax(T / 0.25) || softmax(S)) per query over the
    group's positives then negatives (24 passages), mean over the group's 12 queries."""
    queries = [e["query"] for e in group]
    passages = [e["positive"] for e in group] + [e["negatives"][0] for e in group]
    q = student.tokenize_queries(queries, max_length=8 + 4)
    p = student.tokenize_passages(passages, max_length=16 + 4)
    s = (
        student(q["input_ids"], q["attention_mask"]).embeddings
        @ student(p["input_ids"], p["attention_mask"]).embeddings.T
    )
    tq = teacher.tokenize_queries(queries, max_length=8 + 4)
    tp = teacher.tokenize_passages(passages, max_length=16 + 4)
    with torch.no_grad():
        t = teacher(tq["input_ids"], tq["attention_mask"], tp["input_ids"], tp["attention_mask"]).scores
    target = torch.softmax(t / 0.25, dim=1)
    return (target * (torch.log(target) - torch.log_softmax(s, dim=1))).sum(dim=1).mean()


def test_tpu_preset_loss_and_gradient_equal_the_mean_of_independent_12_query_losses(tiny_dirs, tmp_path):
    student_dir, teacher_dir = tiny_dirs
    examples = make_examples(96, num_negatives=1, seed=11)
    args = TCTTrainingArguments.from_paper_defaults(
        semantics="tpu", output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False, max_steps=1,
        warmup_steps=0, max_grad_norm=0.0, teacher_autocast_dtype="float32", save_strategy="no", disable_tqdm=True,
        **SMALL,
    )  # fmt: skip
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (12, 8)
    assert args.gather_across_devices is False and args.mask_duplicate_passages is False
    student, teacher = no_dropout(TCTModel.from_pretrained(student_dir)), ColBERTModel.from_pretrained(teacher_dir)
    recorder = GradientRecorder(student)
    trainer = TCTTrainer(
        model=student, teacher=teacher, args=args, callbacks=[recorder],
        train_dataset=Dataset.from_list(examples).to_iterable_dataset(),  # in order: groups are examples[12g:12g+12]
        data_collator=TCTCollator.from_training_args(args, student=student, teacher=teacher),
    )  # fmt: skip
    losses = []
    compute_loss = trainer.compute_loss

    def recording_compute_loss(*a, **kw):
        loss = compute_loss(*a, **kw)
        losses.append(float(loss.detach()))
        return loss

    trainer.compute_loss = recording_compute_loss
    trainer.train()

    reference = no_dropout(TCTModel.from_pretrained(student_dir))
    group_losses = [group_loss(reference, teacher, examples[12 * g : 12 * g + 12]) for g in range(8)]
    torch.testing.assert_close(torch.tensor(losses), torch.stack(group_losses).detach(), atol=1e-5, rtol=1e-5)
    torch.stack(group_losses).mean().backward()
    for name, parameter in reference.named_parameters():
        if parameter.grad is not None and name in recorder.gradients:
            torch.testing.assert_close(recorder.gradients[name], parameter.grad, atol=1e-6, rtol=1e-4, msg=name)
    assert len(recorder.gradients) > 10
    # A single 96-query batch (tct_hf's default semantics) is a different loss: the preset is not a no-op.
    everything = group_loss(reference, teacher, examples).detach()
    assert abs(float(everything) - float(torch.stack(group_losses).detach().mean())) > 1e-3


@pytest.mark.parametrize(("devices", "accumulation"), [(1, 8), (2, 4), (4, 2), (8, 1)])
def test_tpu_preset_keeps_8_groups_of_12_per_step_on_any_device_count(tmp_path, devices, accumulation):
    args = TCTTrainingArguments.from_paper_defaults(
        semantics="tpu", num_devices=devices, output_dir=str(tmp_path), report_to="none", use_cpu=True
    )
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (12, accumulation)
    assert args.gather_across_devices is False


def test_tpu_preset_refuses_a_device_count_that_does_not_divide_8(tmp_path):
    with pytest.raises(ValueError, match="8 TPU cores"):
        TCTTrainingArguments.from_paper_defaults(semantics="tpu", num_devices=3, output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="semantics"):
        TCTTrainingArguments.from_paper_defaults(semantics="gpu", output_dir=str(tmp_path))


def test_paper_tpu_yaml_is_the_preset_on_one_device(tmp_path):
    config = yaml.safe_load((ROOT / "examples" / "configs" / "paper_tpu.yaml").read_text())
    preset = TCTTrainingArguments.from_paper_defaults(semantics="tpu", output_dir=str(tmp_path), report_to="none")
    names = ["per_device_train_batch_size", "gradient_accumulation_steps", "gather_across_devices",
             "mask_duplicate_passages", "learning_rate", "warmup_steps", "max_grad_norm", "temperature",
             "query_max_length", "passage_max_length", "num_negatives", "weight_decay", "adam_epsilon"]  # fmt: skip
    for name in names:
        assert config[name] == getattr(preset, name), name


def test_colbert_trainer_logit_scale_multiplies_the_scores_before_the_softmax(tiny_dirs, tmp_path):
    """The paper's teacher fine-tuning: cross-entropy over 4 x 12 = 48 x MaxSim (in-batch, per core)."""
    examples = make_examples(3, num_negatives=1)
    teacher = ColBERTModel.from_pretrained(tiny_dirs[1]).eval()
    args = ColBERTTrainingArguments(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, logit_scale=48.0, **SMALL
    )
    collator = TCTCollator.from_training_args(args, teacher=teacher)
    trainer = ColBERTTrainer(
        model=teacher, args=args, train_dataset=Dataset.from_list(examples), data_collator=collator
    )
    batch = collator(examples)
    loss = float(trainer.compute_loss(teacher, batch).detach())
    with torch.no_grad():
        scores = teacher(
            batch["teacher_query_input_ids"], batch["teacher_query_attention_mask"],
            batch["teacher_passage_input_ids"], batch["teacher_passage_attention_mask"],
        ).scores.double()  # fmt: skip
    expected = sum(float(torch.logsumexp(48 * scores[i], 0) - 48 * scores[i, i]) for i in range(3)) / 3
    unscaled = sum(float(torch.logsumexp(scores[i], 0) - scores[i, i]) for i in range(3)) / 3
    assert abs(loss - expected) < 1e-4 * max(1.0, abs(expected)) and abs(expected - unscaled) > 1e-3
