"""The work of each stage, over the library's own API: `ColBERTTrainer`, `TCTTrainer`, `encode_corpus`,
`mine_hard_negatives`, `evaluate_student` / `evaluate_teacher`, `evaluate_run`. Orchestration only.

Every stage function is ``run_<kind>(context, stage_dir, inputs, resume) -> (outputs, metrics)``: ``inputs`` maps
names (``student``, ``teacher``, ``negatives``, ``bm25_examples``) to paths, ``outputs`` maps names to paths
relative to ``stage_dir``, and ``metrics`` holds the stage's dev metrics. Every process runs every stage: training
is distributed by the Trainer, encoding is sharded over the processes (one contiguous slice each, merged by the
main process), mining, evaluation and writing happen on the main process while the others wait.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import set_seed

from .config import PipelineConfig

logger = logging.getLogger(__name__)


def read_collection(path: str, config: PipelineConfig):
    """A passage collection, or (``config.documents``) documents as FirstP passages cut to ``passage_max_length``:
    the one reader of every stage (BM25 examples, mining corpus, encoding, dev set), as the training scripts read
    them (`tct_hf.training.data_arguments.read_collection`)."""
    from tct_hf.data.documents import firstp_dataset
    from tct_hf.data.msmarco import load_collection

    if config.documents:
        return firstp_dataset(path, max_tokens=config.passage_max_length)
    return load_collection(path)


@dataclass
class Context:
    """What every stage shares: the configuration, resolved data paths, the process state and the dev set."""

    config: PipelineConfig
    paths: dict[str, str]
    state: Any  # accelerate.PartialState
    use_cpu: bool
    bf16: bool
    _dev: Any = field(default=None, repr=False)
    _collections: dict[str, Any] = field(default_factory=dict, repr=False)

    def collection(self, name: str):
        """The ``collection`` or ``dev_collection`` as passages (`read_collection`), read once."""
        if name not in self._collections:
            self._collections[name] = read_collection(self.paths[name], self.config)
        return self._collections[name]

    @property
    def eval_dtype(self):
        return torch.bfloat16 if self.bf16 else None

    def dev(self):
        """The dev set every stage is evaluated on (read once)."""
        if self._dev is None:
            from tct_hf.data.msmarco import load_queries, qrels_to_dict
            from tct_hf.evaluation.metrics import DOCUMENT_METRICS
            from tct_hf.training import DevSet

            collection = self.collection("dev_collection")
            queries = {row["id"]: row["text"] for row in load_queries(self.paths["dev_queries"])}
            metrics = {"metrics": DOCUMENT_METRICS} if self.config.documents else {}
            self._dev = DevSet(
                collection["id"], collection["text"], queries, qrels_to_dict(self.paths["dev_qrels"]), **metrics
            )
        return self._dev

    def barrier(self) -> None:
        self.state.wait_for_everyone()


def _training_arguments(context: Context, cls, trainer_dir: Path, steps: int, learning_rate: float, **extra):
    config = context.config
    return cls(
        output_dir=str(trainer_dir),
        max_steps=steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=learning_rate,
        warmup_steps=0.1,
        lr_scheduler_type="linear",
        weight_decay=0.01,
        adam_epsilon=1e-6,
        max_grad_norm=1.0,
        logging_steps=config.logging_steps,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        report_to="none",
        seed=config.seed,
        dataloader_drop_last=True,
        use_cpu=context.use_cpu,
        bf16=context.bf16,
        query_max_length=config.query_max_length,
        passage_max_length=config.passage_max_length,
        num_negatives=config.num_negatives,
        **extra,
    )


def _checkpoint(trainer_dir: Path, resume: bool) -> bool:
    """Resume from the Trainer's last checkpoint when this attempt left one (see `records.prepare`)."""
    return resume and any(trainer_dir.glob("checkpoint-*"))


def train_teacher(context: Context, teacher, examples, output: Path, steps: int, resume: bool) -> dict[str, float]:
    """Fine-tune ``teacher`` in place with `ColBERTTrainer`, save it to ``output``; returns train metrics."""
    from tct_hf.data import TCTCollator
    from tct_hf.training import ColBERTTrainer, ColBERTTrainingArguments

    set_seed(context.config.seed)
    trainer_dir = output.parent / f"{output.name}-trainer"
    args = _training_arguments(
        context, ColBERTTrainingArguments, trainer_dir, steps, context.config.teacher_learning_rate
    )
    trainer = ColBERTTrainer(
        model=teacher,
        args=args,
        train_dataset=examples,
        data_collator=TCTCollator.from_training_args(args, teacher=teacher),
    )
    result = trainer.train(resume_from_checkpoint=_checkpoint(trainer_dir, resume))
    trainer.save_model(str(output))
    teacher.eval()
    return {"train_loss": round(float(result.training_loss), 4), "train_seconds": result.metrics["train_runtime"]}


def train_student(
    context: Context, student, teacher, examples, output: Path, steps: int, resume: bool
) -> dict[str, float]:
    """Distil ``student`` in place from ``teacher`` with `TCTTrainer` (in-batch KD), save it to ``output``."""
    from tct_hf.data import TCTCollator
    from tct_hf.training import TCTTrainer, TCTTrainingArguments

    set_seed(context.config.seed)
    trainer_dir = output.parent / f"{output.name}-trainer"
    args = _training_arguments(
        context,
        TCTTrainingArguments,
        trainer_dir,
        steps,
        context.config.learning_rate,
        kd_mode="in_batch",
        temperature=context.config.temperature,
    )
    trainer = TCTTrainer(
        model=student,
        teacher=teacher,
        args=args,
        train_dataset=examples,
        data_collator=TCTCollator.from_training_args(args, student=student, teacher=teacher),
    )
    result = trainer.train(resume_from_checkpoint=_checkpoint(trainer_dir, resume))
    trainer.save_model(str(output))
    student.eval()
    return {"train_loss": round(float(result.training_loss), 4), "train_seconds": result.metrics["train_runtime"]}


def _drop_trainer_dirs(stage_dir: Path, context: Context) -> None:
    """Trainer checkpoints served only to resume this stage: gone once it has finished."""
    if context.state.is_main_process:
        for trainer_dir in stage_dir.glob("*-trainer"):
            shutil.rmtree(trainer_dir, ignore_errors=True)


def _load_teacher(path: str):
    from tct_hf import ColBERTModel

    return ColBERTModel.from_pretrained(path)


def _teacher_metrics(context: Context, teacher) -> dict[str, float] | None:
    from tct_hf.training import evaluate_teacher

    if not context.config.evaluate_teacher:
        return None
    return evaluate_teacher(
        teacher, context.dev(), batch_size=context.config.encode_batch_size, autocast_dtype=context.eval_dtype
    )


def _student_metrics(context: Context, student) -> dict[str, float]:
    from tct_hf.training import evaluate_student

    return evaluate_student(
        student, context.dev(), batch_size=context.config.encode_batch_size, autocast_dtype=context.eval_dtype
    )


def bm25_examples(context: Context):
    """(train query, positive with grade >= min_relevance, BM25 negatives from the top bm25_depth)."""
    from tct_hf.data import build_training_examples
    from tct_hf.data.msmarco import load_queries, qrels_to_dict
    from tct_hf.retrieval.bm25 import bm25_search

    config = context.config
    collection = context.collection("collection")
    queries = {row["id"]: row["text"] for row in load_queries(context.paths["train_queries"])}
    qrels = qrels_to_dict(context.paths["train_qrels"])
    qids = [qid for qid in queries if qid in qrels]
    run = bm25_search(collection["id"], collection["text"], qids, [queries[q] for q in qids], k=config.bm25_depth)
    return build_training_examples(
        {qid: queries[qid] for qid in qids},
        qrels,
        collection,
        run,
        num_negatives=config.num_negatives,
        min_relevance=config.min_relevance,
        depth=config.bm25_depth,
        seed=config.seed,
        on_short="skip",
    )


def run_warmup(context: Context, stage_dir: Path, inputs: dict[str, str], resume: bool):
    """BM25 examples; the teacher (given, or fine-tuned from the student's backbone on them); the student distilled
    from it on them (the paper's TCT-ColBERT before hard negatives)."""
    import datasets

    from tct_hf import ColBERTModel, TCTModel

    config = context.config
    examples_dir, teacher_dir, student_dir = stage_dir / "bm25-examples", stage_dir / "teacher", stage_dir / "student"
    if not (resume and (examples_dir / "dataset_info.json").exists()):
        if context.state.is_main_process:
            from tct_hf.retrieval.mining import save_mined_negatives

            save_mined_negatives(bm25_examples(context), examples_dir)
        context.barrier()
    examples = datasets.load_from_disk(str(examples_dir))
    if len(examples) < config.batch_size:
        raise ValueError(
            f"only {len(examples)} BM25 training examples for batches of {config.batch_size}: lower batch_size or "
            "give more training queries"
        )
    metrics: dict[str, Any] = {"bm25_examples": len(examples)}
    outputs = {"bm25_examples": "bm25-examples", "student": "student"}
    if inputs.get("teacher"):
        teacher = _load_teacher(inputs["teacher"])
    elif resume and (teacher_dir / "config.json").exists() and (teacher_dir / "model.safetensors").exists():
        teacher = _load_teacher(str(teacher_dir))
        outputs["teacher"] = "teacher"
    else:
        teacher = ColBERTModel.from_pretrained(inputs["backbone"], convention="tct", dim=config.teacher_dim)
        metrics["teacher_training"] = train_teacher(
            context, teacher, examples, teacher_dir, config.teacher_steps, resume
        )
        outputs["teacher"] = "teacher"
    student = TCTModel.from_pretrained(inputs["backbone"])
    metrics["student_training"] = train_student(
        context, student, teacher, examples, student_dir, config.warmup_student_steps, resume
    )
    if context.state.is_main_process and context.config.evaluate_stages:
        metrics["teacher"] = _teacher_metrics(context, teacher)
        metrics["student"] = _student_metrics(context, student)
    _drop_trainer_dirs(stage_dir, context)
    return outputs, metrics


def encode_to_index(context: Context, student, corpus, index_dir: Path) -> None:
    """Encode ``corpus`` with ``student`` into ``index_dir`` with `encode_index` (what `tct-hf encode` runs: one
    shard per process under a distributed launch, merged by the main process)."""
    from tct_hf.retrieval.encode_index import encode_index

    encode_index(
        student,
        corpus,
        index_dir,
        batch_size=context.config.encode_batch_size,
        overwrite=True,
        show_progress_bar=context.state.is_main_process,
    )
    context.barrier()


def run_mine(context: Context, stage_dir: Path, inputs: dict[str, str], resume: bool):
    """Index the training collection with the latest student; mine its top ``mine_depth`` (teacher-filtered when
    ``teacher_margin`` is set) into ``negatives``."""
    from tct_hf import TCTModel
    from tct_hf.retrieval.index import load_index
    from tct_hf.retrieval.mining import mine_hard_negatives, save_mined_negatives

    config = context.config
    student = TCTModel.from_pretrained(inputs["student"]).to(context.state.device)
    encode_to_index(context, student, context.collection("collection"), stage_dir / "index")
    metrics: dict[str, Any] = {}
    if context.state.is_main_process:
        teacher = None
        if config.teacher_margin is not None:
            teacher = _load_teacher(inputs["teacher"]).to(context.state.device)
        mined = mine_hard_negatives(
            student,
            load_index(stage_dir / "index"),
            context.paths["train_queries"],
            context.paths["train_qrels"],
            depth=config.mine_depth,
            num_negatives=config.num_negatives,
            seed=config.seed,
            collection=context.collection("collection"),
            batch_size=config.encode_batch_size,
            teacher=teacher,
            teacher_margin=config.teacher_margin or 0.0,
            teacher_margin_type=config.teacher_margin_type,
            teacher_batch_size=config.encode_batch_size,
        )
        save_mined_negatives(mined, stage_dir / "negatives")
        metrics["mined_examples"] = len(mined)
        if "teacher_dropped" in mined.column_names:
            dropped = mined["teacher_dropped"]
            metrics["teacher_dropped_per_example"] = round(sum(dropped) / max(len(dropped), 1), 3)
    context.barrier()
    return {"index": "index", "negatives": "negatives"}, metrics


def training_set(context: Context, inputs: dict[str, str]):
    """HN: the mined examples; HN+: the BM25 examples and the mined ones together, shuffled (same columns)."""
    import datasets

    mined = datasets.load_from_disk(inputs["negatives"])
    if context.config.negatives == "hn":
        examples = mined
    else:
        bm25 = datasets.load_from_disk(inputs["bm25_examples"])
        mined = mined.select_columns(bm25.column_names).cast(bm25.features)
        examples = datasets.concatenate_datasets([bm25, mined]).shuffle(seed=context.config.seed).flatten_indices()
    if len(examples) < context.config.batch_size:
        raise ValueError(
            f"only {len(examples)} training examples for batches of {context.config.batch_size}: lower batch_size, "
            "mine deeper (mine_depth) or filter less (teacher_margin)"
        )
    return examples


def run_teacher(context: Context, stage_dir: Path, inputs: dict[str, str], resume: bool):
    """Fine-tune the latest teacher on the mined negatives (HN or HN+, as the student): the paper's step that makes
    hard negatives help."""
    teacher = _load_teacher(inputs["teacher"])
    metrics: dict[str, Any] = {
        "training": train_teacher(
            context, teacher, training_set(context, inputs), stage_dir / "teacher",
            context.config.hn_teacher_steps, resume,
        )
    }  # fmt: skip
    if context.state.is_main_process and context.config.evaluate_stages:
        metrics["teacher"] = _teacher_metrics(context, teacher)
    _drop_trainer_dirs(stage_dir, context)
    return {"teacher": "teacher"}, metrics


def run_student(context: Context, stage_dir: Path, inputs: dict[str, str], resume: bool):
    """Continue distilling the latest student from the latest teacher on HN+ (or HN)."""
    from tct_hf import TCTModel

    student = TCTModel.from_pretrained(inputs["student"])
    teacher = _load_teacher(inputs["teacher"])
    metrics: dict[str, Any] = {
        "training": train_student(
            context, student, teacher, training_set(context, inputs), stage_dir / "student",
            context.config.hn_student_steps, resume,
        )
    }  # fmt: skip
    if context.state.is_main_process and context.config.evaluate_stages:
        metrics["student"] = _student_metrics(context, student)
    _drop_trainer_dirs(stage_dir, context)
    return {"student": "student"}, metrics


def run_final(context: Context, stage_dir: Path, inputs: dict[str, str], resume: bool):
    """Encode the dev collection with the last student into a faiss index, search the dev queries, evaluate."""
    from tct_hf import TCTModel
    from tct_hf.data.run_files import write_run
    from tct_hf.evaluation.metrics import evaluate_run
    from tct_hf.retrieval.index import load_index
    from tct_hf.retrieval.search import search

    student = TCTModel.from_pretrained(inputs["student"]).to(context.state.device)
    encode_to_index(context, student, context.collection("dev_collection"), stage_dir / "index")
    metrics: dict[str, Any] = {}
    if context.state.is_main_process:
        dev = context.dev()
        index = load_index(stage_dir / "index")
        qids = list(dev.queries)
        embeddings = student.encode_queries(
            [dev.queries[q] for q in qids], batch_size=context.config.encode_batch_size
        )
        run = search(index, embeddings, qids, k=min(1000, index.count))
        write_run(run.to_dict(), stage_dir / "run.trec", tag="tct_hf-pipeline")
        metrics["student"] = dict(evaluate_run(run, dev.qrels, metrics=dev.metrics).metrics)
    context.barrier()
    return {"index": "index", "run": "run.trec"}, metrics


STAGE_FUNCTIONS = {
    "warmup": run_warmup,
    "mine": run_mine,
    "teacher": run_teacher,
    "student": run_student,
    "final": run_final,
}
