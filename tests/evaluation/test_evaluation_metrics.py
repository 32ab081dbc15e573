"""evaluate_run vs pytrec_eval used directly, vs hand formulas (RR@10 cutoff, graded nDCG), query bookkeeping."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import pytrec_eval

from tct_hf.data.run_files import read_qrels
from tct_hf.evaluation.metrics import evaluate_run

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

QRELS = {
    "q1": {"d1": 2, "d2": 0, "d3": 1, "d9": 3},  # d9 never retrieved
    "q2": {"a": 1, "b": 1},
    "q3": {"x": 0},  # judged, nothing relevant
    "q4": {"m": 1},  # judged, missing from the run
}
RUN = {
    # ties: d3/d4/d5 share 2.0 (trec_eval orders them d5, d4, d3); u* are unjudged
    "q1": {"u1": 3.0, "d3": 2.0, "d4": 2.0, "d5": 2.0, "d1": 1.5, "d2": 1.0, "u2": 0.5},
    "q2": {"c": 9.0, "b": 9.0, "a": 9.0, "z": 1.0},
    "q3": {"x": 1.0, "y": 0.5},
    "q5": {"unjudged": 1.0},  # run query without judgments
}

PYTREC_NAMES = {"nDCG@10": "ndcg_cut_10", "R@1000": "recall_1000", "AP": "map", "P@5": "P_5", "nDCG": "ndcg"}


def test_per_query_values_equal_pytrec_eval():
    evaluator = pytrec_eval.RelevanceEvaluator(QRELS, set(PYTREC_NAMES.values()))
    reference = evaluator.evaluate(RUN)
    result = evaluate_run(RUN, QRELS, metrics=list(PYTREC_NAMES), per_query=True, complete=False)
    assert set(result.per_query) == {"q1", "q2", "q3"}
    for qid, values in result.per_query.items():
        for name, trec_name in PYTREC_NAMES.items():
            assert values[name] == pytest.approx(reference[qid][trec_name], abs=1e-12), (qid, name)
    for name, trec_name in PYTREC_NAMES.items():
        mean = sum(reference[q][trec_name] for q in ("q1", "q2", "q3")) / 3
        assert result.metrics[name] == pytest.approx(mean, abs=1e-12)


def hand_reciprocal_rank(scores: dict[str, float], judged: dict[str, int], cutoff: int) -> float:
    """trec_eval order (score desc, docid desc), first document with rel >= 1 within the cutoff."""
    ranking = sorted(scores, key=lambda docid: (scores[docid], docid), reverse=True)
    for rank, docid in enumerate(ranking[:cutoff], start=1):
        if judged.get(docid, 0) >= 1:
            return 1 / rank
    return 0.0


def test_rr_at_10_has_the_msmarco_cutoff():
    run = {"q": {f"n{i:02d}": 100.0 - i for i in range(10)} | {"rel": 50.0}}  # the relevant doc is 11th
    qrels = {"q": {"rel": 1}}
    assert evaluate_run(run, qrels, metrics=["RR@10"]).metrics["RR@10"] == 0.0
    assert evaluate_run(run, qrels, metrics=["RR@11"]).metrics["RR@11"] == pytest.approx(1 / 11)
    # trec_eval's recip_rank has no cutoff: it would give 1/11, which RR (no cutoff) reproduces
    reference = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run)["q"]["recip_rank"]
    assert reference == pytest.approx(1 / 11)
    assert evaluate_run(run, qrels, metrics=["RR"]).metrics["RR"] == pytest.approx(reference)


def test_rr_at_10_with_ties_matches_hand_reference():
    result = evaluate_run(RUN, QRELS, metrics=["RR@10", "RR@2", "RR(rel=2)@10"], per_query=True, complete=False)
    for qid in ("q1", "q2", "q3"):
        assert result.per_query[qid]["RR@10"] == pytest.approx(hand_reciprocal_rank(RUN[qid], QRELS[qid], 10))
        assert result.per_query[qid]["RR@2"] == pytest.approx(hand_reciprocal_rank(RUN[qid], QRELS[qid], 2))
    # q1 order: u1, d5, d4, d3 (rel 1, rank 4), d1 (rel 2, rank 5)
    assert result.per_query["q1"]["RR@10"] == pytest.approx(1 / 4)
    assert result.per_query["q1"]["RR(rel=2)@10"] == pytest.approx(1 / 5)
    assert result.per_query["q2"]["RR@2"] == pytest.approx(1 / 2)  # c, b, a tie: c first, then b


def test_random_runs_rr_matches_hand_and_pytrec_on_untied_data():
    rng = random.Random(3)
    qrels = {f"q{i}": {f"d{j}": rng.choice([0, 1, 2]) for j in rng.sample(range(40), 8)} for i in range(30)}
    run = {qid: {f"d{j}": round(rng.random(), 2) for j in range(40)} for qid in qrels}  # rounding makes ties
    result = evaluate_run(run, qrels, metrics=["RR@10", "nDCG@10"], per_query=True)
    ndcg = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate(run)
    for qid in qrels:
        assert result.per_query[qid]["RR@10"] == pytest.approx(hand_reciprocal_rank(run[qid], qrels[qid], 10))
        assert result.per_query[qid]["nDCG@10"] == pytest.approx(ndcg[qid]["ndcg_cut_10"], abs=1e-12)


def test_graded_ndcg_uses_linear_gain():
    run = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    qrels = {"q": {"a": 1, "b": 0, "c": 3, "d": 2}}
    dcg = 1 / math.log2(2) + 0 + 3 / math.log2(4)
    ideal = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert evaluate_run(run, qrels, metrics=["nDCG@10"]).metrics["nDCG@10"] == pytest.approx(dcg / ideal)


def test_missing_queries_are_counted_and_complete_switch(caplog):
    full = evaluate_run(RUN, QRELS, metrics=["R@1000"], per_query=True)
    judged_only = evaluate_run(RUN, QRELS, metrics=["R@1000"], complete=False)
    assert full.run_queries_without_judgments == ["q5"]
    assert full.qrels_queries_without_results == ["q4"]
    assert full.num_queries == 4 and judged_only.num_queries == 3
    assert full.per_query["q4"]["R@1000"] == 0.0
    assert full.metrics["R@1000"] == pytest.approx(judged_only.metrics["R@1000"] * 3 / 4)
    assert "1 run queries have no judgments" in caplog.text
    assert "1 judged queries have no results in the run (counted as 0)" in caplog.text
    summary = full.as_dict()
    assert summary["queries"] == {
        "evaluated": 4,
        "run_queries_without_judgments": 1,
        "qrels_queries_without_results": 1,
        "missing_counted_as_zero": True,
        "run_queries_without_judgments_ids": ["q5"],
        "qrels_queries_without_results_ids": ["q4"],
    }
    assert "per_query" in summary


def test_bad_metric_and_disjoint_ids():
    with pytest.raises(ValueError, match="unknown metric 'Foo@10'"):
        evaluate_run(RUN, QRELS, metrics=["Foo@10"])
    with pytest.raises(ValueError, match="not computed by pytrec_eval"):
        evaluate_run(RUN, QRELS, metrics=["ERR@10"])
    assert evaluate_run(RUN, QRELS, metrics=["MRR@10"]).metrics["MRR@10"] > 0  # ir-measures alias of RR@10
    with pytest.raises(ValueError, match="no query is both in the run and in the qrels"):
        evaluate_run({"a": {"d": 1.0}}, {"b": {"d": 1}}, complete=False)
    with pytest.raises(TypeError, match="run must be a dict"):
        evaluate_run([("q", "d", 1.0)], QRELS)


@pytest.mark.parametrize(
    "qrels_file",
    ["qrels.msmarco-passage.dev-subset.txt", "qrels.dl19-passage.txt", "qrels.beir-v1.0.0-scifact.test.txt"],
)
def test_real_qrels_evaluate_quickly(qrels_file):
    path = DATA / "topics_qrels_only" / qrels_file
    if not path.is_file():
        pytest.skip("shared data not present")
    qrels = read_qrels(path)
    # A perfect run (score = relevance): 1 on every query with a relevant document, 0 on the others.
    perfect = {qid: {docid: float(rel) for docid, rel in judged.items()} for qid, judged in qrels.items()}
    result = evaluate_run(perfect, qrels)
    with_relevant = sum(any(rel > 0 for rel in judged.values()) for judged in qrels.values())
    assert result.num_queries == len(qrels)
    assert result.metrics["RR@10"] == pytest.approx(with_relevant / len(qrels))
    assert result.metrics["nDCG@10"] == pytest.approx(with_relevant / len(qrels))
    if len({rel for judged in qrels.values() for rel in judged.values()}) > 2:  # graded: reversing must hurt
        reversed_run = {qid: {docid: -score for docid, score in docs.items()} for qid, docs in perfect.items()}
        assert evaluate_run(reversed_run, qrels).metrics["nDCG@10"] < result.metrics["nDCG@10"]
