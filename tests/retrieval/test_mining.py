"""Hard-negative mining against a brute-force numpy ranking: never a judged-relevant passage, only passages within
`depth`, deterministic per seed, documented skips counted."""

from __future__ import annotations

import logging

import datasets
import numpy as np
import pytest

from tct_hf.data.training_format import MINED_COLUMNS
from tct_hf.retrieval.index import build_index
from tct_hf.retrieval.mining import mine_hard_negatives, save_mined_negatives

DIM, NUM_PASSAGES, NUM_QUERIES = 8, 60, 12


class LookupEncoder:
    """Stand-in encoder: each text has a fixed random vector (mining does not depend on the model)."""

    def __init__(self, vectors: dict[str, np.ndarray]):
        self.vectors = vectors

    def encode_queries(self, texts, batch_size=64, **kwargs):
        return np.stack([self.vectors[text] for text in texts]).astype(np.float32)

    def encode_passages(self, texts, titles=None, batch_size=64, **kwargs):
        return np.stack([self.vectors[text] for text in texts]).astype(np.float32)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    passages = {f"p{i}": f"passage text {i}" for i in range(NUM_PASSAGES)}
    queries = {f"q{i}": f"query text {i}" for i in range(NUM_QUERIES)}
    vectors = {text: rng.normal(size=DIM) for text in [*passages.values(), *queries.values()]}
    encoder = LookupEncoder(vectors)
    docids = list(passages)
    passage_matrix = np.stack([vectors[passages[d]] for d in docids]).astype(np.float32)
    index = build_index(passage_matrix, docids)
    # Brute-force ranking in float64, ties by docid (none expected with random vectors).
    ranking = {}
    for qid, text in queries.items():
        scores = passage_matrix.astype(np.float64) @ vectors[text].astype(np.float32).astype(np.float64)
        ranking[qid] = [docids[i] for i in sorted(range(len(docids)), key=lambda i: (-scores[i], docids[i]))]
    # Judge some of each query's top passages relevant (so exclusion matters), one rel 0, q11 unjudged.
    qrels = {}
    for number, qid in enumerate(list(queries)[:-1]):
        top = ranking[qid]
        qrels[qid] = {top[0]: 1, top[2]: 2, top[number + 5]: 1, top[1]: 0}
    collection = datasets.Dataset.from_dict({"id": docids, "text": [passages[d] for d in docids]})
    return dict(
        encoder=encoder,
        index=index,
        queries=queries,
        qrels=qrels,
        ranking=ranking,
        collection=collection,
        passages=passages,
    )


def mine(setup, **kwargs):
    arguments = dict(depth=10, num_negatives=3, seed=7, collection=setup["collection"])
    arguments.update(kwargs)
    return mine_hard_negatives(setup["encoder"], setup["index"], setup["queries"], setup["qrels"], **arguments)


@pytest.mark.parametrize("with_replacement", [True, False])
@pytest.mark.parametrize("depth", [6, 10, 40])
def test_negatives_are_unjudged_or_nonrelevant_and_within_depth(setup, depth, with_replacement):
    mined = mine(setup, depth=depth, with_replacement=with_replacement)
    assert mined.column_names == list(MINED_COLUMNS)
    expected_pairs = set()
    for qid, judged in setup["qrels"].items():
        relevant = {d for d, rel in judged.items() if rel > 0}
        left = [d for d in setup["ranking"][qid][:depth] if d not in relevant]
        if len(left) >= (1 if with_replacement else 3):  # else exhausted: skipped
            expected_pairs |= {(qid, d) for d in relevant}
    assert {(row["query_id"], row["positive_id"]) for row in mined} == expected_pairs
    for row in mined:
        qid = row["query_id"]
        relevant = {d for d, rel in setup["qrels"][qid].items() if rel > 0}
        top = set(setup["ranking"][qid][:depth])
        assert len(row["negative_ids"]) == 3
        assert not relevant & set(row["negative_ids"])
        assert set(row["negative_ids"]) <= top
        if not with_replacement:
            assert len(set(row["negative_ids"])) == 3
        assert row["query"] == setup["queries"][qid]
        assert row["positive"] == setup["passages"][row["positive_id"]]
        assert row["negatives"] == [setup["passages"][d] for d in row["negative_ids"]]


def test_sampling_covers_candidates_and_is_deterministic(setup):
    first, again, other = mine(setup, num_negatives=200), mine(setup, num_negatives=200), mine(setup, seed=8)
    assert first["negative_ids"] == again["negative_ids"]
    assert first["negative_ids"][:5] != other["negative_ids"][:5]
    row = first[0]
    relevant = {d for d, rel in setup["qrels"][row["query_id"]].items() if rel > 0}
    candidates = [d for d in setup["ranking"][row["query_id"]][:10] if d not in relevant]
    assert set(row["negative_ids"]) == set(candidates)  # 200 uniform draws hit all 7 candidates
    judged_nonrelevant = setup["ranking"][row["query_id"]][1]
    assert judged_nonrelevant in row["negative_ids"]  # rel 0 passages stay candidates


def test_skips_are_counted(setup, caplog):
    with caplog.at_level(logging.WARNING, logger="tct_hf.retrieval.mining"):
        mined = mine(setup, depth=3, num_negatives=1)
    # Top 3 of each query = top[0] (rel 1), top[1] (rel 0), top[2] (rel 2): one candidate left, except for none.
    assert len(mined) == 3 * (NUM_QUERIES - 1)
    assert set(mined["negative_ids"][0]) == {setup["ranking"][mined[0]["query_id"]][1]}
    assert "1 queries have no judged-relevant passage; skipped" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tct_hf.retrieval.mining"):
        with pytest.raises(ValueError, match="no row mined"):  # never an empty dataset that cannot load back
            mine(setup, depth=3, num_negatives=2, with_replacement=False)
    assert f"{3 * (NUM_QUERIES - 1)} (query, positive) pairs skipped" in caplog.text


def test_unknown_positive_is_an_error(setup):
    qrels = {"q0": {"nowhere": 1}}
    with pytest.raises(ValueError, match="'nowhere'"):
        mine_hard_negatives(setup["encoder"], setup["index"], setup["queries"], qrels, collection=setup["collection"])
    with pytest.raises(ValueError, match="collection is required"):
        mine_hard_negatives(setup["encoder"], setup["index"], setup["queries"], setup["qrels"])


def test_save_is_atomic_and_replaces(setup, tmp_path):
    mined = mine(setup)
    output = tmp_path / "mined"
    save_mined_negatives(mined, output)
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        save_mined_negatives(mined.select(range(2)), output)
    save_mined_negatives(mined.select(range(2)), output, overwrite=True)  # replaced in place
    assert datasets.load_from_disk(str(output))["query_id"] == mined["query_id"][:2]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mined"]  # no staging folder left

    class Broken:
        def save_to_disk(self, path):
            (tmp_path / "partial").touch()
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_mined_negatives(Broken(), output, overwrite=True)
    assert datasets.load_from_disk(str(output))["query_id"] == mined["query_id"][:2]  # old copy intact
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mined", "partial"]


def test_failed_push_keeps_the_local_copy(setup, tmp_path, monkeypatch):
    pushed = []
    monkeypatch.setattr(datasets.Dataset, "push_to_hub", lambda self, repo_id: pushed.append(repo_id))
    mined = mine(setup)
    save_mined_negatives(mined, tmp_path / "ok", push_to_hub="me/hn")
    assert pushed == ["me/hn"]

    def offline(self, repo_id):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets.Dataset, "push_to_hub", offline)
    with pytest.raises(RuntimeError, match=r"'me/hn' failed \(no network\); the dataset is saved at"):
        save_mined_negatives(mined, tmp_path / "local", push_to_hub="me/hn")
    assert datasets.load_from_disk(str(tmp_path / "local"))["query_id"] == mined["query_id"]
