"""`tct-hf` end to end on a tiny random BERT: encode → search → evaluate against numpy brute force and pytrec_eval,
sharded encoding equal to one pass (two `--shard` runs, and `accelerate launch` with 2 processes), fusion against the
hand formula, mining, and one-line errors on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import pytrec_eval
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
from utils import write_tiny_bert

from tct_hf.cli import main
from tct_hf.data.run_files import read_run
from tct_hf.retrieval.encoders import load_encoder
from tct_hf.retrieval.index import load_index

DOCS = [
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
    "the history of the war",
    "game drink health",
]
QUERIES = {"q1": "what is the capital of france", "q2": "heart blood cell", "q3": "car engine speed", "q4": "war"}
QRELS = "q1 0 d1 1\nq1 0 d7 0\nq2 0 d3 2\nq2 0 d8 1\nq3 0 d5 1\nq4 0 d10 1\n"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    write_tiny_bert(root / "bert")
    write_tiny_bert(root / "bert48", hidden_size=48, seed=1)
    (root / "corpus.tsv").write_text("".join(f"d{i}\t{text}\n" for i, text in enumerate(DOCS)), encoding="utf-8")
    (root / "queries.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()), encoding="utf-8")
    (root / "qrels.txt").write_text(QRELS, encoding="utf-8")
    assert cli("encode", "--model", root / "bert", "--corpus", root / "corpus.tsv", "--output", root / "index")[0] == 0
    return root


def cli(*args) -> tuple[int, str, str]:
    """Run `tct-hf` in-process; returns (status, stdout, stderr)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main([str(arg) for arg in args])
        except SystemExit as exit_:
            status = exit_.code
    return status, out.getvalue(), err.getvalue()


def search_arguments(work, output) -> list:
    """`tct-hf search` of the fixture's queries with its BERT over its index, written to ``output``."""
    return ["search", "--model", work / "bert", "--index", work / "index", "--queries", work / "queries.tsv",
            "--output", output]  # fmt: skip


def vectors(index) -> np.ndarray:
    return index.faiss_index.reconstruct_n(0, index.count)


def test_encode_search_evaluate(work, tmp_path):
    encoder = load_encoder(work / "bert", device="cpu")
    index = load_index(work / "index")
    assert index.docids == [f"d{i}" for i in range(len(DOCS))]
    passages = encoder.encode_passages(DOCS)
    np.testing.assert_allclose(vectors(index), passages, atol=1e-5)

    run_path = tmp_path / "run.trec"
    status, _, err = cli(*search_arguments(work, run_path), "--k", 5)
    assert status == 0, err
    run = read_run(run_path)
    queries = encoder.encode_queries(list(QUERIES.values()))
    scores = queries.astype(np.float64) @ passages.astype(np.float64).T
    for row, qid in enumerate(QUERIES):
        expected = sorted(range(len(DOCS)), key=lambda i: (-scores[row, i], f"d{i}"))[:5]
        assert list(run[qid]) == [f"d{i}" for i in expected]
        np.testing.assert_allclose(list(run[qid].values()), scores[row, expected], atol=1e-4)
    lines = run_path.read_text().splitlines()
    assert lines[0].split()[1] == "Q0" and lines[0].split()[3] == "1" and len(lines) == 5 * len(QUERIES)

    status, out, err = cli(
        "evaluate", "--run", run_path, "--qrels", work / "qrels.txt", "--metrics", "nDCG@10", "R@1000", "RR@10"
    )
    assert status == 0, err
    result = json.loads(out)
    qrels = {}
    for line in QRELS.splitlines():
        qid, _, docid, rel = line.split()
        qrels.setdefault(qid, {})[docid] = int(rel)
    reference = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.1000", "recip_rank"}).evaluate(run)
    for ours, theirs in [("nDCG@10", "ndcg_cut_10"), ("R@1000", "recall_1000"), ("RR@10", "recip_rank")]:
        assert result[ours] == pytest.approx(np.mean([reference[q][theirs] for q in QUERIES]), abs=1e-9)

    status, out, _ = cli("evaluate", "--run", run_path, "--qrels", work / "qrels.txt", "--per-query")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["query_id"] for line in lines[:-1]] == list(QUERIES)
    assert lines[-1]["nDCG@10"] == pytest.approx(np.mean([reference[q]["ndcg_cut_10"] for q in QUERIES]))


def test_two_shards_merge_to_one_pass(work, tmp_path):
    output = tmp_path / "sharded"
    for shard in ("1/2", "0/2"):  # any order
        status, _, err = cli(
            "encode",
            "--model",
            work / "bert",
            "--corpus",
            work / "corpus.tsv",
            "--output",
            output,
            "--shard",
            shard,
            "--no-progress",
        )
        assert status == 0, err
    assert sorted(path.name for path in output.iterdir()) == ["shard-0-of-2", "shard-1-of-2"]
    assert load_index(output / "shard-0-of-2").docids == [f"d{i}" for i in range(6)]
    assert cli("merge-index", "--index", output)[0] == 0
    merged, single = load_index(output), load_index(work / "index")
    assert merged.docids == single.docids
    np.testing.assert_array_equal(vectors(merged), vectors(single))
    assert not (output / "shard-0-of-2").exists()


@pytest.mark.distributed
def test_accelerate_launch_two_processes(work, tmp_path):
    output = tmp_path / "launched"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "tct_hf.cli",
        "encode",
        "--model",
        str(work / "bert"),
        "--corpus",
        str(work / "corpus.tsv"),
        "--output",
        str(output),
        "--no-progress",
    ]
    environment = {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "merged 2 shards (12 passages)" in done.stderr
    merged, single = load_index(output), load_index(work / "index")
    assert merged.docids == single.docids
    np.testing.assert_allclose(vectors(merged), vectors(single), atol=1e-5)
    assert sorted(path.name for path in output.iterdir()) == ["docids.txt", "index.faiss", "metadata.json"]


def test_sentence_transformers_model(work, tmp_path):
    transformer = Transformer(str(work / "bert"))
    model = SentenceTransformer(modules=[transformer, Pooling(32, "mean")], device="cpu")
    model.save(str(tmp_path / "st"))
    status, _, err = cli(
        "encode",
        "--model",
        tmp_path / "st",
        "--corpus",
        work / "corpus.tsv",
        "--output",
        tmp_path / "index",
        "--no-progress",
    )
    assert status == 0, err
    np.testing.assert_allclose(vectors(load_index(tmp_path / "index")), model.encode_document(DOCS), atol=1e-5)


def test_fuse_matches_formula(tmp_path):
    (tmp_path / "dense.trec").write_text("q1 Q0 a 1 10.0 d\nq1 Q0 b 2 9.0 d\n")
    (tmp_path / "sparse.trec").write_text("q1 Q0 b 1 20.0 s\nq1 Q0 c 2 5.0 s\n")
    status, _, err = cli(
        "fuse",
        "--dense",
        tmp_path / "dense.trec",
        "--sparse",
        tmp_path / "sparse.trec",
        "--alpha",
        "0.1",
        "--output",
        tmp_path / "fused.trec",
    )
    assert status == 0, err
    # alpha * sparse + dense, a missing document takes the list's minimum: a: .1*5+10, b: .1*20+9, c: .1*5+9
    fused = read_run(tmp_path / "fused.trec")
    assert list(fused["q1"]) == ["b", "a", "c"]
    assert fused["q1"] == pytest.approx({"a": 10.5, "b": 11.0, "c": 9.5})


def test_bm25_writes_a_run(work, tmp_path):
    status, _, err = cli(
        "bm25",
        "--corpus",
        work / "corpus.tsv",
        "--queries",
        work / "queries.tsv",
        "--output",
        tmp_path / "bm25.trec",
        "--k",
        3,
    )
    assert status == 0, err
    run = read_run(tmp_path / "bm25.trec")
    assert next(iter(run["q1"])) == "d1" and next(iter(run["q4"])) == "d10"  # the only documents with the terms


def test_mine_negatives(work, tmp_path):
    status, _, err = cli(
        "mine-negatives",
        "--model",
        work / "bert",
        "--index",
        work / "index",
        "--queries",
        work / "queries.tsv",
        "--qrels",
        work / "qrels.txt",
        "--corpus",
        work / "corpus.tsv",
        "--output",
        tmp_path / "mined",
        "--depth",
        6,
        "--num-negatives",
        2,
        "--seed",
        3,
    )
    assert status == 0, err
    mined = datasets.load_from_disk(str(tmp_path / "mined"))
    assert len(mined) == 5  # one row per rel > 0 judgment
    relevant = {("q1", "d1"), ("q2", "d3"), ("q2", "d8"), ("q3", "d5"), ("q4", "d10")}
    for row in mined:
        assert (row["query_id"], row["positive_id"]) in relevant
        assert not {(row["query_id"], d) for d in row["negative_ids"]} & relevant
        assert row["negatives"] == [DOCS[int(d[1:])] for d in row["negative_ids"]]


def test_mine_negatives_with_a_teacher_filter(work, tmp_path):
    from tct_hf import ColBERTModel

    teacher = ColBERTModel.from_pretrained(str(work / "bert"), convention="tct", dim=8)
    teacher.save_pretrained(str(tmp_path / "teacher"))
    arguments = ["mine-negatives", "--model", work / "bert", "--index", work / "index", "--queries",
                 work / "queries.tsv", "--qrels", work / "qrels.txt", "--corpus", work / "corpus.tsv",
                 "--depth", 8, "--num-negatives", 50]  # fmt: skip
    status, _, err = cli(*arguments, "--output", tmp_path / "no", "--teacher-margin", 0.1)
    assert status == 2 and "--teacher-margin needs --teacher" in err
    status, _, err = cli(*arguments, "--output", tmp_path / "mined", "--teacher", tmp_path / "teacher",
                         "--teacher-margin", 0.05, "--teacher-margin-type", "relative")  # fmt: skip
    assert status == 0, err
    mined = datasets.load_from_disk(str(tmp_path / "mined"))
    assert len(mined) >= 1
    for row in mined:
        # the teacher's own pair score, computed independently, and the relative threshold
        positive = teacher.score([QUERIES[row["query_id"]]], [row["positive"]])[0]
        assert row["positive_teacher_score"] == pytest.approx(positive, abs=1e-5)
        assert all(s < positive - abs(positive) * 0.05 for s in row["negative_teacher_scores"])
        assert row["teacher_dropped"] >= 0


def write_bad_files(tmp: Path) -> None:
    (tmp / "bad_corpus.tsv").write_text("d1\tfine\nd2\ttoo\tmany\tcolumns\n")
    (tmp / "bad_queries.tsv").write_text("q1 no tab here\n")
    (tmp / "bad_run.trec").write_text("q1 Q0 d1 1 1.0 tag\nq1 Q0 d2 two 0.5 tag\n")
    (tmp / "good_run.trec").write_text("q1 Q0 d1 1 1.0 tag\n")
    (tmp / "not_a_model").mkdir(exist_ok=True)


def bad_inputs(work: Path, tmp: Path) -> dict[str, tuple[list, str]]:
    """Case name → (arguments, text the one-line error must contain)."""
    encode = ["encode", "--model", work / "bert", "--corpus", work / "corpus.tsv", "--output", tmp / "out"]
    search = [
        "search",
        "--model",
        work / "bert",
        "--index",
        work / "index",
        "--queries",
        work / "queries.tsv",
        "--output",
        tmp / "out",
    ]
    return {
        "missing corpus": (
            ["encode", "--model", work / "bert", "--corpus", tmp / "nope.tsv", "--output", tmp / "out"],
            "nope.tsv",
        ),
        "malformed corpus line": ([*encode[:4], tmp / "bad_corpus.tsv", *encode[5:]], "bad_corpus.tsv:2"),
        "shard out of range": ([*encode, "--shard", "2/2"], "0 <= I < N"),
        "shard syntax": ([*encode, "--shard", "half"], "expected I/N"),
        "not a checkpoint": (["encode", "--model", tmp / "not_a_model", *encode[3:]], "not a model checkpoint"),
        "index exists": ([*encode[:6], work / "index"], "--overwrite"),
        "dimension mismatch": (["search", "--model", work / "bert48", *search[3:]], "dimension 48"),
        "malformed queries": ([*search[:6], tmp / "bad_queries.tsv", *search[7:]], "bad_queries.tsv:1:"),
        "alpha not a number": (
            ["fuse", "--dense", "a", "--sparse", "b", "--alpha", "x", "--output", "o"],
            "'x' is not a number",
        ),
        "malformed run": (
            ["evaluate", "--run", tmp / "bad_run.trec", "--qrels", work / "qrels.txt"],
            "bad_run.trec:2:",
        ),
        "missing qrels": (["evaluate", "--run", tmp / "good_run.trec", "--qrels", tmp / "nope.txt"], "nope.txt"),
        "depth zero": (
            [
                "mine-negatives",
                "--model",
                "m",
                "--index",
                "i",
                "--queries",
                "q",
                "--qrels",
                "r",
                "--corpus",
                "c",
                "--output",
                "o",
                "--depth",
                "0",
            ],
            "must be at least 1",
        ),
        "unknown command": (["frobnicate"], "invalid choice"),
    }


CASES = list(bad_inputs(Path("w"), Path("t")))


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_with_one_line(work, tmp_path, case):
    write_bad_files(tmp_path)
    args, expected = bad_inputs(work, tmp_path)[case]
    status, out, err = cli(*args)
    assert status == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("tct-hf") and ": error: " in err and expected in err, err
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "out").exists()


def test_module_entry_point(work):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tct_hf.cli",
            "fuse",
            "--dense",
            str(work / "missing.trec"),
            "--sparse",
            "x",
            "--output",
            "y",
        ],
        capture_output=True,
        text=True,
        env=environment,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"tct-hf fuse: error: {work / 'missing.trec'}: no such file"]
    status, out, _ = cli("evaluate", "--help")
    assert status == 0 and "--per-query" in out


def test_model_commands_on_cpu_keep_freed_host_memory(work, tmp_path):
    from unittest import mock

    with mock.patch("tct_hf.host_memory.keep_freed_host_memory") as keep:
        status, _, err = cli(*search_arguments(work, tmp_path / "run.trec"), "--device", "cpu")
    assert status == 0, err
    keep.assert_called_once_with()


def test_cli_does_not_import_training():
    """The CLI is a layer over retrieval and evaluation: loading it and every command's module needs no trainer."""
    code = (
        "import sys, tct_hf.cli, tct_hf.retrieval.encode_index, tct_hf.retrieval.mining\n"
        "tct_hf.cli.build_parser()\n"
        "print(sorted(m for m in sys.modules if m.startswith('tct_hf.training')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def encode_shard(work: Path, output: Path, shard: str, model: str = "bert") -> None:
    status, _, err = cli("encode", "--model", work / model, "--corpus", work / "corpus.tsv", "--output", output,
                         "--shard", shard, "--no-progress")  # fmt: skip
    assert status == 0, err


def merge_error(index: Path) -> str:
    status, out, err = cli("merge-index", "--index", index)
    assert status == 2 and out == "", err
    assert len(err.strip().splitlines()) == 1 and err.startswith("tct-hf merge-index: error: "), err
    return err


def test_merge_index_errors(work, tmp_path):
    assert "no such index directory" in merge_error(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "shard-x-of-2").mkdir()  # not a shard folder name
    assert "no shard-I-of-N folders" in merge_error(tmp_path / "empty")
    encode_shard(work, tmp_path / "incomplete", "0/3")
    encode_shard(work, tmp_path / "incomplete", "2/3")
    assert "do not cover 0..N-1" in merge_error(tmp_path / "incomplete")
    assert sorted(p.name for p in (tmp_path / "incomplete").iterdir()) == ["shard-0-of-3", "shard-2-of-3"]  # kept
    encode_shard(work, tmp_path / "mixed", "0/2")
    encode_shard(work, tmp_path / "mixed", "1/2", model="bert48")
    assert "dim 48 differs from the first shard's 32" in merge_error(tmp_path / "mixed")


def test_unexpected_error_exits_1_with_one_line(work, tmp_path, monkeypatch):
    """A failure that is not bad input (here: the index library breaking mid-run) exits 1 with one line naming the
    exception type, no traceback, and leaves no output; TCT_HF_DEBUG=1 shows the traceback instead."""
    import tct_hf.retrieval.search

    def broken(*args, **kwargs):
        raise RuntimeError("faiss exploded\nsecond line")

    monkeypatch.setattr(tct_hf.retrieval.search, "search", broken)
    output = tmp_path / "run.trec"
    status, out, err = cli(*search_arguments(work, output))
    assert status == 1 and out == ""
    assert err.strip().splitlines() == ["tct-hf search: error: RuntimeError: faiss exploded second line"]
    assert not output.exists()
    monkeypatch.setenv("TCT_HF_DEBUG", "1")
    with pytest.raises(RuntimeError, match="faiss exploded"):
        cli(*search_arguments(work, output))
