"""Teacher-filtered mining: every kept negative scores below the positive minus the margin (absolute and relative,
checked against a naive loop over a brute-force ranking), the drop count and the teacher's scores are kept, a real
ColBERT teacher's scores equal `ColBERTModel.score`, and a teacher that cannot read the texts is refused before any
encoding."""

from __future__ import annotations

import numpy as np
import pytest
from test_mining import NUM_QUERIES, LookupEncoder, mine, setup  # noqa: F401 (fixture)
from utils import write_tiny_bert, write_tokenizer

from tct_hf import ColBERTModel
from tct_hf.retrieval.mining import check_teacher_reads, mine_hard_negatives

DEPTH = 15


class TableTeacher:
    """Stand-in teacher: the score of (query text, passage text) is a fixed table entry; counts its calls."""

    def __init__(self, table: dict[tuple[str, str], float], tokenizer):
        self.table, self.tokenizer, self.calls = table, tokenizer, 0

    def score_matrix(self, queries, passages, titles=None, batch_size=64):
        self.calls += 1
        return np.array([[self.table[q, p] for p in passages] for q in queries], dtype=np.float32)


@pytest.fixture(scope="module")
def teacher(setup, tmp_path_factory):  # noqa: F811
    rng = np.random.default_rng(1)
    table = {
        (query, passage): float(rng.normal())
        for query in setup["queries"].values()
        for passage in setup["passages"].values()
    }
    # A tie with the positive: dropped even at margin 0 ("at or above").
    first_qid = next(iter(setup["qrels"]))
    positive = min(d for d, rel in setup["qrels"][first_qid].items() if rel > 0)
    tie = next(d for d in setup["ranking"][first_qid][:DEPTH] if d not in setup["qrels"][first_qid])
    query = setup["queries"][first_qid]
    table[query, setup["passages"][tie]] = table[query, setup["passages"][positive]]
    tokenizer = write_tokenizer(tmp_path_factory.mktemp("tokenizer"))
    return TableTeacher(table, tokenizer)


def expected_kept(setup, teacher, qid, positive, margin, margin_type):  # noqa: F811
    """Naive reference: the top-DEPTH candidates minus relevant ones whose score is below the threshold."""
    query = setup["queries"][qid]
    relevant = {d for d, rel in setup["qrels"][qid].items() if rel > 0}
    candidates = [d for d in setup["ranking"][qid][:DEPTH] if d not in relevant]
    positive_score = np.float32(teacher.table[query, setup["passages"][positive]])
    threshold = positive_score - margin * (abs(positive_score) if margin_type == "relative" else 1.0)
    kept = [d for d in candidates if np.float32(teacher.table[query, setup["passages"][d]]) < threshold]
    return candidates, kept


@pytest.mark.parametrize(("margin", "margin_type"), [(0.0, "absolute"), (0.5, "absolute"), (0.3, "relative")])
def test_filter_keeps_only_candidates_below_the_threshold(setup, teacher, margin, margin_type):  # noqa: F811
    mined = mine(
        setup, depth=DEPTH, num_negatives=200, teacher=teacher, teacher_margin=margin, teacher_margin_type=margin_type
    )
    assert mined.column_names[-3:] == ["teacher_dropped", "positive_teacher_score", "negative_teacher_scores"]
    expected_rows = set()
    for qid, judged in setup["qrels"].items():
        for positive in (d for d, rel in judged.items() if rel > 0):
            if expected_kept(setup, teacher, qid, positive, margin, margin_type)[1]:
                expected_rows.add((qid, positive))
    assert {(row["query_id"], row["positive_id"]) for row in mined} == expected_rows
    assert 0 < len(mined) < 3 * (NUM_QUERIES - 1)  # the filter emptied some rows' candidates, not all
    for row in mined:
        candidates, kept = expected_kept(setup, teacher, row["query_id"], row["positive_id"], margin, margin_type)
        assert set(row["negative_ids"]) == set(kept)  # 200 draws with replacement hit every kept candidate
        assert row["teacher_dropped"] == len(candidates) - len(kept)
        query = setup["queries"][row["query_id"]]
        assert row["positive_teacher_score"] == np.float32(teacher.table[query, row["positive"]])
        assert row["negative_teacher_scores"] == [np.float32(teacher.table[query, p]) for p in row["negatives"]]


def test_a_tie_with_the_positive_is_dropped_at_margin_zero(setup, teacher):  # noqa: F811
    first_qid = next(iter(setup["qrels"]))
    positive = min(d for d, rel in setup["qrels"][first_qid].items() if rel > 0)
    mined = mine(setup, depth=DEPTH, num_negatives=200, teacher=teacher)
    row = next(r for r in mined if (r["query_id"], r["positive_id"]) == (first_qid, positive))
    query = setup["queries"][first_qid]
    tie = [d for d in setup["ranking"][first_qid][:DEPTH] if teacher.table[query, setup["passages"][d]]
           == teacher.table[query, setup["passages"][positive]] and d != positive]  # fmt: skip
    assert tie and not set(tie) & set(row["negative_ids"])


def test_without_teacher_no_teacher_columns_and_same_draws_as_before(setup):  # noqa: F811
    plain = mine(setup)
    assert "teacher_dropped" not in plain.column_names
    with pytest.raises(ValueError, match="needs a teacher"):
        mine(setup, teacher_margin=0.1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"teacher_margin": -0.1}, "finite number >= 0"),
        ({"teacher_margin": float("nan")}, "finite number >= 0"),
        ({"teacher_margin_type": "percent"}, "not one of"),
    ],
)
def test_bad_margins_are_refused(setup, teacher, kwargs, message):  # noqa: F811
    calls = teacher.calls
    with pytest.raises(ValueError, match=message):
        mine(setup, teacher=teacher, **kwargs)
    assert teacher.calls == calls  # refused before any scoring


class NeverEncodes(LookupEncoder):
    def encode_queries(self, texts, batch_size=64, **kwargs):
        raise AssertionError("the teacher check must run before any encoding")


def test_a_teacher_that_cannot_read_the_texts_is_refused_before_encoding(setup, tmp_path):  # noqa: F811
    write_tiny_bert(tmp_path / "bert")
    colbert = ColBERTModel.from_pretrained(str(tmp_path / "bert"), convention="tct", dim=8)
    greek = {qid: "ποιο είναι το κεφάλαιο" for qid in setup["queries"]}
    with pytest.raises(ValueError, match=r"reads 100% of the mined queries' tokens as \[UNK\]"):
        mine_hard_negatives(
            NeverEncodes({}), setup["index"], greek, setup["qrels"], collection=setup["collection"], teacher=colbert
        )
    colbert.resize_token_embeddings(20)  # a tokenizer of a bigger model than these embeddings
    with pytest.raises(ValueError, match="embedding table has 20 rows"):
        check_teacher_reads(colbert, ["passage text 1"])
    colbert.tokenizer = None
    with pytest.raises(ValueError, match="no tokenizer"):
        check_teacher_reads(colbert, ["passage text 1"])


def test_real_colbert_teacher_scores_match_its_score_method(setup, tmp_path):  # noqa: F811
    write_tiny_bert(tmp_path / "bert")
    colbert = ColBERTModel.from_pretrained(str(tmp_path / "bert"), convention="tct", dim=8)
    mined = mine(setup, depth=DEPTH, num_negatives=2, teacher=colbert, teacher_margin=0.0)
    reference_positive = colbert.score(list(mined["query"]), list(mined["positive"]))
    np.testing.assert_allclose(mined["positive_teacher_score"], reference_positive, rtol=1e-5, atol=1e-5)
    negatives = [n for row in mined["negatives"] for n in row]
    queries = [q for q, row in zip(mined["query"], mined["negatives"]) for _ in row]
    flat_scores = [s for row in mined["negative_teacher_scores"] for s in row]
    reference = colbert.score(queries, negatives)
    np.testing.assert_allclose(flat_scores, reference, rtol=1e-5, atol=1e-5)
    assert (np.array(flat_scores) < np.repeat(reference_positive, 2)).all()
