"""The embedded sample: every file parses with our readers, the query splits are disjoint, and it is rebuilt
byte for byte by scripts/build_sample.py."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

from tct_hf.data import (
    build_training_examples,
    load_collection,
    load_queries,
    load_text_triples,
    qrels_to_dict,
    sample_paths,
)

REPOSITORY = Path(__file__).resolve().parents[2]
SHARED = REPOSITORY.parent / "shared" / "data"


def test_sample_files_parse_and_splits_are_disjoint():
    paths = sample_paths()
    collection = load_collection(paths["collection"])
    train, dev = load_queries(paths["queries_train"]), load_queries(paths["queries_dev"])
    qrels_train, qrels_dev = qrels_to_dict(paths["qrels_train"]), qrels_to_dict(paths["qrels_dev"])
    assert len(collection) == 4103 and len(set(collection["id"])) == 4103
    assert not set(train["id"]) & set(dev["id"])
    assert len(train) + len(dev) == 43 and len(dev) >= 10
    assert set(qrels_train) == set(train["id"]) and set(qrels_dev) == set(dev["id"])
    pids = set(collection["id"])
    assert all(pid in pids for judged in (*qrels_train.values(), *qrels_dev.values()) for pid in judged)
    assert sum(1 for _ in load_text_triples(paths["triples_train"])) == 50
    assert sum(path.stat().st_size for path in paths.values()) < 1_000_000
    assert "non-commercial" in paths["readme"].read_text(encoding="utf-8")


def test_demo_examples_build_from_the_sample():
    paths = sample_paths()
    collection = load_collection(paths["collection"])
    queries = load_queries(paths["queries_train"])
    qrels = qrels_to_dict(paths["qrels_train"])
    # A stand-in run (every passage, scored by id) exercises the path the demo takes with a BM25 run.
    run = {qid: {pid: float(i) for i, pid in enumerate(collection["id"][:300])} for qid in queries["id"]}
    examples = build_training_examples(queries, qrels, collection, run, num_negatives=1, min_relevance=2, seed=0)
    positives = sum(1 for judged in qrels.values() for grade in judged.values() if grade >= 2)
    assert len(examples) == positives
    for example in examples.select(range(0, len(examples), 97)):
        assert qrels[example["query_id"]].get(example["negative_ids"][0], 0) == 0


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
def test_build_sample_is_reproducible(tmp_path):
    output = tmp_path / "sample"
    script = REPOSITORY / "scripts" / "build_sample.py"
    subprocess.run([sys.executable, str(script), "--source", str(SHARED), "--output", str(output)], check=True)
    shipped = sample_paths()["collection"].parent
    names = sorted(path.name for path in shipped.iterdir())
    assert sorted(path.name for path in output.iterdir()) == names
    match, mismatch, errors = filecmp.cmpfiles(shipped, output, names, shallow=False)
    assert mismatch == [] and errors == []
