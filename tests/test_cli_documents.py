"""`tct-hf` on documents: MaxP encoding of an msmarco-docs.tsv file, search returning distinct documents (max and
first), FirstP from the same file, and one-line errors for every bad segment option."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from utils import WORDS, write_tiny_bert

from tct_hf.cli import main
from tct_hf.data.run_files import read_run
from tct_hf.retrieval.encoders import load_encoder
from tct_hf.retrieval.index import load_index
from tct_hf.retrieval.segments import parse_segment_id

VOCAB_WORDS = [w for w in WORDS if len(w) > 1 and w not in ("q", "d")]


def cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main([str(arg) for arg in args])
        except SystemExit as exit_:
            status = exit_.code
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_docs")
    write_tiny_bert(root / "bert")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(8):
        body = " ".join(rng.choice(VOCAB_WORDS, size=int(rng.integers(5, 60))))
        title = "" if i % 3 == 0 else " ".join(rng.choice(VOCAB_WORDS, size=2))
        lines.append(f"D{i}\thttp://example.com/{i}\t{title}\t{body}\n")
    lines.append("D8\thttp://example.com/8\ttitle only document\t\n")  # empty body: indexed by its title
    (root / "msmarco-docs.tsv").write_text("".join(lines), encoding="utf-8")
    (root / "queries.tsv").write_text("q1\theat water flow\nq2\tparis city\nq3\ttitle only\n", encoding="utf-8")
    return root


def test_maxp_encode_then_search_gives_distinct_documents_scored_by_their_best_segment(work):
    status, _, err = cli(
        "encode", "--model", work / "bert", "--corpus", work / "msmarco-docs.tsv", "--output", work / "maxp",
        "--segment-window", 16, "--segment-stride", 6, "--no-progress",
    )  # fmt: skip
    assert status == 0, err
    index = load_index(work / "maxp")
    assert index.extra["segments"] == {"window": 16, "stride": 6, "prefix_tokens": 4}
    assert index.count > 9  # long documents gave several segments
    vectors = index.faiss_index.reconstruct_n(0, index.count)
    encoder = load_encoder(work / "bert", device="cpu")
    queries = encoder.encode_queries(["heat water flow", "paris city", "title only"])
    for aggregate in ("max", "first"):
        output = work / f"run_{aggregate}.trec"
        status, _, err = cli(
            "search", "--model", work / "bert", "--index", work / "maxp", "--queries", work / "queries.tsv",
            "--output", output, "--k", 5, "--aggregate", aggregate,
        )  # fmt: skip
        assert status == 0, err
        run = read_run(output)
        for row, qid in enumerate(("q1", "q2", "q3")):
            best: dict[str, float] = {}
            for vector, identifier in zip(vectors, index.docids):
                docid, number = parse_segment_id(identifier)
                if aggregate == "max" or number == 0:
                    best[docid] = max(best.get(docid, -np.inf), float(vector @ queries[row]))
            expected = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:5]
            assert list(run[qid]) == [docid for docid, _ in expected]  # five distinct documents, in order
            np.testing.assert_allclose(list(run[qid].values()), [score for _, score in expected], rtol=1e-5)
    # without --aggregate a segmented index is searched with max
    status, _, _ = cli(
        "search", "--model", work / "bert", "--index", work / "maxp", "--queries", work / "queries.tsv",
        "--output", work / "default.trec", "--k", 5,
    )  # fmt: skip
    assert status == 0 and read_run(work / "default.trec") == read_run(work / "run_max.trec")


def test_firstp_encodes_title_and_body_of_msmarco_docs(work):
    status, _, err = cli(
        "encode", "--model", work / "bert", "--corpus", work / "msmarco-docs.tsv", "--output", work / "firstp",
        "--max-length", 512, "--no-progress",
    )  # fmt: skip
    assert status == 0, err
    index = load_index(work / "firstp")
    assert index.docids == [f"D{i}" for i in range(9)]
    encoder = load_encoder(work / "bert", device="cpu")
    fields = [line.split("\t") for line in (work / "msmarco-docs.tsv").read_text().splitlines()]
    texts = [body if body else title for _, _, title, body in fields]
    titles = [title if body else "" for _, _, title, body in fields]
    np.testing.assert_allclose(
        index.faiss_index.reconstruct_n(0, 9), encoder.encode_passages(texts, titles=titles), atol=1e-5
    )
    status, _, err = cli(
        "search", "--model", work / "bert", "--index", work / "firstp", "--queries", work / "queries.tsv",
        "--output", work / "x.trec", "--aggregate", "max",
    )  # fmt: skip
    assert status == 2
    assert "--aggregate max" in err and "one vector per passage" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--segment-window", 16], "--segment-window and --segment-stride go together"),
        (["--segment-window", 4, "--segment-stride", 1], "not larger than the prefix (4 tokens)"),
        (["--segment-window", 16, "--segment-stride", 13], "stride 13 is larger than the window's 12 text tokens"),
        (["--segment-window", 600, "--segment-stride", 100], "only 512 position embeddings"),
        (["--segment-window", 0, "--segment-stride", 1], "must be at least 1"),
    ],
)
def test_bad_segment_options_are_one_line_errors(work, options, message):
    status, _, err = cli(
        "encode", "--model", work / "bert", "--corpus", work / "msmarco-docs.tsv", "--output", work / "bad",
        "--no-progress", *options,
    )  # fmt: skip
    assert status == 2, err
    assert message in err and err.count("\n") == 1
    assert not (work / "bad").exists()


def test_mining_on_a_segmented_index_of_documents(work):
    """The HN+ pipeline's miner on documents: a MaxP index gives distinct documents, texts and titles come from the
    msmarco-docs.tsv file, and judged-relevant documents never become negatives."""
    from tct_hf.data import load_mined_negatives

    if not (work / "maxp").exists():
        assert cli("encode", "--model", work / "bert", "--corpus", work / "msmarco-docs.tsv", "--output",
                   work / "maxp", "--segment-window", 16, "--segment-stride", 6, "--no-progress")[0] == 0  # fmt: skip
    (work / "qrels.txt").write_text("q1 0 D1 1\nq2 0 D2 1\nq2 0 D4 1\n", encoding="utf-8")
    status, _, err = cli(
        "mine-negatives", "--model", work / "bert", "--index", work / "maxp", "--queries", work / "queries.tsv",
        "--qrels", work / "qrels.txt", "--corpus", work / "msmarco-docs.tsv", "--output", work / "mined",
        "--depth", 5, "--num-negatives", 3, "--without-replacement",
    )  # fmt: skip
    assert status == 0, err
    mined = load_mined_negatives(work / "mined")
    fields = {line.split("\t")[0]: line.split("\t") for line in (work / "msmarco-docs.tsv").read_text().splitlines()}
    assert len(mined) == 3
    for row in mined:
        assert len(set(row["negative_ids"])) == 3  # distinct documents, never two segments of one
        assert not {"q1": {"D1"}, "q2": {"D2", "D4"}}[row["query_id"]] & set(row["negative_ids"])
        _, _, title, body = fields[row["positive_id"]]
        assert row["positive"] == (body or title) and row["positive_title"] == (title if body else "")
