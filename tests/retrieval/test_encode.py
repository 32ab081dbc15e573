"""Corpus encoding: chunking keeps order and vectors, shards concatenate to one pass, bad corpora fail clearly."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
from utils import write_tiny_bert

from tct_hf.data.errors import DataFormatError
from tct_hf.retrieval.encode import encode_corpus, parse_shard, shard_bounds
from tct_hf.retrieval.encoders import load_encoder

TEXTS = [
    "the river flow of water",
    "paris is the capital of france",
    "heat and air pressure in a wing",
    "blood heart cell",
    "tax law money bank",
    "car engine speed and high temperature",
    "music art film",
    "plant animal food",
    "shock wave theory",
    "boundary layer surface",
    "game drink health",
]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return load_encoder(write_tiny_bert(tmp_path_factory.mktemp("bert")), device="cpu")


@pytest.fixture()
def collection(tmp_path):
    path = tmp_path / "collection.tsv"
    path.write_text("".join(f"doc{i}\t{text}\n" for i, text in enumerate(TEXTS)), encoding="utf-8")
    return path


def test_chunked_encoding_equals_one_call(encoder, collection):
    embeddings, docids = encode_corpus(encoder, collection, batch_size=4, chunk_size=3, show_progress_bar=False)
    assert docids == [f"doc{i}" for i in range(len(TEXTS))]
    assert embeddings.dtype == np.float32 and embeddings.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(embeddings, encoder.encode_passages(TEXTS, batch_size=64), atol=1e-5)


def test_titles_are_passed(encoder, tmp_path):
    path = tmp_path / "titled.tsv"
    path.write_text("a\triver\tthe flow of water\nb\t\tparis is a city\n", encoding="utf-8")
    embeddings, docids = encode_corpus(encoder, path, show_progress_bar=False)
    expected = encoder.encode_passages(["the flow of water", "paris is a city"], titles=["river", ""])
    assert docids == ["a", "b"]
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)


@pytest.mark.parametrize("count", [2, 3, 20])
def test_shards_concatenate_to_one_pass(encoder, collection, count):
    full, full_ids = encode_corpus(encoder, collection, chunk_size=4, show_progress_bar=False)
    parts = [
        encode_corpus(encoder, collection, shard=(i, count), chunk_size=4, show_progress_bar=False)
        for i in range(count)
    ]
    assert [docid for _, ids in parts for docid in ids] == full_ids
    np.testing.assert_allclose(np.concatenate([vectors for vectors, _ in parts]), full, atol=1e-5)
    assert all(vectors.shape[1] == 32 for vectors, _ in parts)  # empty shards (20 > 11 rows) keep the dimension


def test_shard_bounds_and_syntax():
    assert [shard_bounds(10, (i, 3)) for i in range(3)] == [(0, 3), (3, 6), (6, 10)]
    assert shard_bounds(10, None) == (0, 10)
    assert parse_shard("1/4") == (1, 4)
    for bad in ["4/4", "-1/2", "1", "a/b", "1/0", "1/2/3"]:
        with pytest.raises(ValueError, match="I/N|0 <= I < N"):
            parse_shard(bad)


def test_dataset_input(encoder):
    dataset = datasets.Dataset.from_dict({"id": ["x", "y"], "text": TEXTS[:2]})
    embeddings, docids = encode_corpus(encoder, dataset, show_progress_bar=False)
    assert docids == ["x", "y"]
    np.testing.assert_allclose(embeddings, encoder.encode_passages(TEXTS[:2]), atol=1e-5)


def test_duplicate_docid_names_file_and_lines(encoder, tmp_path):
    path = tmp_path / "dup.tsv"
    path.write_text("a\tthe river\nb\tparis\na\theat\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"dup.tsv:3: duplicate docid 'a' \(first on line 1\)"):
        encode_corpus(encoder, path, show_progress_bar=False)


def test_empty_corpus_and_empty_text(encoder, tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataFormatError, match="empty corpus"):
        encode_corpus(encoder, empty, show_progress_bar=False)
    with pytest.raises(DataFormatError, match="empty corpus"):
        encode_corpus(encoder, datasets.Dataset.from_dict({"id": [], "text": []}), show_progress_bar=False)
    blank = tmp_path / "blank.tsv"
    blank.write_text("a\tthe river\nb\t \nc\tparis\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="passage 'b' has empty text"):
        encode_corpus(encoder, blank, show_progress_bar=False)
    embeddings, docids = encode_corpus(encoder, blank, skip_empty=True, show_progress_bar=False)
    assert docids == ["a", "c"] and embeddings.shape == (2, 32)
    with pytest.raises(FileNotFoundError):
        encode_corpus(encoder, tmp_path / "missing.tsv")
