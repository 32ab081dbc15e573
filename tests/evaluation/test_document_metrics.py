"""RR@100 (MS MARCO document ranking's MRR@100) against a hand loop and pytrec_eval, graded document qrels."""

from __future__ import annotations

import random

import pytest
import pytrec_eval

from tct_hf.evaluation import DOCUMENT_METRICS, evaluate_run


def hand_rr(scores: dict[str, float], judged: dict[str, int], cutoff: int) -> float:
    """trec_eval order (score desc, docid desc), reciprocal rank of the first rel >= 1 document within the cutoff."""
    ranking = sorted(scores, key=lambda docid: (scores[docid], docid), reverse=True)
    return next((1 / rank for rank, d in enumerate(ranking[:cutoff], 1) if judged.get(d, 0) >= 1), 0.0)


def test_rr_at_100_is_cut_at_100_and_sits_beside_rr_at_10():
    # relevant document at rank 50 for q50, at rank 101 for q101 (beyond the cut), at rank 3 for q3
    run, qrels = {}, {}
    for qid, position in (("q50", 50), ("q101", 101), ("q3", 3)):
        run[qid] = {f"D{i:04d}": 1000.0 - i for i in range(1, 200)}
        qrels[qid] = {f"D{position:04d}": 1}
    result = evaluate_run(run, qrels, metrics=DOCUMENT_METRICS, per_query=True)
    assert result.per_query["q50"]["RR@100"] == pytest.approx(1 / 50)
    assert result.per_query["q50"]["RR@10"] == 0.0
    assert result.per_query["q101"]["RR@100"] == 0.0
    assert result.per_query["q3"]["RR@100"] == result.per_query["q3"]["RR@10"] == pytest.approx(1 / 3)
    assert result.metrics["RR@100"] == pytest.approx((1 / 50 + 1 / 3) / 3)
    # trec_eval's recip_rank has no cutoff: it counts q101's 1/101, which RR@100 must not
    uncut = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run)
    assert uncut["q101"]["recip_rank"] == pytest.approx(1 / 101)


def test_random_document_runs_match_hand_rr_and_pytrec_graded_ndcg():
    rng = random.Random(3)
    run, qrels = {}, {}
    for q in range(30):
        docs = [f"D{rng.randrange(10**6)}" for _ in range(150)]
        run[f"q{q}"] = {d: rng.random() for d in docs}
        # TREC DL 2019 document qrels are graded 0..3; some judged documents are never retrieved
        judged = rng.sample(docs, 4) + [f"X{q}"]
        qrels[f"q{q}"] = {d: rng.choice([0, 1, 2, 3]) for d in judged}
    result = evaluate_run(run, qrels, metrics=("RR@100", "nDCG@10"), per_query=True)
    reference = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    for qid in run:
        assert result.per_query[qid]["RR@100"] == pytest.approx(hand_rr(run[qid], qrels[qid], 100))
        assert result.per_query[qid]["nDCG@10"] == pytest.approx(reference[qid]["ndcg_cut_10"])
