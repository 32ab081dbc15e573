"""Render the JSON of `benchmarks/reproduce.py` as Markdown tables (the numbers are copied, never recomputed).

    python benchmarks/reproduce_table.py results.json > table.md

Rows: BM25, the zero-shot starting points, the teacher and every student variant, each metric as mean ± sample std
over seeds (seed-independent rows have std 0); then the paired t-tests of TCT against every other row; then timings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROW_NAMES = {
    "bm25": "BM25 (bm25s, k1 0.9, b 0.4)",
    "zero_shot_sentence_transformers": "all-MiniLM-L6-v2, native sentence-transformers (reference)",
    "zero_shot_tct": "all-MiniLM-L6-v2 through TCT conventions, zero-shot (start of every student)",
    "teacher": "ColBERT teacher (fine-tuned MiniLM, dim 128, exhaustive MaxSim)",
    "none": "(1) in-batch negatives, no teacher",
    "pairwise": "(2) pairwise KD from the ColBERT teacher",
    "in_batch": "(3) in-batch KD = TCT",
    "tct_hn": "TCT HN (mined negatives)",
    "st_in_batch_kd": "all-MiniLM-L6-v2, native pipeline + tct_hf.st.InBatchKDLoss (in-batch KD)",
    "st_mnrl": "all-MiniLM-L6-v2, native pipeline + MultipleNegativesRankingLoss (no teacher)",
    "st_distill_kl": "all-MiniLM-L6-v2, native pipeline + DistillKLDivLoss (pairwise teacher scores)",
    "tct_in_batch": "TCT-convention student (TCTModel), in-batch KD",
    "tct_hn_plus": "TCT HN+ (BM25 + mined negatives)",
}
METRICS = ("nDCG@10", "RR@10", "R@100")


def metrics_table(result: dict[str, Any]) -> list[str]:
    seeds = len(result["per_seed"])
    lines = [
        f"| model (Cranfield test queries, mean ± std over {seeds} seed(s)) | " + " | ".join(METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for key, name in ROW_NAMES.items():
        if key not in result["summary"]:
            continue
        cells = [f"{result['summary'][key][m]['mean']:.4f} ± {result['summary'][key][m]['std']:.4f}" for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def t_test_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "| comparison | Δ nDCG@10 (pooled) | t | p (pooled per query) | p (seed means) |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, entry in result["t_tests_nDCG@10"].items():
        tested, _, other = key.partition("_vs_")
        pooled = entry["pooled_per_query"]
        by_seed = entry.get("seed_means", {}).get("p")
        seed_cell = f"{by_seed:.3g}" if by_seed is not None else "n/a"
        lines.append(
            f"| {tested} vs {other} | {pooled['mean_difference']:+.4f} | {pooled['t']:.2f} | "
            f"{pooled['p']:.3g} ({pooled['pairs']} pairs) | {seed_cell} |"
        )
    return lines


def timing_table(result: dict[str, Any]) -> list[str]:
    """Steps x seconds per step of every trained variant a seed's ``timings`` holds (the study's own order)."""
    variants = [key for key in result["per_seed"][0]["timings"] if key != "seed_total_seconds"]
    lines = ["| seed | " + " | ".join(variants) + " | seed total |", "|---:|" + "---:|" * (len(variants) + 1)]
    for seed in result["per_seed"]:
        t = seed["timings"]
        cells = [f"{t[k]['steps']} × {t[k]['seconds_per_step']:.2f} s" for k in variants]
        lines.append(f"| {seed['seed']} | " + " | ".join(cells) + f" | {t['seed_total_seconds']:.0f} s |")
    return lines


def render(result: dict[str, Any]) -> str:
    parts = [*metrics_table(result), "", *t_test_table(result), "", *timing_table(result)]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Markdown tables from reproduce.py's JSON")
    parser.add_argument("result", type=Path, help="the JSON written by reproduce.py --output")
    args = parser.parse_args(argv)
    print(render(json.loads(args.result.read_text())), end="")


if __name__ == "__main__":
    main()
