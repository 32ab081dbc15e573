"""The HN+ pipeline's ablations at small scale (Cranfield), through `tct_hf.pipeline.run_pipeline`.

    HF_HUB_OFFLINE=1 python benchmarks/reproduce.py --pipeline --output benchmarks/results/reproduce_pipeline.json

Variants, per seed, all from the same warm-up (its stage folder is copied, so the pipeline skips it):

- ``warmup``: the warm-up student (TCT on BM25 negatives), stages warmup, final;
- ``hn_plus``: HN+ with the teacher re-trained on the mined negatives (warmup, mine, teacher, student, final);
- ``hn_plus_frozen_teacher``: HN+ with the warm-up teacher (warmup, mine, student, final; mining copied from hn_plus);
- ``hn_plus_filtered``: ``hn_plus`` with teacher-filtered mining (margin 0: every candidate the warm-up teacher
  scores at or above the positive is dropped);
- ``hn_plus_refresh``: ``hn_plus`` plus one refresh round (mine, teacher, student again; its first round copied).

Metrics: each variant's final stage (faiss index of the collection, the held-out queries' top 1000) through
`evaluate_run`: nDCG@10, RR@10, R@100 and per-query nDCG@10. Statistics as in `reproduce.py`: mean ± std over seeds,
and paired t-tests on per-query nDCG@10 pooled over seeds: hn_plus vs warmup, vs hn_plus_frozen_teacher, and
hn_plus_filtered and hn_plus_refresh vs hn_plus.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("reproduce.pipeline")

METRICS = ("nDCG@10", "RR@10", "R@100")
# reproduce.py's --teacher-steps (warm-up teacher), --student-steps (warm-up student), --hn-steps (each teacher and
# student stage after mining); the full preset is sized for a small CPU machine (its time is in benchmarks/RESULTS.md).
PIPELINE_FULL = {"seeds": 3, "teacher_steps": 16, "student_steps": 16, "hn_steps": 8}
PIPELINE_QUICK = {"seeds": 1, "teacher_steps": 8, "student_steps": 8, "hn_steps": 4}
MINE_DEPTH = 50
VARIANTS = {
    "warmup": ({"stages": ["warmup", "final"]}, None, ()),
    "hn_plus": ({}, "warmup", ("1-warmup",)),
    "hn_plus_frozen_teacher": ({"stages": ["warmup", "mine", "student", "final"]}, "hn_plus", ("1-warmup", "2-mine")),
    "hn_plus_filtered": ({"teacher_margin": 0.0}, "warmup", ("1-warmup",)),
    "hn_plus_refresh": ({"refresh_rounds": 1}, "hn_plus", ("1-warmup", "2-mine", "3-teacher", "4-student")),
}
COMPARISONS = (
    ("hn_plus", "warmup"),
    ("hn_plus", "hn_plus_frozen_teacher"),
    ("hn_plus_filtered", "hn_plus"),
    ("hn_plus_refresh", "hn_plus"),
)


def steps_of(config) -> dict[str, int]:
    return {"teacher_steps": config.teacher_steps, "warmup_student_steps": config.student_steps,
            "hn_teacher_steps": config.hn_steps, "hn_student_steps": config.hn_steps}  # fmt: skip


def write_data(data: dict[str, Any], folder: Path) -> dict[str, str]:
    """The split Cranfield data as the pipeline's files (TSV collection and queries, TREC qrels). A file that already
    holds the same text is left alone, so a rerun in the same --work-dir keeps the stages' fingerprints."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = {"collection.tsv": "".join(f"{docid}\t{text}\n" for docid, text in zip(data["docids"], data["texts"]))}
    for split, queries, qrels in (("train", "train_queries", "train_qrels"), ("dev", "test_queries", "test_qrels")):
        texts[f"queries.{split}.tsv"] = "".join(f"{q}\t{t}\n" for q, t in data[queries].items())
        texts[f"qrels.{split}.txt"] = "".join(f"{q} 0 {d} {r}\n" for q, judged in data[qrels].items()
                                             for d, r in judged.items())  # fmt: skip
    for name, text in texts.items():
        path = folder / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    return {"collection": str(folder / "collection.tsv"),
            **{f"{split}_{kind}": str(folder / f"{kind}.{split}.{'tsv' if kind == 'queries' else 'txt'}")
               for split in ("train", "dev") for kind in ("queries", "qrels")}}  # fmt: skip


def final_metrics(final_dir: Path, qrels) -> dict[str, Any]:
    """A final stage's run.trec through `evaluate_run`: the metrics and per-query nDCG@10."""
    from tct_hf.data.run_files import read_run
    from tct_hf.evaluation.metrics import evaluate_run

    result = evaluate_run(read_run(final_dir / "run.trec"), qrels, metrics=METRICS, per_query=True)
    summary = {name: float(value) for name, value in result.metrics.items()}
    summary["per_query_nDCG@10"] = {qid: float(v["nDCG@10"]) for qid, v in sorted(result.per_query.items())}
    return summary


def stage_summaries(output: Path) -> list[dict[str, Any]]:
    import json

    records = [json.loads(path.read_text()) for path in output.glob("*/stage.json")]
    records.sort(key=lambda record: int(record["name"].split("-")[0]))
    return [{key: record[key] for key in ("name", "seconds", "metrics")} for record in records]


def run_seed(config, data: dict[str, Any], paths: dict[str, str], seed: int, work_dir: Path) -> dict[str, Any]:
    from tct_hf.pipeline import PipelineConfig, run_pipeline

    base = dict(
        student_model=config.backbone,
        collection=paths["collection"],
        train_queries=paths["train_queries"],
        train_qrels=paths["train_qrels"],
        dev_queries=paths["dev_queries"],
        dev_qrels=paths["dev_qrels"],
        min_relevance=1,
        bm25_depth=config.negatives_depth,
        mine_depth=MINE_DEPTH,
        batch_size=config.batch_size,
        learning_rate=config.student_lr,
        teacher_learning_rate=config.teacher_lr,
        temperature=config.temperature,
        query_max_length=config.query_max_length,
        passage_max_length=config.passage_max_length,
        evaluate_stages=False,
        evaluate_teacher=False,
        seed=seed,
        bf16=config.bf16,
        use_cpu=True,
        logging_steps=50,
        **steps_of(config),
    )
    result: dict[str, Any] = {"seed": seed, "metrics": {}, "seconds": {}, "stages": {}}
    for name, (overrides, copy_from, copied) in VARIANTS.items():
        output = work_dir / f"seed{seed}" / name
        for stage in copied:
            if not (output / stage).exists():  # a rerun in the same --work-dir has them already
                shutil.copytree(work_dir / f"seed{seed}" / copy_from / stage, output / stage)
        started = time.perf_counter()
        report = run_pipeline(PipelineConfig(output_dir=str(output), **{**base, **overrides}))
        result["seconds"][name] = round(time.perf_counter() - started, 1)
        result["metrics"][name] = final_metrics(Path(report["output_dir"]) / report["stages"][-1]["name"],
                                                data["test_qrels"])  # fmt: skip
        result["stages"][name] = [
            {key: stage[key] for key in ("name", "skipped", "seconds", "metrics")} for stage in report["stages"]
        ]
        logger.info("seed %d %s: %s (%.0f s)", seed, name,
                    {m: round(result["metrics"][name][m], 4) for m in METRICS}, result["seconds"][name])  # fmt: skip
    return result


def summarize(per_seed: list[dict[str, Any]], variants=tuple(VARIANTS)) -> dict[str, Any]:
    summary = {}
    for variant in variants:
        summary[variant] = {}
        for metric in METRICS:
            values = [seed["metrics"][variant][metric] for seed in per_seed]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[variant][metric] = {"mean": statistics.fmean(values), "std": std}
    return summary


def paired_tests(per_seed: list[dict[str, Any]], variants=tuple(VARIANTS)) -> dict[str, Any]:
    from scipy.stats import ttest_rel

    tests = {}
    for ours, theirs in COMPARISONS:
        if ours not in variants or theirs not in variants:
            continue
        a, b = [], []
        for seed in per_seed:
            mine, other = seed["metrics"][ours]["per_query_nDCG@10"], seed["metrics"][theirs]["per_query_nDCG@10"]
            a += [mine[qid] for qid in mine]
            b += [other[qid] for qid in mine]
        pooled = ttest_rel(a, b)
        entry = {"pairs": len(a), "mean_difference": float(np.mean(np.subtract(a, b))), "t": float(pooled.statistic),
                 "p": float(pooled.pvalue)}  # fmt: skip
        if len(per_seed) > 1:
            by_seed = ttest_rel([s["metrics"][ours]["nDCG@10"] for s in per_seed],
                                [s["metrics"][theirs]["nDCG@10"] for s in per_seed])  # fmt: skip
            entry["seed_means_p"] = float(by_seed.pvalue)
        tests[f"{ours}_vs_{theirs}"] = entry
    return tests


def run_study(config, data: dict[str, Any], work_dir: Path) -> dict[str, Any]:
    """Every seed's variants, then the summary and the t-tests."""
    paths = write_data(data, work_dir / "data")
    per_seed = [run_seed(config, data, paths, seed, work_dir) for seed in range(config.seeds)]
    return {
        "steps": {
            **steps_of(config),
            "mine_depth": MINE_DEPTH,
            "bm25_depth": config.negatives_depth,
            "batch_size": config.batch_size,
        },  # fmt: skip
        "per_seed": per_seed,
        "summary": summarize(per_seed),
        "t_tests_nDCG@10": paired_tests(per_seed),
    }


LABELS = {
    "warmup": "warm-up: TCT on BM25 negatives",
    "hn_plus": "TCT HN+, teacher re-trained on the mined negatives",
    "hn_plus_frozen_teacher": "TCT HN+, warm-up teacher (not re-trained)",
    "hn_plus_filtered": "TCT HN+, re-trained teacher, teacher-filtered mining (margin 0)",
    "hn_plus_refresh": "TCT HN+ + 1 refresh round (2x HN+)",
}


def table(result: dict[str, Any]) -> str:
    """Markdown tables of a `reproduce.py --pipeline` JSON: metrics (mean ± std over seeds) and the t-tests."""
    seeds = len(result["per_seed"])
    lines = [f"| variant (Cranfield test queries, mean ± std over {seeds} seeds) | nDCG@10 | RR@10 | R@100 |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for variant, label in LABELS.items():
        if variant not in result["summary"]:
            continue
        cells = [f"{result['summary'][variant][m]['mean']:.4f} ± {result['summary'][variant][m]['std']:.4f}"
                 for m in METRICS]  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| comparison | Δ nDCG@10 (pooled) | t | p (pooled per query) | p (seed means) |",
              "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, entry in result["t_tests_nDCG@10"].items():
        ours, theirs = name.split("_vs_")
        seed_p = f"{entry['seed_means_p']:.3g}" if "seed_means_p" in entry else "–"
        lines.append(f"| {ours} vs {theirs} | {entry['mean_difference']:+.4f} | {entry['t']:.2f} | "
                     f"{entry['p']:.3g} ({entry['pairs']} pairs) | {seed_p} |")  # fmt: skip
    return "\n".join(lines)


def collect(work_dir: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The study from a --work-dir's stage folders (e.g. of an interrupted run): each seed's variants that have a
    finished final stage, evaluated as `run_seed` does; the summary and the t-tests cover the variants finished in
    every collected seed (the others are listed under ``unfinished``)."""
    from tct_hf.pipeline import PipelineConfig, plan_stages

    per_seed = []
    for seed_dir in sorted(work_dir.glob("seed*"), key=lambda path: int(path.name[4:])):
        finals = {name: seed_dir / name / plan_stages(PipelineConfig(**overrides))[-1][0]
                  for name, (overrides, _, _) in VARIANTS.items()}  # fmt: skip
        finished = [name for name, final in finals.items() if (final / "stage.json").is_file()]
        if finished:
            per_seed.append({
                "seed": int(seed_dir.name[4:]),
                "metrics": {name: final_metrics(finals[name], data["test_qrels"]) for name in finished},
                "stages": {name: stage_summaries(seed_dir / name) for name in VARIANTS if (seed_dir / name).is_dir()},
            })  # fmt: skip
    if not per_seed:
        raise SystemExit(f"{work_dir}: no variant has finished")
    common = [name for name in VARIANTS if all(name in seed["metrics"] for seed in per_seed)]
    return {
        "per_seed": per_seed,
        "unfinished": {seed["seed"]: [n for n in VARIANTS if n not in seed["metrics"]] for seed in per_seed},
        "summary": summarize(per_seed, common),
        "t_tests_nDCG@10": paired_tests(per_seed, common),
    }


if __name__ == "__main__":
    import argparse
    import json

    from reproduce import DATA_DIR, load_cranfield

    parser = argparse.ArgumentParser(description="Tables of a --pipeline result, or a result from a --work-dir.")
    parser.add_argument("command", choices=("table", "collect"))
    parser.add_argument("path", type=Path, help="table: the result JSON; collect: the --work-dir")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--train-queries", type=int, default=150)
    parser.add_argument("--split-seed", type=int, default=13)
    arguments = parser.parse_args()
    if arguments.command == "table":
        print(table(json.loads(arguments.path.read_text())))
    else:
        data = load_cranfield(arguments.data_dir, arguments.train_queries, arguments.split_seed)
        print(json.dumps(collect(arguments.path, data), indent=1))
