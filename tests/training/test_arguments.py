"""TCTTrainingArguments: the published recipe and the argument checks."""

from __future__ import annotations

import pytest
from transformers.trainer_utils import SchedulerType

from tct_hf.training import TCTTrainingArguments


def test_from_paper_defaults_is_the_published_recipe(tmp_path):
    """Lin, Yang & Lin 2021 / castorini/tct_colbert train/model_fn.py, written out here by hand."""
    args = TCTTrainingArguments.from_paper_defaults(output_dir=str(tmp_path), report_to="none")
    assert args.per_device_train_batch_size == 96
    assert args.learning_rate == 7e-6
    assert args.warmup_steps == 10_000 and args.lr_scheduler_type == SchedulerType.LINEAR
    assert args.optim.startswith("adamw") and args.weight_decay == 0.01 and args.adam_epsilon == 1e-6
    assert args.max_grad_norm == 1.0 and args.max_steps == 160_000
    assert (args.kd_mode, args.temperature, args.student_temperature, args.ce_weight) == ("in_batch", 0.25, 1.0, 0.0)
    assert (args.query_max_length, args.passage_max_length, args.num_negatives) == (32, 150, 1)


def test_from_paper_defaults_overrides_win(tmp_path):
    args = TCTTrainingArguments.from_paper_defaults(
        output_dir=str(tmp_path), report_to="none", max_steps=100, temperature=0.5, per_device_train_batch_size=8
    )
    assert (args.max_steps, args.temperature, args.per_device_train_batch_size) == (100, 0.5, 8)
    assert args.learning_rate == 7e-6  # the rest stays the paper's


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kd_mode": "listwise"}, "kd_mode"),
        ({"temperature": 0.0}, "temperature"),
        ({"student_temperature": -1.0}, "temperature"),
        ({"kd_mode": "none", "ce_weight": 0.5}, "ce_weight"),
        ({"num_negatives": -1}, "num_negatives"),
        ({"teacher_autocast_dtype": "int8"}, "teacher_autocast_dtype"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        TCTTrainingArguments(output_dir=str(tmp_path), report_to="none", **overrides)
