"""Titles end to end: a collection with titles gives title columns in qrels-driven and mined training examples, the
collator puts each title before its text for the student and for the teacher (Pyserini's `[CLS] [D] title text`),
and BM25 retrieves a passage by a word of its title only."""

from __future__ import annotations

import sys
from pathlib import Path

import datasets
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils import write_tiny_bert  # noqa: E402

from tct_hf import ColBERTModel, TCTModel  # noqa: E402
from tct_hf.data import TCTCollator, build_training_examples  # noqa: E402
from tct_hf.retrieval.index import build_index  # noqa: E402
from tct_hf.retrieval.mining import mine_hard_negatives  # noqa: E402

IDS = [f"d{i}" for i in range(8)]
TEXTS = ["heat and air", "river flow water", "blood heart cell", "tax law money", "music art film",
         "plant animal food", "shock wave theory", "game drink health"]  # fmt: skip
TITLES = ["paris", "the war", "engine", "capital", "history", "surface", "boundary", "speed"]
TITLE_OF = dict(zip(IDS, TITLES))
QUERIES = {"q1": "river flow", "q2": "blood cell"}
QRELS = {"q1": {"d1": 1}, "q2": {"d2": 1}}


@pytest.fixture(scope="module")
def collection() -> datasets.Dataset:
    return datasets.Dataset.from_dict({"id": IDS, "title": TITLES, "text": TEXTS})


def check_titles(examples) -> None:
    assert {"positive_title", "negative_titles"} <= set(examples.column_names)
    for row in examples:
        assert row["positive_title"] == TITLE_OF[row["positive_id"]]
        assert row["negative_titles"] == [TITLE_OF[d] for d in row["negative_ids"]]


def test_qrels_driven_examples_carry_titles(collection):
    run = {qid: {d: float(-i) for i, d in enumerate(IDS)} for qid in QUERIES}
    examples = build_training_examples(QUERIES, QRELS, collection, run, num_negatives=2, seed=1)
    assert len(examples) == 2
    check_titles(examples)
    untitled = build_training_examples(QUERIES, QRELS, collection.remove_columns("title"), run, num_negatives=2)
    assert "positive_title" not in untitled.column_names


class LookupEncoder:
    def __init__(self, vectors):
        self.vectors = vectors

    def encode_queries(self, texts, batch_size=64, **kwargs):
        return np.stack([self.vectors[text] for text in texts]).astype(np.float32)


def test_mined_examples_carry_titles(collection):
    rng = np.random.default_rng(0)
    vectors = {text: rng.normal(size=4) for text in [*TEXTS, *QUERIES.values()]}
    index = build_index(np.stack([vectors[t] for t in TEXTS]).astype(np.float32), IDS)
    mined = mine_hard_negatives(
        LookupEncoder(vectors), index, QUERIES, QRELS, depth=6, num_negatives=3, collection=collection, seed=3
    )
    assert len(mined) == 2
    check_titles(mined)


def test_collator_puts_titles_before_texts_for_student_and_teacher(collection, tmp_path):
    student = TCTModel.from_pretrained(write_tiny_bert(tmp_path / "student"))
    teacher = ColBERTModel.from_pretrained(write_tiny_bert(tmp_path / "teacher", seed=1), convention="tct", dim=8)
    run = {qid: {d: float(-i) for i, d in enumerate(IDS)} for qid in QUERIES}
    examples = list(build_training_examples(QUERIES, QRELS, collection, run, num_negatives=1, seed=1))
    batch = TCTCollator(student, teacher, query_max_length=8, passage_max_length=12)(examples)
    texts = [row["positive"] for row in examples] + [row["negatives"][0] for row in examples]
    titles = [row["positive_title"] for row in examples] + [row["negative_titles"][0] for row in examples]
    student_reference = student.tokenize_passages(texts, titles=titles, max_length=12 + student.config.pooling_start)
    assert batch["passage_input_ids"].tolist() == student_reference["input_ids"].tolist()
    tokens = student.tokenizer.convert_ids_to_tokens(batch["passage_input_ids"][0].tolist())
    assert tokens[4:6] == ["the", "war"]  # after "[CLS] [ d ]": the positive's title, then its text
    teacher_length = 12 + teacher.config.skip_positions
    teacher_reference = teacher.tokenize_passages(texts, titles=titles, max_length=teacher_length)
    assert batch["teacher_passage_input_ids"].tolist() == teacher_reference["input_ids"].tolist()
    untitled = TCTCollator(student, teacher, query_max_length=8, passage_max_length=12)(
        [{k: v for k, v in row.items() if "title" not in k} for row in examples]
    )
    assert untitled["passage_input_ids"].tolist() != batch["passage_input_ids"].tolist()


def test_bm25_reads_titles(tmp_path):
    pytest.importorskip("bm25s")
    from test_cli import cli

    corpus = tmp_path / "titled.tsv"
    corpus.write_text("".join(f"{d}\t{title}\t{text}\n" for d, title, text in zip(IDS, TITLES, TEXTS)))
    (tmp_path / "queries.tsv").write_text("q1\tboundary\n")  # a word of d6's title only
    status, _, err = cli("bm25", "--corpus", corpus, "--queries", tmp_path / "queries.tsv",
                         "--output", tmp_path / "run.trec", "--k", "3")  # fmt: skip
    assert status == 0, err
    first = (tmp_path / "run.trec").read_text().splitlines()[0].split()
    assert first[:3] == ["q1", "Q0", "d6"]
