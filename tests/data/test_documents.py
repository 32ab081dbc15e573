"""Document readers on small files built here: MS MARCO's 4-column msmarco-docs.tsv, generic TSV / JSONL corpora,
the MS MARCO document queries / qrels / top100 through the existing readers, and every bad-input rule."""

from __future__ import annotations

import gzip
import json
import logging

import pytest
from datasets import Dataset

from tct_hf.data import (
    DataFormatError,
    FirstPLookup,
    build_training_examples,
    firstp_text,
    iter_documents,
    load_documents,
    read_qrels,
    read_queries,
    read_run,
)

# Lines in the layout of msmarco-docs.tsv (docid, url, title, body); D2 has an empty body, D3 nothing at all.
MSMARCO_DOCS = [
    "D1555982\thttps://answers.yahoo.com/question/index?qid=20071007114826AAwCFvR\tThe hot glowing surfaces of "
    "stars emit energy in the form of\tThe hot glowing surfaces of stars emit energy in the form of "
    'electromagnetic radiation. "Quotes" stay, null stays.',
    "D301595\thttp://childparenting.about.com/od/physicalemotionalgrowth/tp/Child-Development.htm\tDevelopmental "
    "Milestones and Your 8-Year-Old Child\tSchool-age children are more independent.",
    "D2\thttp://example.com/2\tA title only\t",
    "D3\thttp://example.com/3\t\t   ",
]


def write(path, lines, compress=False):
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def test_msmarco_docs_tsv_keeps_title_and_body_and_drops_the_url(tmp_path, cache, caplog):
    path = write(tmp_path / "msmarco-docs.tsv.gz", MSMARCO_DOCS, compress=True)
    with caplog.at_level(logging.WARNING):
        documents = load_documents(path, cache_dir=cache)
    assert documents.column_names == ["id", "title", "text"]
    assert documents[0]["id"] == "D1555982"
    assert documents[0]["title"] == "The hot glowing surfaces of stars emit energy in the form of"
    assert documents[0]["text"].endswith('"Quotes" stay, null stays.')
    # empty body: indexed by its title alone; neither: kept (policy keep) — both counted and logged with lines
    assert documents[2] == {"id": "D2", "title": "", "text": "A title only"}
    assert documents[3] == {"id": "D3", "title": "", "text": "   "}
    assert "1 document(s) with an empty body are indexed by their title alone (lines 3)" in caplog.text
    assert "1 document(s) with neither title nor body were kept (lines 4)" in caplog.text


def test_empty_document_policies(tmp_path, cache, caplog):
    path = write(tmp_path / "docs.tsv", MSMARCO_DOCS)
    with caplog.at_level(logging.WARNING):
        skipped = load_documents(path, empty="skip", cache_dir=cache)
    assert skipped["id"] == ["D1555982", "D301595", "D2"]
    assert "1 document(s) with neither title nor body were skipped (lines 4)" in caplog.text
    with pytest.raises(DataFormatError, match=r"docs\.tsv:4: document 'D3' has neither title nor body"):
        load_documents(path, empty="error", cache_dir=cache)
    with pytest.raises(ValueError, match="empty='drop'"):
        load_documents(path, empty="drop", cache_dir=cache)


def test_a_tab_in_a_tsv_title_is_an_error_naming_the_line(tmp_path, cache):
    lines = MSMARCO_DOCS[:2] + ["D9\thttp://x\tA title\twith a tab\tbody text"]
    path = write(tmp_path / "msmarco-docs.tsv", lines)
    with pytest.raises(DataFormatError) as caught:
        load_documents(path, cache_dir=cache)
    assert caught.value.line == 3
    assert "expected 4 tab-separated columns (docid, url, title, body), found 5" in str(caught.value)
    assert "must not contain a tab" in caught.value.fix


def test_jsonl_titles_with_tabs_and_newlines_are_collapsed_counted_and_logged(tmp_path, cache, caplog):
    records = [
        {"id": "a", "title": "Line one\nline\ttwo", "text": "body a"},
        {"_id": "b", "title": "", "contents": "body b"},
        {"doc_id": "c", "body": "body c"},
    ]
    path = write(tmp_path / "docs.jsonl", [json.dumps(r) for r in records])
    with caplog.at_level(logging.WARNING):
        documents = load_documents(path, cache_dir=cache)
    assert list(documents) == [
        {"id": "a", "title": "Line one line two", "text": "body a"},
        {"id": "b", "title": "", "text": "body b"},
        {"id": "c", "title": "", "text": "body c"},
    ]
    assert "1 title(s) held tabs or newlines, collapsed to single spaces (lines 1)" in caplog.text
    bad = write(tmp_path / "bad.jsonl", [json.dumps({"id": "x", "title": "t"})])
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:1: no text field"):
        load_documents(bad, cache_dir=cache)


def test_generic_tsv_layouts_and_errors(tmp_path, cache):
    three = write(tmp_path / "three.tsv", ["d1\tTitle one\tText one", "d2\t\tText two"])
    assert list(load_documents(three, cache_dir=cache)) == [
        {"id": "d1", "title": "Title one", "text": "Text one"},
        {"id": "d2", "title": "", "text": "Text two"},
    ]
    two = write(tmp_path / "two.tsv", ["d1\tText one"])
    assert list(load_documents(two, cache_dir=cache)) == [{"id": "d1", "title": "", "text": "Text one"}]
    five = write(tmp_path / "five.tsv", ["a\tb\tc\td\te"])
    with pytest.raises(DataFormatError, match=r"five\.tsv:1: expected 4 .* found 5"):
        load_documents(five, cache_dir=cache)
    no_id = write(tmp_path / "noid.tsv", ["d1\tTitle\tText", "\tTitle\tText"])
    with pytest.raises(DataFormatError, match=r"noid\.tsv:2: the document id is empty"):
        load_documents(no_id, cache_dir=cache)
    latin1 = tmp_path / "latin1.tsv"
    latin1.write_bytes("d1\tT\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"latin1\.tsv:1: .*not valid UTF-8"):
        load_documents(latin1, cache_dir=cache)


def test_iter_documents_streams_one_document_at_a_time(tmp_path):
    path = write(tmp_path / "docs.tsv", MSMARCO_DOCS[:2] + ["D9\tonly two columns"])
    stream = iter_documents(path)
    first = next(stream)  # read before the malformed third line is reached
    assert (first.id, first.line) == ("D1555982", 1)
    assert next(stream).id == "D301595"
    with pytest.raises(DataFormatError, match=r"docs\.tsv:3"):
        next(stream)


def test_the_other_msmarco_document_files_read_with_the_existing_readers(tmp_path):
    # msmarco-doctrain-queries.tsv: qid<TAB>text; msmarco-doctrain-qrels.tsv: "qid 0 docid 1" (spaces);
    # msmarco-doctrain-top100: TREC run; 2019qrels-docs.txt: graded "qid 0 docid rel".
    queries = write(tmp_path / "msmarco-doctrain-queries.tsv", ["174249\tdoes xpress bet charge to deposit money"])
    qrels = write(tmp_path / "msmarco-doctrain-qrels.tsv", ["174249 0 D1555982 1"])
    top100 = write(
        tmp_path / "msmarco-doctrain-top100",
        ["174249 Q0 D301595 1 -5.37 IndriQueryLikelihood", "174249 Q0 D1555982 2 -5.41 IndriQueryLikelihood"],
    )
    dl19 = write(tmp_path / "2019qrels-docs.txt", ["19335 0 D1035833 0", "19335 0 D1069222 3", "19335 0 D1144131 2"])
    assert read_queries(queries) == {"174249": "does xpress bet charge to deposit money"}
    assert read_qrels(qrels) == {"174249": {"D1555982": 1}}
    assert read_run(top100) == {"174249": {"D301595": -5.37, "D1555982": -5.41}}
    assert read_qrels(dl19) == {"19335": {"D1035833": 0, "D1069222": 3, "D1144131": 2}}


def test_firstp_text_cuts_words_not_tokens_and_feeds_build_training_examples():
    assert firstp_text("", "a b c", max_tokens=2) == "a b"
    assert firstp_text("T", "a  b\tc", max_tokens=None) == "T a  b\tc"
    documents = Dataset.from_dict(
        {"id": ["D1", "D2", "D3"], "title": ["Stars", "", "Kids"], "text": ["emit " * 1000, "noise", "grow fast"]}
    )
    lookup = FirstPLookup(documents, max_tokens=512)
    assert len(lookup["D1"].split()) == 512 and lookup["D1"].startswith("Stars emit")
    assert "D2" in lookup and "D9" not in lookup and len(lookup) == 3
    examples = build_training_examples(
        {"q1": "what do stars emit"},
        {"q1": {"D1": 1}},
        lookup,
        {"q1": {"D1": 3.0, "D2": 2.0, "D3": 1.0}},
        num_negatives=2,
        depth=100,
    )
    assert examples[0]["positive"] == lookup["D1"]
    assert sorted(examples[0]["negative_ids"]) == ["D2", "D3"]
    assert set(examples[0]["negatives"]) == {"noise", "Kids grow fast"}
    with pytest.raises(ValueError, match="twice"):
        FirstPLookup(Dataset.from_dict({"id": ["a", "a"], "title": ["", ""], "text": ["x", "y"]}))
