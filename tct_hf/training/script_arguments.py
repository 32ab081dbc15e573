"""Arguments of the training scripts: one YAML/JSON config file or command-line flags over defaults, checked the
same way for every script (``--save_steps`` without a strategy, a non-empty ``--output_dir``), and the defaults of
the embedded demo.

Example:
    >>> model_args, data_args, training_args = parse_script_arguments(  # doctest: +SKIP
    ...     sys.argv[1:], (ModelArguments, DataArguments, TCTTrainingArguments), demo_training_defaults()
    ... )
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from transformers import HfArgumentParser

from ..outputs import TRAINING_OUTPUT, OutputExistsError, check_output
from .teacher import resolve_teacher_dtype


class ScriptArgumentError(SystemExit):
    """A command line that cannot run as given (like argparse's own errors, it ends the script with the message)."""


def fast_bf16() -> bool:
    """Whether bf16 autocast pays off here: a CUDA GPU with bf16, or a CPU with AVX512-BF16 / AMX (the rule of the
    teacher's ``teacher_autocast_dtype="auto"``)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return resolve_teacher_dtype("auto", device) == torch.bfloat16


def demo_training_defaults(**overrides: Any) -> dict[str, Any]:
    """Arguments of the embedded demo (a short run on the MS MARCO sample, CPU unless a GPU is present, bf16 where
    it is fast), with ``overrides``."""
    return {
        "output_dir": "outputs/tct-demo",
        "max_steps": 120,
        "per_device_train_batch_size": 16,
        "learning_rate": 3e-5,
        "warmup_steps": 0.1,
        "lr_scheduler_type": "linear",
        "weight_decay": 0.01,
        "adam_epsilon": 1e-6,
        "max_grad_norm": 1.0,
        "logging_steps": 20,
        "save_strategy": "no",
        "report_to": "none",
        "seed": 42,
        "dataloader_drop_last": True,
        "use_cpu": not torch.cuda.is_available(),
        "bf16": fast_bf16(),
        **overrides,
    }


def parse_script_arguments(
    argv: Sequence[str], dataclass_types: Sequence[type], defaults: dict[str, Any] | None = None
) -> tuple:
    """One ``.yaml``/``.yml``/``.json`` config file (every argument from it), or flags over ``defaults``; returns one
    instance per dataclass, in order (`transformers.HfArgumentParser`; the training arguments last, the data
    arguments second).

    ``--save_steps N`` without ``--save_strategy`` means checkpoints every N steps (a default strategy "no" would
    otherwise ignore it and write none); with ``--save_strategy no`` it is refused. A non-empty ``--output_dir`` is
    refused unless ``--overwrite_output_dir`` or ``--resume_from_checkpoint`` says that is meant."""
    parser = HfArgumentParser(tuple(dataclass_types))
    argv = list(argv)
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return check_output_dir(parser.parse_yaml_file(os.path.abspath(argv[0])))
    if len(argv) == 1 and argv[0].endswith(".json"):
        return check_output_dir(parser.parse_json_file(os.path.abspath(argv[0])))
    defaults = dict(defaults or {})
    given = {arg.split("=", 1)[0][2:].replace("-", "_") for arg in argv if arg.startswith("--")}
    if "save_steps" in given and "save_strategy" not in given:
        defaults["save_strategy"] = "steps"
    parser.set_defaults(**defaults)
    parsed = parser.parse_args_into_dataclasses(args=argv)
    if "save_steps" in given and str(getattr(parsed[-1].save_strategy, "value", parsed[-1].save_strategy)) == "no":
        raise ScriptArgumentError(
            "--save_steps with --save_strategy no would write no checkpoint: drop one of the two"
        )
    return check_output_dir(parsed)


def check_output_dir(parsed: tuple) -> tuple:
    """Refuse a non-empty ``--output_dir`` (a previous run's model would be overwritten file by file) unless
    ``--overwrite_output_dir`` or ``--resume_from_checkpoint`` says that is meant (`tct_hf.outputs`)."""
    data, training = parsed[1], parsed[-1]
    meant = bool(getattr(data, "overwrite_output_dir", False) or training.resume_from_checkpoint)
    try:
        check_output(training.output_dir, TRAINING_OUTPUT, overwrite=meant)
    except OutputExistsError as error:
        raise ScriptArgumentError(
            f"--output_dir {training.output_dir} already exists and is not empty (or is a file). Fix: choose another "
            "--output_dir, pass --overwrite_output_dir to write into it, or --resume_from_checkpoint to continue a "
            f"run. ({error})"
        ) from None
    return parsed
