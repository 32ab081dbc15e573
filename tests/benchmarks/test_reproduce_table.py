"""benchmarks/reproduce_table.py renders both layouts of reproduce.py's JSON (Table 2 study and the --st study): every
summary row, every t-test, every trained variant's timing, with the numbers copied from the JSON."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "reproduce_table.py"


def load_script():
    spec = importlib.util.spec_from_file_location("reproduce_table_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def metric(mean: float, std: float = 0.0) -> dict:
    return {name: {"mean": mean, "std": std} for name in ("nDCG@10", "RR@10", "R@100")}


def study(variants: list[str]) -> dict:
    timings = {name: {"steps": 20, "seconds_per_step": 1.5 + i} for i, name in enumerate(variants)}
    return {
        "per_seed": [{"seed": s, "timings": {**timings, "seed_total_seconds": 100.0 + s}} for s in range(2)],
        "summary": {"bm25": metric(0.3), **{name: metric(0.4 + i / 100, 0.01) for i, name in enumerate(variants)}},
        "t_tests_nDCG@10": {
            f"{variants[0]}_vs_{name}": {
                "pooled_per_query": {"mean_difference": -0.01 * i, "t": 1.0, "p": 0.5, "pairs": 10},
                "seed_means": {"p": 0.25},
            }
            for i, name in enumerate(variants[1:], start=1)
        },
    }


def test_st_study_renders_every_variant_comparison_and_timing():
    module = load_script()
    variants = ["st_in_batch_kd", "st_mnrl", "st_distill_kl", "tct_in_batch"]
    text = module.render(study(variants))
    for name in variants:
        assert f"| {module.ROW_NAMES[name]} | " in text
    assert "| st_in_batch_kd vs st_distill_kl | -0.0200 | 1.00 | 0.5 (10 pairs) | 0.25 |" in text
    assert "| 1 | 20 × 1.50 s | 20 × 2.50 s | 20 × 3.50 s | 20 × 4.50 s | 101 s |" in text
    assert "| all-MiniLM-L6-v2, native pipeline + MultipleNegativesRankingLoss (no teacher) | 0.4100 ± 0.0100" in text


def test_table2_study_keeps_its_rows_and_the_teacher_timing():
    module = load_script()
    text = module.render(study(["in_batch", "none", "pairwise"]))
    assert "| (3) in-batch KD = TCT | 0.4000 ± 0.0100" in text
    assert "| in_batch vs pairwise | -0.0200 |" in text
    assert "| seed | in_batch | none | pairwise | seed total |" in text
