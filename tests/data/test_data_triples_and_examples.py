"""Triples readers (streaming), Hub / mined-negative mapping, and qrels + run example building."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from datasets import Dataset, IterableDataset

from tct_hf.data import (
    DataFormatError,
    build_training_examples,
    load_hub_dataset,
    load_id_triples,
    load_mined_negatives,
    load_text_triples,
    to_training_format,
)

SPLADE_TRIPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "splade_toy_msmarco" / "triplets.tsv"


@pytest.mark.skipif(not SPLADE_TRIPLES.is_file(), reason="shared data not present (../shared/data beside the repo)")
def test_streaming_text_triples_read_every_line_of_real_triples():
    triples = load_text_triples(SPLADE_TRIPLES)
    assert isinstance(triples, IterableDataset)
    rows = list(triples)
    raw_lines = SPLADE_TRIPLES.read_text(encoding="utf-8").splitlines()
    assert len(rows) == len(raw_lines) == 100
    first = raw_lines[0].split("\t")
    assert rows[0] == {"query": first[0], "positive": first[1], "negatives": [first[2]]}
    assert all(len(row["negatives"]) == 1 for row in rows)


def test_text_triples_non_streaming_and_bad_line(tmp_path):
    path = tmp_path / "triples.tsv"
    path.write_text('q1\t"p1\tn1\nq2\tp2 only\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"triples\.tsv:2: expected 3 tab-separated columns"):
        list(load_text_triples(path))
    path.write_text('q1\t"p1\tNA\n', encoding="utf-8")
    triples = load_text_triples(path, streaming=False, cache_dir=tmp_path / "cache")
    assert isinstance(triples, Dataset)
    assert triples.to_list() == [{"query": "q1", "positive": '"p1', "negatives": ["NA"]}]


def test_id_triples_look_up_texts_and_name_unknown_ids(tmp_path):
    collection = Dataset.from_dict({"id": ["0", "1", "2"], "text": ["zero", "one", "two"]})
    queries = {"q7": "seven"}
    path = tmp_path / "qidpidtriples.tsv"
    path.write_text("q7\t2\t0\nq7\t1\t9\n", encoding="utf-8")
    stream = load_id_triples(path, collection, queries)
    assert isinstance(stream, IterableDataset)
    rows = iter(stream)
    assert next(rows) == {
        "query_id": "q7",
        "query": "seven",
        "positive_id": "2",
        "positive": "two",
        "negative_ids": ["0"],
        "negatives": ["zero"],
    }
    with pytest.raises(DataFormatError, match=r"qidpidtriples\.tsv:2: negative passage id '9' is not in the"):
        next(rows)


def test_hub_schemas_map_to_training_format(tmp_path):
    triplet = Dataset.from_dict({"query": ["q"], "positive": ["p"], "negative": ["n"]})
    assert to_training_format(triplet).to_list() == [{"query": "q", "positive": "p", "negatives": ["n"]}]
    fifty = Dataset.from_dict({"query": ["q"], "positive": ["p"], **{f"negative_{i}": [f"n{i}"] for i in (2, 10, 1)}})
    assert to_training_format(fifty)[0]["negatives"] == ["n1", "n2", "n10"]
    ids = Dataset.from_dict({"query": [5], "positive": [1], "negative": [0]})
    mapped = to_training_format(ids, collection={"0": "zero", "1": "one"}, queries={"5": "five"})
    assert mapped[0] == {
        "query_id": "5",
        "positive_id": "1",
        "negative_ids": ["0"],
        "query": "five",
        "positive": "one",
        "negatives": ["zero"],
    }
    with pytest.raises(ValueError, match="integer ids"):
        to_training_format(ids)
    # load_hub_dataset goes through load_dataset: a local parquet folder stands in for the Hub (offline).
    folder = tmp_path / "hub"
    folder.mkdir()
    triplet.to_parquet(str(folder / "train-00000-of-00001.parquet"))
    streamed = load_hub_dataset(str(folder), split="train", streaming=True)
    assert list(streamed) == [{"query": "q", "positive": "p", "negatives": ["n"]}]


def test_mined_negatives_round_trip(tmp_path):
    mined = Dataset.from_dict(
        {
            "query_id": ["q1"],
            "query": ["query"],
            "positive_id": ["d1"],
            "positive": ["pos"],
            "negative_ids": [["d2", "d3"]],
            "negatives": [["neg2", "neg3"]],
        }
    )
    mined.save_to_disk(str(tmp_path / "mined"))
    assert load_mined_negatives(tmp_path / "mined").to_list() == mined.to_list()
    Dataset.from_dict({"query": ["q"]}).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(ValueError, match=r"missing \['positive', 'negatives'\]"):
        load_mined_negatives(tmp_path / "bad")


def reference_examples(queries, qrels, run, num_negatives, min_relevance, depth, seed):
    """Independent re-statement of the documented rule, written as a plain loop."""
    rng = random.Random(seed)
    examples = []
    for qid in queries:
        judged = qrels.get(qid, {})
        ranked = sorted(run.get(qid, {}), key=lambda d: (-run[qid][d], d))[:depth]
        candidates = [d for d in ranked if judged.get(d, 0) == 0]
        for pid in sorted(d for d, g in judged.items() if g >= min_relevance):
            chosen = rng.sample(candidates, num_negatives)
            examples.append((qid, pid, chosen))
    return examples


def test_build_training_examples_excludes_judged_relevant_and_is_seeded():
    collection = {f"d{i}": f"passage {i}" for i in range(12)}
    queries = {"qa": "query a", "qb": "query b", "qc": "query c without positives"}
    qrels = {"qa": {"d0": 2, "d1": 1, "d2": 3, "d3": 0}, "qb": {"d5": 2}, "qc": {"d6": 1}}
    run = {
        "qa": {f"d{i}": 10.0 - i for i in range(12)},
        "qb": {f"d{i}": float(i % 3) for i in range(12)},
        "qc": {"d7": 1.0},
    }
    examples = build_training_examples(
        queries, qrels, collection, run, num_negatives=2, min_relevance=2, depth=8, seed=3
    )
    expected = reference_examples(queries, qrels, run, 2, 2, 8, 3)
    assert [(e["query_id"], e["positive_id"], e["negative_ids"]) for e in examples] == expected
    assert [e["query_id"] for e in examples] == ["qa", "qa", "qb"]  # qa's grade-1 d1 is no positive at min 2
    for example in examples:
        judged_relevant = {d for d, g in qrels[example["query_id"]].items() if g > 0}
        assert not judged_relevant & set(example["negative_ids"])
        assert example["negatives"] == [collection[d] for d in example["negative_ids"]]
        assert example["query"] == queries[example["query_id"]]
    again = build_training_examples(queries, qrels, collection, run, num_negatives=2, min_relevance=2, depth=8, seed=3)
    assert again.to_list() == examples.to_list()
    with pytest.raises(ValueError, match=r"query qa: only 1 negative candidates in the run's top-4"):
        build_training_examples(queries, qrels, collection, run, num_negatives=2, min_relevance=2, depth=4)
    skipped = build_training_examples(
        queries, qrels, collection, run, num_negatives=2, min_relevance=2, depth=4, on_short="skip"
    )
    assert skipped["query_id"] == ["qb"]
