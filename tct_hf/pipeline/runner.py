"""`run_pipeline(config)`: check everything, then run (or skip) each stage in order and write `report.json`.

Checks before any work (each a `PipelineConfigError` naming the field and the fix): unknown, repeated or misordered
stages, a negative ``refresh_rounds``, bad field values, missing data files, a stage whose input no earlier stage
produces and the configuration does not give (e.g. ``mine`` without ``warmup`` nor ``warmup_student``), and a given
teacher whose tokenizer cannot read the training texts (`tct_hf.retrieval.mining.check_teacher_reads`).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import records
from .config import PipelineConfig, PipelineConfigError, check_config, plan_stages
from .stages import STAGE_FUNCTIONS, Context, read_collection

logger = logging.getLogger(__name__)

# The configuration fields each stage's result depends on (its fingerprint); the data files and the fields in COMMON
# count for every stage (its dev metrics depend on them too).
COMMON_FIELDS = ("seed", "batch_size", "query_max_length", "passage_max_length", "num_negatives", "min_relevance",
                 "bm25_depth", "evaluate_stages", "evaluate_teacher", "documents")  # fmt: skip
STAGE_FIELDS = {
    "warmup": (
        "teacher_steps",
        "warmup_student_steps",
        "learning_rate",
        "teacher_learning_rate",
        "teacher_dim",
        "temperature",
    ),  # fmt: skip
    "mine": ("mine_depth", "teacher_margin", "teacher_margin_type"),
    "teacher": ("hn_teacher_steps", "teacher_learning_rate", "negatives"),
    "student": ("hn_student_steps", "learning_rate", "temperature", "negatives"),
    "final": (),
}
DATA_FIELDS = ("collection", "train_queries", "train_qrels", "dev_collection", "dev_queries", "dev_qrels")
SAMPLE_FILES = {"collection": "collection", "train_queries": "queries_train", "train_qrels": "qrels_train",
                "dev_collection": "collection", "dev_queries": "queries_dev", "dev_qrels": "qrels_dev"}  # fmt: skip
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


@dataclass
class Source:
    """Where a stage input comes from: a path, and the id its fingerprint uses (a producing stage's run id)."""

    path: str
    identity: Any


def stage_inputs(kind: str, config: PipelineConfig) -> tuple[str, ...]:
    """Names of the inputs a stage of ``kind`` reads."""
    hn_plus = ("bm25_examples",) if config.negatives == "hn+" else ()
    return {
        "warmup": ("backbone",) + (("teacher",) if config.teacher_model else ()),
        "mine": ("student",) + (("teacher",) if config.teacher_margin is not None else ()),
        "teacher": ("teacher", "negatives", *hn_plus),
        "student": ("student", "teacher", "negatives", *hn_plus),
        "final": ("student",),
    }[kind]


STAGE_OUTPUTS = {
    "warmup": ("student", "teacher", "bm25_examples"),
    "mine": ("negatives",),
    "teacher": ("teacher",),
    "student": ("student",),
    "final": (),
}
_FIXES = {
    "student": "add 'warmup' to stages or give warmup_student",
    "teacher": "add 'warmup' to stages or give teacher_model",
    "negatives": "add 'mine' before it in stages",
    "bm25_examples": "add 'warmup' to stages (it writes the BM25 examples) or use negatives: hn",
}


def check_inputs(plan: list[tuple[str, str, int]], config: PipelineConfig) -> None:
    """Every stage's inputs come from an earlier stage or from the configuration."""
    available = {"backbone"} | ({"student"} if config.warmup_student else set())
    available |= {"teacher"} if config.teacher_model else set()
    for name, kind, _ in plan:
        for needed in stage_inputs(kind, config):
            if needed not in available:
                raise PipelineConfigError(f"stage {name} needs a {needed.replace('_', ' ')}: {_FIXES[needed]}")
        available |= set(STAGE_OUTPUTS[kind])


def resolve_paths(config: PipelineConfig) -> dict[str, str]:
    """The data files (the embedded sample when no training data is given); each must exist."""
    from tct_hf.data import sample_paths

    paths = {name: getattr(config, name) for name in DATA_FIELDS}
    if not any(paths[name] for name in ("collection", "train_queries", "train_qrels")):
        sample = sample_paths()
        paths = {name: paths[name] or str(sample[key]) for name, key in SAMPLE_FILES.items()}
    paths["dev_collection"] = paths["dev_collection"] or paths["collection"]
    for name in DATA_FIELDS:
        if not paths[name]:
            raise PipelineConfigError(f"{name} is not set: give collection, train_queries, train_qrels, dev_queries "
                                      "and dev_qrels (or none of them, for the embedded sample)")  # fmt: skip
        if not Path(paths[name]).is_file():
            raise PipelineConfigError(f"{name}: {paths[name]} is not a file")
    return paths


def check_model_path(name: str, value: str | None) -> None:
    if value and not Path(value).exists() and not _HUB_ID.fullmatch(value):
        raise PipelineConfigError(f"{name}: {value} is neither a folder nor a Hub id")


def resolve_documents(config: PipelineConfig, paths: dict[str, str]) -> None:
    """Documents are on when asked for or when either collection is laid out like msmarco-docs.tsv (as in
    `tct_hf.training.data_arguments.read_collection`); the resolved value is what the fingerprints hash."""
    from tct_hf.data.documents import is_msmarco_documents

    config.documents = bool(config.documents) or any(
        is_msmarco_documents(paths[name]) for name in ("collection", "dev_collection")
    )


def default_backbone() -> str:
    """The demo's backbone (`tct_hf.backbones.default_backbone`), its absence a configuration error."""
    from tct_hf.backbones import MissingBackboneError
    from tct_hf.backbones import default_backbone as backbone

    try:
        return backbone(instead="set student_model")
    except MissingBackboneError as error:
        raise PipelineConfigError(str(error)) from error


def check_teacher_tokenizer(teacher_model: str, paths: dict[str, str], config: PipelineConfig) -> None:
    """A given teacher must read the training queries and passages (a sample of each) before any work starts."""
    from tct_hf import ColBERTModel
    from tct_hf.data import read_queries
    from tct_hf.retrieval.mining import TOKENIZER_CHECK_SAMPLE, check_teacher_reads

    teacher = ColBERTModel.from_pretrained(teacher_model)
    queries = list(read_queries(paths["train_queries"]).values())[:TOKENIZER_CHECK_SAMPLE]
    corpus = read_collection(paths["collection"], config)
    passages = [text or "" for text in corpus.select(range(min(TOKENIZER_CHECK_SAMPLE, len(corpus))))["text"]]
    try:
        check_teacher_reads(teacher, queries, "queries")
        check_teacher_reads(teacher, passages, "passages")
    except ValueError as error:
        raise PipelineConfigError(f"teacher_model {teacher_model}: {error}") from error


def _process_state(use_cpu: bool):
    from accelerate import PartialState

    return PartialState(cpu=use_cpu)


def stage_fingerprint(kind: str, round_: int, config: PipelineConfig, context: Context, inputs: dict[str, Source]):
    fields = {name: getattr(config, name) for name in (*COMMON_FIELDS, *STAGE_FIELDS[kind])}
    payload = {
        "kind": kind,
        "round": round_,
        "config": fields,
        "bf16": context.bf16,
        "data": {name: records.path_fingerprint(path) for name, path in context.paths.items()},
        "inputs": {name: source.identity for name, source in inputs.items()},
    }
    return records.fingerprint(payload), fields


def run_pipeline(config: PipelineConfig, stage_functions: dict | None = None) -> dict[str, Any]:
    """Run the pipeline of ``config`` (see the package docstring); returns the report also written to
    ``output_dir/report.json``. ``stage_functions`` replaces stage kinds' functions (tests inject failures)."""
    import torch

    from tct_hf.training.teacher import resolve_teacher_dtype

    # 1. Checks, before any work.
    check_config(config)
    plan = plan_stages(config)
    check_inputs(plan, config)
    paths = resolve_paths(config)
    resolve_documents(config, paths)
    for name in ("student_model", "teacher_model", "warmup_student"):
        check_model_path(name, getattr(config, name))
    backbone = config.student_model or default_backbone()
    if config.teacher_model:
        check_teacher_tokenizer(config.teacher_model, paths, config)

    # 2. Processes and devices.
    use_cpu = config.use_cpu if config.use_cpu is not None else not torch.cuda.is_available()
    state = _process_state(use_cpu)
    bf16 = config.bf16 if config.bf16 is not None else resolve_teacher_dtype("auto", state.device) == torch.bfloat16
    context = Context(config=config, paths=paths, state=state, use_cpu=use_cpu, bf16=bf16)
    functions = {**STAGE_FUNCTIONS, **(stage_functions or {})}
    output_dir = Path(config.output_dir)
    if state.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

    # 3. Stages.
    latest: dict[str, Source] = {"backbone": Source(backbone, records.path_fingerprint(backbone))}
    if config.warmup_student:
        latest["student"] = Source(config.warmup_student, records.path_fingerprint(config.warmup_student))
    if config.teacher_model:
        latest["teacher"] = Source(config.teacher_model, records.path_fingerprint(config.teacher_model))
    report_stages = []
    for name, kind, round_ in plan:
        stage_dir = output_dir / name
        inputs = {needed: latest[needed] for needed in stage_inputs(kind, config)}
        expected, fields = stage_fingerprint(kind, round_, config, context, inputs)
        state.wait_for_everyone()
        record = records.is_done(stage_dir, expected)
        skipped = record is not None
        if skipped:
            logger.info("stage %s: done before with the same inputs, skipped", name)
        else:
            state.wait_for_everyone()  # every process has read the folder before it changes
            resume = False
            if state.is_main_process:
                resume = records.prepare(stage_dir, expected)
            resume = _broadcast(state, resume)
            logger.info("stage %s: running%s", name, " (resuming its checkpoint)" if resume else "")
            started = time.perf_counter()
            outputs, metrics = functions[kind](context, stage_dir, {k: v.path for k, v in inputs.items()}, resume)
            state.wait_for_everyone()
            if state.is_main_process:
                records.finish(
                    stage_dir,
                    {
                        "name": name,
                        "kind": kind,
                        "round": round_,
                        "fingerprint": expected,
                        "config": fields,
                        "inputs": {k: {"path": v.path, "identity": v.identity} for k, v in inputs.items()},
                        "outputs": outputs,
                        "metrics": metrics,
                        "seconds": round(time.perf_counter() - started, 1),
                    },
                )
            state.wait_for_everyone()
            record = records.read_record(stage_dir)
        for output, relative in record["outputs"].items():
            latest[output] = Source(str(stage_dir / relative), record["run_id"])
        report_stages.append(
            {
                "name": name,
                "kind": kind,
                "round": round_,
                "skipped": skipped,
                "seconds": record["seconds"],
                "metrics": record["metrics"],
            }
        )

    # 4. Report.
    report = {
        "output_dir": str(output_dir.resolve()),
        "final_student": str(Path(latest["student"].path).resolve()) if "student" in latest else None,
        "stages": report_stages,
        "dev_metrics": {
            stage["name"]: {who: stage["metrics"][who] for who in ("teacher", "student") if stage["metrics"].get(who)}
            for stage in report_stages
            if any(stage["metrics"].get(who) for who in ("teacher", "student"))
        },
    }
    if state.is_main_process:
        records.write_json_atomically(output_dir / "report.json", report)
    state.wait_for_everyone()
    return report


def _broadcast(state, value: bool) -> bool:
    """The main process's ``value`` on every process."""
    if state.num_processes <= 1:
        return value
    from accelerate.utils import broadcast_object_list

    holder = [value]
    broadcast_object_list(holder, from_process=0)
    return bool(holder[0])


def end_processes() -> None:
    """After the last stage of a multi-process run: wait for every process, then destroy the process group (a gloo
    group left to the interpreter's exit can abort it; see `tct_hf.training.shutdown`)."""
    import gc

    import torch.distributed

    from tct_hf.retrieval.encode_index import release_process_group

    gc.collect()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    release_process_group()
