"""MS MARCO readers on small files written here: real-text quirks, formats, and errors that name file and line."""

from __future__ import annotations

import gzip
import json
import logging

import pytest

from tct_hf.data import DataFormatError, load_collection, load_qrels, load_queries, qrels_to_dict, read_run

QUIRKY_ROWS = [
    ("0", 'He said "hello and left'),  # unbalanced quote: a csv reader with default quoting breaks here
    ("1", '"fully quoted"'),
    ("2", "null"),
    ("3", "NA"),
    ("4", "naïve café — “smart quotes”"),
    ("5", ""),  # empty passage
    ("6", "  leading and trailing spaces  "),
]


def write_lines(path, lines: list[str], *, compress: bool = False) -> None:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def test_collection_keeps_quotes_null_na_and_empty_text_exactly(tmp_path, cache, caplog):
    path = tmp_path / "collection.tsv"
    write_lines(path, [f"{pid}\t{text}" for pid, text in QUIRKY_ROWS])
    with caplog.at_level(logging.WARNING):
        collection = load_collection(path, cache_dir=cache)
    assert collection.column_names == ["id", "text"]
    assert list(zip(collection["id"], collection["text"])) == QUIRKY_ROWS
    assert "1 row(s) with an empty text field were kept (lines 6)" in caplog.text


def test_collection_skip_empty_is_counted_and_logged(tmp_path, cache, caplog):
    path = tmp_path / "collection.tsv"
    write_lines(path, [f"{pid}\t{text}" for pid, text in QUIRKY_ROWS])
    with caplog.at_level(logging.WARNING):
        collection = load_collection(path, empty="skip", cache_dir=cache)
    assert collection["id"] == [pid for pid, text in QUIRKY_ROWS if text]
    assert "1 row(s) with an empty text field were skipped (lines 6)" in caplog.text
    with pytest.raises(DataFormatError, match=r"collection\.tsv:6: the text is empty"):
        load_collection(path, empty="error", cache_dir=cache)


def test_gzip_and_title_columns(tmp_path, cache):
    path = tmp_path / "corpus.tsv.gz"
    write_lines(path, ["10\tA title\tthe text", "11\t\tno title here"], compress=True)
    collection = load_collection(path, cache_dir=cache)
    assert collection.column_names == ["id", "title", "text"]
    assert collection[0] == {"id": "10", "title": "A title", "text": "the text"}
    assert collection[1] == {"id": "11", "title": "", "text": "no title here"}


def test_jsonl_collection_with_beir_keys(tmp_path, cache):
    path = tmp_path / "corpus.jsonl"
    records = [{"_id": "d1", "title": "T1", "text": "one"}, {"_id": "d2", "title": "", "text": "null"}]
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    collection = load_collection(path, cache_dir=cache)
    assert collection.to_list() == [
        {"id": "d1", "title": "T1", "text": "one"},
        {"id": "d2", "title": "", "text": "null"},
    ]
    path.write_text(json.dumps(records[0]) + "\n[1, 2]\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"corpus\.jsonl:2: not a JSON object"):
        load_collection(path, cache_dir=cache)


def test_wrong_column_count_names_file_and_line(tmp_path, cache):
    path = tmp_path / "collection.tsv"
    write_lines(path, ["0\tfine", "1\tfine too", "2\ta stray\ttab", "3\tok"])
    with pytest.raises(DataFormatError) as error:
        load_collection(path, cache_dir=cache)
    message = str(error.value)
    assert f"{path}:3:" in message
    assert "expected 2 tab-separated columns (id, text), found 3" in message
    assert "Fix:" in message
    assert error.value.line == 3 and error.value.file == str(path)
    # A failed read leaves no cache entry: after the fix, the corrected file is what loads.
    assert not list(cache.glob("*.arrow"))


def test_non_utf8_byte_strict_error_or_counted_replacement(tmp_path, cache, caplog):
    path = tmp_path / "queries.tsv"
    path.write_bytes(b"1\tgood query\n2\tcaf\xe9 latin-1\n3\tanother\n")  # byte 6 of line 2 is Latin-1 é
    with pytest.raises(DataFormatError, match=r"queries\.tsv:2: byte b'\\xe9' at column 6 is not valid UTF-8"):
        load_queries(path, cache_dir=cache)
    with caplog.at_level(logging.WARNING):
        queries = load_queries(path, encoding_errors="replace", cache_dir=cache)
    assert queries["text"] == ["good query", "caf\ufffd latin-1", "another"]
    assert "1 line(s) were not valid UTF-8" in caplog.text and "(lines 2)" in caplog.text


def test_queries_reject_three_columns_on_first_line(tmp_path, cache):
    path = tmp_path / "queries.tsv"
    write_lines(path, ["1\tx\ty"])
    with pytest.raises(DataFormatError, match=r"queries\.tsv:1: expected id<TAB>text, found 3"):
        load_queries(path, cache_dir=cache)


def test_cache_follows_file_changes(tmp_path, cache):
    path = tmp_path / "queries.tsv"
    write_lines(path, ["1\tfirst"])
    assert load_queries(path, cache_dir=cache)["text"] == ["first"]
    write_lines(path, ["1\tsecond version", "2\tmore"])
    assert load_queries(path, cache_dir=cache)["text"] == ["second version", "more"]


def test_qrels_trec_msmarco_and_two_column(tmp_path):
    trec = tmp_path / "qrels.txt"
    write_lines(trec, ["q1 0 d1 2", "q1 0 d2 0", "q2 Q0 d3 1"])
    msmarco = tmp_path / "qrels.dev.tsv"
    write_lines(msmarco, ["1048585\t0\t7187158\t1"])
    pairs = tmp_path / "pairs.tsv"
    write_lines(pairs, ["q1\td9"])
    assert qrels_to_dict(load_qrels(trec)) == {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}}
    assert load_qrels(trec).features["relevance"].dtype == "int32"
    assert qrels_to_dict(msmarco) == {"1048585": {"7187158": 1}}
    assert qrels_to_dict(pairs) == {"q1": {"d9": 1}}


def test_qrels_errors_name_the_line(tmp_path):
    path = tmp_path / "qrels.txt"
    write_lines(path, ["q1 0 d1 1", "q1 0 d2 high"])
    with pytest.raises(DataFormatError, match=r"qrels\.txt:2: relevance 'high' is not an integer"):
        load_qrels(path)
    write_lines(path, ["q1 0 d1 1", "q1 0 d2"])
    with pytest.raises(DataFormatError, match=r"qrels\.txt:2: expected 4 columns like the first line, found 3"):
        load_qrels(path)


def test_run_trec_and_msmarco(tmp_path):
    trec = tmp_path / "run.trec"
    write_lines(trec, ["q1 Q0 d1 1 2.5 bm25", "q1 Q0 d2 2 1.0 bm25"])
    msmarco = tmp_path / "run.dev.tsv"
    write_lines(msmarco, ["q1\td1\t1", "q1\td2\t2"])
    assert read_run(trec) == {"q1": {"d1": 2.5, "d2": 1.0}}
    assert read_run(msmarco) == {"q1": {"d1": -1.0, "d2": -2.0}}
