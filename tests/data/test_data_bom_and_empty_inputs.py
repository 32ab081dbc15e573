"""Inputs that are not what they claim: a UTF-8 byte-order mark at the start of every kind of file (stripped: the
first id must not begin with U+FEFF), an empty queries file (an error everywhere), and a cached parse that must
follow the file's content even when its size and modification time do not change."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from tct_hf.data import (
    DataFormatError,
    load_collection,
    load_queries,
    load_text_triples,
    read_qrels,
    read_queries,
    read_run,
)

BOM = b"\xef\xbb\xbf"


def write(path, text: str, *, bom: bool = True, compress: bool = False) -> None:
    data = (BOM if bom else b"") + text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


@pytest.mark.parametrize("compress", [False, True])
def test_bom_is_stripped_by_the_run_qrels_and_queries_readers(tmp_path, compress):
    suffix = ".gz" if compress else ""
    write(tmp_path / f"q.tsv{suffix}", "1\tfirst query\n2\tsecond\n", compress=compress)
    write(tmp_path / f"qrels.txt{suffix}", "1 0 d1 1\n2 0 d2 1\n", compress=compress)
    write(tmp_path / f"qrels2.tsv{suffix}", "1\td1\n", compress=compress)
    write(tmp_path / f"run.trec{suffix}", "1 Q0 d1 1 2.0 t\n1 Q0 d2 2 1.0 t\n", compress=compress)
    write(tmp_path / f"run.tsv{suffix}", "1\td1\t1\n", compress=compress)
    assert read_queries(tmp_path / f"q.tsv{suffix}") == {"1": "first query", "2": "second"}
    assert read_qrels(tmp_path / f"qrels.txt{suffix}") == {"1": {"d1": 1}, "2": {"d2": 1}}
    assert read_qrels(tmp_path / f"qrels2.tsv{suffix}") == {"1": {"d1": 1}}
    assert read_run(tmp_path / f"run.trec{suffix}") == {"1": {"d1": 2.0, "d2": 1.0}}
    assert read_run(tmp_path / f"run.tsv{suffix}") == {"1": {"d1": -1.0}}


def test_bom_is_stripped_by_collection_queries_jsonl_and_triples(tmp_path, cache):
    write(tmp_path / "collection.tsv", "0\tfirst passage\n1\tsecond\n")
    write(tmp_path / "titled.tsv", "0\ta title\tfirst passage\n")
    write(tmp_path / "collection.jsonl", json.dumps({"id": "0", "title": "t", "text": "x"}) + "\n")
    write(tmp_path / "queries.tsv", "7\tquery\n")
    write(tmp_path / "triples.tsv", "q\tpos\tneg\n")
    assert load_collection(tmp_path / "collection.tsv", cache_dir=cache)["id"] == ["0", "1"]
    titled = load_collection(tmp_path / "titled.tsv", cache_dir=cache)
    assert titled["id"] == ["0"] and titled["title"] == ["a title"]
    jsonl = load_collection(tmp_path / "collection.jsonl", cache_dir=cache)
    assert jsonl["id"] == ["0"] and jsonl["title"] == ["t"]
    assert load_queries(tmp_path / "queries.tsv", cache_dir=cache)["id"] == ["7"]
    assert next(iter(load_text_triples(tmp_path / "triples.tsv")))["query"] == "q"
    assert load_text_triples(tmp_path / "triples.tsv", streaming=False, cache_dir=cache)["query"] == ["q"]


def test_a_bom_after_the_start_stays_text(tmp_path):
    write(tmp_path / "q.tsv", "1\tfirst\n\ufeff2\tsecond\n", bom=False)
    assert list(read_queries(tmp_path / "q.tsv")) == ["1", "\ufeff2"]


def test_empty_queries_file_is_an_error_for_every_reader(tmp_path, cache):
    for name, content in [("empty.tsv", b""), ("blank.tsv", b"\n\n"), ("bom.tsv", BOM), ("empty.jsonl", b"")]:
        (tmp_path / name).write_bytes(content)
    for name in ("empty.tsv", "blank.tsv", "bom.tsv"):
        with pytest.raises(DataFormatError, match="no query in the file"):
            read_queries(tmp_path / name)
    for name in ("empty.tsv", "empty.jsonl"):
        with pytest.raises(DataFormatError, match=name):
            load_queries(tmp_path / name, cache_dir=cache)
    (tmp_path / "blank.jsonl").write_text(json.dumps({"id": "1", "text": " "}) + "\n")
    with pytest.raises(DataFormatError, match="no query in the file"):
        load_queries(tmp_path / "blank.jsonl", empty="skip", cache_dir=cache)


def test_cache_follows_content_with_same_size_and_mtime(tmp_path, cache):
    path = tmp_path / "collection.tsv"
    path.write_text("0\tfirst text\n")
    stat = os.stat(path)
    assert load_collection(path, cache_dir=cache)["text"] == ["first text"]
    path.write_text("0\tother text\n")  # same length
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(path).st_size == stat.st_size and os.stat(path).st_mtime_ns == stat.st_mtime_ns
    assert load_collection(path, cache_dir=cache)["text"] == ["other text"]
    assert load_queries(path, cache_dir=cache)["text"] == ["other text"]
