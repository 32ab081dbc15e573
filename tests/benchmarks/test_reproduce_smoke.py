"""Tests of benchmarks/reproduce.py.

Fast: the statistics (mean ± std over seeds, paired t-tests) against numpy and the hand paired-t formula, and the
query split / empty-document handling on a tiny Cranfield-shaped collection.
Slow (about 20 s of CPU, over a minute on a busy machine): the whole pipeline on a tiny random BERT, 1 seed, 2 steps
per training, with the JSON's bookkeeping checked against independent recomputations."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils import WORDS, write_tiny_bert  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "reproduce.py"
VARIANTS = ("none", "pairwise", "in_batch", "tct_hn", "tct_hn_plus")


def load_script():
    spec = importlib.util.spec_from_file_location("reproduce_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_tiny_cranfield(root: Path, num_docs: int = 40, num_queries: int = 12) -> Path:
    """Docs of 12 random vocabulary words (doc 5 empty, like Cranfield's 471/995), queries of 4 words, each query
    judging 3 documents relevant, one of them the empty doc for query 1 (it must count as missed, never crash)."""
    rng = random.Random(0)
    words = [w for w in WORDS if w.isalpha()]
    folder = root / "cranfield"
    folder.mkdir(parents=True)
    docs = {str(i): " ".join(rng.choices(words, k=12)) for i in range(1, num_docs + 1)}
    docs["5"] = ""
    (folder / "collection.tsv").write_text("".join(f"{d}\t{t}\n" for d, t in docs.items()))
    queries, qrels = [], []
    for q in range(1, num_queries + 1):
        relevant = rng.sample([d for d in docs if d != "5"], 3)
        if q == 1:
            relevant[0] = "5"
        seed_doc = docs[relevant[1]].split()
        queries.append(f"{q}\t{' '.join(seed_doc[:2] + rng.choices(words, k=2))}\n")
        qrels.extend(f"{q} 0 {d} 1\n" for d in relevant)
    (folder / "queries.tsv").write_text("".join(queries))
    (folder / "qrels.txt").write_text("".join(qrels))
    return root


def per_seed_results(values: dict[str, list[list[float]]]) -> list[dict]:
    """`values[variant][seed]` = per-query nDCG@10 list → the script's per-seed layout."""
    seeds = len(next(iter(values.values())))
    return [
        {
            "metrics": {
                variant: {
                    "nDCG@10": float(np.mean(rows[s])),
                    "RR@10": 0.5,
                    "R@100": 0.25,
                    "per_query_nDCG@10": {f"q{i}": v for i, v in enumerate(rows[s])},
                }
                for variant, rows in values.items()
            }
        }
        for s in range(seeds)
    ]


def test_paired_tests_match_hand_formula():
    module = load_script()
    rng = np.random.default_rng(0)
    values = {name: rng.random((3, 5)).round(3).tolist() for name in ("none", "in_batch", "bm25")}
    tests = module.paired_tests(per_seed_results(values))
    assert sorted(tests) == ["in_batch_vs_bm25", "in_batch_vs_none"]
    for other in ("none", "bm25"):
        pooled = (np.array(values["in_batch"]) - np.array(values[other])).ravel()
        hand_t = pooled.mean() / (pooled.std(ddof=1) / math.sqrt(pooled.size))
        entry = tests[f"in_batch_vs_{other}"]
        assert entry["pooled_per_query"]["pairs"] == 15
        assert entry["pooled_per_query"]["t"] == pytest.approx(hand_t, rel=1e-9)
        means = np.array(values["in_batch"]).mean(axis=1) - np.array(values[other]).mean(axis=1)
        assert entry["seed_means"]["t"] == pytest.approx(means.mean() / (means.std(ddof=1) / math.sqrt(3)), rel=1e-9)


def test_summary_is_mean_and_sample_std_over_seeds():
    module = load_script()
    values = {"in_batch": [[0.1, 0.3], [0.2, 0.6], [0.0, 0.2]]}
    summary = module.summarize(per_seed_results(values))
    seed_means = [0.2, 0.4, 0.1]
    assert summary["in_batch"]["nDCG@10"]["mean"] == pytest.approx(np.mean(seed_means))
    assert summary["in_batch"]["nDCG@10"]["std"] == pytest.approx(np.std(seed_means, ddof=1))
    assert summary["in_batch"]["R@100"] == {"mean": 0.25, "std": 0.0}


def test_split_drops_empty_docs_from_training_but_not_from_evaluation(tmp_path):
    module = load_script()
    data = module.load_cranfield(write_tiny_cranfield(tmp_path), train_size=8, split_seed=13)
    assert len(data["train_queries"]) == 8 and len(data["test_queries"]) == 4
    assert not set(data["train_queries"]) & set(data["test_queries"])
    assert "5" not in data["docids"] and len(data["docids"]) == 39
    assert data["judged_docs_not_indexed"] == ["5"]
    judged_5 = data["train_qrels"] if "1" in data["train_queries"] else data["test_qrels"]
    assert ("5" in judged_5["1"]) == ("1" in data["test_queries"])  # kept for evaluation, dropped for training
    again = module.load_cranfield(tmp_path, train_size=8, split_seed=13)
    assert list(again["test_queries"]) == list(data["test_queries"])


@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_evaluate_encoder_ranks_with_an_exact_inner_product_search(tmp_path, dtype):
    """evaluate_encoder under bf16 autocast (the reproduction's default on a CPU with bf16) and in float32: its
    per-query nDCG@10 equals a numpy ranking of the same model's vectors scored by pytrec_eval."""
    import pytrec_eval
    import torch

    from tct_hf import TCTModel

    module = load_script()
    data = module.load_cranfield(write_tiny_cranfield(tmp_path / "data"), train_size=8, split_seed=13)
    model = TCTModel.from_pretrained(str(write_tiny_bert(tmp_path / "bert"))).eval()
    autocast = getattr(torch, dtype) if dtype else None
    metrics, _ = module.evaluate_encoder(model, data, autocast, 24)
    qids = list(data["test_queries"])
    length = 24 + model.config.pooling_start
    passages = model.encode_passages(data["texts"], max_length=length, autocast_dtype=autocast)
    queries = model.encode_queries([data["test_queries"][q] for q in qids], autocast_dtype=autocast)
    scores = np.asarray(queries, dtype=np.float32) @ np.asarray(passages, dtype=np.float32).T
    run = {}
    for row, qid in enumerate(qids):
        top = np.argsort(-scores[row], kind="stable")[:100]
        run[qid] = {data["docids"][j]: float(scores[row, j]) for j in top}
    expected = pytrec_eval.RelevanceEvaluator(data["test_qrels"], {"ndcg_cut.10"}).evaluate(run)
    for qid in qids:
        assert metrics["per_query_nDCG@10"][qid] == pytest.approx(expected[qid]["ndcg_cut_10"], abs=1e-6)


@pytest.fixture(scope="module")
def smoke_result(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproduce")
    backbone = write_tiny_bert(root / "bert")
    data_dir = write_tiny_cranfield(root / "data")
    output = root / "out" / "result.json"
    module = load_script()
    stdout = io.StringIO()
    # fmt: off
    with contextlib.redirect_stdout(stdout):
        result = module.main([
        "--quick", "--backbone", str(backbone), "--data-dir", str(data_dir), "--train-queries", "8",
        "--teacher-steps", "2", "--student-steps", "2", "--hn-steps", "2", "--batch-size", "4",
        "--passage-max-length", "24", "--query-max-length", "8", "--output", str(output),
        ])
    # fmt: on
    return result, output, stdout.getvalue()


@pytest.mark.slow
def test_stdout_and_output_file_hold_exactly_the_json(smoke_result):
    result, output, stdout = smoke_result
    assert json.loads(output.read_text()) == json.loads(json.dumps(result))
    assert json.loads(stdout) == json.loads(json.dumps(result))  # one object, no Trainer log line


@pytest.mark.slow
def test_split_is_disjoint_and_sized(smoke_result):
    result, _, _ = smoke_result
    train, test = result["data"]["train_queries"], result["data"]["test_queries"]
    assert len(train) == 8 and len(test) == 4
    assert not set(train) & set(test)
    assert result["data"]["indexed_docs"] == 39
    assert result["data"]["judged_docs_not_indexed"] == ["5"]


@pytest.mark.slow
def test_every_variant_trained_and_evaluated(smoke_result):
    result, _, _ = smoke_result
    (seed,) = result["per_seed"]
    for variant in VARIANTS:
        assert seed["timings"][variant]["steps"] == 2
        metrics = seed["metrics"][variant]
        for name in ("nDCG@10", "RR@10", "R@100"):
            assert 0.0 <= metrics[name] <= 1.0
        per_query = metrics["per_query_nDCG@10"]
        assert sorted(per_query) == sorted(result["data"]["test_queries"])
        assert metrics["nDCG@10"] == pytest.approx(np.mean(list(per_query.values())), abs=1e-9)
    assert seed["mined_examples"] > 0
    assert "teacher" in seed["metrics"] and "zero_shot_tct" in result["fixed"] and "bm25" in result["fixed"]


@pytest.mark.slow
def test_summary_and_t_test_match_hand_formulas(smoke_result):
    result, _, _ = smoke_result
    (seed,) = result["per_seed"]
    for variant in VARIANTS:
        assert result["summary"][variant]["nDCG@10"] == {"mean": seed["metrics"][variant]["nDCG@10"], "std": 0.0}
    tct = seed["metrics"]["in_batch"]["per_query_nDCG@10"]
    for other in ("none", "pairwise", "tct_hn"):
        theirs = seed["metrics"][other]["per_query_nDCG@10"]
        differences = np.array([tct[q] - theirs[q] for q in tct])
        entry = result["t_tests_nDCG@10"][f"in_batch_vs_{other}"]["pooled_per_query"]
        assert entry["pairs"] == len(differences)
        assert entry["mean_difference"] == pytest.approx(differences.mean(), abs=1e-12)
        spread = differences.std(ddof=1)
        if spread > 0:
            assert entry["t"] == pytest.approx(differences.mean() / (spread / math.sqrt(len(differences))), rel=1e-9)
        else:
            assert math.isnan(entry["t"]) or math.isinf(entry["t"])


@pytest.mark.slow
def test_pipeline_ablations_reuse_the_warmup_and_pair_per_query(tmp_path):
    """`--pipeline`: every variant ends in a final stage, copied stages are skipped (never retrained), and the
    pooled t-test pairs each (seed, test query) with the hand formula's mean difference."""
    backbone = write_tiny_bert(tmp_path / "bert")
    data_dir = write_tiny_cranfield(tmp_path / "data")
    module = load_script()
    with contextlib.redirect_stdout(io.StringIO()):
        result = module.main([
            "--pipeline", "--seeds", "2", "--backbone", str(backbone), "--data-dir", str(data_dir),
            "--train-queries", "8", "--teacher-steps", "2", "--student-steps", "2", "--hn-steps", "2",
            "--batch-size", "4", "--passage-max-length", "24", "--query-max-length", "8",
        ])  # fmt: skip
    assert len(result["per_seed"]) == 2
    for seed in result["per_seed"]:
        ran = {name: [s["name"] for s in stages if not s["skipped"]] for name, stages in seed["stages"].items()}
        assert ran == {
            "warmup": ["1-warmup", "2-final"],
            "hn_plus": ["2-mine", "3-teacher", "4-student", "5-final"],
            "hn_plus_frozen_teacher": ["3-student", "4-final"],
            "hn_plus_filtered": ["2-mine", "3-teacher", "4-student", "5-final"],
            "hn_plus_refresh": ["5-mine-r1", "6-teacher-r1", "7-student-r1", "8-final"],
        }
        test_queries = sorted(module.load_cranfield(data_dir, 8, 13)["test_queries"])
        for metrics in seed["metrics"].values():
            assert sorted(metrics["per_query_nDCG@10"]) == test_queries
    ours = [v for s in result["per_seed"] for v in s["metrics"]["hn_plus"]["per_query_nDCG@10"].values()]
    theirs = [v for s in result["per_seed"] for v in s["metrics"]["warmup"]["per_query_nDCG@10"].values()]
    entry = result["t_tests_nDCG@10"]["hn_plus_vs_warmup"]
    assert entry["pairs"] == len(ours) == 2 * 4
    assert entry["mean_difference"] == pytest.approx(np.mean(np.subtract(ours, theirs)), abs=1e-12)


@pytest.mark.slow
def test_st_study_trains_every_variant_and_pairs_per_query(tmp_path):
    """`--st`: the native student with InBatchKDLoss, MNRL, DistillKLDivLoss and the TCT-convention student each
    train the same steps; the pooled t-tests pair (seed, test query) as the hand formula does."""
    backbone = write_tiny_bert(tmp_path / "bert")
    data_dir = write_tiny_cranfield(tmp_path / "data")
    module = load_script()
    with contextlib.redirect_stdout(io.StringIO()):
        result = module.main([
            "--st", "--seeds", "2", "--backbone", str(backbone), "--data-dir", str(data_dir), "--train-queries", "8",
            "--teacher-steps", "2", "--student-steps", "2", "--batch-size", "4", "--passage-max-length", "24",
            "--query-max-length", "8",
        ])  # fmt: skip
    variants = ("st_in_batch_kd", "st_mnrl", "st_distill_kl", "tct_in_batch")
    assert len(result["per_seed"]) == 2
    for seed in result["per_seed"]:
        for variant in variants:
            assert seed["timings"][variant]["steps"] == 2
            assert 0.0 <= seed["metrics"][variant]["nDCG@10"] <= 1.0
    for other in ("st_mnrl", "st_distill_kl", "tct_in_batch", "zero_shot_sentence_transformers", "bm25"):
        ours, theirs = [], []
        for seed in result["per_seed"]:
            mine = seed["metrics"]["st_in_batch_kd"]["per_query_nDCG@10"]
            other_rows = result["fixed"] if other in result["fixed"] else seed["metrics"]
            ours += [mine[q] for q in mine]
            theirs += [other_rows[other]["per_query_nDCG@10"][q] for q in mine]
        entry = result["t_tests_nDCG@10"][f"st_in_batch_kd_vs_{other}"]["pooled_per_query"]
        assert entry["pairs"] == len(ours) == 2 * len(result["data"]["test_queries"])
        assert entry["mean_difference"] == pytest.approx(float(np.mean(np.subtract(ours, theirs))), abs=1e-12)
