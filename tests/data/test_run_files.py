"""TREC run / qrels / topics files: round trips, ranking convention, strict errors naming file and line."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tct_hf.data import DataFormatError, run_files
from tct_hf.data.msmarco import read_queries
from tct_hf.data.run_files import RunFormatError, read_qrels, read_run, sort_run, write_run

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def test_write_run_sorts_by_score_then_docid_and_round_trips(tmp_path):
    run = {"q2": {"b": 0.5, "a": 0.5, "c": 2.0, "z": 1 / 3}, "q1": {"x": -1.25}}
    path = tmp_path / "run.trec"
    write_run(run, path, tag="dense")
    lines = path.read_text().splitlines()
    assert lines == [
        "q2 Q0 c 1 2.0 dense",
        "q2 Q0 a 2 0.5 dense",
        "q2 Q0 b 3 0.5 dense",
        f"q2 Q0 z 4 {1 / 3!r} dense",
        "q1 Q0 x 1 -1.25 dense",
    ]
    assert read_run(path) == run  # exact: repr round-trips floats


def test_write_run_cuts_to_k_and_leaves_no_temporary_file(tmp_path):
    write_run({"q": {f"d{i}": float(i) for i in range(10)}}, tmp_path / "run.trec", k=3)
    assert [line.split()[2] for line in (tmp_path / "run.trec").read_text().splitlines()] == ["d9", "d8", "d7"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.trec"]


def test_write_run_failure_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "run.trec"
    old = "q0 Q0 d 1 1.0 old\n"
    path.write_text(old)
    with pytest.raises(ValueError, match="whitespace"):
        write_run({"q1": {"ok": 1.0, "bad id": 0.5}}, path, overwrite=True)
    assert path.read_text() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.trec"]

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(run_files.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_run({"q1": {"d": 1.0}}, path, overwrite=True)
    assert path.read_text() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.trec"]


def test_sort_run_matches_python_sort():
    run = {"q": {"d3": 1.0, "d1": 1.0, "d2": 3.0, "d0": 0.0}}
    expected = sorted(run["q"].items(), key=lambda item: (-item[1], item[0]))
    assert sort_run(run)["q"] == expected


@pytest.mark.parametrize(
    "content, expected",
    [
        ("q1 0 d1 1\nq1 0 d2 0\nq2 0 d1 2\n", {"q1": {"d1": 1, "d2": 0}, "q2": {"d1": 2}}),
        ("q1\t0\td1\t1\nq2\t0\td9\t1\n", {"q1": {"d1": 1}, "q2": {"d9": 1}}),
        ("q1\td1\nq1\td2\n\n", {"q1": {"d1": 1, "d2": 1}}),
        ("19335 Q0 1017759 0\n", {"19335": {"1017759": 0}}),
    ],
)
def test_read_qrels_formats(tmp_path, content, expected):
    path = tmp_path / "qrels.txt"
    path.write_text(content)
    assert read_qrels(path) == expected


def test_read_queries_plain_and_gzip(tmp_path):
    (tmp_path / "q.tsv").write_text("1\twhat is a lobster roll\n2\tdo goldfish grow\n")
    with gzip.open(tmp_path / "q.tsv.gz", "wt", encoding="utf-8") as handle:
        handle.write("1\twhat is a lobster roll\n2\tdo goldfish grow\n")
    expected = {"1": "what is a lobster roll", "2": "do goldfish grow"}
    assert read_queries(tmp_path / "q.tsv") == expected
    assert read_queries(tmp_path / "q.tsv.gz") == expected


@pytest.mark.parametrize(
    "reader, content, line, message",
    [
        (read_run, "q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 1.0\n", 2, "expected 6 columns"),
        (read_run, "q1 Q0 d1 1 1.0 t\nq1 Q0 d1 2 0.5 t\n", 2, "duplicate result"),
        (read_run, "q1 Q0 d1 1 high t\n", 1, "score 'high' is not a number"),
        (read_run, "q1 Q0 d1 one 1.0 t\n", 1, "rank 'one' is not an integer"),
        (read_run, "q1 Q0 d1 1 nan t\n", 1, "not finite"),
        (read_qrels, "q1 0 d1 1\nq1 0 d2\n", 2, "expected 4 columns"),
        (read_qrels, "q1 0 d1 1\n\nq1 0 d1 0\n", 3, "duplicate judgment"),
        (read_qrels, "q1 0 d1 yes\n", 1, "relevance 'yes' is not an integer"),
        (read_qrels, "q1 0 d1\n", 1, "expected 4 columns"),
    ],
)
def test_malformed_lines_name_file_line_and_fix(tmp_path, reader, content, line, message):
    path = tmp_path / "input.txt"
    path.write_text(content)
    with pytest.raises(RunFormatError, match=message) as error:
        reader(path)
    assert f"{path}:{line}:" in str(error.value)
    assert "Fix:" in str(error.value)
    assert error.value.line_number == line
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize(
    "content, line, message",
    [
        ("1\tfine\n2\ttoo\tmany\n", 2, "expected 2 tab-separated columns"),
        ("1\tfine\n\tno id\n", 2, "the id is empty"),
        ("1\tfine\n1\tagain\n", 2, "duplicate query id '1'"),
        ("1\t \n", 1, "the text is empty"),
        ("1\tfine\n2\tcaf\xe9\n".encode("latin-1"), 2, "not valid UTF-8"),
    ],
)
def test_malformed_queries_name_file_line_and_fix(tmp_path, content, line, message):
    """Queries are read by the data readers' one parser (`load_queries`' too): the same errors, with file and line."""
    path = tmp_path / "queries.tsv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataFormatError, match=message) as error:
        read_queries(path)
    assert f"{path}:{line}:" in str(error.value)
    assert "Fix:" in str(error.value)
    assert error.value.line == line


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_run(tmp_path / "absent.trec")


def test_real_topics_and_qrels_parse():
    """The shipped MS MARCO dev-subset and DL19 files parse with the documented counts (README)."""
    folder = DATA / "topics_qrels_only"
    if not folder.is_dir():
        pytest.skip("shared data not present")
    dev = read_qrels(folder / "qrels.msmarco-passage.dev-subset.txt")
    assert sum(len(judged) for judged in dev.values()) == 7437
    assert len(read_queries(folder / "topics.msmarco-passage.dev-subset.txt")) == 6980
    dl19 = read_qrels(folder / "qrels.dl19-passage.txt")
    assert sum(len(judged) for judged in dl19.values()) == 9260
    assert {rel for judged in dl19.values() for rel in judged.values()} == {0, 1, 2, 3}
    assert len(read_queries(folder / "topics.beir-v1.0.0-scifact.test.tsv.gz")) == 300
