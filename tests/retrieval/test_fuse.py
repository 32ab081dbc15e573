"""Fusion vs a hand computation of Pyserini's hybrid formula, with documents missing on each side."""

from __future__ import annotations

import pytest

from tct_hf.retrieval.fuse import fuse

DENSE = {"q1": {"a": 80.0, "b": 78.0, "c": 75.0}, "q2": {"x": 1.0}}
SPARSE = {"q1": {"b": 12.0, "d": 10.0, "a": 4.0}, "q3": {"y": 2.0, "z": 3.0}}


def test_default_alpha_sparse_plus_dense_with_min_fill():
    fused = fuse(DENSE, SPARSE, alpha=0.1)
    # q1: dense min 75, sparse min 4. c misses sparse -> 4; d misses dense -> 75.
    expected_q1 = {"b": 0.1 * 12 + 78, "a": 0.1 * 4 + 80, "c": 0.1 * 4 + 75, "d": 0.1 * 10 + 75}
    assert fused["q1"] == pytest.approx(expected_q1, abs=1e-12)
    assert list(fused["q1"]) == ["a", "b", "d", "c"]  # 80.4, 79.2, 76.0, 75.4
    # Queries on one side only: the empty side has min 0 (Pyserini).
    assert fused["q2"] == pytest.approx({"x": 1.0})
    assert fused["q3"] == pytest.approx({"z": 0.3, "y": 0.2})
    assert list(fused) == ["q1", "q2", "q3"]


def test_weight_on_dense():
    fused = fuse(DENSE, SPARSE, alpha=0.5, weight_on_dense=True)
    expected = {"b": 12 + 0.5 * 78, "a": 4 + 0.5 * 80, "c": 4 + 0.5 * 75, "d": 10 + 0.5 * 75}
    assert fused["q1"] == pytest.approx(expected, abs=1e-12)


def test_normalization_is_pyserinis_centred_min_max():
    fused = fuse(DENSE, SPARSE, alpha=0.2, normalize=True)

    def dense(score):  # min 75, max 80
        return (score - (75 + 80) / 2) / (80 - 75)

    def sparse(score):  # min 4, max 12
        return (score - (4 + 12) / 2) / (12 - 4)

    expected = {
        "a": 0.2 * sparse(4) + dense(80),
        "b": 0.2 * sparse(12) + dense(78),
        "c": 0.2 * sparse(4) + dense(75),
        "d": 0.2 * sparse(10) + dense(75),
    }
    assert fused["q1"] == pytest.approx(expected, abs=1e-12)
    # One-document list: zero range -> 0 after normalization (Pyserini would divide by zero).
    assert fuse({"q": {"a": 3.0}}, {"q": {"a": 1.0, "b": 2.0}}, normalize=True, alpha=1.0)["q"] == pytest.approx(
        {"b": 0.5, "a": -0.5}
    )


def test_k_cuts_and_ties_break_by_docid():
    fused = fuse({"q": {"b": 1.0, "a": 1.0, "c": 0.0}}, {"q": {"c": 10.0}}, alpha=0.1, k=2)
    # a, b: 1 + 0.1*10 (sparse min) = 2.0; c: 0 + 1.0 = 1.0
    assert list(fused["q"].items()) == [("a", 2.0), ("b", 2.0)]


def test_depth_cuts_inputs_before_fusing():
    dense = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    sparse = {"q": {"c": 5.0, "d": 0.0}}
    fused = fuse(dense, sparse, alpha=1.0, depth=2)
    # dense top-2 = {a, b} (min 2), sparse top-2 = {c, d} (min 0)
    assert fused["q"] == pytest.approx({"a": 3.0, "b": 2.0, "c": 7.0, "d": 2.0})


def test_matches_a_naive_dict_loop_on_random_runs():
    import random

    rng = random.Random(0)
    dense = {f"q{i}": {f"d{rng.randrange(60)}": rng.uniform(50, 90) for _ in range(30)} for i in range(20)}
    sparse = {f"q{i}": {f"d{rng.randrange(60)}": rng.uniform(0, 25) for _ in range(30)} for i in range(5, 25)}
    for normalize in (False, True):
        fused = fuse(dense, sparse, alpha=0.06, k=15, normalize=normalize)
        for qid in set(dense) | set(sparse):
            d, s = dense.get(qid, {}), sparse.get(qid, {})
            d_lo, d_hi = (min(d.values()), max(d.values())) if d else (0, 1)
            s_lo, s_hi = (min(s.values()), max(s.values())) if s else (0, 1)
            expected = {}
            for doc in set(d) | set(s):
                ds, ss = d.get(doc, d_lo), s.get(doc, s_lo)
                if normalize:
                    ds = (ds - (d_lo + d_hi) / 2) / (d_hi - d_lo)
                    ss = (ss - (s_lo + s_hi) / 2) / (s_hi - s_lo)
                expected[doc] = 0.06 * ss + ds
            top = sorted(expected.items(), key=lambda item: (-item[1], item[0]))[:15]
            assert list(fused[qid]) == [doc for doc, _ in top]
            assert list(fused[qid].values()) == pytest.approx([score for _, score in top], abs=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="k must be"):
        fuse(DENSE, SPARSE, k=0)
    with pytest.raises(ValueError, match="depth must be"):
        fuse(DENSE, SPARSE, depth=0)
